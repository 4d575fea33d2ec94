"""Discrete denoising diffusion.

- ``DiscreteGraphDiffusion``: graphs with categorical nodes and edges, DiGress (Vignac et al., ICLR
  2023) on the D3PM chain (Austin et al., NeurIPS 2021) with marginal transitions.
- ``MaskedDiffusion``: token sequences with the absorbing (mask) state in continuous time, MDLM
  (Sahoo et al., NeurIPS 2024; D3PM-absorbing's continuous-time limit), at the end of this module.

Graphs:
A graph with ``n`` of ``N`` node slots real is ``nodes: (B, N)`` node classes in ``0..K_X-1``,
``edges: (B, N, N)`` symmetric edge classes in ``0..K_E-1`` (class 0 is "no edge") and ``node_mask:
(B, N)``. Only real nodes and pairs of distinct real nodes are random variables; padding and the
diagonal are never noised and never scored. Time runs t = 0 (data) .. T (the marginal prior).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.base import GenerativeModel

_TINY = 1e-30


def cosine_beta_schedule_discrete(steps: int, s: float = 0.008) -> torch.Tensor:
    """DiGress's discrete cosine schedule: betas ``(steps + 1,)`` (float64), beta_i = 1 - f(i+1)/f(i)
    with f(i) = cos^2(pi/2 (i/(T+1) + s) / (1 + s)), i = 0..T (Nichol & Dhariwal 2021, eq. 17)."""
    x = torch.arange(steps + 2, dtype=torch.float64) / (steps + 1)
    f = torch.cos(0.5 * math.pi * (x + s) / (1 + s)) ** 2
    f = f / f[0]
    return 1 - f[1:] / f[:-1]


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs: (..., K)`` (unnormalised is fine) by inverse CDF, the first k
    with u * total < cdf_k, so a zero-probability class is never drawn: (...,) long."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device, dtype=torch.float64)
    index = (cdf <= (u * cdf[..., -1]).unsqueeze(-1)).sum(-1)
    return index.clamp(max=probs.shape[-1] - 1)


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_k p_k log(p_k / q_k) over the last axis, with 0 log 0 = 0, floored at 0
    against rounding: (...,)."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q.clamp(min=_TINY))).sum(-1).clamp(min=0)


@dataclasses.dataclass(frozen=True)
class CategoricalGraphs:
    """The family's native batch: ``nodes: (B, N)`` long, ``edges: (B, N, N)`` long symmetric,
    ``node_mask: (B, N)`` bool (real nodes first)."""

    nodes: torch.Tensor
    edges: torch.Tensor
    node_mask: torch.Tensor

    def __len__(self) -> int:
        return self.nodes.shape[0]


INPAINTING_CLAMPS = ("clean", "noised")


@dataclasses.dataclass(frozen=True)
class GraphInpainting:
    """Entries of G_0 fixed while sampling: graphs that contain a given subgraph (inpainting).

    ``nodes: (N,)`` long node classes with ``node_known: (N,)`` bool, and ``edges: (N, N)`` long edge
    classes with ``edge_known: (N, N)`` bool (both symmetric), over the model's N node slots; one
    pattern for every sample. A known edge to a slot that is padding in a sample is ignored there.
    ``min_nodes``: sizes are drawn from P(n | n >= min_nodes); every known node's index must be
    below it, so that it is a real node of every sample. ``clamp`` is how known entries enter the
    chain at t >= 1 (see :meth:`DiscreteGraphDiffusion.sample`): "clean" (x_0 itself) or "noised"
    (a draw of q(x_t | x_0), RePaint). Either way G_0 holds the known entries exactly.
    """

    nodes: torch.Tensor
    node_known: torch.Tensor
    edges: torch.Tensor
    edge_known: torch.Tensor
    min_nodes: int
    clamp: str = "clean"

    def __post_init__(self) -> None:
        n = self.nodes.shape[0]
        if self.nodes.shape != (n,) or self.node_known.shape != (n,):
            raise ValueError(f"inpainting nodes and node_known must be (N,), got {tuple(self.nodes.shape)}, "
                             f"{tuple(self.node_known.shape)}")
        if self.edges.shape != (n, n) or self.edge_known.shape != (n, n):
            raise ValueError(f"inpainting edges and edge_known must be ({n}, {n}), got {tuple(self.edges.shape)}, "
                             f"{tuple(self.edge_known.shape)}")
        if not (torch.equal(self.edges, self.edges.T) and torch.equal(self.edge_known, self.edge_known.T)):
            raise ValueError("inpainting edges and edge_known must be symmetric")
        if not 1 <= self.min_nodes <= n:
            raise ValueError(f"inpainting min_nodes must be in 1..{n}, got {self.min_nodes}")
        if bool(self.node_known[self.min_nodes:].any()):
            raise ValueError(f"known nodes must have indices below min_nodes={self.min_nodes}")
        if self.clamp not in INPAINTING_CLAMPS:
            raise ValueError(f"inpainting clamp must be one of {', '.join(INPAINTING_CLAMPS)}, got {self.clamp!r}")


class GraphCodec(Protocol):
    """Maps a domain's batch to class indices and back (``CategoricalGraphs`` in both directions)."""

    def encode(self, batch: Any) -> CategoricalGraphs: ...

    def decode(self, graphs: CategoricalGraphs) -> Any: ...


