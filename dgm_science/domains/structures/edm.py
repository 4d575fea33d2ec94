"""E(n)-equivariant diffusion of 3D molecules (EDM; Hoogeboom, Satorras, Vignac and Welling, ICML
2022) with an EGNN denoiser (Satorras et al., ICML 2021) built from DGL's ``EGNNConv``, on the
Gaussian diffusion family (``families/diffusion.py``).

A molecule of ``n`` atoms is positions x: (n, 3) in Angstrom on the zero centre-of-gravity
subspace (the unweighted mean removed, as EDM does) and features h: (n, E + 1): the one-hot element
over the data's E elements (QM9: H, C, N, O, F; a user's conformers: their own, the model state's ``elements``)
divided by 4 and the atomic number divided by 10 (EDM's ``normalize_factors``
[1, 4, 10] for x, the categorical and the integer part). x and h are diffused jointly with a
variance-preserving Gaussian chain z_t = alpha_t [x, h] + sigma_t eps, eps on the zero-CoM
subspace for x (EDM eq. 5), with EDM's ``polynomial_2`` schedule alpha_t^2 = (1 - (t/T)^2)^2,
clipped stepwise and squeezed into [s, 1 - s] (its "precision"). Padded batches: x (B, N, 3),
h (B, N, 6), node_mask (B, N); padding is never noised or scored. What is EDM's own lives here: the
EGNN denoiser, which packs the real atoms of a batch into one graph of fully connected molecules
(``FullyConnectedGraphs``), the zero-CoM subspace, the encoding of h and its discretised
likelihood at t = 0, the size prior log p(N) and the ``Conformers`` output.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.config import bounded
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.compat.dgl import import_dgl
from dgm_science.families.diffusion import GaussianDiffusion, Layout, Space
from dgm_science.resources import TrainResources
from dgm_science.registry import register


def __getattr__(name: str) -> Any:
    """``EGNNLayer`` and DGL's ``EGNNConv``, imported on first use: DGL's import (1.3-1.9 s here, pandas included) is
    paid by the commands that build an EGNN, not by every ``dgm`` command that loads the registry."""
    if name == "EGNNLayer":
        return egnn_layer_class()
    if name == "EGNNConv":
        return import_dgl().nn.EGNNConv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Conformers(NamedTuple):
    """Sampled molecules, padded: positions (B, N, 3) Angstrom (zeros at padding), atom_types
    (B, N) long indices into the state's elements (-1 at padding), n_atoms (B,) long."""

    positions: torch.Tensor
    atom_types: torch.Tensor
    n_atoms: torch.Tensor


# ----------------------------------------------------------------------------- zero-CoM subspace


def remove_mean(x: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """x: (B, N, 3) minus its mean over the real atoms (node_mask (B, N, 1)); padding stays zero."""
    mean = (x * node_mask).sum(1, keepdim=True) / node_mask.sum(1, keepdim=True).clamp(min=1)
    return (x - mean) * node_mask


def zero_com_space(node_mask: torch.Tensor) -> Space:
    """The zero centre-of-gravity subspace of positions (B, N, 3) over the real atoms (node_mask
    (B, N, 1) float): (n - 1) 3 degrees of freedom (EDM eq. 5; its noise is EDM's
    ``sample_center_gravity_zero_gaussian_with_mask``)."""
    return Space(node_mask, (node_mask.sum((1, 2)) - 1) * 3, lambda v: remove_mean(v, node_mask))


def _cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2)))


# ----------------------------------------------------------------------------- the EGNN denoiser


class EdgeIndex(NamedTuple):
    """A directed graph as edge lists on any device; answers ``edges()`` and ``num_nodes()`` like
    a DGLGraph, so ``EGNNLayer`` takes either."""

    src: torch.Tensor
    dst: torch.Tensor
    n_nodes: int

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.src, self.dst

    def num_nodes(self) -> int:
        return self.n_nodes

    def num_edges(self) -> int:
        return int(self.src.numel())

    def to_dgl(self) -> Any:
        """The same graph as a DGLGraph (CPU: the PyPI DGL wheel has no CUDA kernels)."""
        return import_dgl().graph((self.src.cpu(), self.dst.cpu()), num_nodes=self.n_nodes)


class FullyConnectedGraphs:
    """Batched fully connected graphs (no self loops) of molecules, over the packed real atoms
    (row-major order of the padding mask), built with tensor ops on the mask's device."""

    @staticmethod
    def build(node_mask: torch.Tensor) -> EdgeIndex:
        """node_mask: (B, N) bool -> EdgeIndex with sum_b n_b (n_b - 1) edges."""
        b, n = node_mask.shape
        index = torch.cumsum(node_mask.reshape(-1).long(), 0).reshape(b, n) - 1
        pair = node_mask[:, :, None] & node_mask[:, None, :]
        pair &= ~torch.eye(n, dtype=torch.bool, device=node_mask.device)
        mol, i, j = pair.nonzero(as_tuple=True)
        return EdgeIndex(index[mol, j], index[mol, i], int(node_mask.sum()))


