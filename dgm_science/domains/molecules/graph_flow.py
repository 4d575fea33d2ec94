"""MoFlow-style one-shot normalizing flow on molecular graphs (Zang & Wang, KDD 2020).

log p(G) = log p(A) + log p(X | A): a Glow on the dequantized bond tensor A (masked affine
couplings over rows of the adjacency, each conditioned by a CNN on the symmetric bond image,
with actnorm and invertible 1x1 convolutions over bond channels), and a graph-conditional flow
on the dequantized atom matrix X (couplings over atom rows conditioned by a relational GCN on
the bonds). Both flows are exact (:mod:`dgm_science.families.flows`); on the discrete graph the
uniform dequantization gives the variational bound log P(G) >= log p(A + u_A, X + u_X) + D log d
(u ~ U[0, d)^D, d = ``dequantization``), which is what ``log_prob`` returns.

Shapes: N = max atoms, K = atom types + 1 ("no atom" first), C = 4 bond classes (no bond, single,
double, triple), M = N(N-1)/2 atom pairs; A: (B, C, M) (upper triangle), X: (B, N, K).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dgm_science.config import bounded
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.domains.molecules.dense import NUM_BOND_CLASSES, DenseGraphs
from dgm_science.families.flows import ActNorm, AffineCoupling, Flow, InvertibleLinear, Transform
from dgm_science.families.vae import StandardNormal
from dgm_science.resources import TrainResources
from dgm_science.registry import register


@dataclasses.dataclass(frozen=True)
class GraphFlowConfig:
    """MoFlow-style graph flow. Row blocks: each coupling transforms one block of adjacency rows
    (or atom rows) given the rest; a number above the row count means one row per block (MoFlow)."""

    adjacency_hidden: int = bounded(64, minimum=1)
    adjacency_row_blocks: int = bounded(8, minimum=1)
    adjacency_cycles: int = bounded(2, minimum=1)
    node_hidden: int = bounded(128, minimum=1)
    node_gnn_layers: int = bounded(2, minimum=1)
    node_row_blocks: int = bounded(9, minimum=1)
    node_cycles: int = bounded(2, minimum=1)
    dequantization: float = bounded(0.9, exclusive_minimum=0, exclusive_maximum=1)


def _row_blocks(rows: int, blocks: int) -> list[np.ndarray]:
    return [b for b in np.array_split(np.arange(rows), min(max(blocks, 1), rows)) if len(b)]


class AdjacencyConditioner(nn.Module):
    """(h, t) for the bond coupling: the masked pairs (B, C, M) as a symmetric (B, C, N, N) image,
    plus two position channels (i / N and |i - j| / N, so the convolutions know where the
    diagonal and the SMILES-order chain lie), through a 3x3 / 1x1 / 3x3 CNN (Glow's coupling
    network, last layer zero-initialised so the coupling starts as the identity), symmetrized and
    read back on the upper triangle."""

    def __init__(self, channels: int, max_atoms: int, hidden: int) -> None:
        super().__init__()
        self.max_atoms = max_atoms
        iu = torch.triu_indices(max_atoms, max_atoms, offset=1)
        self.register_buffer("rows", iu[0])
        self.register_buffer("cols", iu[1])
        index = torch.arange(max_atoms, dtype=torch.float32) / max_atoms
        position = torch.stack([index[:, None] + index[None, :], (index[:, None] - index[None, :]).abs()])
        self.register_buffer("position", position[None])
        self.net = nn.Sequential(
            nn.Conv2d(channels + 2, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, pairs: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, _ = pairs.shape
        image = pairs.new_zeros(batch, channels, self.max_atoms, self.max_atoms)
        image[:, :, self.rows, self.cols] = pairs
        image = image + image.transpose(-1, -2)
        out = self.net(torch.cat([image, self.position.expand(batch, -1, -1, -1)], dim=1))
        out = out[:, :, self.rows, self.cols] + out[:, :, self.cols, self.rows]
        h, t = out.chunk(2, dim=1)
        return h, t


class RelationalGCNConditioner(nn.Module):
    """(h, t) for the atom coupling: a relational GCN (Schlichtkrull et al. 2018) over the bonds,
    h_i' = relu(W_0 h_i + sum_r sum_{j ~_r i} W_r h_j / (deg_i + 1)), as MoFlow's GraphAffineCoupling,
    with a learned embedding of the atom's position (the graphs are in canonical SMILES order).

    ``x: (B, N, K)`` masked atoms, ``context: (B, R, N, N)`` one-hot bonds (R = bond orders)."""

    def __init__(self, features: int, relations: int, hidden: int, layers: int, max_atoms: int) -> None:
        super().__init__()
        self.embed = nn.Linear(features, hidden)
        self.position = nn.Parameter(torch.zeros(max_atoms, hidden))
        self.self_loops = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.relations = nn.ModuleList(nn.Linear(hidden, relations * hidden, bias=False) for _ in range(layers))
        self.out = nn.Linear(hidden, 2 * features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.num_relations = relations
        self.hidden = hidden

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if context is None:
            raise ValueError("the atom flow is conditioned on the bonds: context (B, R, N, N) is required")
        batch, n, _ = x.shape
        degree = context.sum((1, 3)).unsqueeze(-1) + 1.0
        h = F.relu(self.embed(x) + self.position)
        for self_loop, relation in zip(self.self_loops, self.relations):
            messages = relation(h).view(batch, n, self.num_relations, self.hidden).transpose(1, 2)
            aggregated = torch.einsum("brij,brjd->bid", context, messages) / degree
            h = F.relu(self_loop(h) + aggregated)
        h, t = self.out(h).chunk(2, dim=-1)
        return h, t


class GraphFlow(GenerativeModel):
    """GraphFlow(adjacency_flow, atom_flow): log p(G) = log p(A) + log p(X | A) with uniform
    dequantization (a lower bound on the discrete graph's log-probability, see module docstring);
    ``sample`` inverts both flows from N(0, T^2 I) noise and takes the argmax class of every
    atom and pair (MoFlow)."""

    likelihood = "bound"
    family = "normalizing flow"
    representation = "yes: z = f(x), invertible"

    def __init__(
        self, adjacency_flow: Flow, atom_flow: Flow, *, atom_classes: int, max_atoms: int, dequantization: float = 0.9
    ) -> None:
        super().__init__()
        if not 0 < dequantization < 1:
            raise ValueError(f"dequantization must be in (0, 1), got {dequantization}")
        self.adjacency_flow = adjacency_flow
        self.atom_flow = atom_flow
        self.atom_classes = atom_classes
        self.max_atoms = max_atoms
        self.dequantization = dequantization
        iu = torch.triu_indices(max_atoms, max_atoms, offset=1)
        self.register_buffer("rows", iu[0])
        self.register_buffer("cols", iu[1])
        self.dims = NUM_BOND_CLASSES * len(iu[0]) + max_atoms * atom_classes

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _bond_context(self, bonds: torch.Tensor) -> torch.Tensor:
        """(B, N, N) bond classes -> (B, C - 1, N, N) one-hot of the bond orders (no "no bond")."""
        return F.one_hot(bonds, NUM_BOND_CLASSES)[..., 1:].permute(0, 3, 1, 2).to(self.dtype)

    def encode_inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dequantized (A: (B, C, M), X: (B, N, K)) and the bond context of a batch."""
        bonds = batch["bonds"]
        pairs = F.one_hot(bonds[:, self.rows, self.cols], NUM_BOND_CLASSES).transpose(1, 2).to(self.dtype)
        atoms = F.one_hot(batch["atoms"], self.atom_classes).to(self.dtype)
        pairs = pairs + self.dequantization * torch.rand_like(pairs)
        atoms = atoms + self.dequantization * torch.rand_like(atoms)
        return pairs, atoms, self._bond_context(bonds)

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) nats; always in the parameters' precision (log-determinants need fp32, so bf16
        autocast is switched off here)."""
        with torch.autocast(device_type=batch["atoms"].device.type, enabled=False):
            pairs, atoms, context = self.encode_inputs(batch)
            log_density = self.adjacency_flow.log_prob(pairs) + self.atom_flow.log_prob(atoms, context)
        return log_density + self.dims * math.log(self.dequantization)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Negative dequantized log-likelihood in nats per dimension (MoFlow's objective)."""
        return -self.log_prob(batch).mean() / self.dims

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> DenseGraphs:
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = self.rows.device
        pairs = self.adjacency_flow.sample(n, generator=generator, temperature=temperature, device=device)
        upper = pairs.argmax(1)
        bonds = upper.new_zeros(n, self.max_atoms, self.max_atoms)
        bonds[:, self.rows, self.cols] = upper
        bonds = bonds + bonds.transpose(1, 2)
        atoms = self.atom_flow.sample(n, generator=generator, temperature=temperature,
                                      context=self._bond_context(bonds), device=device).argmax(-1)
        real = atoms > 0
        bonds = bonds * (real[:, :, None] & real[:, None, :])
        return DenseGraphs(atoms, bonds)


