"""Molecules as dense, kekulized graphs for one-shot models (graph flow, graph diffusion).

A batch of molecules with at most ``N`` heavy atoms is

- ``atoms: (B, N)`` long: 0 is "no atom", ``k >= 1`` is ``atom_types[k - 1]``; real atoms come
  first, in the order of the canonical SMILES,
- ``bonds: (B, N, N)`` long, symmetric, zero diagonal: index into :data:`BOND_ORDERS`
  (0 no bond, 1 single, 2 double, 3 triple; aromatic rings are kekulized).

``atom_types`` is a vocabulary of element + formal charge tokens (``"C"``, ``"N+"``, ``"O-"``)
fitted on the training split, so QM9's zwitterions survive the round trip. Hydrogens are implicit.

Decoding follows MoFlow (Zang & Wang 2020): a graph is valid *without correction* when RDKit
sanitizes it as it is and it is one connected molecule; the optional valency correction lowers
the order of the highest-order bond of an over-bonded atom until every valence is allowed, then
keeps the largest connected fragment.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger
from tqdm.auto import tqdm

from dgm_science.domains.molecules.data import (
    SMILES_CHUNK, NpzWriter, iter_smiles_chunks, load_npz_mapped, map_chunks, portable, unportable,
)
from dgm_science.errors import DataError

BOND_ORDERS: tuple[Chem.BondType | None, ...] = (
    None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE,
)
NUM_BOND_CLASSES = len(BOND_ORDERS)
_BOND_INDEX = {b: i for i, b in enumerate(BOND_ORDERS) if b is not None}
_TOKEN = re.compile(r"^([A-Z][a-z]?)([+-]\d*)?$")
_PERIODIC = Chem.GetPeriodicTable()


@dataclasses.dataclass(frozen=True)
class DenseGraphs:
    """A batch of dense molecular graphs: ``atoms: (B, N)``, ``bonds: (B, N, N)`` (see module doc)."""

    atoms: torch.Tensor
    bonds: torch.Tensor

    def __len__(self) -> int:
        return self.atoms.shape[0]


def atom_token(atom: Chem.Atom) -> str:
    """``"N"``, ``"N+"``, ``"O-"``, ``"C-2"``: element and formal charge."""
    charge = atom.GetFormalCharge()
    suffix = "" if charge == 0 else ("+" if charge == 1 else "-" if charge == -1 else f"{charge:+d}")
    return atom.GetSymbol() + suffix


def parse_atom_token(token: str) -> tuple[int, int]:
    """``"N+"`` -> (atomic number 7, charge +1); ValueError for anything else."""
    match = _TOKEN.match(token)
    if not match:
        raise ValueError(f"atom type {token!r} is not ELEMENT[+|-|+n|-n]")
    sign = match.group(2) or ""
    charge = 0 if not sign else (int(sign) if len(sign) > 1 else (1 if sign == "+" else -1))
    return _PERIODIC.GetAtomicNumber(match.group(1)), charge


def kekulized(smiles: str) -> Chem.Mol | None:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    Chem.Kekulize(mol, clearAromaticFlags=True)
    return mol


def _tokens_and_size(smiles: str) -> tuple[list[str], int] | None:
    mol = kekulized(smiles)
    if mol is None:
        return None
    return [atom_token(a) for a in mol.GetAtoms()], mol.GetNumAtoms()


def mol_to_dense(mol: Chem.Mol, atom_index: dict[str, int], max_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Kekulized molecule -> (atoms: (max_atoms,) uint8, bonds: (max_atoms, max_atoms) uint8).

    ValueError when it has more than ``max_atoms`` atoms, an atom type outside ``atom_index``, or
    a bond that is not single/double/triple; the message says which.
    """
    n = mol.GetNumAtoms()
    if n > max_atoms:
        raise ValueError(f"{n} heavy atoms > max_atoms={max_atoms}")
    atoms = np.zeros(max_atoms, dtype=np.uint8)
    for i, atom in enumerate(mol.GetAtoms()):
        token = atom_token(atom)
        if token not in atom_index:
            raise ValueError(f"atom type {token!r} is not in the vocabulary {sorted(atom_index)}")
        if atom.GetNumRadicalElectrons():
            raise ValueError(f"atom {i} ({token}) is a radical")
        atoms[i] = atom_index[token] + 1
    bonds = np.zeros((max_atoms, max_atoms), dtype=np.uint8)
    for bond in mol.GetBonds():
        kind = _BOND_INDEX.get(bond.GetBondType())
        if kind is None:
            raise ValueError(f"bond type {bond.GetBondType()} is not single, double or triple")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = kind
    return atoms, bonds


