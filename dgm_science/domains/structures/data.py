"""The structures domain's data: QM9 conformations in 3D with hydrogens (``qm9-3d``: the
``qm9pack`` wheel's DFT geometries) and alanine-dipeptide molecular dynamics (``ala2``: frames
simulated by ``dgm simulate``, ``md.py``), their registered datasets and the torch datasets the
models train on.

QM9 files: ``fetch`` writes ``qm9_3d.npz`` (n_atoms (M,), atom_types (M, 29) indices into H, C, N,
O, F with -1 padding, positions (M, 29, 3) float32 Angstrom, index (M,) the dsgdb9nsd number,
smiles (M,)) and ``SOURCE.json``; ``prepare`` writes ``train.npz`` / ``valid.npz`` / ``test.npz``
(same keys, positions centred) plus ``train_smiles.txt`` (EDM-style SMILES of the training
molecules: the novelty reference) and ``prepare.json``; a user's conformers (``sources.py``) are
prepared into the same files, with an ``elements`` array (the data's element set, which atom types index). MD files: ``prepare`` splits the
trajectory into contiguous ``train.dcd`` / ``valid.dcd`` / ``test.dcd`` blocks with
``topology.pdb``, the prmtop and ``prepare.json`` (``md.prepare_ala2``).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dgm_science import wheels
from dgm_science.domains.structures import md, metrics
from dgm_science.domains.structures.internal import ATOM_NAMES, ROOTS, Z_MATRIX, InternalCoordinates
from dgm_science.domains.structures.metrics import ELEMENTS
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- QM9 conformations


ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

MAX_ATOMS = 29

QM9_PARTS = ("qm9pack/data/qm9_part1.csv", "qm9pack/data/qm9_part2.csv", "qm9pack/data/qm9_part3.csv")

RAW_FILE = "qm9_3d.npz"

SPLITS = ("train", "valid", "test")

Item = tuple[list[str], np.ndarray]
"""One molecule: element symbols and positions (n, 3) in Angstrom."""


def _parse_part(wheel: zipfile.ZipFile, member: str, label: str) -> dict[str, np.ndarray]:
    """One qm9pack CSV -> n_atoms, atom_types (M, 29), positions (M, 29, 3), index, smiles."""
    import pandas as pd

    with wheel.open(member) as fh:
        try:
            frame = pd.read_csv(fh, usecols=["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"])
        except ValueError as err:
            raise DataError(f"{label}:{member}: {err}") from None
    n_atoms = frame["N_atoms"].to_numpy(np.int64)
    elements = "".join(frame["Elements"].tolist())
    for char in "[]',\" ":
        elements = elements.replace(char, "")
    coords = ",".join(frame["XYZ_Ang"].tolist()).replace("[", "").replace("]", "")
    try:
        xyz = np.array(coords.split(","), dtype=np.float64).reshape(-1, 3)
    except ValueError as err:
        raise DataError(f"{label}:{member}: XYZ_Ang column does not parse as numbers ({err})") from None
    if len(elements) != n_atoms.sum() or len(xyz) != n_atoms.sum() or n_atoms.max() > MAX_ATOMS:
        raise DataError(f"{label}:{member}: {len(elements)} element symbols and {len(xyz)} coordinates for "
                        f"N_atoms summing to {n_atoms.sum()} (at most {MAX_ATOMS} per molecule expected)")
    codes = np.frombuffer(elements.encode("ascii"), dtype=np.uint8)
    lookup = np.full(256, -1, dtype=np.int8)
    for i, e in enumerate(ELEMENTS):
        lookup[ord(e)] = i
    types = lookup[codes]
    if (types < 0).any():
        raise DataError(f"{label}:{member}: unexpected element symbols {sorted(set(elements) - set(ELEMENTS))}")
    m = len(n_atoms)
    mol = np.repeat(np.arange(m), n_atoms)
    slot = np.arange(len(mol)) - np.repeat(np.cumsum(n_atoms) - n_atoms, n_atoms)
    atom_types = np.full((m, MAX_ATOMS), -1, dtype=np.int8)
    positions = np.zeros((m, MAX_ATOMS, 3), dtype=np.float32)
    atom_types[mol, slot] = types
    positions[mol, slot] = xyz
    return {"n_atoms": n_atoms.astype(np.int8), "atom_types": atom_types, "positions": positions,
            "index": frame["Index"].to_numpy(np.int32), "smiles": frame["SMILES"].to_numpy().astype(str)}


def fetch_qm9_3d(out_dir: Path, *, version: str, sha256: str) -> dict[str, Any]:
    """Download the ``qm9pack`` wheel (sha256-checked; never imported) and write ``qm9_3d.npz``:
    elements and DFT coordinates (Angstrom, hydrogens included) of its 130,831 molecules."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = wheels.download_wheel("qm9pack", version, sha256, Path(tmp))
        with zipfile.ZipFile(wheel_path) as wheel:
            parts = [_parse_part(wheel, member, wheel_path.name) for member in QM9_PARTS]
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    with atomic_path(out_dir / RAW_FILE) as tmp_out:
        with open(tmp_out, "wb") as fh:
            np.savez(fh, **data)
    source = wheels.write_source(out_dir, "qm9pack", version, sha256, [RAW_FILE],
                                 molecules=int(len(data["n_atoms"])), members=list(QM9_PARTS))
    log.info("qm9-3d: %d molecules, %d atoms", len(data["n_atoms"]), int(data["n_atoms"].astype(np.int64).sum()))
    return source


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """A ``qm9_3d.npz`` / split file as a dict of arrays; DataError naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (run fetch / prepare)")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable npz file ({err})") from None
    missing = {"n_atoms", "atom_types", "positions"} - set(out)
    if missing:
        raise DataError(f"{path}: missing arrays {sorted(missing)}")
    return out


def centre(positions: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    """Positions (M, N, 3) minus each molecule's unweighted mean over its real atoms (EDM's
    "centre of gravity"); padding stays zero."""
    mask = (np.arange(positions.shape[1])[None, :] < np.asarray(n_atoms)[:, None])[..., None]
    mean = (positions * mask).sum(1, keepdims=True, dtype=np.float64) / np.maximum(n_atoms, 1)[:, None, None]
    return ((positions - mean) * mask).astype(np.float32)


def prepare_qm9_3d(
    raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int | None, seed: int, n_jobs: int
) -> dict[str, Any]:
    """EDM's split sizes (100,000 train, 10 % = 13,083 test, the remaining 17,748 valid; a seeded
    permutation: the sizes match EDM's, not its exact indices), each molecule centred at its
    unweighted mean; ``train_size`` keeps a seeded subset of the training split (quick runs) and
    ``val_size`` of the validation split. ``train_smiles.txt`` holds the EDM-style SMILES of the
    whole training split (novelty reference)."""
    raw_path = Path(raw_dir) / RAW_FILE
    data = load_npz(raw_path)
    m = len(data["n_atoms"])
    n_test = m // 10
    n_train = min(100_000, m - 2 * n_test)  # 100,000 for QM9; 80 % of a small file
    order = np.random.default_rng(seed).permutation(m)
    splits = {"train": order[:n_train], "test": order[n_train:n_train + n_test], "valid": order[n_train + n_test:]}
    rng = np.random.default_rng(seed + 1)
    train_ref = splits["train"]
    for name, size in (("train", train_size), ("valid", val_size)):
        if size is not None and size < len(splits[name]):
            splits[name] = np.sort(rng.choice(splits[name], size, replace=False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"source": str(raw_path), "molecules": m, "seed": seed}
    for name, idx in splits.items():
        part = {key: value[idx] for key, value in data.items()}
        part["positions"] = centre(part["positions"], part["n_atoms"])
        with atomic_path(out_dir / f"{name}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **part)
        stats[name] = int(len(idx))
    ref = {key: data[key][train_ref] for key in ("positions", "atom_types", "n_atoms")}
    smiles = metrics.molecules_smiles(ref["positions"], ref["atom_types"], ref["n_atoms"], n_jobs=n_jobs,
                                        progress=sys.stderr.isatty())
    unique = sorted({s for s in smiles if s is not None})
    with atomic_path(out_dir / "train_smiles.txt") as tmp:
        tmp.write_text("".join(f"{s}\n" for s in unique))
    stats["train_smiles_unique"] = len(unique)
    stats["train_reference_valid"] = sum(s is not None for s in smiles) / len(smiles)
    log.info("prepared %s", stats)
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats


@register("dataset", "qm9-3d")
class QM93D:
    """QM9 (Ramakrishnan et al. 2014) in 3D with hydrogens: 130,831 DFT-relaxed molecules of up to
    29 atoms (H, C, N, O, F) from the ``qm9pack`` wheel (its ``XYZ_Ang`` column; the 3,054
    uncharacterized molecules are already excluded, as in EDM); EDM's split sizes."""

    domain = "conformers"
    sources: tuple[str, ...] = ()
    """Committed files the workflow passes to ``dgm prepare`` (none: ``dgm fetch`` downloads the data)."""
    version = wheels.pinned("qm9pack").version
    sha256 = wheels.pinned("qm9pack").sha256

    @classmethod
    def fetch(cls, out_dir: Path) -> dict[str, Any]:
        return fetch_qm9_3d(out_dir, version=cls.version, sha256=cls.sha256)

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int | None = None, seed: int,
                n_jobs: int) -> dict[str, Any]:
        return prepare_qm9_3d(raw_dir, out_dir, train_size=train_size, val_size=val_size, seed=seed, n_jobs=n_jobs)


