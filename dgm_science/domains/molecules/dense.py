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
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger

from dgm_science.domains.molecules.data import read_smiles
from dgm_science.domains.molecules.properties import map_molecules
from dgm_science.errors import DataError
from dgm_science.utils import atomic_path

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


def fit_vocabulary(smiles: Sequence[str], n_jobs: int = 1) -> tuple[list[str], int]:
    """Atom types of the kekulized molecules, most frequent first, and the largest atom count."""
    fitted = [r for r in map_molecules(_tokens_and_size, list(smiles), n_jobs=n_jobs) if r is not None]
    counts = collections.Counter(t for tokens, _ in fitted for t in tokens)
    atom_types = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return atom_types, max((size for _, size in fitted), default=0)


def featurize_dense(
    train_path: Path, valid_path: Path, out_path: Path, *, n_jobs: int, max_molecules: int | None = None,
    max_atoms: int | None = None,
) -> dict[str, Any]:
    """Dense graphs of the train / valid SMILES (train: the first ``max_molecules``) in one
    ``.npz``: ``atom_types`` (fitted on train), ``{split}_atoms: (M, N)`` and ``{split}_bonds:
    (M, N(N-1)/2)`` (upper triangle), uint8. A molecule that does not fit (more atoms than
    ``max_atoms`` or the train maximum, an atom type unseen in train, a radical) is skipped and
    counted; returns the counts."""
    train = read_smiles(train_path)[:max_molecules]
    valid = read_smiles(valid_path)
    atom_types, largest = fit_vocabulary(train, n_jobs=n_jobs)
    max_atoms = largest if max_atoms is None else max_atoms
    if not atom_types or max_atoms < 1:
        raise DataError(f"{train_path}: no molecule could be featurized")
    atom_index = {t: i for i, t in enumerate(atom_types)}
    iu = np.triu_indices(max_atoms, k=1)
    arrays: dict[str, np.ndarray] = {"atom_types": np.array(atom_types), "max_atoms": np.array(max_atoms)}
    stats: dict[str, Any] = {"atom_types": atom_types, "max_atoms": max_atoms}
    for split, smiles, path in (("train", train, train_path), ("valid", valid, valid_path)):
        records = map_molecules(_dense_record, [(s, atom_index, max_atoms) for s in smiles], n_jobs=n_jobs,
                                progress=sys.stderr.isatty(), desc=f"dense graphs {path.name}")
        kept = [r for r in records if not isinstance(r, str)]
        skipped = collections.Counter(r for r in records if isinstance(r, str))
        arrays[f"{split}_atoms"] = np.stack([a for a, _ in kept]) if kept else np.zeros((0, max_atoms), np.uint8)
        arrays[f"{split}_bonds"] = (np.stack([b[iu] for _, b in kept]) if kept
                                    else np.zeros((0, len(iu[0])), np.uint8))
        stats[split] = len(kept)
        stats[f"{split}_skipped"] = dict(skipped.most_common(10))
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return stats


def load_dense(path: Path, split: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(atom_types, atoms: (M, N) long, bonds: (M, N, N) long) of a split of ``featurize_dense``."""
    if not Path(path).is_file():
        raise DataError(f"{path}: dense graph file not found (run the featurize step)")
    with np.load(path) as data:
        atom_types = [str(t) for t in data["atom_types"]]
        n = int(data["max_atoms"])
        atoms = torch.from_numpy(data[f"{split}_atoms"].astype(np.int64))
        upper = torch.from_numpy(data[f"{split}_bonds"].astype(np.int64))
    return atom_types, atoms, upper_to_dense(upper, n)


def upper_to_dense(upper: torch.Tensor, n: int) -> torch.Tensor:
    """(..., N(N-1)/2) upper-triangle values -> symmetric (..., N, N) with a zero diagonal."""
    iu = torch.triu_indices(n, n, offset=1, device=upper.device)
    dense = upper.new_zeros(*upper.shape[:-1], n, n)
    dense[..., iu[0], iu[1]] = upper
    return dense + dense.transpose(-1, -2)


def dense_state(atom_types: Sequence[str], atoms: torch.Tensor, bonds: torch.Tensor) -> dict[str, Any]:
    """What a dense-graph model is built from, measured on its training graphs (``atoms: (M, N)``,
    ``bonds: (M, N, N)``): the atom vocabulary, ``max_atoms``, and as plain lists

    - ``num_atoms_distribution``: P(n atoms), n = 0..N,
    - ``atom_marginals``: frequency of each atom type over real atoms (length ``len(atom_types)``),
    - ``bond_marginals``: frequency of no bond / single / double / triple over pairs of real atoms.
    """
    n_types = len(atom_types)
    mask = atoms > 0
    sizes = mask.sum(1)
    num_atoms = torch.bincount(sizes, minlength=atoms.shape[1] + 1).double()
    atom_counts = torch.bincount(atoms[mask] - 1, minlength=n_types).double()
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~torch.eye(atoms.shape[1], dtype=torch.bool)[None]
    bond_counts = torch.bincount(bonds[pair], minlength=NUM_BOND_CLASSES).double()
    return {
        "atom_types": list(atom_types),
        "max_atoms": int(atoms.shape[1]),
        "num_atoms_distribution": (num_atoms / num_atoms.sum()).tolist(),
        "atom_marginals": (atom_counts / atom_counts.sum()).tolist(),
        "bond_marginals": (bond_counts / bond_counts.sum().clamp(min=1)).tolist(),
    }


class DenseGraphDataset(torch.utils.data.Dataset):
    """Dense molecular graphs held as two tensors; ``collate`` stacks them into a batch dict."""

    def __init__(self, atoms: torch.Tensor, bonds: torch.Tensor) -> None:
        self.atoms = atoms.to(torch.uint8)
        self.bonds = bonds.to(torch.uint8)
        self.n_too_long = 0

    def __len__(self) -> int:
        return self.atoms.shape[0]

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, index: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(index)
        return {"atoms": self.atoms[idx].long(), "bonds": self.bonds[idx].long()}


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