def _dense_record(args: tuple[str, dict[str, int], int]) -> tuple[np.ndarray, np.ndarray] | str:
    smiles, atom_index, max_atoms = args
    mol = kekulized(smiles)
    if mol is None:
        return "RDKit cannot parse it"
    try:
        return mol_to_dense(mol, atom_index, max_atoms)
    except ValueError as err:
        return str(err)


def _vocabulary_chunk(task: tuple[int, list[str]]) -> tuple[collections.Counter, int]:
    counts: collections.Counter = collections.Counter()
    largest = 0
    for smiles in task[1]:
        fitted = _tokens_and_size(smiles)
        if fitted is not None:
            counts.update(fitted[0])
            largest = max(largest, fitted[1])
    return counts, largest


def _fit_vocabulary_chunks(chunks: Iterable[tuple[int, list[str]]], n_jobs: int) -> tuple[list[str], int]:
    counts: collections.Counter = collections.Counter()
    largest = 0
    for chunk_counts, chunk_largest in map_chunks(_vocabulary_chunk, chunks, n_jobs=n_jobs):
        counts.update(chunk_counts)
        largest = max(largest, chunk_largest)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))], largest


def fit_vocabulary(smiles: Sequence[str], n_jobs: int = 1) -> tuple[list[str], int]:
    """Atom types of the kekulized molecules, most frequent first, and the largest atom count."""
    smiles = list(smiles)
    chunks = ((i, smiles[i:i + SMILES_CHUNK]) for i in range(0, len(smiles), SMILES_CHUNK))
    return _fit_vocabulary_chunks(chunks, n_jobs)