def _atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol, 0 for anything else."""
    from rdkit import Chem

    global _SYMBOLS
    if _SYMBOLS is None:
        table = Chem.GetPeriodicTable()
        _SYMBOLS = {table.GetElementSymbol(z): z for z in range(1, 119)}
    return _SYMBOLS.get(symbol, 0)

_SYMBOLS: dict[str, int] | None = None


class ConformerDataset(Dataset):
    """Molecules of a split file: items are indices; ``collate`` pads to the batch's largest molecule
    -> {positions (B, N, 3) float32, atom_types (B, N) long (0 at padding), n_atoms (B,) long}, with
    ``bonds``: + bonds (B, N, N) long, the bond orders EDM's tables perceive from the positions
    (``metrics.bond_orders``; ``elements``: the symbols the atom types index), and with ``tokens`` (S, L)
    ids of S graph strings: + tokens (B, L), row i % S for molecule i (the strings need not be the
    molecules': a graph model learns them on their own)."""

    n_too_long = 0

    def __init__(self, path: Path, *, bonds: bool = False, elements: Sequence[str] | None = None,
                 tokens: torch.Tensor | None = None) -> None:
        data = load_npz(path)
        self.positions = torch.from_numpy(data["positions"].astype(np.float32))
        self.atom_types = torch.from_numpy(data["atom_types"].astype(np.int64)).clamp(min=0)
        self.n_atoms = torch.from_numpy(data["n_atoms"].astype(np.int64))
        self.metric_lookup = None
        if bonds:
            self.metric_lookup = metrics.types_of(list(elements if elements is not None else elements_of(data)))
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.n_atoms)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, items: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(items, dtype=torch.long)
        n_atoms = self.n_atoms[idx]
        n = int(n_atoms.max())
        batch = {"positions": self.positions[idx, :n], "atom_types": self.atom_types[idx, :n], "n_atoms": n_atoms}
        if self.metric_lookup is not None:
            orders = metrics.bond_orders(batch["positions"].numpy(), self.metric_lookup[batch["atom_types"].numpy()],
                                         n_atoms.numpy())
            batch["bonds"] = torch.from_numpy(orders.astype(np.int64))
        if self.tokens is not None:
            rows = self.tokens[idx % len(self.tokens)]
            batch["tokens"] = rows[:, : int((rows != 0).sum(1).max())]
        return batch


