"""The structures domain's models: the ``ala2-flow`` Boltzmann-generator flow on the internal
coordinates of alanine dipeptide or of a user trajectory's molecule (here) and QM9's E(n)-equivariant diffusion ``qm9-edm``
(``edm.py``, on the Gaussian diffusion family).

The flow (Noé et al. 2019, Science 365, eaaw1147; Köhler et al. 2021) is a RealNVP/Glow stack
on the 3N - 6 internal coordinates of ``internal.py`` (60 for alanine dipeptide), trained by maximum likelihood on MD frames,
optionally with the reverse KL E_q[u(x) + log q(x)] to the Boltzmann density exp(-u(x)).

Periodic torsions: each torsion t is cut at the centre c of the least-populated region of its
training histogram (``least_populated_angles``), unrolled to s = ((t - c) mod 2 pi) / 2 pi in
[0, 1) and mapped to the real line by v = logit(s) (s clamped to [1e-6, 1 - 1e-6]), with its
log-Jacobian -log 2 pi - log s - log(1 - s). The flow models v (standardised); samples go back by
sigmoid, so every sample lands on the circle and no probability mass leaks past the cut: the
density is exact on the circle minus the cut point, where it vanishes (the price: the model
cannot put mass exactly at the cut, which the data barely visits). An unbounded flow on the
unrolled angle instead leaked 16 % of its samples past the cut (some torsion outside [0, 2 pi))
in a quick-config run, mostly the three-fold methyl rotations that fill the whole circle.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from dgm_science.config import bounded
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.domains.structures import md
from dgm_science.domains.structures.internal import TORSION_HISTOGRAM_BINS, InternalCoordinates, wrap_angle
from dgm_science.families.energy_based import FlowEnergyBasedModel
from dgm_science.families.flows import ActNorm, AffineCoupling, Flow, InvertibleLinear
from dgm_science.families.vae import StandardNormal
from dgm_science.resources import TrainResources
from dgm_science.registry import register


TORSION_EPS = 1e-6


def internal_coordinates(state: dict[str, Any]) -> InternalCoordinates:
    return InternalCoordinates(tuple(map(tuple, state["z_matrix"])), tuple(state["roots"]))


def least_populated_angles(torsions: np.ndarray, bins: int = TORSION_HISTOGRAM_BINS) -> np.ndarray:
    """Cut angle per column of torsions (T, K) -> (K,) radians: among ``bins`` equal bins over
    (-pi, pi], the least-populated ones; on ties the middle of the longest circular run of them,
    i.e. as far from the data as the histogram can tell."""
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    index = np.clip(np.digitize(torsions, edges) - 1, 0, bins - 1)
    cuts = np.empty(torsions.shape[1])
    for k in range(torsions.shape[1]):
        counts = np.bincount(index[:, k], minlength=bins)
        least = counts == counts.min()
        best_start, best_length = 0, 0
        for start in np.flatnonzero(least & ~np.roll(least, 1)) if not least.all() else [0]:
            length = 0
            while length < bins and least[(start + length) % bins]:
                length += 1
            if length > best_length:
                best_start, best_length = int(start), length
        centre = best_start + (best_length - 1) / 2
        cuts[k] = -math.pi + (centre + 0.5) * 2 * math.pi / bins
    return np.where(cuts > math.pi, cuts - 2 * math.pi, cuts)


@dataclasses.dataclass(frozen=True)
class Ala2FlowConfig:
    """Boltzmann-generator flow: ``blocks`` x (ActNorm, InvertibleLinear, AffineCoupling with an MLP
    conditioner of ``hidden_layers`` x ``hidden`` units); ``energy_weight`` > 0 adds the reverse KL
    E_q[u(x) + log q(x)] over ``energy_samples`` flow samples per step (u regularised by
    ``linlogcut`` above ``energy_high`` kT)."""

    hidden: int = bounded(256, minimum=1)
    hidden_layers: int = bounded(2, minimum=1)
    blocks: int = bounded(8, minimum=1)
    energy_weight: float = bounded(0.0, minimum=0)
    energy_samples: int = bounded(64, minimum=1)
    energy_high: float = bounded(1000.0, exclusive_minimum=0)


class CouplingMLP(nn.Module):
    """Conditioner (h, t) = MLP(x_masked): (B, D) -> two (B, D); the last layer starts at zero,
    so every coupling starts as the identity."""

    def __init__(self, dim: int, hidden: int, hidden_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, t = self.head(self.body(x)).chunk(2, dim=-1)
        return h, t


class FlowOnInternalCoordinates(GenerativeModel):
    """q(x) of internal coordinates x: (B, D = 3N - 6) [bonds nm | angles rad | torsions rad in (-pi, pi]].

    x -> torsions unrolled at their cut points and logit-mapped -> standardised by the training
    mean/std (fixed) -> ``Flow``. ``log_prob(batch)`` is log q of the internal coordinates (nats,
    including the log-Jacobians of the logit map and the standardisation); ``sample`` returns
    internal coordinates (base noise scaled by ``temperature``). Batches: ``{"internal": (B, 60)}``.
    Runs in float32 outside autocast.
    """

    likelihood = "exact"
    family = "normalizing flow"
    representation = "yes: z = f(x), invertible"

    def __init__(self, flow: Flow, mean: torch.Tensor, std: torch.Tensor, torsion_cut: torch.Tensor,
                 state: dict[str, Any], energy_weight: float = 0.0, energy_samples: int = 64,
                 energy_high: float = 1000.0) -> None:
        super().__init__()
        self.flow = flow
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.register_buffer("torsion_cut", torsion_cut.float())
        self.state = state
        z = internal_coordinates(state)
        self.torsions, self.n_internal = z.torsions, z.n_internal
        self.energy_weight = energy_weight
        self.energy_samples = energy_samples
        self.energy_high = energy_high
        self._metrics: dict[str, torch.Tensor] = {}

    def to_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Internal (B, 60) -> (the flow's input y (B, 60), log|det dy/dx| (B,)): torsions unrolled
        at their cuts and logit-mapped, then everything standardised."""
        fraction = torch.remainder(x[:, self.torsions] - self.torsion_cut, 2 * math.pi) / (2 * math.pi)
        fraction = fraction.clamp(TORSION_EPS, 1 - TORSION_EPS)
        logit = torch.log(fraction) - torch.log1p(-fraction)
        log_det = -(math.log(2 * math.pi) + torch.log(fraction) + torch.log1p(-fraction)).sum(-1)
        y = (torch.cat([x[:, : self.torsions.start], logit], dim=-1) - self.mean) / self.std
        return y, log_det - torch.log(self.std).sum()

    def from_flow(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_flow``: (B, 60) -> internal coordinates, torsions in (-pi, pi]."""
        x = y * self.std + self.mean
        torsions = wrap_angle(2 * math.pi * torch.sigmoid(x[:, self.torsions]) + self.torsion_cut)
        return torch.cat([x[:, : self.torsions.start], torsions], dim=-1)

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.autocast(device_type=batch["internal"].device.type, enabled=False):
            y, log_det = self.to_flow(batch["internal"].float())
            return self.flow.log_prob(y) + log_det

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean NLL of the batch (per coordinate: / 3N - 6) + energy_weight x reverse KL (per coordinate)."""
        nll = -self.log_prob(batch).mean() / self.n_internal
        self._metrics = {"nll": nll.detach()}
        if self.energy_weight <= 0:
            return nll
        reverse_kl = self.reverse_kl(self.energy_samples).mean() / self.n_internal
        self._metrics["reverse_kl"] = reverse_kl.detach()
        return nll + self.energy_weight * reverse_kl

    def reverse_kl(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample u(x) + log q(x) (Cartesian density, nats) of n flow samples, differentiable
        through the flow and OpenMM's forces (``md.ReducedEnergy``): (n,). The Boltzmann
        generator's KL(q || exp(-u)/Z) up to log Z (Noé et al. 2019, eq. 6)."""
        device = self.mean.device
        with torch.autocast(device_type=device.type, enabled=False):
            y = self.flow.sample(n, generator=generator, device=device)
            x = self.from_flow(y)
            log_q = self.flow.log_prob(y) + self.to_flow(x)[1]
            x = x.double()
            xyz, log_det = internal_coordinates(self.state).to_cartesian(x)
            energy = md.state_energy(self.state)
            if energy is None:
                raise ValueError("energy_weight > 0 needs a force field: this dataset has none "
                                 "(source.force_field or source.prmtop)")
            u = md.linlogcut(md.ReducedEnergy.apply(xyz, energy), high=self.energy_high)
            return (u - log_det).float() + log_q

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """n internal-coordinate samples (n, 60), torsions wrapped to (-pi, pi]."""
        if n <= 0:
            raise ValueError(f"n must be a positive number of samples, got {n}")
        device = self.mean.device
        with torch.autocast(device_type=device.type, enabled=False):
            y = self.flow.sample(n, generator=generator, temperature=temperature, device=device)
            return self.from_flow(y)

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._metrics


@register("model", "ala2-flow")
class Ala2Flow(ModelSpec):
    """Registry entry: Boltzmann-generator flow on alanine dipeptide's internal coordinates."""

    domain: ClassVar[str] = "peptide-md"
    Config = Ala2FlowConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("internal",)
    train_resources = TrainResources(seconds_per_step=0.1, mem_mb=16000)  # estimate: batch 1,024 of 60 internal coordinates: 50 k steps < 2 h

    @staticmethod
    def build(cfg: Ala2FlowConfig, state: dict[str, Any]) -> GenerativeModel:
        generator = torch.Generator().manual_seed(0)
        dim = internal_coordinates(state).n_internal
        if cfg.energy_weight > 0 and md.state_energy(state) is None:
            raise ValueError("ala2-flow: energy_weight > 0 needs a force field; this dataset has none "
                             "(set source.force_field or source.prmtop)")
        transforms = []
        for block in range(cfg.blocks):
            mask = torch.arange(dim) % 2 == block % 2
            transforms += [ActNorm(dim, channel_dim=-1),
                           InvertibleLinear(dim, channel_dim=-1, generator=generator),
                           AffineCoupling(mask, CouplingMLP(dim, cfg.hidden, cfg.hidden_layers))]
        flow = Flow(StandardNormal(dim), transforms)
        return FlowOnInternalCoordinates(
            flow, torch.tensor(state["internal_mean"]), torch.tensor(state["internal_std"]),
            torch.tensor(state["torsion_cut"]), state, energy_weight=cfg.energy_weight,
            energy_samples=cfg.energy_samples, energy_high=cfg.energy_high)


@dataclasses.dataclass(frozen=True)
class Ala2EBMConfig:
    """Flow-based energy-based model of the internal coordinates, E(x) = -log q(x) - g(x)
    (``FlowEnergyBasedModel``): the base q is ``ala2-flow``'s flow (``base_blocks`` x coupling with
    ``base_hidden_layers`` x ``base_hidden`` units), trained by maximum likelihood in the same model;
    the correction g is an MLP (``hidden_layers`` x ``hidden``, SiLU) of the standardised bonds and
    angles and the sine and cosine of each torsion, bounded by |g| <= ``bound``, trained by
    noise-contrastive estimation against the base (weight ``nce_weight``). Sampled by ``sweeps``
    sweeps of an independence Metropolis-Hastings proposal from the base plus ``mala_steps`` MALA
    steps of size ``mala_step`` in the flow's latent space."""

    base_hidden: int = bounded(128, minimum=1)
    base_hidden_layers: int = bounded(2, minimum=1)
    base_blocks: int = bounded(6, minimum=1)
    hidden: int = bounded(128, minimum=1)
    hidden_layers: int = bounded(2, minimum=1)
    bound: float = bounded(2.0, exclusive_minimum=0)
    nce_weight: float = bounded(1.0, minimum=0)
    sweeps: int = bounded(20, minimum=1)
    mala_steps: int = bounded(2, minimum=0)
    mala_step: float = bounded(0.05, exclusive_minimum=0)


class TorsionFeatureEnergy(nn.Module):
    """E(z) of standardised internal coordinates z (B, D): an MLP of [bonds and angles, sin and
    cos of each torsion] (periodic in every torsion), SiLU activations (a smooth gradient for
    Langevin dynamics). ``torsions``: the torsions' slice of the D = 3N - 6 coordinates."""

    def __init__(self, hidden: int, hidden_layers: int, torsions: slice) -> None:
        super().__init__()
        self.torsions = torsions
        width = torsions.start + 2 * (torsions.stop - torsions.start)
        layers: list[nn.Module] = []
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        torsions = z[:, self.torsions]
        features = torch.cat([z[:, : self.torsions.start], torch.sin(torsions), torch.cos(torsions)], dim=-1)
        return self.net(features).squeeze(-1)


def _chain_start(n: int, generator: torch.Generator | None, device: torch.device, *, mean: torch.Tensor,
                 std: torch.Tensor, start: int, dim: int) -> torch.Tensor:
    """Over-dispersed chain starts (n, dim) of internal coordinates: bonds and angles (columns before
    ``start``) N(mean, std^2) of the training data, torsions uniform on (-pi, pi]."""
    z = torch.randn(n, dim, generator=generator, device=device)
    uniform = torch.rand(n, dim - start, generator=generator, device=device)
    bonds_angles = mean[:start].to(device) + std[:start].to(device) * z[:, :start]
    return torch.cat([bonds_angles, (2 * uniform - 1) * math.pi], dim=-1)


class StandardizedCorrection(nn.Module):
    """g's network on internal coordinates x (B, D): bonds and angles standardised by ``mean`` /
    ``std`` (D,), torsions as they are (``TorsionFeatureEnergy`` takes their sine and cosine)."""

    def __init__(self, net: TorsionFeatureEnergy, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        start = net.torsions.start
        dim = mean.shape[0]
        self.register_buffer("shift", torch.cat([mean[:start], torch.zeros(dim - start)]).float())
        self.register_buffer("scale", torch.cat([std[:start], torch.ones(dim - start)]).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.shift) / self.scale)


@register("model", "ala2-ebm")
class Ala2EBM(ModelSpec):
    """Registry entry: flow-based energy-based model of alanine dipeptide's internal coordinates
    (E = -log q_flow - g, g by noise-contrastive estimation; MH + MALA sampler; log p up to log Z)."""

    domain: ClassVar[str] = "peptide-md"
    Config = Ala2EBMConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("internal",)
    train_resources = TrainResources(seconds_per_step=0.15, mem_mb=16000)  # estimate: a flow step + base samples + g
    langevin: ClassVar[bool] = True
    """Samples by Markov chains: the workflow runs `dgm mixing` on it."""

    @staticmethod
    def build(cfg: Ala2EBMConfig, state: dict[str, Any]) -> GenerativeModel:
        mean, std = torch.tensor(state["internal_mean"]), torch.tensor(state["internal_std"])
        internal_mean = torch.tensor(state["internal_mean"]).float()
        z = internal_coordinates(state)
        start, dim = z.torsions.start, z.n_internal
        base = Ala2Flow.build(Ala2FlowConfig(hidden=cfg.base_hidden, hidden_layers=cfg.base_hidden_layers,
                                             blocks=cfg.base_blocks), state)
        # Bonds and angles: standardised statistics of the training data (internal_mean/std hold the
        # logit-mapped torsions' statistics beyond ``start``, unused here).
        correction = StandardizedCorrection(TorsionFeatureEnergy(cfg.hidden, cfg.hidden_layers, z.torsions),
                                            internal_mean, std.float())
        return FlowEnergyBasedModel(base, correction, "internal", dim, bound=cfg.bound, nce_weight=cfg.nce_weight,
                                    sweeps=cfg.sweeps, mala_steps=cfg.mala_steps, mala_step=cfg.mala_step,
                                    noise_init=functools.partial(_chain_start, mean=mean.float(), std=std.float(),
                                                                 start=start, dim=dim))