@functools.cache
def egnn_layer_class() -> type:
    """``EGNNLayer``, a subclass of DGL's ``EGNNConv``, defined on first use (see the module's ``__getattr__``)."""

    class EGNNLayer(import_dgl().nn.EGNNConv):
        """DGL's ``EGNNConv`` (Satorras et al. 2021, eqs. 3-6; the same parameters and the same output,
        checked against ``EGNNConv.forward`` in the tests) computed device-agnostically.

        Two changes of how, not what: the edge MLP's first linear map is split into per-node
        projections (W [h_src, h_dst, r, a] = W_s h_src + W_d h_dst + W_r [r, a]), which moves 2/3 of
        its multiply-adds from the ~n^2 edges to the n atoms; and the gathers and the sum / mean
        aggregations are torch index ops, because the PyPI DGL wheel has no CUDA kernels.
        """

        def forward(self, graph: Any, node_feat: torch.Tensor, coord_feat: torch.Tensor,
                    edge_feat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            """graph (DGLGraph or EdgeIndex), node_feat (V, in), coord_feat (V, 3) (kept in its dtype,
            fp32 under autocast), edge_feat (E, edge_feat_size) -> (h (V, out), x (V, 3))."""
            src, dst = graph.edges()
            src, dst = src.long(), dst.long()
            first = self.edge_mlp[0]
            w_src, w_dst = first.weight[:, : self.in_size], first.weight[:, self.in_size: 2 * self.in_size]
            w_rest = first.weight[:, 2 * self.in_size:]
            x_diff = coord_feat.index_select(0, src) - coord_feat.index_select(0, dst)
            radial = x_diff.square().sum(dim=1, keepdim=True)
            rest = radial if edge_feat is None else torch.cat([radial, edge_feat.to(radial.dtype)], dim=-1)
            pre = F.linear(node_feat, w_src).index_select(0, src)
            pre = pre + F.linear(node_feat, w_dst, first.bias).index_select(0, dst) + F.linear(rest, w_rest)
            msg_h = self.edge_mlp[1:](pre)
            msg_x = self.coord_mlp(msg_h) * (x_diff / (radial.sqrt() + 1e-30))
            n_nodes = node_feat.shape[0]
            degree = torch.bincount(dst, minlength=n_nodes).clamp(min=1).to(coord_feat.dtype)
            x_neigh = coord_feat.new_zeros(n_nodes, coord_feat.shape[1]).index_add_(0, dst, msg_x.to(coord_feat.dtype))
            h_neigh = msg_h.new_zeros(n_nodes, msg_h.shape[1]).index_add_(0, dst, msg_h)
            h = self.node_mlp(torch.cat([node_feat, h_neigh.to(node_feat.dtype)], dim=-1))
            return h, coord_feat + x_neigh / degree[:, None]

    return EGNNLayer


class EGNNDenoiser(nn.Module):
    """epsilon-prediction network of EDM: EGNN over each molecule's fully connected graph.

    Node input [h, t / T] -> Linear -> L x (EGNNConv with the initial squared distance as edge
    feature, residual on h) -> Linear -> eps_h; eps_x = x_L - x_0 with the mean removed (EDM's
    ``EGNN_dynamics_QM9``). Coordinates and distances stay fp32 under autocast.
    """

    def __init__(self, n_features: int, hidden_dim: int, n_layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features + 1, hidden_dim)
        layer_class = egnn_layer_class()
        self.layers = nn.ModuleList(layer_class(hidden_dim, hidden_dim, hidden_dim, edge_feat_size=1)
                                    for _ in range(n_layers))
        for layer in self.layers:  # EGNN's small initial coordinate updates (Satorras et al. code)
            nn.init.xavier_uniform_(layer.coord_mlp[-1].weight, gain=0.001)
        self.out = nn.Linear(hidden_dim, n_features)

    def forward(self, x: torch.Tensor, h: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor,
                graph: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, 3), h (B, N, F), t (B,) in [0, 1], node_mask (B, N) bool -> (eps_x (B, N, 3), eps_h (B, N, F)).

        ``graph``: ``FullyConnectedGraphs.build(node_mask)``, reusable while the mask is unchanged."""
        if graph is None:
            graph = FullyConnectedGraphs.build(node_mask)
        x0 = x[node_mask].to(torch.promote_types(x.dtype, torch.float32))
        feats = torch.cat([h[node_mask], t[:, None, None].expand(-1, h.shape[1], 1)[node_mask]], dim=-1)
        hidden = self.embed(feats)
        src, dst = graph.edges()
        radial0 = (x0[src] - x0[dst]).square().sum(-1, keepdim=True)
        coords = x0
        for layer in self.layers:
            update, coords = layer(graph, hidden, coords, radial0)
            hidden = hidden + update
        eps_h = torch.zeros_like(h)
        eps_h[node_mask] = self.out(hidden).to(h.dtype)
        eps_x = torch.zeros_like(x, dtype=x0.dtype)
        eps_x[node_mask] = coords - x0
        mask = node_mask[..., None].float()
        return remove_mean(eps_x, mask), eps_h * mask


# ----------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class EDMConfig:
    """EDM on QM9 with hydrogens; the defaults are EDM's published QM9 settings (``main_qm9.py``:
    9 layers, 256 features, T = 1000, polynomial_2, precision 1e-5, l2 loss, norm [1, 4, 10],
    EMA 0.9999; with lr 1e-4 and batch 64 for 3,000 epochs in the train config)."""

    hidden_dim: int = bounded(256, minimum=1)
    n_layers: int = bounded(9, minimum=1)
    diffusion_steps: int = bounded(1000, minimum=2)
    noise_precision: float = bounded(1e-5, exclusive_minimum=0)
    schedule_power: float = bounded(2.0, exclusive_minimum=0)
    position_norm: float = bounded(1.0, exclusive_minimum=0)
    categorical_norm: float = bounded(4.0, exclusive_minimum=0)
    charge_norm: float = bounded(10.0, exclusive_minimum=0)
    include_charges: bool = True
    ema_decay: float = bounded(0.9999, minimum=0, maximum=1)
    """Exponential moving average of the denoiser's weights used for sampling and the bound
    (EDM's 0.9999; 0: off); updated before every optimisation step, with the usual warm-up
    min(decay, (1 + step) / (10 + step))."""
    sampling_steps: int | None = bounded(None, minimum=1)
    """Reverse steps when sampling: None = T (EDM); fewer takes evenly spaced steps of the same
    chain, z_s ~ p(z_s | z_t) for s < t (Kingma et al. 2021's p(z_s | z_t) holds for any s < t)."""


class EquivariantDiffusion(GaussianDiffusion):
    """EDM on the Gaussian diffusion family: x on the zero-CoM subspace and h masked, one chain
    (epsilon prediction, EDM's l2 objective, a draw from p(x | z_0) at the end), h scored by its
    discretised likelihood at t = 0, and log p(N) added to the bound. Batches: positions (B, N, 3)
    Angstrom, atom_types (B, N) indices (any value at padding), n_atoms (B,); samples: ``Conformers``."""

    def __init__(self, cfg: EDMConfig, charges: list[int], n_atoms_histogram: list[float]) -> None:
        n_features = len(charges) + int(cfg.include_charges)
        denoiser = EGNNDenoiser(n_features, cfg.hidden_dim, cfg.n_layers)
        super().__init__(denoiser, steps=cfg.diffusion_steps, schedule="polynomial", precision=cfg.noise_precision,
                         power=cfg.schedule_power, prediction="epsilon", objective="l2",
                         sampling_steps=cfg.sampling_steps, clip=None, ema_decay=cfg.ema_decay,
                         likelihoods=(None, self._log_p_h_given_z0), decoder_draw=True)
        self.cfg = cfg
        self.n_types = len(charges)
        self.n_features = n_features
        self.register_buffer("charges", torch.tensor(charges, dtype=torch.float32))
        hist = torch.tensor(n_atoms_histogram, dtype=torch.float64)
        self.register_buffer("log_p_n", torch.log(hist / hist.sum()).float())
        sigma_0 = math.sqrt(torch.sigmoid(self.gamma[0]).item())
        if 8 * sigma_0 > 1 / max(cfg.categorical_norm, cfg.charge_norm):
            raise ValueError(f"norm values {cfg.categorical_norm}, {cfg.charge_norm} too large for sigma_0 = "
                             f"{sigma_0:.5f} (EDM's check_issues_norm_values)")

    def _layout(self, node_mask: torch.Tensor, log_prob_offset: torch.Tensor | None = None) -> Layout:
        """node_mask (B, N) bool -> x (B, N, 3) on the zero-CoM subspace, h (B, N, F) on the real
        atoms, the denoiser's context (node_mask, its fully connected graphs)."""
        b, n = node_mask.shape
        mask = node_mask.float()[..., None]
        spaces = (zero_com_space(mask), Space.masked(mask, (b, n, self.n_features)))
        context = (node_mask, FullyConnectedGraphs.build(node_mask))
        return Layout(((b, n, 3), (b, n, self.n_features)), spaces, context, log_prob_offset=log_prob_offset)

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, torch.Tensor], Layout]:
        """Batch -> (x (B, N, 3) zero-CoM / position_norm, h (B, N, F) normalised), their layout with
        log p(N) - (n - 1) 3 log(position_norm) as the offset of the bound."""
        positions = batch["positions"].float()
        n = positions.shape[1]
        node_mask = torch.arange(n, device=positions.device)[None, :] < batch["n_atoms"][:, None]
        mask = node_mask.float()[..., None]
        types = batch["atom_types"].long().clamp(min=0, max=self.n_types - 1)
        h = F.one_hot(types, self.n_types).float() / self.cfg.categorical_norm
        if self.cfg.include_charges:
            h = torch.cat([h, self.charges[types][..., None] / self.cfg.charge_norm], dim=-1)
        x = remove_mean(positions * mask, mask) / self.cfg.position_norm
        n_atoms = mask.sum((1, 2))
        sizes = n_atoms.long().clamp(max=self.log_p_n.numel() - 1)
        offset = self.log_p_n[sizes] - (n_atoms - 1) * 3 * math.log(self.cfg.position_norm)
        return (x, h * mask), self._layout(node_mask, offset)

    def sample_layout(self, n: int, generator: torch.Generator | None, condition: Any) -> Layout:
        """n molecule sizes ~ the training size histogram -> their layout."""
        device = self.gamma.device
        sizes = torch.multinomial(self.log_p_n.exp(), n, replacement=True, generator=generator).to(device)
        return self._layout(torch.arange(int(sizes.max()), device=device)[None, :] < sizes[:, None])

    def decode(self, values: tuple[torch.Tensor, ...], layout: Layout) -> Conformers:
        """(x (n, N, 3), z_0 of h (n, N, F)) -> Conformers: positions re-centred in fp64 and scaled
        back to Angstrom, the element as argmax of the one-hot part (EDM)."""
        x, z_h = values
        node_mask = layout.context[0]
        mask = node_mask.double()[..., None]
        positions = (remove_mean(x.double(), mask) * self.cfg.position_norm).float()
        types = z_h[..., : self.n_types].argmax(-1).masked_fill(~node_mask, -1)
        return Conformers(positions, types, node_mask.sum(1))

    def _log_p_h_given_z0(self, h: torch.Tensor, z_h: torch.Tensor, gamma_0: torch.Tensor,
                          space: Space) -> torch.Tensor:
        """log p(h | z_0) (B,): the integer charge as N(z, sigma_0) integrated over its unit bin, the
        element as the normalised integrals over [0.5, 1.5] of N(z_k, sigma_0) (EDM's
        ``log_pxh_given_z0_without_constants``, h part); h, z_h (B, N, F), space.mask (B, N, 1)."""
        mask = space.mask
        sigma_0 = torch.sigmoid(gamma_0).sqrt()
        k = self.n_types
        onehot = h[..., :k] * self.cfg.categorical_norm
        centered = z_h[..., :k] * self.cfg.categorical_norm - 1
        sigma_cat = sigma_0 * self.cfg.categorical_norm
        log_cat = torch.log(_cdf((centered + 0.5) / sigma_cat) - _cdf((centered - 0.5) / sigma_cat) + 1e-10)
        log_cat = log_cat - torch.logsumexp(log_cat, dim=-1, keepdim=True)
        out = (log_cat * onehot * mask).sum((1, 2))
        if self.cfg.include_charges:
            charge = torch.round(h[..., k:] * self.cfg.charge_norm)
            diff = charge - z_h[..., k:] * self.cfg.charge_norm
            sigma_int = sigma_0 * self.cfg.charge_norm
            log_int = torch.log(_cdf((diff + 0.5) / sigma_int) - _cdf((diff - 0.5) / sigma_int) + 1e-10)
            out = out + (log_int * mask).sum((1, 2))
        return out


@register("model", "qm9-edm")
class QM9EDM(ModelSpec):
    """Registry entry: EDM with a DGL-EGNN denoiser on 3D molecules with hydrogens (QM9's, or a user's conformers:
    the element set is the data's)."""

    domain: ClassVar[str] = "conformers"
    Config = EDMConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("positions", "atom_types", "n_atoms")
    # estimate: EDM's 4.7 M steps (3,000 epochs) of batch 64: ~65 h
    train_resources = TrainResources(seconds_per_step=0.05, mem_mb=32000)

    @staticmethod
    def build(cfg: EDMConfig, state: dict[str, Any]) -> GenerativeModel:
        return EquivariantDiffusion(cfg, state["charges"], state["n_atoms_histogram"])
