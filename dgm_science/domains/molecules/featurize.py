"""RDKit molecules <-> PyTorch Geometric graphs over a declared atom and bond vocabulary.

Node features ``x: (N, ATOM_FEATURE_DIM)`` and edge features ``edge_attr: (2E, BOND_FEATURE_DIM)``
are concatenated one-hots (uint8 0/1); every bond appears as two directed edges ``(2k, 2k + 1)``.
Atom layout (36): element 14 | formal charge 4 | aromatic 1 | total Hs 4 | degree 6 |
hybridization 6 | in ring 1. Bond layout (6): type 4 | conjugated 1 | in ring 1.
Beside the features, each graph carries the integer labels that :func:`graph_to_mol` rebuilds the
molecule from:

- ``atom_element: (N,)`` index into :data:`ELEMENTS` (``OTHER_ELEMENT`` for anything else),
- ``atom_charge: (N,)`` formal charge (the value, not an index),
- ``atom_num_hs: (N,)`` total hydrogen count,
- ``atom_aromatic: (N,)`` 0/1,
- ``bond_type: (2E,)`` index into :data:`BOND_TYPES`, aligned with ``edge_index``,
- ``smiles``: the input SMILES (a string; a list after batching).

A graph is stored compactly as :class:`GraphArrays` (small integers per atom and per bond, from
which the features are rebuilt exactly), the form ``dgm featurize`` writes to disk.

Hydrogens stay implicit (counted in ``atom_num_hs``); "H" is in the vocabulary only for the rare
hydrogen that RDKit keeps as a node (e.g. ``[H][H]``, isotopic ``[2H]``, isotopes are not kept).
Stereochemistry is not represented (MOSES SMILES carry none).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.data import Data

ELEMENTS: tuple[str, ...] = ("C", "N", "O", "F", "S", "Cl", "Br", "I", "P", "B", "Si", "Se", "H")
"""Element symbols of MOSES/ZINC drug-like molecules; one-hot index ``len(ELEMENTS)`` is "other"."""
OTHER_ELEMENT: int = len(ELEMENTS)

FORMAL_CHARGES: tuple[int, ...] = (-1, 0, 1)
"""Formal charges with their own one-hot slot; any other charge shares the last ("other") slot."""

MAX_NUM_HS: int = 3
"""Total hydrogen counts 0..MAX_NUM_HS; larger counts share the last slot."""

MAX_DEGREE: int = 5
"""Heavy-atom degrees 0..MAX_DEGREE; larger degrees share the last slot."""

HYBRIDIZATIONS: tuple[Chem.HybridizationType, ...] = (
    Chem.HybridizationType.SP,
    Chem.HybridizationType.SP2,
    Chem.HybridizationType.SP3,
    Chem.HybridizationType.SP3D,
    Chem.HybridizationType.SP3D2,
)
"""Hybridization states with their own slot; anything else (S, UNSPECIFIED, ...) is "other"."""

BOND_TYPES: tuple[Chem.BondType, ...] = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
"""Bond types; no "other" slot, so any other bond type is a ValueError naming the SMILES."""

_ELEMENT_INDEX = {symbol: i for i, symbol in enumerate(ELEMENTS)}
_ATOMIC_NUMBERS = tuple(Chem.GetPeriodicTable().GetAtomicNumber(s) for s in ELEMENTS)
_ELEMENT_BY_ATOMIC_NUMBER = {z: i for i, z in enumerate(_ATOMIC_NUMBERS)}
_BOND_INDEX = {bond_type: i for i, bond_type in enumerate(BOND_TYPES)}
_HYBRIDIZATION_INDEX = {h: i for i, h in enumerate(HYBRIDIZATIONS)}

ATOM_FEATURE_DIM: int = (
    (len(ELEMENTS) + 1)  # element + other
    + (len(FORMAL_CHARGES) + 1)  # charge + other
    + 1  # aromatic
    + (MAX_NUM_HS + 1)  # total Hs 0..3+
    + (MAX_DEGREE + 1)  # degree 0..5+
    + (len(HYBRIDIZATIONS) + 1)  # hybridization + other
    + 1  # in ring
)
BOND_FEATURE_DIM: int = len(BOND_TYPES) + 1 + 1  # type, conjugated, in ring


ATOM_FEATURE_GROUPS: tuple[tuple[str, int], ...] = (
    ("element", len(ELEMENTS) + 1),
    ("charge", len(FORMAL_CHARGES) + 1),
    ("aromatic", 1),
    ("num_hs", MAX_NUM_HS + 1),
    ("degree", MAX_DEGREE + 1),
    ("hybridization", len(HYBRIDIZATIONS) + 1),
    ("in_ring", 1),
)
"""The one-hot groups of ``x`` in order, with their widths (they sum to ATOM_FEATURE_DIM)."""
_GROUP_OFFSET = dict(zip((g for g, _ in ATOM_FEATURE_GROUPS),
                         np.cumsum([0] + [w for _, w in ATOM_FEATURE_GROUPS[:-1]]).tolist()))


class GraphArrays(NamedTuple):
    """A molecular graph as small integers, one row per atom and per bond (each bond once), from
    which :func:`graph_from_arrays` rebuilds the PyG graph of :func:`mol_to_graph` exactly.

    Atoms ``(N,)``: ``atom_element`` uint8 index into ELEMENTS (OTHER_ELEMENT: other),
    ``atom_charge`` int8 formal charge, ``atom_num_hs`` uint8 total hydrogens, ``atom_aromatic``
    uint8 0/1, ``atom_degree`` uint8 heavy-atom degree, ``atom_hybridization`` uint8 index into
    HYBRIDIZATIONS (its length: other), ``atom_in_ring`` uint8 0/1. Bonds ``(E,)``: ``bond_atoms:
    (E, 2)`` uint16 begin and end atom, ``bond_type`` uint8 index into BOND_TYPES,
    ``bond_conjugated`` and ``bond_in_ring`` uint8 0/1.
    """

    atom_element: np.ndarray
    atom_charge: np.ndarray
    atom_num_hs: np.ndarray
    atom_aromatic: np.ndarray
    atom_degree: np.ndarray
    atom_hybridization: np.ndarray
    atom_in_ring: np.ndarray
    bond_atoms: np.ndarray
    bond_type: np.ndarray
    bond_conjugated: np.ndarray
    bond_in_ring: np.ndarray


ATOM_FIELDS: tuple[str, ...] = GraphArrays._fields[:7]
BOND_FIELDS: tuple[str, ...] = GraphArrays._fields[7:]
GRAPH_ARRAY_DTYPES: dict[str, np.dtype] = {
    "atom_element": np.dtype(np.uint8), "atom_charge": np.dtype(np.int8), "atom_num_hs": np.dtype(np.uint8),
    "atom_aromatic": np.dtype(np.uint8), "atom_degree": np.dtype(np.uint8),
    "atom_hybridization": np.dtype(np.uint8), "atom_in_ring": np.dtype(np.uint8),
    "bond_atoms": np.dtype(np.uint16), "bond_type": np.dtype(np.uint8), "bond_conjugated": np.dtype(np.uint8),
    "bond_in_ring": np.dtype(np.uint8),
}
MAX_GRAPH_ATOMS: int = int(np.iinfo(np.uint16).max) + 1
"""Atoms per molecule that ``bond_atoms`` (uint16) can index."""


def mol_rows(mol: Chem.Mol, name: str) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Per atom ``(element, charge, num_hs, aromatic, degree, hybridization, in_ring)`` and per bond
    ``(begin, end, type, conjugated, in_ring)``: the fields of :class:`GraphArrays`, as Python
    tuples (a chunk of molecules becomes arrays in one go). ValueError naming ``name`` for a bond
    type outside BOND_TYPES, a charge outside int8 or more than MAX_GRAPH_ATOMS atoms."""
    if mol.GetNumAtoms() > MAX_GRAPH_ATOMS:
        raise ValueError(f"SMILES {name!r}: {mol.GetNumAtoms()} atoms, more than {MAX_GRAPH_ATOMS}")
    atoms = []
    for atom in mol.GetAtoms():
        charge = atom.GetFormalCharge()
        if not -128 <= charge <= 127:
            raise ValueError(f"SMILES {name!r}: formal charge {charge} outside -128..127")
        atoms.append((
            _ELEMENT_BY_ATOMIC_NUMBER.get(atom.GetAtomicNum(), OTHER_ELEMENT),
            charge,
            min(atom.GetTotalNumHs(), 255),
            int(atom.GetIsAromatic()),
            min(atom.GetDegree(), 255),
            _HYBRIDIZATION_INDEX.get(atom.GetHybridization(), len(HYBRIDIZATIONS)),
            int(atom.IsInRing()),
        ))
    bonds = []
    for bond in mol.GetBonds():
        bond_type = _BOND_INDEX.get(bond.GetBondType())
        if bond_type is None:
            raise ValueError(
                f"SMILES {name!r}: bond type {bond.GetBondType()} is not one of "
                f"{[str(b) for b in BOND_TYPES]}"
            )
        bonds.append((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), bond_type, int(bond.GetIsConjugated()),
                      int(bond.IsInRing())))
    return atoms, bonds


