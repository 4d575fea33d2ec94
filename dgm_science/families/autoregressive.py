"""Autoregressive family: p(x) = prod_t p(x_t | x_<t[, c]) over token sequences (categorical)
and over real vector sequences (a Gaussian mixture per step)."""

from __future__ import annotations

import math
from typing import Any

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

    def _token_log_probs(self, batch: dict[str, Any], condition: torch.Tensor | None) -> torch.Tensor:
        """Per-position log p(x_t | x_<t): (B, L-1), zero at padding."""
        tokens = batch["tokens"]
        if condition is None:
            condition = batch.get("condition")
        logits = self.network(tokens[:, :-1], condition)
        targets = tokens[:, 1:]
        log_p = -F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
        return log_p * (targets != self.pad_id)

    def log_prob(self, batch: dict[str, Any], condition: torch.Tensor | None = None) -> torch.Tensor:
        return self._token_log_probs(batch, condition).sum(dim=1)

    def loss(self, batch: dict[str, Any], condition: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood per token (nats)."""
        log_p = self._token_log_probs(batch, condition)
        return -log_p.sum() / (batch["tokens"][:, 1:] != self.pad_id).sum().clamp(min=1)

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
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        temperature = self.temperature if temperature is None else temperature
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
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
