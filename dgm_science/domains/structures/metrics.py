"""The structures domain's metrics. QM9 conformations: EDM's metrics of 3D molecules: atom and
molecule stability, RDKit validity, uniqueness and novelty, exactly as Hoogeboom et al. (ICML 2022) compute them (their ``qm9/bond_analyze.py``,
``qm9/analyze.py`` and ``qm9/rdkit_functions.py``).

Bonds are perceived from interatomic distances with EDM's bond-length tables (single, double,
triple; pm) plus margins: a pair closer than ``single + margin1`` is bonded, a bonded pair closer
than ``double + margin2`` is double, and closer than ``triple + margin3`` triple. An atom is stable
when its bond orders sum to an allowed valency of its element (H 1, C 4, N 3, O 2, F 1; for a user's
conformers the other elements of EDM's GEOM-drugs tables: B, Al, Si, P, S, Cl, As, Br, I, Hg, Bi); a molecule is
stable when all its atoms are. For validity we build the RDKit molecule from those same perceived
bonds (EDM's ``build_molecule``) rather than RDKit's own bond perception
(``rdDetermineBonds``), so that our numbers are comparable with EDM's published ones: the
molecule is valid when ``Chem.SanitizeMol`` accepts it, and its SMILES is that of its largest
fragment. Uniqueness is the fraction of distinct SMILES among the valid ones; novelty the fraction
of the unique ones absent from the training molecules' SMILES (computed the same way).

Alanine dipeptide: the Boltzmann-generator metrics of sampled conformations against held-out MD
frames (``evaluate_conformations``): KL divergences of the Ramachandran (phi, psi) and energy
histograms, the Kish effective sample size of the importance weights exp(-u(x)) / q(x), and the
Ramachandran plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dgm_science.domains.structures import md
from dgm_science.domains.structures.internal import (
    TORSION_HISTOGRAM_BINS, TORSION_PHI, TORSION_PSI, InternalCoordinates, dihedral, torsion_quartets,
)
from dgm_science.utils import atomic_path

ELEMENTS = ("H", "C", "N", "O", "F")
"""QM9's elements in EDM's order: atom type index i of a qm9-3d file is ``ELEMENTS[i]``."""

METRIC_ELEMENTS = ELEMENTS + ("B", "Al", "Si", "P", "S", "Cl", "As", "Br", "I", "Hg", "Bi")
"""The elements the metrics score: EDM's GEOM-drugs decoder (QM9's five first, so that a qm9-3d atom type
index is also an index here); a sample's atom types are indices into this tuple (``types_of``)."""

# EDM's bond lengths in pm (bond_analyze.py bonds1 / bonds2 / bonds3). bonds2 lists C=S only under C (EDM looks
# pairs up in its decoder's order, C before S): here every table is symmetric.
SINGLE_BOND_PM = {
    "H": {"H": 74, "C": 109, "N": 101, "O": 96, "F": 92, "B": 119, "Si": 148, "P": 144, "As": 152, "S": 134,
          "Cl": 127, "Br": 141, "I": 161},
    "C": {"H": 109, "C": 154, "N": 147, "O": 143, "F": 135, "Si": 185, "P": 184, "S": 182, "Cl": 177, "Br": 194,
          "I": 214},
    "N": {"H": 101, "C": 147, "N": 145, "O": 140, "F": 136, "Cl": 175, "Br": 214, "S": 168, "I": 222, "P": 177},
    "O": {"H": 96, "C": 143, "N": 140, "O": 148, "F": 142, "Br": 172, "S": 151, "P": 163, "Si": 163, "Cl": 164,
          "I": 194},
    "F": {"H": 92, "C": 135, "N": 136, "O": 142, "F": 142, "S": 158, "Si": 160, "Cl": 166, "Br": 178, "P": 156,
          "I": 187},
    "B": {"H": 119, "Cl": 175},
    "Si": {"Si": 233, "H": 148, "C": 185, "O": 163, "S": 200, "F": 160, "Cl": 202, "Br": 215, "I": 243},
    "Cl": {"Cl": 199, "H": 127, "C": 177, "N": 175, "O": 164, "P": 203, "S": 207, "B": 175, "Si": 202, "F": 166,
           "Br": 214},
    "S": {"H": 134, "C": 182, "N": 168, "O": 151, "S": 204, "F": 158, "Cl": 207, "Br": 225, "Si": 200, "P": 210,
          "I": 234},
    "Br": {"Br": 228, "H": 141, "C": 194, "O": 172, "N": 214, "Si": 215, "S": 225, "F": 178, "Cl": 214, "P": 222},
    "P": {"P": 221, "H": 144, "C": 184, "O": 163, "Cl": 203, "S": 210, "F": 156, "N": 177, "Br": 222},
    "I": {"H": 161, "C": 214, "Si": 243, "N": 222, "O": 194, "S": 234, "F": 187, "I": 266},
    "As": {"H": 152},
}
DOUBLE_BOND_PM = {"C": {"C": 134, "N": 129, "O": 120, "S": 160}, "N": {"C": 129, "N": 125, "O": 121},
                  "O": {"C": 120, "N": 121, "O": 121, "P": 150}, "P": {"O": 150, "S": 186},
                  "S": {"C": 160, "P": 186}}