def rows_to_arrays(atoms: list[tuple[int, ...]], bonds: list[tuple[int, ...]]) -> GraphArrays:
    """Rows of :func:`mol_rows` (of one molecule, or of several concatenated) -> GraphArrays."""
    atom_table = np.array(atoms, dtype=np.int64).reshape(len(atoms), len(ATOM_FIELDS))
    bond_table = np.array(bonds, dtype=np.int64).reshape(len(bonds), 5)
    columns = {name: atom_table[:, k] for k, name in enumerate(ATOM_FIELDS)}
    columns.update(bond_atoms=bond_table[:, :2], bond_type=bond_table[:, 2], bond_conjugated=bond_table[:, 3],
                   bond_in_ring=bond_table[:, 4])
    return GraphArrays(**{name: np.ascontiguousarray(value, dtype=GRAPH_ARRAY_DTYPES[name])
                          for name, value in columns.items()})


def mol_to_arrays(mol: Chem.Mol, smiles: str | None = None) -> GraphArrays:
    """The compact form of :func:`mol_to_graph`'s graph (see :class:`GraphArrays`)."""
    return rows_to_arrays(*mol_rows(mol, smiles if smiles is not None else Chem.MolToSmiles(mol)))


def graph_from_arrays(arrays: GraphArrays, smiles: str) -> Data:
    """The PyG graph of one molecule's :class:`GraphArrays` (see :func:`mol_to_graph`)."""
    n = len(arrays.atom_element)
    rows = np.arange(n)
    charge = np.asarray(arrays.atom_charge, dtype=np.int64)
    charge_slot = np.full(n, len(FORMAL_CHARGES))
    for slot, value in enumerate(FORMAL_CHARGES):
        charge_slot[charge == value] = slot
    num_hs = np.asarray(arrays.atom_num_hs, dtype=np.int64)
    x = np.zeros((n, ATOM_FEATURE_DIM), dtype=np.uint8)
    x[rows, _GROUP_OFFSET["element"] + np.asarray(arrays.atom_element, dtype=np.int64)] = 1
    x[rows, _GROUP_OFFSET["charge"] + charge_slot] = 1
    x[:, _GROUP_OFFSET["aromatic"]] = arrays.atom_aromatic
    x[rows, _GROUP_OFFSET["num_hs"] + np.minimum(num_hs, MAX_NUM_HS)] = 1
    x[rows, _GROUP_OFFSET["degree"] + np.minimum(np.asarray(arrays.atom_degree, dtype=np.int64), MAX_DEGREE)] = 1
    x[rows, _GROUP_OFFSET["hybridization"] + np.asarray(arrays.atom_hybridization, dtype=np.int64)] = 1
    x[:, _GROUP_OFFSET["in_ring"]] = arrays.atom_in_ring

    pairs = np.asarray(arrays.bond_atoms, dtype=np.int64).reshape(-1, 2)
    bond_type = np.asarray(arrays.bond_type, dtype=np.int64)
    bond_features = np.zeros((len(bond_type), BOND_FEATURE_DIM), dtype=np.uint8)
    bond_features[np.arange(len(bond_type)), bond_type] = 1
    bond_features[:, len(BOND_TYPES)] = arrays.bond_conjugated
    bond_features[:, len(BOND_TYPES) + 1] = arrays.bond_in_ring
    edge_index = np.stack([pairs.reshape(-1), pairs[:, ::-1].reshape(-1)])  # bond k: edges 2k and 2k + 1
    return Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
        edge_attr=torch.from_numpy(np.repeat(bond_features, 2, axis=0)),
        atom_element=torch.from_numpy(np.asarray(arrays.atom_element, dtype=np.int64)),
        atom_charge=torch.from_numpy(charge),
        atom_num_hs=torch.from_numpy(num_hs),
        atom_aromatic=torch.from_numpy(np.asarray(arrays.atom_aromatic, dtype=np.int64)),
        bond_type=torch.from_numpy(np.repeat(bond_type, 2)),
        smiles=smiles,
        num_nodes=n,
    )


