"""E(n)-equivariant diffusion of 3D molecules (EDM; Hoogeboom, Satorras, Vignac and Welling, ICML
2022) with an EGNN denoiser (Satorras et al., ICML 2021) built from DGL's ``EGNNConv``.

A molecule of ``n`` atoms is positions x: (n, 3) in Angstrom on the zero centre-of-gravity
subspace (the unweighted mean removed, as EDM does) and features h: (n, 6): the one-hot element
over H, C, N, O, F divided by 4 and the atomic number divided by 10 (EDM's ``normalize_factors``
[1, 4, 10] for x, the categorical and the integer part). x and h are diffused jointly with a
variance-preserving Gaussian chain z_t = alpha_t [x, h] + sigma_t eps, eps on the zero-CoM
subspace for x (EDM eq. 5), with EDM's ``polynomial_2`` schedule alpha_t^2 = (1 - (t/T)^2)^2,
clipped stepwise and squeezed into [s, 1 - s] (its "precision"). Padded batches: x (B, N, 3),
h (B, N, 6), node_mask (B, N); padding is never noised or scored. The denoiser packs the real
atoms of a batch into one graph of fully connected molecules (``FullyConnectedGraphs``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.base import GenerativeModel
from dgm_science.compat.dgl import import_dgl
from dgm_science.families.diffusion import ancestral_coefficients, gamma_table, polynomial_schedule  # noqa: F401
from dgm_science.registry import register

dgl = import_dgl()
EGNNConv = dgl.nn.EGNNConv


class Conformers(NamedTuple):
    """Sampled molecules, padded: positions (B, N, 3) Angstrom (zeros at padding), atom_types
    (B, N) long indices into the state's elements (-1 at padding), n_atoms (B,) long."""

    positions: torch.Tensor
    atom_types: torch.Tensor
    n_atoms: torch.Tensor


# ----------------------------------------------------------------------------- noise schedule


# polynomial_schedule and gamma_table live in the Gaussian diffusion family (imported above).


# ----------------------------------------------------------------------------- zero-CoM helpers