def _dense_chunk(task: tuple[tuple[int, list[str]], dict[str, int], int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(atoms: (m, N) uint8, upper-triangle bonds: (m, N(N-1)/2) uint8, skip reasons counted) of
    the molecules of a chunk that fit."""
    (_, smiles), atom_index, max_atoms = task
    iu = np.triu_indices(max_atoms, k=1)
    atoms, upper = [], []
    skipped: collections.Counter = collections.Counter()
    for s in smiles:
        record = _dense_record((s, atom_index, max_atoms))
        if isinstance(record, str):
            skipped[record] += 1
        else:
            atoms.append(record[0])
            upper.append(record[1][iu])
    return (np.stack(atoms) if atoms else np.zeros((0, max_atoms), np.uint8),
            np.stack(upper) if upper else np.zeros((0, len(iu[0])), np.uint8), dict(skipped))


def featurize_dense(
    train_path: Path, valid_path: Path, out_path: Path, *, n_jobs: int, max_molecules: int | None = None,
    max_atoms: int | None = None,
) -> dict[str, Any]:
    """Dense graphs of the train / valid SMILES (train: the first ``max_molecules``) in one
    uncompressed ``.npz`` (its members memory-map, see :func:`load_dense`): ``atom_types``
    (fitted on train), ``max_atoms``, ``{split}_atoms: (M, N)`` and ``{split}_bonds: (M,
    N(N-1)/2)`` (upper triangle), uint8. A molecule that does not fit (more atoms than
    ``max_atoms`` or the train maximum, an atom type unseen in train, a radical) is skipped and
    counted; returns the counts. The files are streamed in chunks over ``n_jobs`` processes (one
    pass to fit the vocabulary, one to write the graphs), so memory does not grow with them."""
    atom_types, largest = _fit_vocabulary_chunks(iter_smiles_chunks(train_path, limit=max_molecules), n_jobs)
    max_atoms = largest if max_atoms is None else max_atoms
    if not atom_types or max_atoms < 1:
        raise DataError(f"{train_path}: no molecule could be featurized")
    atom_index = {t: i for i, t in enumerate(atom_types)}
    stats: dict[str, Any] = {"atom_types": atom_types, "max_atoms": max_atoms}
    with NpzWriter(out_path) as writer:
        writer.put("atom_types", np.array(atom_types))
        writer.put("max_atoms", np.array(max_atoms))
        for split, path, limit in (("train", train_path, max_molecules), ("valid", valid_path, None)):
            writer.declare(f"{split}_atoms", np.uint8, (max_atoms,))
            writer.declare(f"{split}_bonds", np.uint8, (max_atoms * (max_atoms - 1) // 2,))
            tasks = ((chunk, atom_index, max_atoms) for chunk in iter_smiles_chunks(path, limit=limit))
            kept = 0
            skipped: collections.Counter = collections.Counter()
            progress = tqdm(desc=f"dense graphs {Path(path).name}", unit="mol", disable=not sys.stderr.isatty())
            with progress:
                for atoms, upper, chunk_skipped in map_chunks(_dense_chunk, tasks, n_jobs=n_jobs):
                    writer.append(f"{split}_atoms", atoms)
                    writer.append(f"{split}_bonds", upper)
                    kept += len(atoms)
                    skipped.update(chunk_skipped)
                    progress.update(len(atoms) + sum(chunk_skipped.values()))
            stats[split] = kept
            stats[f"{split}_skipped"] = dict(skipped.most_common(10))
    return stats


class DenseSplit(NamedTuple):
    """One split of a dense graph file: ``atoms: (M, N)`` uint8 and ``bonds: (M, N(N-1)/2)`` uint8
    (upper triangle, see :func:`upper_to_dense`), both memory-mapped read-only."""

    atom_types: list[str]
    atoms: np.ndarray
    bonds: np.ndarray


def load_dense(path: Path, split: str) -> DenseSplit:
    """(atom_types, atoms, upper-triangle bonds) of a split of ``featurize_dense``, memory-mapped:
    nothing is read until it is indexed (:class:`DenseGraphDataset` converts one batch at a time)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: dense graph file not found (run the featurize step)")
    arrays = load_npz_mapped(Path(path))
    missing = [k for k in ("atom_types", "max_atoms", f"{split}_atoms", f"{split}_bonds") if k not in arrays]
    if missing:
        raise DataError(f"{path}: not a dense graph file with a {split!r} split (lacks {missing})")
    n = int(arrays["max_atoms"])
    atoms, bonds = arrays[f"{split}_atoms"], arrays[f"{split}_bonds"]
    if atoms.shape[1:] != (n,) or bonds.shape != (len(atoms), n * (n - 1) // 2):
        raise DataError(f"{path}: {split} arrays of shapes {atoms.shape}, {bonds.shape} do not fit max_atoms={n}")
    return DenseSplit([str(t) for t in arrays["atom_types"]], atoms, bonds)


def upper_to_dense(upper: torch.Tensor, n: int) -> torch.Tensor:
    """(..., N(N-1)/2) upper-triangle values -> symmetric (..., N, N) with a zero diagonal."""
    iu = torch.triu_indices(n, n, offset=1, device=upper.device)
    dense = upper.new_zeros(*upper.shape[:-1], n, n)
    dense[..., iu[0], iu[1]] = upper
    return dense + dense.transpose(-1, -2)


def _long(values: Any) -> torch.Tensor:
    """A copy as a long tensor of a tensor or (memory-mapped) array."""
    if isinstance(values, torch.Tensor):
        return values.long()
    return torch.from_numpy(np.array(values, dtype=np.int64))


def _upper(bonds: Any, n: int) -> Any:
    """Upper triangle ``(M, N(N-1)/2)`` of ``(M, N, N)`` bonds; upper triangles pass through."""
    if bonds.ndim == 2:
        return bonds
    iu = np.triu_indices(n, k=1)
    return bonds[:, torch.from_numpy(iu[0]), torch.from_numpy(iu[1])] if isinstance(bonds, torch.Tensor) \
        else bonds[:, iu[0], iu[1]]


STATE_CHUNK = 16384
"""Graphs per step of :func:`dense_state` over memory-mapped splits."""


def dense_state(atom_types: Sequence[str], atoms: Any, bonds: Any) -> dict[str, Any]:
    """What a dense-graph model is built from, measured on its training graphs (``atoms: (M, N)``,
    ``bonds: (M, N, N)`` or its upper triangle ``(M, N(N-1)/2)``; tensors or memory-mapped arrays,
    read in chunks): the atom vocabulary, ``max_atoms``, and as plain lists

    - ``num_atoms_distribution``: P(n atoms), n = 0..N,
    - ``atom_marginals``: frequency of each atom type over real atoms (length ``len(atom_types)``),
    - ``bond_marginals``: frequency of no bond / single / double / triple over pairs of real atoms.
    """
    n_types = len(atom_types)
    n = int(atoms.shape[1])
    iu = torch.triu_indices(n, n, offset=1)
    num_atoms = torch.zeros(n + 1, dtype=torch.float64)
    atom_counts = torch.zeros(n_types, dtype=torch.float64)
    bond_counts = torch.zeros(NUM_BOND_CLASSES, dtype=torch.float64)
    upper_bonds = _upper(bonds, n)
    for start in range(0, max(len(atoms), 1), STATE_CHUNK):
        chunk = _long(atoms[start:start + STATE_CHUNK])
        upper = _long(upper_bonds[start:start + STATE_CHUNK])
        mask = chunk > 0
        num_atoms += torch.bincount(mask.sum(1), minlength=n + 1).double()
        atom_counts += torch.bincount(chunk[mask] - 1, minlength=n_types).double()
        pair = mask[:, iu[0]] & mask[:, iu[1]]  # each unordered pair of real atoms once
        bond_counts += torch.bincount(upper[pair], minlength=NUM_BOND_CLASSES).double()
    return {
        "atom_types": list(atom_types),
        "max_atoms": n,
        "num_atoms_distribution": (num_atoms / num_atoms.sum()).tolist(),
        "atom_marginals": (atom_counts / atom_counts.sum()).tolist(),
        "bond_marginals": (bond_counts / bond_counts.sum().clamp(min=1)).tolist(),
    }


class DenseGraphDataset(torch.utils.data.Dataset):
    """Dense molecular graphs held as uint8 arrays (memory-mapped when they come from
    :func:`load_dense`): ``atoms: (M, N)`` and the upper triangle of the bonds ``(M, N(N-1)/2)``
    (a full ``(M, N, N)`` is reduced to it). ``collate`` converts only the batch: ``atoms: (B, N)``
    and ``bonds: (B, N, N)`` long."""

    def __init__(self, atoms: Any, bonds: Any) -> None:
        n = int(atoms.shape[1])
        self.atoms = atoms.to(torch.uint8).numpy() if isinstance(atoms, torch.Tensor) else atoms
        upper = _upper(bonds, n)
        self.bonds = upper.to(torch.uint8).numpy() if isinstance(upper, torch.Tensor) else upper
        if self.atoms.dtype != np.uint8 or self.bonds.dtype != np.uint8:
            self.atoms, self.bonds = self.atoms.astype(np.uint8), self.bonds.astype(np.uint8)
        if len(self.atoms) != len(self.bonds):
            raise ValueError(f"{len(self.atoms)} atom rows but {len(self.bonds)} bond rows")
        self.max_atoms = n
        self.n_too_long = 0

    def __len__(self) -> int:
        return self.atoms.shape[0]

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, index: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(index, dtype=np.int64)
        return {"atoms": _long(self.atoms[idx]), "bonds": upper_to_dense(_long(self.bonds[idx]), self.max_atoms)}

    def __getstate__(self) -> dict[str, Any]:  # a data loader worker re-opens the maps instead of copying them
        return {**self.__dict__, "atoms": portable(self.atoms), "bonds": portable(self.bonds)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, atoms=unportable(state["atoms"]), bonds=unportable(state["bonds"]))


def smiles_to_dense_batch(
    smiles: Sequence[str | None], atom_types: Sequence[str], max_atoms: int
) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
    """Batch dict of the SMILES that fit the vocabulary and size, and their positions."""
    atom_index = {t: i for i, t in enumerate(atom_types)}
    atoms, bonds, keep = [], [], []
    for i, s in enumerate(smiles):
        record = _dense_record((s, atom_index, max_atoms)) if s else "empty"
        if isinstance(record, str):
            continue
        atoms.append(record[0])
        bonds.append(record[1])
        keep.append(i)
    if not keep:
        return None, []
    return {"atoms": torch.from_numpy(np.stack(atoms)).long(), "bonds": torch.from_numpy(np.stack(bonds)).long()}, keep


def _allowed_valence(atomic_number: int, charge: int) -> int:
    """Largest valence RDKit accepts for the element, shifted by charge as for isoelectronic atoms
    (N+ like C: 4, O- like F: 1)."""
    valences = [v for v in _PERIODIC.GetValenceList(atomic_number) if v >= 0]
    if charge:
        neighbour = atomic_number - charge
        if 0 < neighbour <= 118:
            shifted = [v for v in _PERIODIC.GetValenceList(neighbour) if v >= 0]
            if shifted:
                return max(shifted)
    return max(valences) if valences else 0


def correct_valency(mol: Chem.RWMol) -> None:
    """MoFlow's valency correction, in place: while some atom's bond orders sum above its
    allowed valence, lower that atom's highest-order bond by one (a single bond is removed)."""
    while True:
        over = None
        for atom in mol.GetAtoms():
            total = sum(int(b.GetBondTypeAsDouble()) for b in atom.GetBonds())
            if total > _allowed_valence(atom.GetAtomicNum(), atom.GetFormalCharge()):
                over = atom
                break
        if over is None:
            return
        bond = max(over.GetBonds(), key=lambda b: (b.GetBondTypeAsDouble(), -b.GetIdx()))
        i, j, order = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), int(bond.GetBondTypeAsDouble())
        mol.RemoveBond(i, j)
        if order > 1:
            mol.AddBond(i, j, BOND_ORDERS[order - 1])


def dense_to_mol(
    atoms: Sequence[int], bonds: np.ndarray, atom_types: Sequence[str], *, valency_correction: bool = False
) -> tuple[Chem.Mol | None, bool]:
    """One dense graph -> (molecule or None, valid without correction).

    ``atoms: (N,)``, ``bonds: (N, N)`` (the upper triangle is read). Without correction the
    molecule is returned only if it sanitizes as it is and is connected; with correction the
    valences are repaired (:func:`correct_valency`) and the largest fragment is kept.
    """
    nodes = [i for i, a in enumerate(atoms) if a > 0]
    if not nodes:
        return None, False
    mol = Chem.RWMol()
    position = {}
    for i in nodes:
        number, charge = parse_atom_token(atom_types[int(atoms[i]) - 1])
        atom = Chem.Atom(number)
        atom.SetFormalCharge(charge)
        position[i] = mol.AddAtom(atom)
    for a, i in enumerate(nodes):
        for j in nodes[a + 1:]:
            kind = int(bonds[i, j])
            if kind:
                mol.AddBond(position[i], position[j], BOND_ORDERS[kind])
    raw = _sanitized(mol.GetMol())
    valid_raw = raw is not None and len(Chem.GetMolFrags(raw)) == 1
    if not valency_correction:
        return (raw if valid_raw else None), valid_raw
    correct_valency(mol)
    fixed = _sanitized(mol.GetMol())
    if fixed is None:
        return None, valid_raw
    fragments = Chem.GetMolFrags(fixed, asMols=True, sanitizeFrags=False)
    return max(fragments, key=lambda m: m.GetNumAtoms()), valid_raw


def _sanitized(mol: Chem.Mol) -> Chem.Mol | None:
    mol = Chem.Mol(mol)
    with _quiet_rdkit():
        if Chem.SanitizeMol(mol, catchErrors=True) != Chem.SanitizeFlags.SANITIZE_NONE:
            return None
    return mol


class _quiet_rdkit:
    """Silence RDKit's per-molecule sanitization errors (invalid samples are counted instead)."""

    def __enter__(self) -> None:
        RDLogger.DisableLog("rdApp.*")

    def __exit__(self, *exc: object) -> None:
        RDLogger.EnableLog("rdApp.*")


def decode_dense(
    graphs: DenseGraphs, atom_types: Sequence[str], *, valency_correction: bool = False
) -> tuple[list[str | None], list[bool]]:
    """Canonical SMILES (None: invalid) and validity-without-correction flags of a batch."""
    atoms = graphs.atoms.cpu().numpy()
    bonds = graphs.bonds.cpu().numpy()
    smiles, valid_raw = [], []
    for a, b in zip(atoms, bonds):
        mol, ok = dense_to_mol(a, b, atom_types, valency_correction=valency_correction)
        smiles.append(None if mol is None else Chem.MolToSmiles(mol))
        valid_raw.append(ok)
    return smiles, valid_raw