def mol_to_graph(mol: Chem.Mol, smiles: str | None = None) -> Data:
    """Featurize a sanitized molecule (implicit hydrogens) as a graph with N atoms and E bonds.

    Returns ``Data(x: (N, ATOM_FEATURE_DIM) uint8 0/1, edge_index: (2, 2E), edge_attr: (2E,
    BOND_FEATURE_DIM) uint8 0/1)`` plus the integer labels listed in the module docstring.
    """
    name = smiles if smiles is not None else Chem.MolToSmiles(mol)
    return graph_from_arrays(mol_to_arrays(mol, name), name)


def smiles_to_graph(smiles: str) -> Data:
    """Parse SMILES and featurize it with :func:`mol_to_graph`; ValueError naming it if invalid."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"SMILES {smiles!r} could not be parsed by RDKit")
    return mol_to_graph(mol, smiles=smiles)


def graph_to_mol(data: Data) -> Chem.Mol | None:
    """Rebuild a sanitized molecule from a graph's integer labels; None if it is not valid.

    Uses ``atom_element``, ``edge_index`` and ``bond_type``; a model may emit each bond in one or
    both directions (the first edge listed for an atom pair wins). ``atom_charge``,
    ``atom_aromatic`` and ``atom_num_hs`` are used when present; without ``atom_num_hs`` RDKit
    infers implicit hydrogens from valence. An atom in the "other" element bucket, a self-loop or
    an unknown bond type gives None.
    """
    elements = data.atom_element.tolist()
    num_atoms = len(elements)
    charges = data.atom_charge.tolist() if "atom_charge" in data else [0] * num_atoms
    aromatic = data.atom_aromatic.tolist() if "atom_aromatic" in data else [0] * num_atoms
    num_hs = data.atom_num_hs.tolist() if "atom_num_hs" in data else None
    if any(not 0 <= e < len(ELEMENTS) for e in elements):
        return None

    mol = Chem.RWMol()
    for i, element in enumerate(elements):
        atom = Chem.Atom(_ATOMIC_NUMBERS[element])
        atom.SetFormalCharge(int(charges[i]))
        atom.SetIsAromatic(bool(aromatic[i]))
        if num_hs is not None:
            atom.SetNumExplicitHs(int(num_hs[i]))
            atom.SetNoImplicit(True)
        mol.AddAtom(atom)

    seen: set[tuple[int, int]] = set()
    for (source, target), bond_type in zip(data.edge_index.t().tolist(), data.bond_type.tolist()):
        if source == target or not 0 <= bond_type < len(BOND_TYPES):
            return None
        pair = (min(source, target), max(source, target))
        if pair in seen:
            continue
        seen.add(pair)
        mol.AddBond(pair[0], pair[1], BOND_TYPES[bond_type])
        if BOND_TYPES[bond_type] == Chem.BondType.AROMATIC:
            mol.GetBondBetweenAtoms(*pair).SetIsAromatic(True)

    mol = mol.GetMol()
    if Chem.SanitizeMol(mol, catchErrors=True) != Chem.SanitizeFlags.SANITIZE_NONE:
        return None
    return mol