class IdentityCodec:
    """The codec for batches that already are ``CategoricalGraphs``."""

    def encode(self, batch: Any) -> CategoricalGraphs:
        return batch

    def decode(self, graphs: CategoricalGraphs) -> CategoricalGraphs:
        return graphs


class MarginalTransition(nn.Module):
    """DiGress's marginal transitions of one categorical variable with K classes:
    Q_t = alpha_t I + (1 - alpha_t) 1 m^T, Qbar_t = Q_1 ... Q_t = alphabar_t I + (1 - alphabar_t) 1 m^T.

    ``marginals: (K,)``, ``alphas, alpha_bars: (T + 1,)`` with ``alphas[0] = alpha_bars[0] = 1``.
    Probability vectors are rows: q(x_t | x_0) = x_0 Qbar_t.
    """

    def __init__(self, marginals: torch.Tensor, alphas: torch.Tensor, alpha_bars: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("marginals", marginals, persistent=False)
        self.register_buffer("alphas", alphas, persistent=False)
        self.register_buffer("alpha_bars", alpha_bars, persistent=False)

    @property
    def num_classes(self) -> int:
        return self.marginals.shape[0]

    def _matrix(self, a: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.num_classes, dtype=self.marginals.dtype, device=self.marginals.device)
        a = a.reshape(-1, 1, 1)
        return a * eye + (1 - a) * self.marginals.expand(self.num_classes, -1)

    def step_matrix(self, t: torch.Tensor) -> torch.Tensor:
        """Q_t for steps ``t: (B,)`` long: (B, K, K)."""
        return self._matrix(self.alphas[t])

    def cumulative_matrix(self, t: torch.Tensor) -> torch.Tensor:
        """Qbar_t for steps ``t: (B,)`` long: (B, K, K)."""
        return self._matrix(self.alpha_bars[t])

    def _mix(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """x (a I + (1 - a) 1 m^T) for row vectors ``x: (B, ..., K)``, ``a: (B,)``."""
        a = a.reshape(-1, *([1] * (x.dim() - 1)))
        return a * x + (1 - a) * x.sum(-1, keepdim=True) * self.marginals

    def _mix_transposed(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """x (a I + (1 - a) 1 m^T)^T: entry j is a x_j + (1 - a) (x . m)."""
        a = a.reshape(-1, *([1] * (x.dim() - 1)))
        return a * x + (1 - a) * (x * self.marginals).sum(-1, keepdim=True)

    def forward_probs(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) = x_0 Qbar_t for one-hot (or probability) ``x0: (B, ..., K)``: (B, ..., K)."""
        return self._mix(x0, self.alpha_bars[t])

    def posterior(self, xt: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_{t-1} | x_t, x_0) = (x_t Q_t^T) * (x_0 Qbar_{t-1}) / (x_0 Qbar_t x_t^T) (D3PM eq. 3)
        for one-hot ``xt, x0: (B, ..., K)`` and steps ``t: (B,)`` in 1..T: (B, ..., K)."""
        numerator = self._mix_transposed(xt, self.alphas[t]) * self._mix(x0, self.alpha_bars[t - 1])
        return numerator / numerator.sum(-1, keepdim=True).clamp(min=_TINY)

    def reverse_probs(self, xt: torch.Tensor, x0_probs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p(x_{t-1} | x_t) = sum_c q(x_{t-1} | x_t, x_0 = c) p(x_0 = c | x_t) (D3PM eq. 4) for
        one-hot ``xt`` and predicted ``x0_probs: (B, ..., K)``: (B, ..., K)."""
        evidence = self._mix_transposed(xt, self.alpha_bars[t])
        weights = x0_probs / evidence.clamp(min=_TINY)
        unnormalised = self._mix_transposed(xt, self.alphas[t]) * self._mix(weights, self.alpha_bars[t - 1])
        return unnormalised / unnormalised.sum(-1, keepdim=True).clamp(min=_TINY)


class DiscreteGraphDiffusion(GenerativeModel):
    """DiGress: discrete denoising diffusion on graphs with marginal transitions.

    ``denoiser(nodes, edges, node_mask, time) -> (node_logits, edge_logits)`` maps noisy one-hot
    ``nodes: (B, N, K_X)``, ``edges: (B, N, N, K_E)`` (zero vectors at padding and on the
    diagonal), ``node_mask: (B, N)`` bool and ``time = t / T: (B,)`` to logits of the clean graph,
    ``(B, N, K_X)`` and symmetric ``(B, N, N, K_E)``. ``node_marginals: (K_X,)`` and
    ``edge_marginals: (K_E,)`` (class 0 "no edge", over pairs of real nodes) are the transitions'
    limit distributions; ``num_nodes_distribution: (N + 1,)`` is P(n). ``codec`` maps the domain's
    batch to ``CategoricalGraphs`` and samples back.

    ``loss`` is DiGress's training loss: CE(nodes) + ``edge_weight`` * CE(edges) of the
    predicted clean graph at t ~ U{1..T}, each averaged over the graph's real nodes / pairs, then
    over graphs. ``log_prob`` is DiGress's variational bound (D3PM eq. 1 plus the size term), per
    graph:
    log p(n) - KL(q(G_T|G_0) || prior) - sum_{t=2}^T KL(q(G_{t-1}|G_t,G_0) || p(G_{t-1}|G_t))
    + log p(G_0|G_1), the sum estimated without bias by (T - 1) E_{t ~ U{2..T}} over
    ``elbo_samples`` draws. It is the likelihood of the graph with its node order as given.
    """

    likelihood = "bound"
    family = "diffusion"

    def __init__(
        self,
        denoiser: nn.Module,
        node_marginals: torch.Tensor | list[float],
        edge_marginals: torch.Tensor | list[float],
        num_nodes_distribution: torch.Tensor | list[float],
        *,
        steps: int = 500,
        edge_weight: float = 5.0,
        elbo_samples: int = 1,
        codec: GraphCodec | None = None,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"diffusion steps must be >= 1, got {steps}")
        if elbo_samples < 1:
            raise ValueError(f"elbo_samples must be >= 1, got {elbo_samples}")
        self.denoiser = denoiser
        self.steps, self.edge_weight, self.elbo_samples = steps, edge_weight, elbo_samples
        self.codec: GraphCodec = codec if codec is not None else IdentityCodec()
        betas = cosine_beta_schedule_discrete(steps).clamp(0.0, 0.9999)
        alphas = torch.cat([torch.ones(1, dtype=torch.float64), 1 - betas[1:]])
        alpha_bars = torch.cumprod(alphas, 0)
        node_m, edge_m = (_distribution(m, name) for m, name in
                          ((node_marginals, "node_marginals"), (edge_marginals, "edge_marginals")))
        self.node_transition = MarginalTransition(node_m, alphas.float(), alpha_bars.float())
        self.edge_transition = MarginalTransition(edge_m, alphas.float(), alpha_bars.float())
        self.register_buffer("num_nodes_distribution", _distribution(num_nodes_distribution, "num_nodes_distribution"),
                             persistent=False)
        self._last: dict[str, torch.Tensor] = {}

    @property
    def max_nodes(self) -> int:
        return self.num_nodes_distribution.shape[0] - 1

    def _device(self) -> torch.device:
        return self.num_nodes_distribution.device

    # -- noising ---------------------------------------------------------------------------------

    def _one_hot(self, graphs: CategoricalGraphs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One-hot nodes (B, N, K_X) and edges (B, N, N, K_E), zero at padding / diagonal, and the
        pair mask (B, N, N) of distinct real nodes."""
        mask = graphs.node_mask
        pair = _pair_mask(mask)
        dtype = self.node_transition.marginals.dtype
        nodes = F.one_hot(graphs.nodes.clamp(min=0), self.node_transition.num_classes).to(dtype) * mask.unsqueeze(-1)
        edges = F.one_hot(graphs.edges.clamp(min=0), self.edge_transition.num_classes).to(dtype) * pair.unsqueeze(-1)
        return nodes, edges, pair

    def _sample_graph(
        self, node_probs: torch.Tensor, edge_probs: torch.Tensor, mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> CategoricalGraphs:
        """Draw nodes from ``node_probs: (B, N, K_X)`` and the upper triangle of edges from
        ``edge_probs: (B, N, N, K_E)``, mirrored; class 0 at padding and on the diagonal."""
        n = mask.shape[1]
        nodes = sample_categorical(node_probs, generator) * mask
        rows, cols = torch.triu_indices(n, n, offset=1, device=mask.device)
        upper = sample_categorical(edge_probs[:, rows, cols], generator)
        edges = nodes.new_zeros(nodes.shape[0], n, n)
        edges[:, rows, cols] = upper
        edges = (edges + edges.transpose(1, 2)) * _pair_mask(mask)
        return CategoricalGraphs(nodes, edges, mask)

    def noise(
        self, graphs: CategoricalGraphs, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> CategoricalGraphs:
        """G_t ~ q(G_t | G_0) = (X_0 Qbar^X_t, E_0 Qbar^E_t) for steps ``t: (B,)`` (D3PM eq. 2)."""
        nodes, edges, _ = self._one_hot(graphs)
        return self._sample_graph(self.node_transition.forward_probs(nodes, t),
                                  self.edge_transition.forward_probs(edges, t), graphs.node_mask, generator)

    def predict(self, graphs: CategoricalGraphs, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoiser logits of the clean graph given G_t at steps ``t: (B,)``: (B, N, K_X), (B, N, N, K_E)."""
        nodes, edges, _ = self._one_hot(graphs)
        time = t.to(nodes.dtype) / self.steps
        return self.denoiser(nodes, edges, graphs.node_mask, time)

    # -- training --------------------------------------------------------------------------------

    def loss(self, batch: Any) -> torch.Tensor:
        clean = self.codec.encode(batch)
        mask = clean.node_mask
        t = torch.randint(1, self.steps + 1, (mask.shape[0],), device=mask.device)
        node_logits, edge_logits = self.predict(self.noise(clean, t), t)
        pair = _pair_mask(mask)
        node_ce = F.cross_entropy(node_logits.float().transpose(1, -1), clean.nodes.clamp(min=0),
                                  reduction="none") * mask
        edge_ce = F.cross_entropy(edge_logits.float().permute(0, 3, 1, 2), clean.edges.clamp(min=0),
                                  reduction="none") * pair
        node_term = node_ce.sum(1) / mask.sum(1).clamp(min=1)
        edge_term = edge_ce.sum((1, 2)) / pair.sum((1, 2)).clamp(min=1)
        self._last = {"node_ce": node_term.mean().detach(), "edge_ce": edge_term.mean().detach()}
        return (node_term + self.edge_weight * edge_term).mean()

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    # -- likelihood bound ------------------------------------------------------------------------

    def log_num_nodes(self, node_mask: torch.Tensor) -> torch.Tensor:
        """log P(n) of each graph's node count, ``node_mask: (B, N)``: (B,) (floored at log 1e-30)."""
        return self.num_nodes_distribution.clamp(min=_TINY).log()[node_mask.sum(1)]

    def kl_prior(self, graphs: CategoricalGraphs) -> torch.Tensor:
        """KL(q(G_T | G_0) || prod m) summed over real nodes and pairs of real nodes: (B,)."""
        nodes, edges, pair = self._one_hot(graphs)
        t = torch.full((nodes.shape[0],), self.steps, device=nodes.device)
        node_kl = categorical_kl(self.node_transition.forward_probs(nodes, t), self.node_transition.marginals)
        edge_kl = categorical_kl(self.edge_transition.forward_probs(edges, t), self.edge_transition.marginals)
        return (node_kl * graphs.node_mask).sum(1) + (edge_kl * pair.triu(1)).sum((1, 2))

    def kl_step(self, graphs: CategoricalGraphs, t: torch.Tensor) -> torch.Tensor:
        """KL(q(G_{t-1} | G_t, G_0) || p(G_{t-1} | G_t)) at one G_t ~ q(G_t | G_0), steps ``t: (B,)``
        in 2..T, summed over real nodes and pairs of real nodes: (B,)."""
        nodes, edges, pair = self._one_hot(graphs)
        noisy = self.noise(graphs, t)
        noisy_nodes, noisy_edges, _ = self._one_hot(noisy)
        node_logits, edge_logits = self.predict(noisy, t)
        node_kl = categorical_kl(
            self.node_transition.posterior(noisy_nodes, nodes, t),
            self.node_transition.reverse_probs(noisy_nodes, node_logits.float().softmax(-1), t))
        edge_kl = categorical_kl(
            self.edge_transition.posterior(noisy_edges, edges, t),
            self.edge_transition.reverse_probs(noisy_edges, edge_logits.float().softmax(-1), t))
        return (node_kl * graphs.node_mask).sum(1) + (edge_kl * pair.triu(1)).sum((1, 2))

    def reconstruction(self, graphs: CategoricalGraphs) -> torch.Tensor:
        """log p(G_0 | G_1) at one G_1 ~ q(G_1 | G_0): the denoiser's log-probability of the clean
        classes (Qbar_0 = I), summed over real nodes and pairs of real nodes: (B,)."""
        t = torch.ones(graphs.nodes.shape[0], dtype=torch.long, device=graphs.nodes.device)
        node_logits, edge_logits = self.predict(self.noise(graphs, t), t)
        node_lp = node_logits.float().log_softmax(-1).gather(-1, graphs.nodes.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        edge_lp = edge_logits.float().log_softmax(-1).gather(-1, graphs.edges.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        pair = _pair_mask(graphs.node_mask)
        return (node_lp * graphs.node_mask).sum(1) + (edge_lp * pair.triu(1)).sum((1, 2))

    def elbo_terms(self, batch: Any) -> dict[str, torch.Tensor]:
        """The bound's terms per graph, each (B,): ``log_num_nodes``, ``kl_prior``, ``diffusion``
        ((T - 1) times the mean per-step KL over ``elbo_samples`` draws of t ~ U{2..T}) and
        ``reconstruction`` (mean over ``elbo_samples`` draws of G_1)."""
        graphs = self.codec.encode(batch)
        b = graphs.nodes.shape[0]
        device = graphs.nodes.device
        diffusion = graphs.nodes.new_zeros(b, dtype=torch.float32)
        reconstruction = graphs.nodes.new_zeros(b, dtype=torch.float32)
        for _ in range(self.elbo_samples):
            if self.steps > 1:
                t = torch.randint(2, self.steps + 1, (b,), device=device)
                diffusion = diffusion + (self.steps - 1) * self.kl_step(graphs, t)
            reconstruction = reconstruction + self.reconstruction(graphs)
        return {
            "log_num_nodes": self.log_num_nodes(graphs.node_mask),
            "kl_prior": self.kl_prior(graphs),
            "diffusion": diffusion / self.elbo_samples,
            "reconstruction": reconstruction / self.elbo_samples,
        }

    def log_prob(self, batch: Any) -> torch.Tensor:
        terms = self.elbo_terms(batch)
        return terms["log_num_nodes"] - terms["kl_prior"] - terms["diffusion"] + terms["reconstruction"]

    # -- sampling --------------------------------------------------------------------------------

    def sample_num_nodes(self, n: int, generator: torch.Generator | None = None, minimum: int = 0) -> torch.Tensor:
        """Node counts n ~ P(n), or ~ P(n | n >= ``minimum``): (n,) long."""
        if minimum <= 0:
            return sample_categorical(self.num_nodes_distribution.expand(n, -1), generator)
        restricted = self.num_nodes_distribution.clone()
        restricted[:minimum] = 0
        if not restricted.sum() > 0:
            raise ValueError(f"the size distribution P(n) has no mass at n >= {minimum}")
        return sample_categorical(restricted.expand(n, -1), generator)

    def _clamp_known(self, graphs: CategoricalGraphs, inpaint: GraphInpainting, t: int,
                     generator: torch.Generator | None = None) -> CategoricalGraphs:
        """G_t with its known entries replaced: by a draw of q(x_t | x_0 = known) (``clamp`` "noised";
        D3PM eq. 2) or by x_0 (``clamp`` "clean"). At t = 0 both are x_0 (Qbar_0 = I)."""
        b, n = graphs.nodes.shape
        mask, pair = graphs.node_mask, _pair_mask(graphs.node_mask)
        known_nodes = inpaint.nodes.to(mask.device).expand(b, n)
        known_edges = inpaint.edges.to(mask.device).expand(b, n, n)
        if inpaint.clamp == "noised" and t > 0:
            x0 = CategoricalGraphs(known_nodes, known_edges, torch.ones_like(mask))
            drawn = self.noise(x0, torch.full((b,), t, dtype=torch.long, device=mask.device), generator)
            known_nodes, known_edges = drawn.nodes, drawn.edges
        nodes = torch.where(inpaint.node_known.to(mask.device) & mask, known_nodes, graphs.nodes)
        edges = torch.where(inpaint.edge_known.to(mask.device) & pair, known_edges, graphs.edges)
        return CategoricalGraphs(nodes, edges, mask)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        temperature: float = 1.0,
        inpaint: GraphInpainting | None = None,
    ) -> Any:
        """Ancestral sampling: n ~ P(n), G_T ~ prod m, then G_{t-1} ~ p(G_{t-1} | G_t) for t = T..1
        with the denoiser's logits divided by ``temperature``; returns ``codec.decode`` of G_0.

        ``inpaint``: graphs that contain known entries (a scaffold). n ~ P(n | n >= min_nodes), and
        after every step the known entries of G_{t-1} (and of G_T) are replaced, the free entries
        keeping their draw from p(G_{t-1} | G_t), so G_0 holds the known entries exactly. ``clamp``
        "clean" puts x_0 itself there: the denoiser sees the known entries from the first step, in
        an input unlike its training inputs (clean entries beside noisy ones). "noised" puts a draw
        of q(x_{t-1} | x_0 = known) there, RePaint's replacement (Lugmayr et al., CVPR 2022, eq. 8)
        for the discrete chain: every entry has the marginal the denoiser was trained on, and the
        known entries inform the free ones only as their noise falls. Without ``inpaint`` the
        draws are those of plain sampling (same generator, same graphs)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        if condition is not None:
            raise ValueError("DiscreteGraphDiffusion is unconditional: condition must be None")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if inpaint is not None and inpaint.nodes.shape[0] != self.max_nodes:
            raise ValueError(f"inpainting covers {inpaint.nodes.shape[0]} node slots, the model has {self.max_nodes}")
        device = self._device()
        sizes = self.sample_num_nodes(n, generator, minimum=0 if inpaint is None else inpaint.min_nodes)
        mask = torch.arange(self.max_nodes, device=device) < sizes.unsqueeze(1)
        node_m, edge_m = self.node_transition.marginals, self.edge_transition.marginals
        graphs = self._sample_graph(node_m.expand(n, self.max_nodes, -1),
                                    edge_m.expand(n, self.max_nodes, self.max_nodes, -1), mask, generator)
        if inpaint is not None:
            graphs = self._clamp_known(graphs, inpaint, self.steps, generator)
        for step in range(self.steps, 0, -1):
            t = torch.full((n,), step, dtype=torch.long, device=device)
            node_logits, edge_logits = self.predict(graphs, t)
            nodes, edges, _ = self._one_hot(graphs)
            node_probs = self.node_transition.reverse_probs(nodes, (node_logits.float() / temperature).softmax(-1), t)
            edge_probs = self.edge_transition.reverse_probs(edges, (edge_logits.float() / temperature).softmax(-1), t)
            graphs = self._sample_graph(node_probs, edge_probs, mask, generator)
            if inpaint is not None:
                graphs = self._clamp_known(graphs, inpaint, step - 1, generator)
        return self.codec.decode(graphs)


def _pair_mask(node_mask: torch.Tensor) -> torch.Tensor:
    """Pairs of distinct real nodes, ``node_mask: (B, N)`` -> (B, N, N) bool."""
    n = node_mask.shape[1]
    pair = node_mask.unsqueeze(2) & node_mask.unsqueeze(1)
    return pair & ~torch.eye(n, dtype=torch.bool, device=node_mask.device)


def _distribution(values: torch.Tensor | list[float], name: str) -> torch.Tensor:
    p = torch.as_tensor(values, dtype=torch.float32).flatten()
    if p.numel() == 0 or (p < 0).any() or not torch.isfinite(p).all() or p.sum() <= 0:
        raise ValueError(f"{name} must be a non-empty vector of non-negative finite weights, got {values!r}")
    return p / p.sum()


# ------------------------------------------------------------------------------------- sequences


class MaskedDiffusion(GenerativeModel):
    """Absorbing-state (masked) diffusion over fixed-length token canvases: MDLM (Sahoo et al. 2024).

    A batch is a dict with ``tokens``: (B, L) long, a canvas of ``L`` positions, and optionally
    ``condition``: (B, C). The forward process masks each position independently with probability
    1 - alpha_t, alpha_t = 1 - t (the log-linear schedule, t in [0, 1]); ``network(tokens,
    condition) -> logits (B, L, V)`` is a bidirectional denoiser predicting x_0 at masked positions
    (the mask class is never predicted: its logit is -inf, MDLM's "zero masking" parameterisation;
    nor are the ``never_generated`` classes and, with variable length, <eos> and padding).

    Variable length (``length_distribution`` given, with ``eos_id`` and ``pad_id``): a canvas is
    ``x_1 .. x_n <eos> <pad> ..`` and p(x) = P(n) p(x_1..n | n), as EDM draws the number of atoms:
    n ~ P(n) (the training histogram, ``length_distribution[n]``, n = 1 .. L - 1), the <eos> and
    padding are fixed context and only the n residue positions are diffused. Without it every
    canvas position is a variable.

    NELBO (MDLM eq. 10 with alpha'_t / (1 - alpha_t) = -1/t):
    ``-log p(x) <= -log P(n) + E_{t ~ U(0,1)} [ (1/t) sum_{l masked in z_t} -log p_theta(x_l | z_t) ]``.
    ``loss`` is that NELBO per diffused position (one t per sequence, stratified over the batch);
    ``log_prob`` is minus the NELBO estimated with ``elbo_samples`` stratified t per sequence (a
    stochastic lower bound, tight in expectation for the continuous-time process).
    ``sample`` runs ``sampling_steps`` ancestral steps t -> s = t - 1/S: a masked position is
    revealed with probability (t - s)/t, drawn from p_theta(x_l | z_t); revealed positions stay.
    """

    likelihood = "bound"
    family = "diffusion"

    def __init__(self, network: nn.Module, *, mask_id: int, length: int, sampling_steps: int = 128,
                 elbo_samples: int = 8, eps: float = 1e-3, length_distribution: Any = None,
                 eos_id: int | None = None, pad_id: int | None = None, never_generated: tuple[int, ...] = ()) -> None:
        super().__init__()
        if sampling_steps < 1 or elbo_samples < 1:
            raise ValueError(f"sampling_steps and elbo_samples must be >= 1, got {sampling_steps}, {elbo_samples}")
        self.network, self.mask_id, self.length = network, mask_id, length
        self.sampling_steps, self.elbo_samples, self.eps = sampling_steps, elbo_samples, eps
        self.eos_id, self.pad_id = eos_id, pad_id
        self.excluded = sorted({mask_id, *never_generated} | ({eos_id, pad_id} if length_distribution is not None else set()))
        if length_distribution is not None:
            if eos_id is None or pad_id is None:
                raise ValueError("a length distribution needs eos_id and pad_id")
            p = _distribution(length_distribution, "length_distribution")
            if len(p) != length or p[0] > 0:
                raise ValueError(f"length_distribution must have {length} entries (n = 0 .. {length - 1}) with "
                                 "P(0) = 0")
            self.register_buffer("length_log_probs", p.clamp(min=_TINY).log())
        else:
            self.length_log_probs = None
        self._last: dict[str, torch.Tensor] = {}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _free(self, tokens: torch.Tensor) -> torch.Tensor:
        """Positions that are random variables: (B, L) bool (all, or the residues before <eos>)."""
        if self.length_log_probs is None:
            return torch.ones_like(tokens, dtype=torch.bool)
        return (tokens != self.eos_id) & (tokens != self.pad_id)

    def _logits(self, tokens: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """Denoiser logits (B, L, V) with the classes a diffused position never takes ruled out:
        the mask, ``never_generated`` (e.g. a <bos> the data never has) and, with variable length,
        <eos> and padding (fixed context)."""
        logits = self.network(tokens, condition).float()
        logits[..., self.excluded] = -math.inf
        return logits

    def _log_probs(self, tokens: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """log p_theta(x_0 | z_t) at every position: (B, L, V)."""
        return self._logits(tokens, condition).log_softmax(-1)

    def _stratified_times(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n times in [eps, 1], one per stratum of [0, 1) (low-variance estimate of E_t)."""
        u = torch.rand((), generator=generator, device=self._device())
        t = (u + torch.arange(n, device=self._device()) / n) % 1.0
        return self.eps + (1 - self.eps) * t

    def nelbo(self, tokens: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Single-sample NELBO estimate of p(x | n) in nats for each canvas ``tokens: (B, L)`` at
        times ``t: (B,)`` (the length term is added by ``log_prob``)."""
        masked = torch.rand(tokens.shape, generator=generator, device=tokens.device) < t.unsqueeze(1)
        masked &= self._free(tokens)
        z = torch.where(masked, torch.full_like(tokens, self.mask_id), tokens)
        log_p = self._log_probs(z, condition).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return -torch.where(masked, log_p, torch.zeros_like(log_p)).sum(1) / t  # fixed positions: -inf * 0

    def log_length(self, tokens: torch.Tensor) -> torch.Tensor:
        """log P(n) of each canvas: (B,), zero without a length distribution."""
        if self.length_log_probs is None:
            return tokens.new_zeros(tokens.shape[0], dtype=torch.float32)
        return self.length_log_probs[self._free(tokens).sum(1)]

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        tokens = batch["tokens"]
        nelbo = self.nelbo(tokens, self._stratified_times(tokens.shape[0]), batch.get("condition"))
        per_position = nelbo.sum() / self._free(tokens).sum().clamp(min=1)
        self._last = {"nelbo_per_position": per_position.detach()}
        return per_position

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    def log_prob(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """log P(n) minus the NELBO averaged over ``elbo_samples`` stratified times per sequence: (B,) nats."""
        tokens, condition = batch["tokens"], batch.get("condition")
        k = self.elbo_samples
        repeated = tokens.repeat_interleave(k, 0)
        cond = None if condition is None else condition.repeat_interleave(k, 0)
        t = torch.cat([self._stratified_times(k, generator) for _ in range(tokens.shape[0])])
        return self.log_length(tokens) - self.nelbo(repeated, t, cond, generator).view(-1, k).mean(1)

    def _initial_canvas(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """All-mask canvases (n, L); with a length distribution, n ~ P(n) residue slots masked,
        then <eos> and padding."""
        z = torch.full((n, self.length), self.mask_id, dtype=torch.long, device=self._device())
        if self.length_log_probs is None:
            return z
        lengths = sample_categorical(self.length_log_probs.exp().expand(n, -1), generator)
        position = torch.arange(self.length, device=z.device).unsqueeze(0)
        z = torch.where(position > lengths.unsqueeze(1), torch.full_like(z, self.pad_id), z)
        return torch.where(position == lengths.unsqueeze(1), torch.full_like(z, self.eos_id), z)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0, steps: int | None = None) -> torch.Tensor:
        """(n, L) canvases by ``steps`` (default ``sampling_steps``) ancestral steps from the
        all-mask canvas; logits are divided by ``temperature``."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        steps = steps or self.sampling_steps
        z = self._initial_canvas(n, generator)
        for k in range(steps, 0, -1):
            t, s = k / steps, (k - 1) / steps
            masked = z == self.mask_id
            logits = self._logits(z, condition) / temperature
            draw = sample_categorical(logits.softmax(-1), generator)
            u = torch.rand(z.shape, generator=generator, device=z.device, dtype=torch.float64)
            reveal = masked & (u < (t - s) / t)
            z = torch.where(reveal, draw, z)
        return z
