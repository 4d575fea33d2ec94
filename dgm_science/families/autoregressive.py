"""Autoregressive family: p(x) = prod_t p(x_t | x_<t[, c]) over token sequences (categorical)
and over real vector sequences (a Gaussian mixture per step)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from dgm_science.backbones import CausalTransformer
from dgm_science.base import GenerativeModel


class AutoregressiveModel(GenerativeModel):
    """Exact-likelihood sequence model.

    A batch is a dict with ``tokens``: (B, L) long, laid out ``<bos> x_1 .. x_T <eos> <pad>..``, and
    optionally ``condition``: (B, C). ``log_prob`` sums log p over x_1..<eos> (nats, shape (B,)).
    ``sample`` returns (n, L) token ids starting with <bos>, padded with <pad> after <eos>.
    """

    likelihood = "exact"
    family = "autoregressive"

    def __init__(
        self,
        network: CausalTransformer,
        *,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.temperature = temperature

    def token_log_probs_and_hidden(self, batch: dict[str, Any], condition: torch.Tensor | None = None
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position log p(x_t | x_<t): (B, L-1), zero at padding, and the network's hidden
        states (B, L-1, d_model) of the positions that predict them, zero at padding (features of x, one pass)."""
        return self._log_probs(batch, condition, hidden=True)

    def _token_log_probs(self, batch: dict[str, Any], condition: torch.Tensor | None) -> torch.Tensor:
        """Per-position log p(x_t | x_<t): (B, L-1), zero at padding."""
        return self._log_probs(batch, condition, hidden=False)[0]

    def _log_probs(self, batch: dict[str, Any], condition: torch.Tensor | None, hidden: bool
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-position log p (B, L-1), zero at padding, and (``hidden``) the states (B, L-1, d_model), zero at
        padding. Right-padded rows (the usual batch) go through the network packed (``hidden_packed``): the
        padding costs nothing; any other layout through the padded batch."""
        tokens = batch["tokens"]
        if condition is None:
            condition = batch.get("condition")
        targets = tokens[:, 1:]
        active = targets != self.pad_id
        lengths = active.sum(dim=1)
        if torch.equal(active, torch.arange(active.shape[1], device=active.device) < lengths[:, None]):
            states = self.network.hidden_packed(tokens[:, :-1], lengths, condition)
            flat = -F.cross_entropy(self.network.head(states).float(), targets[active], reduction="none")
            log_p = flat.new_zeros(targets.shape).masked_scatter(active, flat)
            if not hidden:
                return log_p, None
            return log_p, states.new_zeros((*targets.shape, states.shape[-1])).masked_scatter(active[..., None],
                                                                                                 states)
        states = self.network.hidden(tokens[:, :-1], condition)
        log_p = -F.cross_entropy(self.network.head(states).transpose(1, 2).float(), targets, reduction="none")
        return log_p * active, states

    def log_prob(self, batch: dict[str, Any], condition: torch.Tensor | None = None) -> torch.Tensor:
        return self._token_log_probs(batch, condition).sum(dim=1)

    def loss(self, batch: dict[str, Any], condition: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood per token (nats)."""
        log_p = self._token_log_probs(batch, condition)
        return -log_p.sum() / (batch["tokens"][:, 1:] != self.pad_id).sum().clamp(min=1)

    def _sampling_temperature(self, n: int, temperature: float | None) -> float:
        """The temperature to sample ``n`` sequences at (the model's own by default); ValueError for
        n <= 0 or a temperature <= 0."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        temperature = self.temperature if temperature is None else temperature
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return temperature

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        temperature: float | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling with a key/value cache; stops when every row has emitted <eos>."""
        temperature = self._sampling_temperature(n, temperature)
        max_length = max_length or self.network.max_length
        device = self.network.head.weight.device
        tokens = torch.full((n, max_length), self.pad_id, dtype=torch.long, device=device)
        tokens[:, 0] = self.bos_id
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        cache = self.network.new_cache(n, self.network.head.weight)
        for t in range(1, max_length):
            logits = self.network.step(tokens[:, t - 1], cache, condition)
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad_id), nxt)
            tokens[:, t] = nxt
            finished |= nxt == self.eos_id
            if bool(finished.all()):
                return tokens[:, : t + 1]
        return tokens

    @torch.no_grad()
    def sample_template(
        self,
        n: int,
        template: Sequence[int | Slot],
        grammar: SlotGrammar,
        *,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        temperature: float | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """Template-constrained ancestral sampling with the key/value cache: (n, L) token ids laid out
        as :meth:`sample`'s. The template's token ids are forced in order; each :class:`Slot` is
        sampled from p(x_t | x_<t) restricted to the tokens the slot and ``grammar`` allow
        (renormalised; logits divided by ``temperature``), and ends when its ``end`` is drawn at
        depth 0 with a ``content`` token written and no ``paired`` token left open. <eos> follows
        the template unless its last slot ends with it. A row that reaches ``max_length`` first has
        no <eos> (an invalid sample, as in :meth:`sample`)."""
        temperature = self._sampling_temperature(n, temperature)
        program = list(template)
        if not program or not (isinstance(program[-1], Slot) and program[-1].end == self.eos_id
                               or program[-1] == self.eos_id):
            program.append(self.eos_id)
        max_length = max_length or self.network.max_length
        device = self.network.head.weight.device
        vocabulary = self.network.head.out_features
        slots = [p for p in program if isinstance(p, Slot)]
        forced = torch.tensor([-1 if isinstance(p, Slot) else int(p) for p in program], device=device)
        slot_of = torch.tensor([slots.index(p) if isinstance(p, Slot) else -1 for p in program], device=device)
        slot_end = torch.tensor([s.end for s in slots] or [self.eos_id], device=device)
        slot_allowed = torch.ones(max(len(slots), 1), vocabulary, dtype=torch.bool, device=device)
        for i, s in enumerate(slots):
            slot_allowed[i, [*s.forbidden, self.pad_id, self.bos_id]] = False
            slot_allowed[i, self.eos_id] = s.end == self.eos_id
        is_content = torch.zeros(vocabulary, dtype=torch.bool, device=device)
        is_content[list(grammar.content)] = True
        pair_column = torch.full((vocabulary,), -1, dtype=torch.long, device=device)
        pair_column[list(grammar.paired)] = torch.arange(len(grammar.paired), device=device)
        rows = torch.arange(n, device=device)

        tokens = torch.full((n, max_length), self.pad_id, dtype=torch.long, device=device)
        tokens[:, 0] = self.bos_id
        position = torch.zeros(n, dtype=torch.long, device=device)
        depth = torch.zeros(n, dtype=torch.long, device=device)
        content = torch.zeros(n, dtype=torch.long, device=device)
        paired_open = torch.zeros(n, len(grammar.paired), dtype=torch.bool, device=device)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        cache = self.network.new_cache(n, self.network.head.weight)
        for t in range(1, max_length):
            logits = self.network.step(tokens[:, t - 1], cache, condition)
            here = position.clamp(max=len(program) - 1)
            in_slot = (slot_of[here] >= 0) & ~finished
            slot = slot_of[here].clamp(min=0)
            end = slot_end[slot]
            may_end = (depth == 0) & ((content > 0) | (not grammar.content)) & ~paired_open.any(1)
            allowed = slot_allowed[slot].clone()
            allowed[rows, end] &= may_end
            if grammar.close_id is not None:  # closes a bracket the slot opened, or is the slot's end
                closes = (depth > 0) | ((end == grammar.close_id) & may_end)
                allowed[:, grammar.close_id] = slot_allowed[slot, grammar.close_id] & closes
            if grammar.before_content:
                allowed[:, list(grammar.before_content)] &= (content > 0).unsqueeze(1)
            allowed |= ~in_slot.unsqueeze(1)
            probs = torch.softmax(logits.float().masked_fill(~allowed, -math.inf) / temperature, dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(in_slot, drawn, forced[here])
            nxt = torch.where(finished, torch.full_like(nxt, self.pad_id), nxt)
            tokens[:, t] = nxt
            ends = in_slot & (nxt == end) & (depth == 0)
            if grammar.open_id is not None:
                depth = depth + (in_slot & (nxt == grammar.open_id)).long()
            if grammar.close_id is not None:
                depth = depth - (in_slot & ~ends & (nxt == grammar.close_id) & (depth > 0)).long()
            column = pair_column[nxt]
            toggle = in_slot & (column >= 0)
            paired_open[rows[toggle], column[toggle]] ^= True
            content = content + (in_slot & is_content[nxt]).long()
            depth, content = depth.masked_fill(ends, 0), content.masked_fill(ends, 0)
            paired_open[ends] = False
            position = position + ((~in_slot | ends) & ~finished).long()
            finished |= nxt == self.eos_id
            if bool(finished.all()):
                return tokens[:, : t + 1]
        return tokens


@dataclasses.dataclass(frozen=True)
class Slot:
    """A free stretch of a token template (:meth:`AutoregressiveModel.sample_template`): the model
    writes it until it emits ``end`` at nesting depth 0 (``end`` is part of the output: the closing
    bracket of a branch, or <eos> for a slot that ends the sequence); ``forbidden`` ids are never
    drawn in it."""

    end: int
    forbidden: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class SlotGrammar:
    """The token classes a slot's constraints need. ``open_id`` / ``close_id`` nest: a slot ends
    only at depth 0, and a ``close_id`` that is not the slot's end only closes a bracket the slot
    opened. ``paired`` ids come in pairs (a second occurrence closes the first, as SMILES ring-bond
    digits do): every pair opened in a slot is closed before it ends. ``content`` ids: a slot holds
    at least one before it ends (e.g. the atoms of a SMILES). ``before_content``: ids a slot may
    not write before its first content token (in SMILES: a ring-bond digit or a double bond there
    would bond the atom before the slot)."""

    open_id: int | None = None
    close_id: int | None = None
    paired: tuple[int, ...] = ()
    content: tuple[int, ...] = ()
    before_content: tuple[int, ...] = ()


class MixtureAutoregressive(GenerativeModel):
    """Exact-likelihood model of real sequences (B, L, D): p(x) = prod_t p(x_t | x_<t, c), each
    step a mixture of ``components`` diagonal Gaussians (a mixture density network head, Bishop
    1994) on a causal transformer over continuous vectors (``CausalTransformer(input_dim=D,
    output_dim=components * (2 D + 1))``).

    Conditioning is by inpainting, as for ``GaussianDiffusion``: ``condition`` (B, L, D) holds the
    known entries (NaN = free). The known entries of the first and last steps are also given to
    the network up front (values and masks, a goal-conditioned model in the hindsight sense: the
    last step is the window's own end in training); a learned start vector precedes x_1. Known
    entries are imposed as they are sampled, and ``log_prob`` scores the free entries (the
    marginal of the free dimensions of each step's mixture, exact). ``residual``: each step's
    means are offsets from the previous step (physical trajectories change little per step).
    """

    likelihood = "exact"
    family = "autoregressive"

    def __init__(self, network: CausalTransformer, dim: int, length: int, components: int = 4,
                 min_log_std: float = -7.0, residual: bool = False) -> None:
        super().__init__()
        self.network, self.dim, self.length, self.components = network, dim, length, components
        self.min_log_std, self.residual = min_log_std, residual
        self.start = torch.nn.Parameter(torch.zeros(dim))

    def _condition(self, condition: torch.Tensor | None, n: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(known mask (n, L, D), known values, the network's condition vector (n, 4 D))."""
        if condition is None:
            condition = torch.full((n, self.length, self.dim), math.nan, device=device)
        if condition.shape != (n, self.length, self.dim):
            raise ValueError(f"condition has shape {tuple(condition.shape)}, expected {(n, self.length, self.dim)}")
        known = torch.isfinite(condition)
        values = torch.where(known, condition, torch.zeros_like(condition)).float()
        vector = torch.cat([values[:, 0], known[:, 0].float(), values[:, -1], known[:, -1].float()], dim=-1)
        return known, values, vector

    def _mixture(self, out: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Head output (..., K (2 D + 1)) -> log weights (..., K), means and log stds (..., K, D);
        ``residual``: the means are offsets from the previous step (``previous`` (..., D))."""
        k, d = self.components, self.dim
        logits, rest = out.float().split([k, 2 * k * d], dim=-1)
        mean, log_std = rest.unflatten(-1, (k, 2 * d)).split([d, d], dim=-1)
        if self.residual:
            mean = mean + previous.float().unsqueeze(-2)
        return torch.log_softmax(logits, dim=-1), mean, log_std.clamp(min=self.min_log_std, max=2.0)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.start.expand(x.shape[0], 1, -1).to(x.dtype), x[:, :-1]], dim=1)

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["x"].float()
        known, values, vector = self._condition(batch.get("condition"), x.shape[0], x.device)
        inputs = self._inputs(impose_known(x, known, values))
        log_w, mean, log_std = self._mixture(self.network(inputs, vector), inputs)
        free = (~known).float().unsqueeze(-2)  # (B, L, 1, D)
        z = (x.unsqueeze(-2) - mean) * torch.exp(-log_std)
        log_n = ((-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)) * free).sum(-1)
        return torch.logsumexp(log_w + log_n, dim=-1).sum(-1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Negative log-likelihood per free entry (nats)."""
        free = ~torch.isfinite(batch["condition"]) if batch.get("condition") is not None else torch.ones_like(batch["x"])
        return -self.log_prob(batch).sum() / free.sum().clamp(min=1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Ancestral sampling with a key/value cache, the known entries of ``condition`` imposed:
        (n, L, D). ``temperature`` scales the components' standard deviations."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = self.start.device
        known, values, vector = self._condition(condition.to(device) if condition is not None else None, n, device)
        x = torch.zeros(n, self.length, self.dim, device=device)
        cache = self.network.new_cache(n, self.start)
        previous = self.start.expand(n, -1)
        for t in range(self.length):
            log_w, mean, log_std = self._mixture(self.network.step(previous, cache, vector), previous)
            pick = torch.multinomial(log_w.exp(), 1, generator=generator)  # (n, 1)
            index = pick[:, :, None].expand(-1, 1, self.dim)
            mu, std = mean.gather(1, index)[:, 0], log_std.gather(1, index)[:, 0].exp()
            noise = torch.randn(mu.shape, generator=generator, device=device)
            step = torch.where(known[:, t], values[:, t], mu + temperature * std * noise)
            x[:, t] = step
            previous = step
        return x


def impose_known(x: torch.Tensor, known: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(known, values.to(x.dtype), x)