TRIPLE_BOND_PM = {"C": {"C": 120, "N": 116, "O": 113}, "N": {"C": 116, "N": 110}, "O": {"C": 113}}
MARGINS_PM = (10, 5, 3)
"""EDM's margin1, margin2, margin3 (``bond_analyze.py``: "tuned to maximize the stability of the
QM9 true samples"; its code has margin3 = 3 pm)."""
ALLOWED_VALENCY: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "B": (3,), "Al": (3,), "Si": (4,), "P": (3, 5),
    "S": (4,), "Cl": (1,), "As": (3,), "Br": (1,), "I": (1,), "Hg": (1, 2), "Bi": (3, 5)}
"""EDM's ``allowed_bonds``: the bond-order sums that make an atom stable (its S: 4 only, so a thioether's
sulfur counts as unstable, as in EDM's GEOM-drugs numbers; Al, Hg and Bi have no bond lengths, never bond
and are never stable)."""


def _threshold_table(table: dict[str, dict[str, int]], margin: int) -> np.ndarray:
    """(E, E) distance thresholds in Angstrom for an element pair of ``METRIC_ELEMENTS``; -inf where the
    bond does not exist (EDM's ``check_exists``)."""
    out = np.full((len(METRIC_ELEMENTS), len(METRIC_ELEMENTS)), -np.inf)
    for i, a in enumerate(METRIC_ELEMENTS):
        for j, b in enumerate(METRIC_ELEMENTS):
            if b in table.get(a, {}):
                out[i, j] = (table[a][b] + margin) / 100.0
    return out


THRESHOLDS = np.stack([_threshold_table(t, m) for t, m in
                       zip((SINGLE_BOND_PM, DOUBLE_BOND_PM, TRIPLE_BOND_PM), MARGINS_PM)])
"""(3, E, E): Angstrom below which a pair of elements has at least a single / double / triple bond."""
MAX_BOND_SUM = 3 * 16
ALLOWED = np.zeros((len(METRIC_ELEMENTS), MAX_BOND_SUM + 1), dtype=bool)
"""(E, S): ALLOWED[e, s] is True when a bond-order sum s makes an atom of element e stable."""
for _i, _e in enumerate(METRIC_ELEMENTS):
    ALLOWED[_i, list(ALLOWED_VALENCY[_e])] = True


