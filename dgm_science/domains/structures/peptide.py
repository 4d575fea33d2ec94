"""Alanine dipeptide: the ``ala2-flow`` Boltzmann-generator flow on internal coordinates and the
``peptide-md`` domain (state, datasets, decode, likelihood, DCD samples, evaluation).

The flow (Noé et al. 2019, Science 365, eaaw1147; Köhler et al. 2021) is a RealNVP/Glow stack
on the 60 internal coordinates of ``internal.py``, trained by maximum likelihood on MD frames,
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

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from dgm_science.base import GenerativeModel
from dgm_science.domains.structures import md
from dgm_science.domains.structures.internal import (
    ATOM_NAMES, BONDS, N_INTERNAL, ROOTS, TORSION_PHI, TORSION_PSI, TORSIONS, Z_MATRIX, InternalCoordinates,
    wrap_angle,
)
from dgm_science.errors import DataError
from dgm_science.families.flows import ActNorm, AffineCoupling, Flow, InvertibleLinear
from dgm_science.families.vae import StandardNormal
from dgm_science.registry import register
from dgm_science.utils import atomic_path

TORSION_HISTOGRAM_BINS = 60
TORSION_EPS = 1e-6
RAMACHANDRAN_BINS = 60
PSEUDO_COUNT = 1e-2
"""Per-bin pseudo-count of the histograms the KLs compare (so an empty sample bin is finite)."""


def internal_coordinates(state: dict[str, Any]) -> InternalCoordinates:
    return InternalCoordinates(tuple(map(tuple, state["z_matrix"])), tuple(state["roots"]))


# ------------------------------------------------------------------------------------------ model


@dataclasses.dataclass(frozen=True)
class Ala2FlowConfig:
    """Boltzmann-generator flow: ``blocks`` x (ActNorm, InvertibleLinear, AffineCoupling with an MLP
    conditioner of ``hidden_layers`` x ``hidden`` units); ``energy_weight`` > 0 adds the reverse KL
    E_q[u(x) + log q(x)] over ``energy_samples`` flow samples per step (u regularised by
    ``linlogcut`` above ``energy_high`` kT)."""

    hidden: int = 256
    hidden_layers: int = 2
    blocks: int = 8
    energy_weight: float = 0.0
    energy_samples: int = 64
    energy_high: float = 1000.0


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
    """q(x) of internal coordinates x: (B, 60) [bonds nm | angles rad | torsions rad in (-pi, pi]].

    x -> torsions unrolled at their cut points and logit-mapped -> standardised by the training
    mean/std (fixed) -> ``Flow``. ``log_prob(batch)`` is log q of the internal coordinates (nats,
    including the log-Jacobians of the logit map and the standardisation); ``sample`` returns
    internal coordinates (base noise scaled by ``temperature``). Batches: ``{"internal": (B, 60)}``.
    Runs in float32 outside autocast.
    """

    likelihood = "exact"

    def __init__(self, flow: Flow, mean: torch.Tensor, std: torch.Tensor, torsion_cut: torch.Tensor,
                 state: dict[str, Any], energy_weight: float = 0.0, energy_samples: int = 64,
                 energy_high: float = 1000.0) -> None:
        super().__init__()
        self.flow = flow
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.register_buffer("torsion_cut", torsion_cut.float())
        self.state = state
        self.energy_weight = energy_weight
        self.energy_samples = energy_samples
        self.energy_high = energy_high
        self._metrics: dict[str, torch.Tensor] = {}

    def to_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Internal (B, 60) -> (the flow's input y (B, 60), log|det dy/dx| (B,)): torsions unrolled
        at their cuts and logit-mapped, then everything standardised."""
        fraction = torch.remainder(x[:, TORSIONS] - self.torsion_cut, 2 * math.pi) / (2 * math.pi)
        fraction = fraction.clamp(TORSION_EPS, 1 - TORSION_EPS)
        logit = torch.log(fraction) - torch.log1p(-fraction)
        log_det = -(math.log(2 * math.pi) + torch.log(fraction) + torch.log1p(-fraction)).sum(-1)
        y = (torch.cat([x[:, : TORSIONS.start], logit], dim=-1) - self.mean) / self.std
        return y, log_det - torch.log(self.std).sum()

    def from_flow(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_flow``: (B, 60) -> internal coordinates, torsions in (-pi, pi]."""
        x = y * self.std + self.mean
        torsions = wrap_angle(2 * math.pi * torch.sigmoid(x[:, TORSIONS]) + self.torsion_cut)
        return torch.cat([x[:, : TORSIONS.start], torsions], dim=-1)

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.autocast(device_type=batch["internal"].device.type, enabled=False):
            y, log_det = self.to_flow(batch["internal"].float())
            return self.flow.log_prob(y) + log_det

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean NLL of the batch (per coordinate: / 60) + energy_weight x reverse KL (per coordinate)."""
        nll = -self.log_prob(batch).mean() / N_INTERNAL
        self._metrics = {"nll": nll.detach()}
        if self.energy_weight <= 0:
            return nll
        reverse_kl = self.reverse_kl(self.energy_samples).mean() / N_INTERNAL
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
            energy = md.potential_energy(self.state["prmtop"], float(self.state["temperature_kelvin"]))
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
class Ala2Flow:
    """Registry entry: Boltzmann-generator flow on alanine dipeptide's internal coordinates."""

    domain: ClassVar[str] = "peptide-md"
    Config = Ala2FlowConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("internal",)

    @staticmethod
    def build(cfg: Ala2FlowConfig, state: dict[str, Any]) -> GenerativeModel:
        generator = torch.Generator().manual_seed(0)
        transforms = []
        for block in range(cfg.blocks):
            mask = torch.arange(N_INTERNAL) % 2 == block % 2
            transforms += [ActNorm(N_INTERNAL, channel_dim=-1),
                           InvertibleLinear(N_INTERNAL, channel_dim=-1, generator=generator),
                           AffineCoupling(mask, CouplingMLP(N_INTERNAL, cfg.hidden, cfg.hidden_layers))]
        flow = Flow(StandardNormal(N_INTERNAL), transforms)
        return FlowOnInternalCoordinates(
            flow, torch.tensor(state["internal_mean"]), torch.tensor(state["internal_std"]),
            torch.tensor(state["torsion_cut"]), state, energy_weight=cfg.energy_weight,
            energy_samples=cfg.energy_samples, energy_high=cfg.energy_high)


# ----------------------------------------------------------------------------------------- domain


class InternalCoordinateDataset(torch.utils.data.Dataset):
    """MD frames as internal coordinates: items (60,) float32; ``collate`` -> {"internal": (B, 60)}."""

    n_too_long = 0

    def __init__(self, internal: torch.Tensor) -> None:
        self.internal = internal.float()

    def __len__(self) -> int:
        return len(self.internal)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.internal[i]

    @staticmethod
    def collate(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"internal": torch.stack(items)}


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


def _data_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    return Path(data_dir) / f"{split}.dcd", Path(data_dir) / md.TOPOLOGY


def read_internal(data_dir: Path, split: str, z: InternalCoordinates | None = None) -> torch.Tensor:
    """Internal coordinates (T, 60) float64 of ``data_dir/{split}.dcd``."""
    xyz = md.load_frames(*_data_paths(data_dir, split))
    return (z or InternalCoordinates()).to_internal(torch.from_numpy(xyz).double())


def _temperature(data_dir: Path) -> float:
    path = Path(data_dir) / "prepare.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dgm prepare ala2` first")
    return float(json.loads(path.read_text())["temperature_kelvin"])