def build_graph_flow(cfg: GraphFlowConfig, atom_classes: int, max_atoms: int) -> GraphFlow:
    """The MoFlow stack: per cycle and row block, [ActNorm, InvertibleLinear, AffineCoupling]."""
    if max_atoms < 2:
        raise ValueError(f"a graph flow needs max_atoms >= 2, got {max_atoms}")
    pairs = max_atoms * (max_atoms - 1) // 2
    iu = torch.triu_indices(max_atoms, max_atoms, offset=1)[0]
    adjacency: list[Transform] = []
    for _ in range(cfg.adjacency_cycles):
        for block in _row_blocks(max_atoms - 1, cfg.adjacency_row_blocks):
            passthrough = ~torch.isin(iu, torch.as_tensor(block)).view(1, pairs)
            adjacency += [
                ActNorm(NUM_BOND_CLASSES, channel_dim=1),
                InvertibleLinear(NUM_BOND_CLASSES, channel_dim=1),
                AffineCoupling(passthrough, AdjacencyConditioner(NUM_BOND_CLASSES, max_atoms, cfg.adjacency_hidden)),
            ]
    atom: list[Transform] = []
    for _ in range(cfg.node_cycles):
        for block in _row_blocks(max_atoms, cfg.node_row_blocks):
            passthrough = torch.ones(max_atoms, 1, dtype=torch.bool)
            passthrough[torch.as_tensor(block)] = False
            atom += [
                ActNorm(atom_classes, channel_dim=-1),
                InvertibleLinear(atom_classes, channel_dim=-1),
                AffineCoupling(passthrough, RelationalGCNConditioner(
                    atom_classes, NUM_BOND_CLASSES - 1, cfg.node_hidden, cfg.node_gnn_layers, max_atoms)),
            ]
    return GraphFlow(
        Flow(StandardNormal((NUM_BOND_CLASSES, pairs)), adjacency),
        Flow(StandardNormal((max_atoms, atom_classes)), atom),
        atom_classes=atom_classes, max_atoms=max_atoms, dequantization=cfg.dequantization,
    )


@register("model", "graph-flow")
class GraphFlowModel(ModelSpec):
    """Registry entry: MoFlow-style one-shot graph flow (bond Glow + graph-conditional atom flow)."""

    domain: ClassVar[str] = "molecules"
    Config = GraphFlowConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("dense",)
    train_resources = TrainResources(seconds_per_step=0.15, mem_mb=32000)  # estimate: MOSES graphs memory-mapped

    @staticmethod
    def build(cfg: GraphFlowConfig, state: dict[str, Any]) -> GenerativeModel:
        return build_graph_flow(cfg, len(state["atom_types"]) + 1, int(state["max_atoms"]))