def remove_mean(x: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """x: (B, N, 3) minus its mean over the real atoms (node_mask (B, N, 1)); padding stays zero."""
    mean = (x * node_mask).sum(1, keepdim=True) / node_mask.sum(1, keepdim=True).clamp(min=1)
    return (x - mean) * node_mask


def zero_com_noise(shape: tuple[int, int, int], node_mask: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gaussian on the zero centre-of-gravity subspace (EDM's
    ``sample_center_gravity_zero_gaussian_with_mask``): (B, N, 3), zero at padding."""
    eps = torch.randn(shape, generator=generator, device=node_mask.device, dtype=torch.float32)
    return remove_mean(eps * node_mask, node_mask)


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
        return dgl.graph((self.src.cpu(), self.dst.cpu()), num_nodes=self.n_nodes)


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


class EGNNLayer(EGNNConv):
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


class EGNNDenoiser(nn.Module):
    """epsilon-prediction network of EDM: EGNN over each molecule's fully connected graph.

    Node input [h, t / T] -> Linear -> L x (EGNNConv with the initial squared distance as edge
    feature, residual on h) -> Linear -> eps_h; eps_x = x_L - x_0 with the mean removed (EDM's
    ``EGNN_dynamics_QM9``). Coordinates and distances stay fp32 under autocast.
    """

    def __init__(self, n_features: int, hidden_dim: int, n_layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features + 1, hidden_dim)
        self.layers = nn.ModuleList(EGNNLayer(hidden_dim, hidden_dim, hidden_dim, edge_feat_size=1)
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

    hidden_dim: int = 256
    n_layers: int = 9
    diffusion_steps: int = 1000
    noise_precision: float = 1e-5
    schedule_power: float = 2.0
    position_norm: float = 1.0
    categorical_norm: float = 4.0
    charge_norm: float = 10.0
    include_charges: bool = True
    ema_decay: float = 0.9999
    """Exponential moving average of the denoiser's weights used for sampling and the bound
    (EDM's 0.9999; 0: off); updated before every optimisation step, with the usual warm-up
    min(decay, (1 + step) / (10 + step))."""
    sampling_steps: int | None = None
    """Reverse steps when sampling: None = T (EDM); fewer takes evenly spaced steps of the same
    chain, z_s ~ p(z_s | z_t) for s < t (Kingma et al. 2021's p(z_s | z_t) holds for any s < t)."""


class EquivariantDiffusion(GenerativeModel):
    """EDM: the l2 (epsilon MSE) training loss, the variational lower bound log p(x, h, N) in nats,
    and ancestral sampling. Batches: positions (B, N, 3) Angstrom, atom_types (B, N) indices
    (any value at padding), n_atoms (B,)."""

    likelihood: ClassVar[str] = "bound"

    def __init__(self, cfg: EDMConfig, charges: list[int], n_atoms_histogram: list[float]) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_types = len(charges)
        self.n_features = self.n_types + int(cfg.include_charges)
        self.T = cfg.diffusion_steps
        self.denoiser = EGNNDenoiser(self.n_features, cfg.hidden_dim, cfg.n_layers)
        self.ema_denoiser = copy.deepcopy(self.denoiser).requires_grad_(False) if cfg.ema_decay > 0 else None
        self.register_buffer("gamma", gamma_table(cfg.diffusion_steps, cfg.noise_precision, cfg.schedule_power))
        self.register_buffer("charges", torch.tensor(charges, dtype=torch.float32))
        hist = torch.tensor(n_atoms_histogram, dtype=torch.float64)
        self.register_buffer("log_p_n", torch.log(hist / hist.sum()).float())
        sigma_0 = math.sqrt(torch.sigmoid(self.gamma[0]).item())
        if 8 * sigma_0 > 1 / max(cfg.categorical_norm, cfg.charge_norm):
            raise ValueError(f"norm values {cfg.categorical_norm}, {cfg.charge_norm} too large for sigma_0 = "
                             f"{sigma_0:.5f} (EDM's check_issues_norm_values)")

    # --- representation
    def _encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch -> (x (B, N, 3) zero-CoM / position_norm, h (B, N, F) normalised, node_mask (B, N, 1))."""
        positions = batch["positions"].float()
        n = positions.shape[1]
        mask = (torch.arange(n, device=positions.device)[None, :] < batch["n_atoms"][:, None]).float()[..., None]
        types = batch["atom_types"].long().clamp(min=0, max=self.n_types - 1)
        h = F.one_hot(types, self.n_types).float() / self.cfg.categorical_norm
        if self.cfg.include_charges:
            h = torch.cat([h, self.charges[types][..., None] / self.cfg.charge_norm], dim=-1)
        x = remove_mean(positions * mask, mask) / self.cfg.position_norm
        return x, h * mask, mask

    def _alpha_sigma(self, t_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """t_int (B,) long -> gamma_t, alpha_t, sigma_t, each (B, 1, 1) fp32."""
        gamma = self.gamma[t_int][:, None, None]
        return gamma, torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()

    def _noise(self, mask: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = mask.shape
        eps_x = zero_com_noise((b, n, 3), mask, generator)
        eps_h = torch.randn((b, n, self.n_features), generator=generator, device=mask.device) * mask
        return eps_x, eps_h

    def q_sample(self, x: torch.Tensor, h: torch.Tensor, t_int: torch.Tensor, eps_x: torch.Tensor,
                 eps_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_t = alpha_t [x, h] + sigma_t [eps_x, eps_h] (EDM eq. 4): ((B, N, 3), (B, N, F))."""
        _, alpha, sigma = self._alpha_sigma(t_int)
        return alpha * x + sigma * eps_x, alpha * h + sigma * eps_h

    def _predict(self, z_x: torch.Tensor, z_h: torch.Tensor, t_int: torch.Tensor, mask: torch.Tensor,
                 graph: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training network's epsilon in train mode; the EMA network's (when kept) in eval mode."""
        network = self.ema_denoiser if self.ema_denoiser is not None and not self.training else self.denoiser
        eps_x, eps_h = network(z_x, z_h, t_int.float() / self.T, mask[..., 0] > 0, graph)
        return eps_x.float(), eps_h.float()

    @torch.no_grad()
    def set_training_step(self, step: int) -> None:
        """EMA update with the weights of the previous optimisation step."""
        if self.ema_denoiser is None:
            return
        decay = min(self.cfg.ema_decay, (1 + step) / (10 + step))
        for ema, param in zip(self.ema_denoiser.parameters(), self.denoiser.parameters()):
            ema.lerp_(param.detach(), 1 - decay)

    # --- EDM's loss terms (fp32)
    def _log_p_h_given_z0(self, h: torch.Tensor, z_h: torch.Tensor, gamma_0: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
        """log p(h | z_0) (B,): the integer charge as N(z, sigma_0) integrated over its unit bin, the
        element as the normalised integrals over [0.5, 1.5] of N(z_k, sigma_0) (EDM's
        ``log_pxh_given_z0_without_constants``, h part)."""
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

    def _kl_prior(self, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """KL(q(z_T | x, h) || N(0, I)) (B,), x on its (n - 1) * 3 dimensional subspace."""
        t_max = torch.full((x.shape[0],), self.T, device=x.device, dtype=torch.long)
        _, alpha, sigma = self._alpha_sigma(t_max)
        alpha, sigma = alpha.view(-1), sigma.view(-1)
        dof = (mask.sum((1, 2)) - 1) * 3
        kl_x = dof * -torch.log(sigma) + 0.5 * (dof * sigma ** 2 + (alpha[:, None, None] * x).square().sum((1, 2))) \
            - 0.5 * dof
        mu_h = alpha[:, None, None] * h
        kl_h = ((-torch.log(sigma)[:, None, None] + 0.5 * (sigma[:, None, None] ** 2 + mu_h ** 2) - 0.5) * mask)
        return kl_x + kl_h.sum((1, 2))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """EDM's "l2" training objective, t ~ U{0..T}: 0.5 ||eps - eps_hat||^2 / ((3 + F) n) for t > 0,
        at t = 0 the L_0 term (its x part scaled alike, plus -log p(h | z_0)), plus the (constant)
        prior KL (scalar, batch mean). EDM divides by the padded size; we divide by each
        molecule's own n so that the loss does not depend on the batch's padding."""
        with torch.autocast(device_type=batch["positions"].device.type, enabled=False):
            x, h, mask = self._encode(batch)
            t_int = torch.randint(0, self.T + 1, (x.shape[0],), device=x.device)
            eps_x, eps_h = self._noise(mask)
            z_x, z_h = self.q_sample(x, h, t_int, eps_x, eps_h)
        pred_x, pred_h = self._predict(z_x, z_h, t_int, mask)
        with torch.autocast(device_type=x.device.type, enabled=False):
            denom = (3 + self.n_features) * mask.sum((1, 2))
            error_x = (eps_x - pred_x).square().sum((1, 2)) / denom
            error = error_x + (eps_h - pred_h).square().sum((1, 2)) / denom
            l0 = 0.5 * error_x - self._log_p_h_given_z0(h, z_h, self.gamma[0], mask)
            per_example = torch.where(t_int == 0, l0, 0.5 * error) + self._kl_prior(x, h, mask)
            self._last = {"error": error.mean().detach()}
            return per_example.mean()

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self, "_last", {}))

    def log_prob(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM's variational lower bound on log p(x, h, N) in nats, (B,): one t ~ U{1..T} per
        molecule (t0_always): -(KL_prior + T L_t + L_0 + the (n - 1) 3 log-normaliser terms of
        p(x | z_0)) + (n - 1) 3 log(position_norm) + log p(N) from the training size histogram."""
        with torch.autocast(device_type=batch["positions"].device.type, enabled=False):
            x, h, mask = self._encode(batch)
            b = x.shape[0]
            n_atoms = mask.sum((1, 2))
            dof = (n_atoms - 1) * 3
            t_int = torch.randint(1, self.T + 1, (b,), device=x.device, generator=generator)
            eps_x, eps_h = self._noise(mask, generator)
            z_x, z_h = self.q_sample(x, h, t_int, eps_x, eps_h)
            pred_x, pred_h = self._predict(z_x, z_h, t_int, mask)
            error = (eps_x - pred_x).square().sum((1, 2)) + (eps_h - pred_h).square().sum((1, 2))
            snr_weight = torch.expm1(self.gamma[t_int] - self.gamma[t_int - 1])  # SNR(s) / SNR(t) - 1
            loss_t = self.T * 0.5 * snr_weight * error
            zeros = torch.zeros_like(t_int)
            eps0_x, eps0_h = self._noise(mask, generator)
            z0_x, z0_h = self.q_sample(x, h, zeros, eps0_x, eps0_h)
            pred0_x, _ = self._predict(z0_x, z0_h, zeros, mask)
            gamma_0 = self.gamma[0]
            loss_0 = 0.5 * (eps0_x - pred0_x).square().sum((1, 2)) - self._log_p_h_given_z0(h, z0_h, gamma_0, mask)
            neg_log_constants = -dof * (-0.5 * gamma_0 - 0.5 * math.log(2 * math.pi))
            nll = self._kl_prior(x, h, mask) + loss_t + loss_0 + neg_log_constants
            nll = nll + dof * math.log(self.cfg.position_norm)
            sizes = n_atoms.long().clamp(max=self.log_p_n.numel() - 1)
            return -nll + self.log_p_n[sizes]

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0) -> Conformers:
        """Ancestral sampling (EDM Algorithm 2): n ~ the training size histogram, z_T ~ N(0, I) (x on
        the zero-CoM subspace), z_s ~ p(z_s | z_t) for t = T..1, then x ~ p(x | z_0) and h = argmax.
        ``temperature`` scales every Gaussian draw (1: EDM's sampler)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = self.gamma.device
        sizes = torch.multinomial(self.log_p_n.exp(), n, replacement=True, generator=generator).to(device)
        n_max = int(sizes.max())
        node_mask = torch.arange(n_max, device=device)[None, :] < sizes[:, None]
        mask = node_mask.float()[..., None]
        graph = FullyConnectedGraphs.build(node_mask)
        z_x, z_h = (temperature * e for e in self._noise(mask, generator))
        steps = self.T if self.cfg.sampling_steps is None else max(1, min(self.cfg.sampling_steps, self.T))
        grid = np.unique(np.round(np.linspace(0, self.T, steps + 1)).astype(np.int64))[::-1].tolist()
        for t, s in zip(grid[:-1], grid[1:]):
            t_int = torch.full((n,), t, device=device, dtype=torch.long)
            alpha_t_given_s, sigma2_t_given_s, std = ancestral_coefficients(self.gamma[s], self.gamma[t])
            sigma_t = torch.sigmoid(self.gamma[t]).sqrt()
            pred_x, pred_h = self._predict(z_x, z_h, t_int, mask, graph)
            coef = sigma2_t_given_s / alpha_t_given_s / sigma_t
            sigma = temperature * std
            noise_x, noise_h = self._noise(mask, generator)
            z_x = remove_mean(z_x / alpha_t_given_s - coef * pred_x + sigma * noise_x, mask)
            z_h = (z_h / alpha_t_given_s - coef * pred_h + sigma * noise_h) * mask
        zeros = torch.zeros((n,), device=device, dtype=torch.long)
        gamma_0 = self.gamma[0]
        pred_x, _ = self._predict(z_x, z_h, zeros, mask, graph)
        alpha_0, sigma_0 = torch.sigmoid(-gamma_0).sqrt(), torch.sigmoid(gamma_0).sqrt()
        noise_x, _ = self._noise(mask, generator)
        x = (z_x - sigma_0 * pred_x) / alpha_0 + temperature * torch.exp(0.5 * gamma_0) * noise_x
        x = (remove_mean(x.double(), mask.double()) * self.cfg.position_norm).float()
        types = z_h[..., : self.n_types].argmax(-1).masked_fill(~node_mask, -1)
        return Conformers(x, types, sizes)


@register("model", "qm9-edm")
class QM9EDM:
    """Registry entry: EDM with a DGL-EGNN denoiser on QM9 conformations with hydrogens."""

    domain: ClassVar[str] = "conformers"
    Config = EDMConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("positions", "atom_types", "n_atoms")

    @staticmethod
    def build(cfg: EDMConfig, state: dict[str, Any]) -> GenerativeModel:
        return EquivariantDiffusion(cfg, state["charges"], state["n_atoms_histogram"])