def md_topology() -> Any:
    """mdtraj Topology of ACE-ALA-NME in ``ATOM_NAMES`` order, bonds from the Z-matrix."""
    import mdtraj

    topology = mdtraj.Topology()
    chain = topology.add_chain()
    residues: dict[str, Any] = {}
    atoms = []
    for label in ATOM_NAMES:
        residue_name, atom_name = label.split(":")
        if residue_name not in residues:
            residues[residue_name] = topology.add_residue(residue_name, chain)
        element = mdtraj.element.get_by_symbol(atom_name[0])
        atoms.append(topology.add_atom(atom_name, element, residues[residue_name]))
    for atom, bond, _, _ in Z_MATRIX:
        topology.add_bond(atoms[atom], atoms[bond])
    topology.add_bond(atoms[ROOTS[0]], atoms[ROOTS[1]])
    topology.add_bond(atoms[ROOTS[0]], atoms[ROOTS[2]])
    return topology


@register("domain", "peptide-md")
class PeptideDomain:
    """Alanine dipeptide conformations from MD: items are (22, 3) float64 Cartesian arrays in nm."""

    name = "peptide-md"
    samples_file = "samples.dcd"

    @staticmethod
    def fit_state(data_dir: Path, spec: Any, model_cfg: Any) -> dict[str, Any]:
        """Z-matrix, torsion cut points and standardisation (training frames), prmtop text,
        temperature and atom names: everything needed to rebuild and score the model."""
        data_dir = Path(data_dir)
        z = InternalCoordinates()
        internal = read_internal(data_dir, "train", z).numpy()
        cut = least_populated_angles(internal[:, TORSIONS])
        fraction = np.clip(np.remainder(internal[:, TORSIONS] - cut, 2 * math.pi) / (2 * math.pi), TORSION_EPS,
                           1 - TORSION_EPS)
        features = np.concatenate([internal[:, : TORSIONS.start], np.log(fraction) - np.log1p(-fraction)], axis=1)
        return {
            "z_matrix": [list(row) for row in z.z_matrix], "roots": list(z.roots),
            "internal_mean": features.mean(0).tolist(),
            "internal_std": np.maximum(features.std(0), 1e-6).tolist(),
            "torsion_cut": cut.tolist(),
            "prmtop": (data_dir / md.PRMTOP).read_text(),
            "temperature_kelvin": _temperature(data_dir),
            "atom_names": list(ATOM_NAMES),
        }

    @staticmethod
    def datasets(data_dir: Path, spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[InternalCoordinateDataset, InternalCoordinateDataset]:
        z = internal_coordinates(state)
        return (InternalCoordinateDataset(read_internal(data_dir, "train", z)),
                InternalCoordinateDataset(read_internal(data_dir, "valid", z)))

    @staticmethod
    def decode_table(raw: torch.Tensor, state: dict[str, Any], **options: Any) -> tuple[list[np.ndarray], dict]:
        """Internal coordinates (B, 60) -> Cartesian (22, 3) nm arrays in the canonical frame."""
        xyz, _ = internal_coordinates(state).to_cartesian(raw.detach().double().cpu())
        return list(xyz.numpy()), {}

    @classmethod
    def decode(cls, raw: torch.Tensor, state: dict[str, Any], **options: Any) -> list[np.ndarray]:
        return cls.decode_table(raw, state, **options)[0]

    @staticmethod
    def batch_of(items: Sequence[np.ndarray | None], spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """{"internal": (B, 60)} of the items with finite (22, 3) coordinates, and their positions."""
        keep = [i for i, x in enumerate(items) if x is not None and np.shape(x) == (len(ATOM_NAMES), 3)
                and np.isfinite(x).all()]
        if not keep:
            return None, []
        xyz = torch.from_numpy(np.stack([np.asarray(items[i], dtype=np.float64) for i in keep]))
        return {"internal": internal_coordinates(state).to_internal(xyz)}, keep

    @classmethod
    @torch.no_grad()
    def log_likelihood(cls, model: GenerativeModel, items: Sequence[np.ndarray | None], spec: Any, model_cfg: Any,
                       state: dict[str, Any], batch_size: int = 500) -> np.ndarray:
        """log q(x) of Cartesian conformations (nats, density over the 3N - 6 canonical-frame
        coordinates in nm): log q_internal - log|det d(Cartesian)/d(internal)|; NaN where not finite."""
        out = np.full(len(items), math.nan)
        device = next(model.parameters()).device
        z = internal_coordinates(state)
        model.eval()
        for start in range(0, len(items), batch_size):
            batch, keep = cls.batch_of(items[start: start + batch_size], spec, model_cfg, state)
            if batch is None:
                continue
            internal = batch["internal"]
            log_q = model.log_prob({"internal": internal.to(device)}).double().cpu()
            out[[start + k for k in keep]] = (log_q - z.log_det_jacobian(internal)).numpy()
        return out

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        return np.full(len(items), float(len(ATOM_NAMES)))

    @staticmethod
    def write_samples(path: Path, items: Sequence[np.ndarray], log_likelihood: np.ndarray, n_jobs: int = 1, *,
                      state: dict[str, Any] | None = None, columns: dict[str, list[Any]] | None = None) -> int:
        """``path`` (.dcd) with ``samples.pdb`` (topology, first finite sample) and ``samples.csv``
        (log_likelihood, reduced energy u = U/kT when ``state`` gives the prmtop, phi and psi in
        degrees) beside it, all written atomically. Non-finite samples (a flow's rare overflow) are
        kept as NaN frames, counted by ``evaluate``. Returns the number of finite samples."""
        import mdtraj

        path = Path(path)
        if path.suffix != ".dcd":
            raise ValueError(f"{path}: alanine-dipeptide samples are written as .dcd")
        xyz = np.stack([np.asarray(x, dtype=np.float64) for x in items])
        finite = np.isfinite(xyz).all(axis=(1, 2))
        z = InternalCoordinates()
        torsions = np.degrees(z.to_internal(torch.from_numpy(xyz))[:, TORSIONS].numpy())
        energy = np.full(len(xyz), math.nan)
        if state is not None:
            energy = md.potential_energy(state["prmtop"], float(state["temperature_kelvin"])).reduced(xyz)
        trajectory = mdtraj.Trajectory(xyz.astype(np.float32), md_topology())
        with atomic_path(path) as tmp:
            trajectory.save_dcd(str(tmp), force_overwrite=True)
        first = int(np.argmax(finite)) if finite.any() else None
        with atomic_path(path.with_suffix(".pdb")) as tmp:
            model = trajectory[first] if first is not None else mdtraj.Trajectory(np.zeros((1, len(ATOM_NAMES), 3)),
                                                                                 trajectory.topology)
            model.save_pdb(str(tmp), force_overwrite=True)
        with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "log_likelihood", "reduced_energy", "phi", "psi"])
            for i in range(len(xyz)):
                writer.writerow([i, _cell(log_likelihood[i]), _cell(energy[i]),
                                 _cell(torsions[i, TORSION_PHI]), _cell(torsions[i, TORSION_PSI])])
        return int(finite.sum())

    @staticmethod
    def read_samples(path: Path, topology_path: Path | None = None) -> np.ndarray:
        """Sampled conformations (N, 22, 3) nm of a samples DCD (topology: its .pdb beside it)."""
        path = Path(path)
        return md.load_frames(path, topology_path or path.with_suffix(".pdb"), allow_nonfinite=True)

    @staticmethod
    def evaluate(samples_path: Path, reference_dir: Path, *, n_jobs: int = 1) -> dict[str, float]:
        """Boltzmann-generator metrics of the samples against the held-out test frames, the same
        for the training frames (``data_*``, the finite-data floor), and ``ramachandran.png``
        beside the samples (see ``evaluate_conformations``)."""
        samples_path, reference_dir = Path(samples_path), Path(reference_dir)
        topology = reference_dir / md.TOPOLOGY
        samples = md.load_frames(samples_path, topology, allow_nonfinite=True)
        log_q = _read_log_likelihood(samples_path.with_suffix(".csv"), len(samples))
        test = md.load_frames(reference_dir / "test.dcd", topology)
        train = md.load_frames(reference_dir / "train.dcd", topology)
        energy = md.PotentialEnergy((reference_dir / md.PRMTOP).read_text(), _temperature(reference_dir))
        metrics = evaluate_conformations(samples, log_q, test, energy)
        data = evaluate_conformations(train, None, test, energy)
        metrics.update({f"data_{k}": v for k, v in data.items()})
        ramachandran_plot(test, samples, samples_path.parent / "ramachandran.png")
        return metrics