def elements_of(data: dict[str, np.ndarray], where: str = "split file") -> list[str]:
    """The element symbols a split file's atom types index: its ``elements`` array (a user's conformers,
    ``sources.py``), else QM9's ``ELEMENTS`` (qm9-3d); DataError naming ``where`` for symbols the metrics do not
    know, repeated ones, or atom types beyond them."""
    if "elements" not in data:
        return list(ELEMENTS)
    elements = [str(e) for e in np.atleast_1d(data["elements"])]
    unknown = [e for e in elements if e not in metrics.METRIC_ELEMENTS]
    if unknown or len(set(elements)) != len(elements) or not elements:
        raise DataError(f"{where}: elements {elements[:20]}: not distinct symbols among {', '.join(metrics.METRIC_ELEMENTS)}")
    types = np.asarray(data.get("atom_types", np.zeros(0)))
    if types.size and int(types.max()) >= len(elements):
        raise DataError(f"{where}: atom type {int(types.max())} beyond the {len(elements)} elements {elements}")
    return elements


def metric_types(atom_types: np.ndarray, elements: Sequence[str]) -> np.ndarray:
    """Atom types (B, N) indexing ``elements`` -> indices into ``metrics.METRIC_ELEMENTS`` (-1 stays -1)."""
    lookup = np.append(metrics.types_of(list(elements)), -1)
    types = np.asarray(atom_types, dtype=np.int64)
    return lookup[np.where(types < 0, len(elements), types)]


