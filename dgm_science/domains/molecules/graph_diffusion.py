"""DiGress on dense molecular graphs (Vignac et al., ICLR 2023): a graph-transformer denoiser
over atom types and bond orders, with DiGress's structural and molecular extra features, in
the domain-agnostic :class:`DiscreteGraphDiffusion` family.

Node classes are the atom types (``atoms - 1`` of the dense format, whose 0 "no atom" becomes the
node mask); edge classes are the bond orders 0 (no bond), 1, 2, 3.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from dgm_science.config import bounded
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.domains.molecules.dense import NUM_BOND_CLASSES, DenseGraphs
from dgm_science.families.discrete_diffusion import CategoricalGraphs, DiscreteGraphDiffusion, GraphInpainting
from dgm_science.resources import TrainResources
from dgm_science.registry import register

_NEG = -1e9


@dataclasses.dataclass(frozen=True)
class GraphDiffusionConfig:
    """DiGress-style discrete graph diffusion (defaults: the widths, depth, heads, T and lambda of
    DiGress's graph-transformer model config).

    The graph transformer has ``n_layers`` layers of node width ``hidden_dim``, edge width
    ``edge_dim`` and global width ``global_dim`` (feed-forward widths twice those) and per-feature
    attention scores of width ``attention_dim`` (None: ``hidden_dim``, as in DiGress; narrower is
    much cheaper, the (B, N, N, width) score tensors being most of the cost) over ``n_heads``
    heads. ``diffusion_steps`` is T of the cosine schedule; ``edge_weight`` the lambda of the edge
    cross-entropy in the training loss; ``elbo_samples`` the draws of t that ``log_prob`` averages;
    ``extra_features`` adds cycle counts (k = 3..6), degree, valency and the node-count fraction to
    the denoiser's input.
    """

    hidden_dim: int = bounded(256, minimum=1)
    edge_dim: int = bounded(64, minimum=1)
    global_dim: int = bounded(64, minimum=1)
    attention_dim: int | None = bounded(None, minimum=1)
    n_layers: int = bounded(5, minimum=1)
    n_heads: int = bounded(8, minimum=1)
    dropout: float = bounded(0.1, minimum=0, maximum=1)
    diffusion_steps: int = bounded(500, minimum=1)
    edge_weight: float = bounded(5.0, minimum=0)
    elbo_samples: int = bounded(1, minimum=1)
    extra_features: bool = True


def cycle_counts(adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Simple cycles counted from adjacency powers, the structural features DiGress feeds its
    denoiser: closed walks minus the degenerate ones (Harary & Manvel 1971; Alon, Yuster & Zwick 1997).

    ``adjacency: (B, N, N)`` symmetric 0/1 with a zero diagonal -> (cycles through each node of
    length 3, 4, 5: (B, N, 3); cycles in the graph of length 3, 4, 5, 6: (B, 4)). With degrees d
    and w = diag(A^3), the cycles through node i are c3 = w_i / 2, c4 = [(A^4)_ii - d_i (d_i - 1) -
    (A d)_i] / 2 and c5 = [(A^5)_ii - (A w)_i - 2 w_i d_i + 5 w_i - 2 sum_j A_ij (A^2)_ij d_j] / 2
    (the subtracted closed 5-walks are a triangle with one edge walked back and forth); a graph's
    k-cycles are sum_i c_k(i) / k.
    """
    a = adjacency
    a2 = a @ a
    a3 = a2 @ a
    degree = a.sum(-1)
    d2 = a2.diagonal(dim1=-2, dim2=-1)
    d3 = a3.diagonal(dim1=-2, dim2=-1)
    d4 = (a2 * a2).sum(-1)
    d5 = (a2 * a3).sum(-1)
    closed4 = d4 - degree * (degree - 1) - (a @ degree.unsqueeze(-1)).squeeze(-1)
    closed5 = (d5 - (a @ d3.unsqueeze(-1)).squeeze(-1) - 2 * d3 * degree + 5 * d3
               - 2 * (a * a2 * degree.unsqueeze(-2)).sum(-1))
    per_node = torch.stack([d3, closed4, closed5], -1) / 2
    six = ((a3 * a3).sum((-2, -1)) - 3 * d3.pow(2).sum(-1) + 9 * (a * a2 * a2).sum((-2, -1))
           - 6 * (d2 * d4).sum(-1) + 6 * d4.sum(-1) - 4 * d3.sum(-1) + 4 * d2.pow(3).sum(-1)
           + 3 * a3.sum((-2, -1)) - 12 * d2.pow(2).sum(-1) + 4 * d2.sum(-1)) / 12
    per_graph = torch.stack([per_node[..., 0].sum(-1) / 3, per_node[..., 1].sum(-1) / 4,
                             per_node[..., 2].sum(-1) / 5, six], -1)
    return per_node, per_graph


class MolecularFeatures(nn.Module):
    """DiGress-style extra features of a noisy molecular graph (structural: cycles; molecular:
    valency), recomputed at every step.

    ``edges: (B, N, N, K_E)`` one-hot bond orders (class k = order k), ``node_mask: (B, N)`` ->
    node features (B, N, 5): cycles of length 3, 4, 5 through the atom, degree, valency (sum of bond
    orders); global features (B, 5): cycles of length 3..6, n / N. Counts are scaled by 1/10 and
    clipped at 1, degree and valency by 1/4.
    """

    node_dim: ClassVar[int] = 5
    global_dim: ClassVar[int] = 5

    def __init__(self, num_edge_classes: int, max_nodes: int) -> None:
        super().__init__()
        self.max_nodes = max_nodes
        self.register_buffer("bond_orders", torch.arange(num_edge_classes, dtype=torch.float32), persistent=False)

    def forward(self, edges: torch.Tensor, node_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        present = edges[..., 1:].sum(-1).float()
        with torch.autocast(edges.device.type, enabled=False):
            per_node, per_graph = cycle_counts(present)
        per_node, per_graph = per_node.to(edges.dtype), per_graph.to(edges.dtype)
        degree = present.sum(-1, keepdim=True).to(edges.dtype)
        valency = (edges * self.bond_orders.to(edges.dtype)).sum((-2, -1)).unsqueeze(-1)
        nodes = torch.cat([(per_node / 10).clamp(max=1), degree / 4, valency / 4], -1) * node_mask.unsqueeze(-1)
        size = node_mask.sum(-1, keepdim=True).to(edges.dtype) / self.max_nodes
        return nodes, torch.cat([(per_graph / 10).clamp(max=1), size], -1)


def _mlp(d_in: int, d_hidden: int, d_out: int, *, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out)]
    return nn.Sequential(*layers, nn.ReLU()) if last_activation else nn.Sequential(*layers)


class _Pool(nn.Module):
    """Global features from a set: Linear([mean, min, max, std] over real elements) (DiGress Xtoy/Etoy).

    ``x: (B, S, D)``, ``mask: (B, S)`` -> (B, d_out)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(4 * d_in, d_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        count = m.sum(1).clamp(min=1)
        mean = (x * m).sum(1) / count
        std = (((x - mean.unsqueeze(1)) * m).pow(2).sum(1) / count + 1e-6).sqrt()
        low = x.masked_fill(~mask.unsqueeze(-1), math.inf).amin(1)
        high = x.masked_fill(~mask.unsqueeze(-1), -math.inf).amax(1)
        any_real = mask.any(1, keepdim=True)
        low, high = low.where(any_real, 0.0), high.where(any_real, 0.0)
        return self.linear(torch.cat([mean, low, high, std], -1))


class _FiLM(nn.Linear):
    """Feature-wise linear modulation h -> h * gamma(c) + beta(c) (Perez et al. 2018), gamma
    initialised near 1: ``h: (..., D)`` and conditioning ``c: (..., C)`` broadcastable."""

    def __init__(self, d_condition: int, d: int) -> None:
        super().__init__(d_condition, 2 * d)
        with torch.no_grad():
            self.bias[:d] += 1.0

    def modulate(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        gamma, beta = super().forward(condition).chunk(2, -1)
        return torch.addcmul(beta, h, gamma)


class NodeEdgeAttention(nn.Module):
    """DiGress's self-attention that updates nodes, edges and global features.

    Per-feature scores S_ij = q_i * k_j / sqrt(d_head) (width ``da``) are modulated by the edge
    features (FiLM: S_ij * gamma(e_ij) + beta(e_ij)); the new edge features are a projection of S_ij
    modulated by the global features; the new node features are the softmax_j(S_ij)-weighted sum
    of v_j over real nodes j, modulated by the global features; the new global features add pooled
    nodes and edges to a projection of the old. ``x: (B, N, dx)``, ``e: (B, N, N, de)``, ``y: (B,
    dy)``, ``node_mask: (B, N)``, ``pair_mask: (B, N, N)``. DiGress uses ``da = dx``; a narrower
    ``da`` makes the (B, N, N, da) tensors, most of the cost, cheaper. Without ``update_global``
    (the last layer, whose global features nothing reads) the global features pass unchanged and
    the modules that would update them do not exist, so that every parameter gets a gradient (DDP
    requires it).
    """

    def __init__(self, dx: int, de: int, dy: int, da: int, n_heads: int, update_global: bool = True) -> None:
        super().__init__()
        if da % n_heads:
            raise ValueError(f"attention width {da} must be divisible by n_heads {n_heads}")
        self.scale = 1.0 / math.sqrt(da // n_heads)
        self.qkv = nn.Linear(dx, 3 * da)
        self.edge_film = _FiLM(de, da)
        self.global_edge_film = _FiLM(dy, da)
        self.global_node_film = _FiLM(dy, da)
        self.edge_out = nn.Linear(da, de)
        self.node_out = nn.Linear(da, dx)
        self.update_global = update_global
        if update_global:
            self.global_self = nn.Linear(dy, dy)
            self.node_pool = _Pool(dx, dy)
            self.edge_pool = _Pool(de, dy)
            self.global_out = nn.Sequential(nn.Linear(dy, dy), nn.ReLU(), nn.Linear(dy, dy))

    def forward(
        self, x: torch.Tensor, e: torch.Tensor, y: torch.Tensor, node_mask: torch.Tensor, pair_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, -1)
        scores = self.edge_film.modulate((q * self.scale).unsqueeze(2) * k.unsqueeze(1), e)
        new_e = self.edge_out(self.global_edge_film.modulate(scores, y[:, None, None]))
        bias = (~node_mask).to(x.dtype) * _NEG
        attention = torch.softmax(scores + bias[:, None, :, None], dim=2)
        weighted = (attention * v.unsqueeze(1)).sum(2)
        new_x = self.node_out(self.global_node_film.modulate(weighted, y.unsqueeze(1)))
        if not self.update_global:
            return new_x, new_e, y
        new_y = self.global_self(y) + self.node_pool(x, node_mask) + self.edge_pool(
            e.reshape(b, n * n, -1), pair_mask.reshape(b, n * n))
        return new_x, new_e, self.global_out(new_y)


class GraphTransformerLayer(nn.Module):
    """Post-norm transformer layer on (nodes, edges, global): attention, residual, LayerNorm, then
    feed-forward, residual, LayerNorm for each stream (DiGress's XEyTransformerLayer). Without
    ``update_global`` (the last layer) the global features pass through unchanged: DiGress computes
    them and discards them, which leaves parameters without a gradient."""

    def __init__(self, dx: int, de: int, dy: int, da: int, n_heads: int, dropout: float,
                 update_global: bool = True) -> None:
        super().__init__()
        self.attention = NodeEdgeAttention(dx, de, dy, da, n_heads, update_global)
        self.update_global = update_global

        def norm(d: int, is_global: bool) -> nn.Module:
            return nn.LayerNorm(d) if update_global or not is_global else nn.Identity()  # Identity keeps indices

        def ffn(d: int, is_global: bool) -> nn.Module:
            if is_global and not update_global:
                return nn.Identity()
            return nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * d, d))

        streams = ((dx, False), (de, False), (dy, True))
        self.norms = nn.ModuleList(norm(d, g) for d, g in streams + streams)
        self.ffns = nn.ModuleList(ffn(d, g) for d, g in streams)
        self.dropout = nn.Dropout(dropout)
        if not update_global:
            self.register_load_state_dict_pre_hook(_drop_discarded_global_weights)

    def forward(
        self, x: torch.Tensor, e: torch.Tensor, y: torch.Tensor, node_mask: torch.Tensor, pair_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        new = self.attention(x, e, y, node_mask, pair_mask)
        out = []
        for i, (h, dh) in enumerate(zip((x, e, y), new)):
            if i == 2 and not self.update_global:
                out.append(h)
                continue
            h = self.norms[i](h + self.dropout(dh))
            out.append(self.norms[i + 3](h + self.dropout(self.ffns[i](h))))
        return out[0], out[1], out[2]


_DISCARDED_GLOBAL = ("attention.global_self.", "attention.node_pool.", "attention.edge_pool.",
                     "attention.global_out.", "norms.2.", "norms.5.", "ffns.2.")


def _drop_discarded_global_weights(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the last layer lost its global update hold those modules' weights,
    which never had a gradient (their output was discarded): drop them, so that the checkpoints load
    with the same outputs."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].startswith(_DISCARDED_GLOBAL):
            del state_dict[key]


class GraphTransformerDenoiser(nn.Module):
    """DiGress's graph transformer: p(G_0 | G_t) logits from the noisy graph and t / T.

    ``nodes: (B, N, K_X)``, ``edges: (B, N, N, K_E)`` one-hot (zero at padding / diagonal),
    ``node_mask: (B, N)`` bool, ``time: (B,)`` -> node logits (B, N, K_X), symmetric edge logits
    (B, N, N, K_E). Input MLPs embed nodes (+ extra features), edges and the global vector (t / T
    + extra features); the noisy one-hot input is added to the output logits (DiGress's skip).
    """

    def __init__(
        self, num_node_classes: int, num_edge_classes: int, max_nodes: int, *, hidden_dim: int, edge_dim: int,
        global_dim: int, n_layers: int, n_heads: int, attention_dim: int | None = None, dropout: float = 0.0,
        extra_features: bool = True,
    ) -> None:
        super().__init__()
        self.features = MolecularFeatures(num_edge_classes, max_nodes) if extra_features else None
        extra_node = MolecularFeatures.node_dim if extra_features else 0
        extra_global = MolecularFeatures.global_dim if extra_features else 0
        self.node_in = _mlp(num_node_classes + extra_node, 2 * hidden_dim, hidden_dim, last_activation=True)
        self.edge_in = _mlp(num_edge_classes, 2 * edge_dim, edge_dim, last_activation=True)
        self.global_in = _mlp(1 + extra_global, 2 * global_dim, global_dim, last_activation=True)
        self.layers = nn.ModuleList(  # the last layer's global features would be discarded
            GraphTransformerLayer(hidden_dim, edge_dim, global_dim, attention_dim or hidden_dim, n_heads, dropout,
                                  update_global=i < n_layers - 1)
            for i in range(n_layers)
        )
        self.node_out = _mlp(hidden_dim, 2 * hidden_dim, num_node_classes, last_activation=False)
        self.edge_out = _mlp(edge_dim, 2 * edge_dim, num_edge_classes, last_activation=False)

    def forward(
        self, nodes: torch.Tensor, edges: torch.Tensor, node_mask: torch.Tensor, time: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = nodes.shape[1]
        pair_mask = node_mask.unsqueeze(2) & node_mask.unsqueeze(1)
        pair_mask = pair_mask & ~torch.eye(n, dtype=torch.bool, device=nodes.device)
        node_input, global_input = nodes, time.unsqueeze(-1).to(nodes.dtype)
        if self.features is not None:
            node_extra, global_extra = self.features(edges, node_mask)
            node_input = torch.cat([nodes, node_extra], -1)
            global_input = torch.cat([global_input, global_extra], -1)
        x = self.node_in(node_input) * node_mask.unsqueeze(-1)
        e = self.edge_in(edges)
        e = 0.5 * (e + e.transpose(1, 2)) * pair_mask.unsqueeze(-1)
        y = self.global_in(global_input)
        for layer in self.layers:
            x, e, y = layer(x, e, y, node_mask, pair_mask)
        node_logits = (self.node_out(x) + nodes) * node_mask.unsqueeze(-1)
        edge_logits = self.edge_out(e)
        edge_logits = (0.5 * (edge_logits + edge_logits.transpose(1, 2)) + edges) * pair_mask.unsqueeze(-1)
        return node_logits, edge_logits


class DenseMoleculeCodec:
    """Dense molecule batches ``{"atoms": (B, N), "bonds": (B, N, N)}`` <-> ``CategoricalGraphs``
    (node class = atom index - 1, node mask = atom present, edge class = bond order); samples
    decode to :class:`DenseGraphs` (0 at padding, symmetric bonds, zero diagonal)."""

    def encode(self, batch: dict[str, torch.Tensor]) -> CategoricalGraphs:
        atoms, bonds = batch["atoms"], batch["bonds"]
        mask = atoms > 0
        n = atoms.shape[1]
        pair = mask.unsqueeze(2) & mask.unsqueeze(1) & ~torch.eye(n, dtype=torch.bool, device=atoms.device)
        return CategoricalGraphs((atoms - 1).clamp(min=0) * mask, bonds * pair, mask)

    def decode(self, graphs: CategoricalGraphs) -> DenseGraphs:
        return DenseGraphs(atoms=((graphs.nodes + 1) * graphs.node_mask).long(), bonds=graphs.edges.long())


def scaffold_inpainting(
    atoms: torch.Tensor, bonds: torch.Tensor, attachments: torch.Tensor, max_atoms: int, *, clamp: str = "clean"
) -> GraphInpainting:
    """The known entries of molecules decorating a scaffold, for ``DiscreteGraphDiffusion.sample(inpaint=...)``.

    ``atoms: (k,)`` dense atom indices of the scaffold (1-based, as in :mod:`dense`), ``bonds: (k,
    k)`` its bond orders, ``attachments: (k,)`` how many substituents each atom gets (its ``*``).
    The scaffold takes the first k of ``max_atoms`` slots, and each of the m attachment points an
    anchor slot after them: the first atom of its substituent, of free type, single-bonded to its
    scaffold atom. Known: the scaffold's atom types, every bond or no-bond among its atoms, the
    anchors' bonds to the scaffold (single to their own atom, none to the others), and "no bond"
    between the scaffold and every other new atom (so a scaffold atom without ``*`` gets no new
    neighbour, and one with ``*`` exactly one per ``*``). Free: the anchors' types, and every
    bond among new atoms. Molecules have at least k + m atoms.
    """
    k = atoms.shape[0]
    anchored_to = torch.repeat_interleave(torch.arange(k), attachments.long())
    m = anchored_to.shape[0]
    if not (k >= 1 and m >= 1 and k + m <= max_atoms):
        raise ValueError(f"a scaffold of {k} atoms and {m} attachment points does not fit in {max_atoms} atoms")
    nodes = torch.zeros(max_atoms, dtype=torch.long)
    nodes[:k] = atoms.long() - 1
    node_known = torch.arange(max_atoms) < k
    edges = torch.zeros(max_atoms, max_atoms, dtype=torch.long)
    edges[:k, :k] = bonds.long()
    edges[anchored_to, torch.arange(k, k + m)] = 1  # edge class = bond order
    edge_known = torch.zeros(max_atoms, max_atoms, dtype=torch.bool)
    edge_known[:k, :] = True
    edge_known.fill_diagonal_(False)
    edges, edge_known = torch.maximum(edges, edges.T), edge_known | edge_known.T
    return GraphInpainting(nodes, node_known, edges, edge_known, min_nodes=k + m, clamp=clamp)


@register("model", "graph-diffusion")
class GraphDiffusion(ModelSpec):
    """Registry entry: DiGress-style discrete diffusion on dense molecular graphs (graph transformer denoiser)."""

    domain: ClassVar[str] = "molecules"
    Config = GraphDiffusionConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("dense",)
    train_resources = TrainResources(seconds_per_step=0.5, mem_mb=32000)  # estimate: graph transformer over dense MOSES graphs, batch 256: 300 k steps ~42 h

    @staticmethod
    def build(cfg: GraphDiffusionConfig, state: dict[str, Any]) -> GenerativeModel:
        denoiser = GraphTransformerDenoiser(
            len(state["atom_types"]), NUM_BOND_CLASSES, state["max_atoms"], hidden_dim=cfg.hidden_dim,
            edge_dim=cfg.edge_dim, global_dim=cfg.global_dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
            attention_dim=cfg.attention_dim, dropout=cfg.dropout, extra_features=cfg.extra_features,
        )
        return DiscreteGraphDiffusion(
            denoiser, state["atom_marginals"], state["bond_marginals"], state["num_atoms_distribution"],
            steps=cfg.diffusion_steps, edge_weight=cfg.edge_weight, elbo_samples=cfg.elbo_samples,
            codec=DenseMoleculeCodec(),
        )