def _cell(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ("inf" if value == math.inf else "")


def _read_log_likelihood(path: Path, n: int) -> np.ndarray | None:
    """The ``log_likelihood`` column of ``write_samples``' CSV (NaN where empty); None if no file."""
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != n or (rows and "log_likelihood" not in rows[0]):
        raise DataError(f"{path}: expected {n} rows with a log_likelihood column, got {len(rows)}")
    return np.array([float(r["log_likelihood"]) if r["log_likelihood"] else math.nan for r in rows])


# ------------------------------------------------------------------------------------- evaluation


def histogram_kl(p_samples: np.ndarray, q_samples: np.ndarray, bins: int, pseudo_count: float = PSEUDO_COUNT
                 ) -> float:
    """KL(P || Q) in nats of two sets of angles (N, d) in (-pi, pi], d = 1 or 2, binned into
    ``bins``^d equal cells over the torus with ``pseudo_count`` added to every cell."""
    edges = [np.linspace(-math.pi, math.pi, bins + 1)] * p_samples.shape[1]
    p = np.histogramdd(p_samples, bins=edges)[0].ravel() + pseudo_count
    q = np.histogramdd(q_samples, bins=edges)[0].ravel() + pseudo_count
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def kish_ess_fraction(log_weights: np.ndarray) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2 of importance weights, as a fraction of N,
    from log w (non-finite -> weight 0); log-sum-exp stable."""
    log_w = np.where(np.isfinite(log_weights), log_weights, -np.inf)
    if not np.isfinite(log_w).any():
        return 0.0
    log_w = log_w - log_w.max()
    return float(np.exp(2 * np.log(np.exp(log_w).sum()) - np.log(np.exp(2 * log_w).sum())) / len(log_w))


def evaluate_conformations(samples: np.ndarray, log_q: np.ndarray | None, test: np.ndarray,
                           energy: md.PotentialEnergy) -> dict[str, float]:
    """Metrics of conformations (N, 22, 3) nm against MD test frames (M, 22, 3):

    - ``kl_ramachandran``: KL(test || samples) of the (phi, psi) histogram, 60 x 60 bins on the
      torus, pseudo-count 0.01 per bin (the direction of the BG literature: mass the model misses
      costs most); ``kl_phi``, ``kl_psi``, ``kl_torsions_mean/max``: the same for each of the 19
      Z-matrix torsions' 60-bin marginals (phi, psi, both omegas, methyl rotations, ...);
    - ``energy_mean``, ``energy_median``: u = U/kT of the samples, the mean with energies above
      the highest test-frame energy censored at it; ``energy_w1``: W1 between the sample and test
      energy distributions with the same censoring; ``energy_above_data_max``: the fraction
      censored (non-finite energies included); ``energy_test_mean``;
    - ``ess_fraction``: Kish ESS / N of w = exp(-u(x) - log q(x)) when ``log_q`` (Cartesian
      density, nats) is given;
    - ``bond_length_deviation_mean/max``: per bond, the mean |sample length - mean test length|
      (nm); their mean and max over the 21 bonds;
    - ``n_samples``, ``nonfinite_fraction``.
    """
    from scipy.stats import wasserstein_distance

    z = InternalCoordinates()
    finite = np.isfinite(samples).all(axis=(1, 2))
    ic_samples = z.to_internal(torch.from_numpy(samples[finite]).double()).numpy()
    ic_test = z.to_internal(torch.from_numpy(test).double()).numpy()
    t_samples, t_test = ic_samples[:, TORSIONS], ic_test[:, TORSIONS]
    rama = [TORSION_PHI, TORSION_PSI]
    kls = np.array([histogram_kl(t_test[:, [k]], t_samples[:, [k]], TORSION_HISTOGRAM_BINS)
                    for k in range(t_test.shape[1])])
    u_samples = energy.reduced(samples)
    u_test = energy.reduced(test)
    u_max = float(u_test.max())
    censored = np.minimum(u_samples, u_max)
    bond_mean = ic_test[:, BONDS].mean(0)
    bond_dev = np.abs(ic_samples[:, BONDS] - bond_mean).mean(0)
    out = {
        "kl_ramachandran": histogram_kl(t_test[:, rama], t_samples[:, rama], RAMACHANDRAN_BINS),
        "kl_phi": float(kls[TORSION_PHI]), "kl_psi": float(kls[TORSION_PSI]),
        "kl_torsions_mean": float(kls.mean()), "kl_torsions_max": float(kls.max()),
        "energy_mean": float(censored.mean()), "energy_median": float(np.median(u_samples)),
        "energy_test_mean": float(u_test.mean()),
        "energy_w1": float(wasserstein_distance(censored, u_test)),
        "energy_above_data_max": float(np.mean(~(u_samples <= u_max))),
        "bond_length_deviation_mean": float(bond_dev.mean()), "bond_length_deviation_max": float(bond_dev.max()),
        "n_samples": float(len(samples)), "nonfinite_fraction": float(1 - finite.mean()),
    }
    if log_q is not None:
        out["ess_fraction"] = kish_ess_fraction(-u_samples - log_q)
    return out


def ramachandran_plot(data: np.ndarray, samples: np.ndarray, out: Path, bins: int = RAMACHANDRAN_BINS) -> Path:
    """Side-by-side log-density (phi, psi) histograms of MD frames and samples (N, 22, 3) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = InternalCoordinates()
    edges = np.linspace(-180, 180, bins + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, frames, title in ((axes[0], data, f"MD test frames ({len(data):,})"),
                              (axes[1], samples, f"samples ({len(samples):,})")):
        frames = frames[np.isfinite(frames).all(axis=(1, 2))]
        torsions = np.degrees(z.to_internal(torch.from_numpy(frames).double())[:, TORSIONS].numpy())
        counts = np.histogram2d(torsions[:, TORSION_PHI], torsions[:, TORSION_PSI], bins=[edges, edges])[0]
        density = counts / max(counts.sum(), 1) / (360 / bins) ** 2
        with np.errstate(divide="ignore"):
            image = ax.pcolormesh(edges, edges, np.log(density).T, cmap="viridis", shading="flat")
        ax.set(title=title, xlabel="φ (degrees)", xlim=(-180, 180), ylim=(-180, 180), aspect="equal")
    axes[0].set_ylabel("ψ (degrees)")
    fig.colorbar(image, ax=axes, label="log density (1/degree²)", shrink=0.8)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out