def items_to_arrays(items: Sequence[Item], n_max: int | None = None, elements: Sequence[str] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items -> padded (positions (B, N, 3) float64, atom_types (B, N) indices into ``elements`` (default
    ``metrics.METRIC_ELEMENTS``: the metrics' indices) with -1 for another element and at padding, n_atoms (B,))."""
    lookup = None if elements is None else {e: i for i, e in enumerate(elements)}
    n_atoms = np.array([len(symbols) for symbols, _ in items], dtype=np.int64)
    n = max(int(n_atoms.max(initial=0)), 1) if n_max is None else n_max
    positions = np.zeros((len(items), n, 3))
    types = np.full((len(items), n), -1, dtype=np.int64)
    for k, (symbols, xyz) in enumerate(items):
        positions[k, : len(symbols)] = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        types[k, : len(symbols)] = (metrics.types_of(symbols) if lookup is None
                                    else [lookup.get(s, -1) for s in symbols])
    return positions, types, n_atoms


# ----------------------------------------------------------------------------- alanine-dipeptide MD


@register("dataset", "ala2")
class Ala2:
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms) in OBC implicit solvent, AMBER ff96 (the
    ``openmmtools`` wheel's files); frames come from ``dgm simulate``, so ``prepare``'s raw
    folder is the simulation's output folder."""

    domain = "peptide-md"
    sources: tuple[str, ...] = ()
    """Committed files the workflow passes to ``dgm prepare`` (none: ``dgm fetch`` downloads the data)."""
    version = md.OPENMMTOOLS_VERSION
    sha256 = md.OPENMMTOOLS_SHA256

    @classmethod
    def fetch(cls, out_dir: Path) -> dict[str, Any]:
        return md.fetch_ala2(Path(out_dir), version=cls.version, sha256=cls.sha256)

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None = None, val_size: int | None = None,
                seed: int = 0, n_jobs: int = 1, test_size: int | None = None) -> dict[str, Any]:
        """``seed`` and ``n_jobs`` are unused: the split is by time, not random."""
        return md.prepare_ala2(raw_dir, out_dir, train_size=train_size, val_size=val_size, test_size=test_size)


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


def _data_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    return Path(data_dir) / f"{split}.dcd", Path(data_dir) / md.TOPOLOGY


def read_internal(data_dir: Path, split: str, z: InternalCoordinates | None = None) -> torch.Tensor:
    """Internal coordinates (T, 3N - 6) float64 of ``data_dir/{split}.dcd`` (alanine dipeptide's Z-matrix
    unless ``z``)."""
    xyz = md.load_frames(*_data_paths(data_dir, split))
    return (z or InternalCoordinates()).to_internal(torch.from_numpy(xyz).double())


def _temperature(data_dir: Path) -> float:
    path = Path(data_dir) / "prepare.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dgm prepare ala2` first")
    return float(json.loads(path.read_text())["temperature_kelvin"])


def molecule_of(data_dir: Path) -> dict[str, Any]:
    """What the peptide-md domain needs of a prepared folder's molecule: ``atom_names``, ``z_matrix``,
    ``roots``, ``ramachandran`` (the backbone (phi, psi) quartet pairs, [] without a backbone),
    ``temperature_kelvin`` and the energy: ``prmtop`` text (alanine dipeptide) or ``openmm_system``
    (a user trajectory's serialized OpenMM System; both None: no force field). A user trajectory's
    folder has ``molecule.json`` (``sources.py``); alanine dipeptide's is described by ``internal.py``."""
    from dgm_science.domains.structures.metrics import ALA2_RAMACHANDRAN
    from dgm_science.domains.structures.md_sources import read_molecule

    data_dir = Path(data_dir)
    molecule = read_molecule(data_dir)
    if molecule is not None:
        return {**molecule, "prmtop": None, "temperature_kelvin": float(molecule["temperature_kelvin"])}
    return {"atom_names": list(ATOM_NAMES), "z_matrix": [list(r) for r in Z_MATRIX], "roots": list(ROOTS),
            "ramachandran": ALA2_RAMACHANDRAN, "temperature_kelvin": _temperature(data_dir),
            "prmtop": (data_dir / md.PRMTOP).read_text(), "openmm_system": None}


def topology_of(state: dict[str, Any] | None) -> Any:
    """The mdtraj Topology samples are written with: a user trajectory's (``topology_pdb`` in the state),
    else alanine dipeptide's (``md_topology``)."""
    if state is None or not state.get("topology_pdb"):
        return md_topology()
    import mdtraj

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topology.pdb"
        path.write_text(state["topology_pdb"])
        return mdtraj.load_topology(str(path))


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