def bond_orders(positions: np.ndarray, atom_types: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    """EDM's ``get_bond_order`` for every atom pair of a padded batch, vectorised.

    positions: (B, N, 3) Angstrom; atom_types: (B, N) indices into ``METRIC_ELEMENTS``; n_atoms: (B,).
    Returns (B, N, N) int8 bond orders 0-3, symmetric, zero on the diagonal and on padding.
    """
    positions = np.asarray(positions, dtype=np.float64)
    types = np.asarray(atom_types, dtype=np.int64)
    n_max = positions.shape[1]
    mask = np.arange(n_max)[None, :] < np.asarray(n_atoms)[:, None]
    types = np.where(mask, types, 0)
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged sample's inf - inf: no bond
        distance = np.sqrt(((positions[:, :, None, :] - positions[:, None, :, :]) ** 2).sum(-1))
    pair = THRESHOLDS[:, types[:, :, None], types[:, None, :]]  # (3, B, N, N)
    below = distance[None] < pair
    order = below[0].astype(np.int8) * (1 + below[1] * (1 + below[2].astype(np.int8)))
    valid_pair = mask[:, :, None] & mask[:, None, :] & ~np.eye(n_max, dtype=bool)[None]
    return np.where(valid_pair, order, 0).astype(np.int8)


def stability(positions: np.ndarray, atom_types: np.ndarray, n_atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-molecule (number of stable atoms (B,), molecule stable (B,) bool), EDM's ``check_stability``.

    Arguments as ``bond_orders``; an atom type outside ``METRIC_ELEMENTS`` must not occur.
    """
    orders = bond_orders(positions, atom_types, n_atoms)
    n_max = orders.shape[1]
    mask = np.arange(n_max)[None, :] < np.asarray(n_atoms)[:, None]
    types = np.where(mask, np.asarray(atom_types, dtype=np.int64), 0)
    sums = np.minimum(orders.sum(-1, dtype=np.int64), MAX_BOND_SUM)
    stable = ALLOWED[types, sums] & mask
    n_stable = stable.sum(-1)
    return n_stable, n_stable == np.asarray(n_atoms)


def molecule_smiles(item: tuple[np.ndarray, np.ndarray]) -> str | None:
    """EDM's ``build_molecule`` + ``mol2smiles``: the SMILES of the largest fragment of the molecule
    built from perceived bonds, or None when RDKit's sanitization rejects it.

    item: (atom type indices (n,), bond orders (n, n)) of one molecule.
    """
    mol = build_molecule(*item)
    if mol is None:
        return None
    from rdkit import Chem

    fragments = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    largest = max(fragments, default=mol, key=lambda m: m.GetNumAtoms())
    try:
        Chem.SanitizeMol(largest)
    except ValueError:
        return None
    return Chem.MolToSmiles(largest)


_BOND_TYPES = None


def build_molecule(atom_types: np.ndarray, orders: np.ndarray):  # -> rdkit.Chem.Mol | None
    """The sanitized RDKit molecule with the atoms ``atom_types`` (indices into ``METRIC_ELEMENTS``) and the
    bond orders ``orders`` (n, n); None when ``Chem.SanitizeMol`` rejects it (EDM's validity)."""
    from rdkit import Chem

    global _BOND_TYPES
    if _BOND_TYPES is None:
        _BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    mol = Chem.RWMol()
    for t in atom_types:
        mol.AddAtom(Chem.Atom(METRIC_ELEMENTS[int(t)]))
    rows, cols = np.nonzero(np.triu(orders, 1))
    for i, j in zip(rows.tolist(), cols.tolist()):
        mol.AddBond(i, j, _BOND_TYPES[int(orders[i, j])])
    mol = mol.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except ValueError:
        return None
    return mol


def molecules_smiles(
    positions: np.ndarray, atom_types: np.ndarray, n_atoms: np.ndarray, *, n_jobs: int = 1, progress: bool = False
) -> list[str | None]:
    """EDM-style SMILES (largest fragment; explicit hydrogens as atoms) per molecule of a padded
    batch, None where invalid; RDKit runs over ``n_jobs`` processes."""
    from dgm_science.chem import map_molecules

    items = []
    for start in range(0, len(n_atoms), 4096):
        stop = start + 4096
        orders = bond_orders(positions[start:stop], atom_types[start:stop], n_atoms[start:stop])
        for k, n in enumerate(np.asarray(n_atoms[start:stop]).tolist()):
            items.append((np.asarray(atom_types[start + k, :n]), orders[k, :n, :n]))
    return map_molecules(molecule_smiles, items, n_jobs=n_jobs, progress=progress, desc="validity")


def edm_metrics(
    positions: np.ndarray,
    atom_types: np.ndarray,
    n_atoms: np.ndarray,
    *,
    train_smiles: set[str] | None = None,
    n_jobs: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """EDM's table of a set of molecules (Hoogeboom et al. 2022, Table 2).

    positions: (B, N, 3) Angstrom; atom_types: (B, N) indices into ``METRIC_ELEMENTS``, or -1 for an
    atom of an unknown element; a molecule with such an atom or a non-finite coordinate is
    unstable in every atom and invalid; n_atoms: (B,). Every
    molecule counts (an empty one is unstable and invalid). Returns atom_stability (stable
    atoms / atoms), molecule_stability, validity (fraction that sanitize), uniqueness (distinct
    SMILES / valid), validity_times_uniqueness, novelty (unique SMILES absent from
    ``train_smiles`` / unique; only with ``train_smiles``), n_samples, n_atoms_mean.
    """
    positions = np.asarray(positions, dtype=np.float64)
    atom_types = np.asarray(atom_types, dtype=np.int64)
    n_atoms = np.asarray(n_atoms, dtype=np.int64)
    n = len(n_atoms)
    if n == 0:
        raise ValueError("no molecules to evaluate")
    known = _scorable(positions, atom_types, n_atoms)
    n_stable = np.zeros(n, dtype=np.int64)
    mol_stable = np.zeros(n, dtype=bool)
    if known.any():
        n_stable[known], mol_stable[known] = stability(positions[known], atom_types[known], n_atoms[known])
    mol_stable &= n_atoms > 0
    smiles: list[str | None] = [None] * n
    scored = known & (n_atoms > 0)
    if scored.any():
        for i, s in zip(np.flatnonzero(scored), molecules_smiles(positions[scored], atom_types[scored],
                                                                 n_atoms[scored], n_jobs=n_jobs, progress=progress)):
            smiles[i] = s
    valid = [s for s in smiles if s is not None]
    unique = set(valid)
    out = {
        "atom_stability": float(n_stable.sum() / max(n_atoms.sum(), 1)),
        "molecule_stability": float(mol_stable.mean()),
        "validity": len(valid) / n,
        "uniqueness": len(unique) / len(valid) if valid else 0.0,
        "validity_times_uniqueness": len(unique) / n,
        "n_samples": float(n),
        "n_atoms_mean": float(n_atoms.mean()),
    }
    if train_smiles is not None:
        out["novelty"] = len(unique - train_smiles) / len(unique) if unique else 0.0
    return out


def _scorable(positions: np.ndarray, atom_types: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    """(B,) bool: every real atom has a known element and finite coordinates (a diverged sample's
    NaN / inf positions would otherwise read as isolated atoms, which RDKit sanitizes)."""
    mask = np.arange(atom_types.shape[1])[None, :] < n_atoms[:, None]
    bad = ((atom_types < 0) | (atom_types >= len(METRIC_ELEMENTS)) | ~np.isfinite(positions).all(-1)) & mask
    return ~bad.any(-1)


def per_molecule(
    positions: np.ndarray, atom_types: np.ndarray, n_atoms: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per molecule: fraction of stable atoms (B,) (NaN for an empty, unknown-element or non-finite one),
    molecule stable (B,) bool, bond orders (B, N, N) int8 - the SD tags of a samples file."""
    atom_types = np.asarray(atom_types, dtype=np.int64)
    n_atoms = np.asarray(n_atoms, dtype=np.int64)
    known = _scorable(positions, atom_types, n_atoms) & (n_atoms > 0)
    safe_types = np.where(known[:, None], atom_types, 0)
    orders = bond_orders(positions, safe_types, np.where(known, n_atoms, 0))
    n_stable, mol_stable = stability(positions, safe_types, np.where(known, n_atoms, 0))
    fraction = np.where(known, n_stable / np.maximum(n_atoms, 1), math.nan)
    return fraction, mol_stable & known, orders


def types_of(symbols: Sequence[str]) -> np.ndarray:
    """Element symbols -> indices into ``METRIC_ELEMENTS`` (-1 for any other element)."""
    lookup = {e: i for i, e in enumerate(METRIC_ELEMENTS)}
    return np.array([lookup.get(s, -1) for s in symbols], dtype=np.int64)


RAMACHANDRAN_BINS = 60

PSEUDO_COUNT = 1e-2
"""Per-bin pseudo-count of the histograms the KLs compare (so an empty sample bin is finite)."""


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


ALA2_RAMACHANDRAN = [[list(map(int, q)) for q in torsion_quartets()[[TORSION_PHI, TORSION_PSI]]]]
"""Alanine dipeptide's (phi, psi) atom quartets: its Z-matrix's first two torsions."""


def backbone_torsions(xyz: np.ndarray, quartets: Sequence[Sequence[int]]) -> np.ndarray:
    """Dihedrals (N, P) in (-pi, pi] of atom quartets (P, 4) of conformations (N, n_atoms, 3)."""
    index = np.asarray(quartets, dtype=np.int64).reshape(-1, 4)
    x = torch.from_numpy(np.asarray(xyz, dtype=np.float64))
    return dihedral(*(x[:, index[:, k]] for k in range(4))).numpy()


def evaluate_conformations(samples: np.ndarray, log_q: np.ndarray | None, test: np.ndarray,
                           energy: md.PotentialEnergy | None, z: InternalCoordinates | None = None,
                           ramachandran: Sequence[Sequence[Sequence[int]]] | None = None) -> dict[str, float]:
    """Metrics of conformations (N, n_atoms, 3) nm against MD test frames (M, n_atoms, 3), for the
    Z-matrix ``z`` (alanine dipeptide's by default) and the backbone (phi, psi) quartet pairs
    ``ramachandran`` (alanine dipeptide's one pair by default):

    - ``kl_ramachandran``: KL(test || samples) of the first pair's (phi, psi) histogram, 60 x 60 bins on
      the torus, pseudo-count 0.01 per bin (the direction of the BG literature: mass the model misses
      costs most); ``kl_phi``, ``kl_psi``: its 1D marginals; with several residues also
      ``kl_ramachandran_pair<k>`` (k = 1, 2, ...); for a user's molecule (``ramachandran`` given)
      ``kl_ramachandran_mean`` / ``_max`` over the pairs and ``backbone_pairs``; the KLs are NaN when the
      molecule has no backbone (``backbone_pairs`` = 0); ``kl_torsions_mean/max``: the same 1D KL for
      each of the Z-matrix torsions (phi, psi, omegas, methyl rotations, ...);
    - with an ``energy`` (None: skipped, ``energy_skipped_no_force_field`` = 1): ``energy_mean``,
      ``energy_median``: u = U/kT of the samples, the mean with energies above the highest
      test-frame energy censored at it; ``energy_w1``: W1 between the sample and test energy
      distributions with the same censoring; ``energy_above_data_max``: the fraction censored
      (non-finite energies included); ``energy_in_test_range``: the fraction of samples with u within
      [min, max] of the test frames' u; ``energy_test_mean``; ``ess_fraction``: Kish ESS / N of w =
      exp(-u(x) - log q(x)) when ``log_q`` (Cartesian density, nats) is given, and
      ``energy_log_q_spearman``: how well -log q ranks the samples as u does (``energy_agreement``);
    - ``bond_length_deviation_mean/max``: per bond, the mean |sample length - mean test length|
      (nm); their mean and max over the Z-matrix bonds;
    - ``n_samples``, ``nonfinite_fraction``.
    """
    from scipy.stats import wasserstein_distance

    z = z or InternalCoordinates()
    pairs = ALA2_RAMACHANDRAN if ramachandran is None else list(ramachandran)
    finite = np.isfinite(samples).all(axis=(1, 2))
    ic_samples = z.to_internal(torch.from_numpy(samples[finite]).double()).numpy()
    ic_test = z.to_internal(torch.from_numpy(test).double()).numpy()
    t_samples, t_test = ic_samples[:, z.torsions], ic_test[:, z.torsions]
    kls = np.array([histogram_kl(t_test[:, [k]], t_samples[:, [k]], TORSION_HISTOGRAM_BINS)
                    for k in range(t_test.shape[1])])
    bond_mean = ic_test[:, z.bonds].mean(0)
    bond_dev = np.abs(ic_samples[:, z.bonds] - bond_mean).mean(0)
    out = {"kl_ramachandran": math.nan, "kl_phi": math.nan, "kl_psi": math.nan}
    if pairs:
        quartets = [q for pair in pairs for q in pair]
        b_samples, b_test = backbone_torsions(samples[finite], quartets), backbone_torsions(test, quartets)
        pair_kls = [histogram_kl(b_test[:, [2 * k, 2 * k + 1]], b_samples[:, [2 * k, 2 * k + 1]], RAMACHANDRAN_BINS)
                    for k in range(len(pairs))]
        out.update({"kl_ramachandran": pair_kls[0],
                    "kl_phi": histogram_kl(b_test[:, [0]], b_samples[:, [0]], TORSION_HISTOGRAM_BINS),
                    "kl_psi": histogram_kl(b_test[:, [1]], b_samples[:, [1]], TORSION_HISTOGRAM_BINS)})
        if len(pairs) > 1:
            out.update({f"kl_ramachandran_pair{k + 1}": v for k, v in enumerate(pair_kls)})
        if ramachandran is not None:
            out.update({"kl_ramachandran_mean": float(np.mean(pair_kls)), "kl_ramachandran_max": float(np.max(pair_kls))})
    if ramachandran is not None:  # a user's molecule (alanine dipeptide's metrics keep their keys)
        out.setdefault("kl_ramachandran_mean", math.nan)
        out.setdefault("kl_ramachandran_max", math.nan)
        out["backbone_pairs"] = float(len(pairs))
    out.update({
        "kl_torsions_mean": float(kls.mean()) if len(kls) else math.nan,
        "kl_torsions_max": float(kls.max()) if len(kls) else math.nan,
        "bond_length_deviation_mean": float(bond_dev.mean()), "bond_length_deviation_max": float(bond_dev.max()),
        "n_samples": float(len(samples)), "nonfinite_fraction": float(1 - finite.mean()),
    })
    if energy is None:
        out["energy_skipped_no_force_field"] = 1.0
        return out
    u_samples = energy.reduced(samples)
    u_test = energy.reduced(test)
    u_max = float(u_test.max())
    censored = np.minimum(u_samples, u_max)
    out.update({
        "energy_mean": float(censored.mean()), "energy_median": float(np.median(u_samples)),
        "energy_test_mean": float(u_test.mean()),
        "energy_w1": float(wasserstein_distance(censored, u_test)),
        "energy_above_data_max": float(np.mean(~(u_samples <= u_max))),
        "energy_in_test_range": float(np.mean((u_samples >= u_test.min()) & (u_samples <= u_max))),
    })
    if log_q is not None:
        out["ess_fraction"] = kish_ess_fraction(-u_samples - log_q)
        out["energy_log_q_spearman"] = energy_agreement(u_samples, log_q)
    return out


def energy_agreement(u: np.ndarray, log_q: np.ndarray) -> float:
    """Spearman rank correlation of the model's -log q(x) with the true reduced energy u(x) over
    the samples where both are finite: 1 when the model's density orders conformations as the
    Boltzmann density exp(-u) does (log Z drops out, so an unnormalized model's -E(x) counts
    the same); NaN with fewer than 3 such samples."""
    from scipy.stats import spearmanr

    ok = np.isfinite(u) & np.isfinite(log_q)
    if ok.sum() < 3:
        return math.nan
    return float(spearmanr(-log_q[ok], u[ok]).statistic)


def ramachandran_plot(data: np.ndarray, samples: np.ndarray, out: Path, bins: int = RAMACHANDRAN_BINS,
                      pair: Sequence[Sequence[int]] | None = None, label: str = "") -> Path:
    """Side-by-side log-density (phi, psi) histograms of MD frames and samples (N, n_atoms, 3) -> PNG;
    ``pair``: the (phi, psi) atom quartets (alanine dipeptide's by default), ``label`` names the residue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quartets = ALA2_RAMACHANDRAN[0] if pair is None else pair
    edges = np.linspace(-180, 180, bins + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, frames, title in ((axes[0], data, f"MD test frames ({len(data):,})"),
                              (axes[1], samples, f"samples ({len(samples):,})")):
        frames = frames[np.isfinite(frames).all(axis=(1, 2))]
        torsions = np.degrees(backbone_torsions(frames, quartets))
        counts = np.histogram2d(torsions[:, 0], torsions[:, 1], bins=[edges, edges])[0]
        density = counts / max(counts.sum(), 1) / (360 / bins) ** 2
        with np.errstate(divide="ignore"):
            image = ax.pcolormesh(edges, edges, np.log(density).T, cmap="viridis", shading="flat")
        ax.set(title=title, xlabel=f"φ{label} (degrees)", xlim=(-180, 180), ylim=(-180, 180), aspect="equal")
    axes[0].set_ylabel(f"ψ{label} (degrees)")
    fig.colorbar(image, ax=axes, label="log density (1/degree²)", shrink=0.8)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
