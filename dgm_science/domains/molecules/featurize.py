"""RDKit molecules <-> PyTorch Geometric graphs over a declared atom and bond vocabulary.

Node features ``x: (N, ATOM_FEATURE_DIM)`` and edge features ``edge_attr: (2E, BOND_FEATURE_DIM)``
are concatenated one-hots (float32); every bond appears as two directed edges ``(2k, 2k + 1)``.
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

Hydrogens stay implicit (counted in ``atom_num_hs``); "H" is in the vocabulary only for the rare
hydrogen that RDKit keeps as a node (e.g. ``[H][H]``, isotopic ``[2H]``, isotopes are not kept).
Stereochemistry is not represented (MOSES SMILES carry none).
"""

from __future__ import annotations

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


def _one_hot(index: int, size: int) -> list[float]:
    values = [0.0] * size
    values[index] = 1.0
    return values


def _atom_features(atom: Chem.Atom, element: int) -> list[float]:
    charge = atom.GetFormalCharge()
    charge_slot = FORMAL_CHARGES.index(charge) if charge in FORMAL_CHARGES else len(FORMAL_CHARGES)
    return (
        _one_hot(element, len(ELEMENTS) + 1)
        + _one_hot(charge_slot, len(FORMAL_CHARGES) + 1)
        + [float(atom.GetIsAromatic())]
        + _one_hot(min(atom.GetTotalNumHs(), MAX_NUM_HS), MAX_NUM_HS + 1)
        + _one_hot(min(atom.GetDegree(), MAX_DEGREE), MAX_DEGREE + 1)
        + _one_hot(
            _HYBRIDIZATION_INDEX.get(atom.GetHybridization(), len(HYBRIDIZATIONS)),
            len(HYBRIDIZATIONS) + 1,
        )
        + [float(atom.IsInRing())]
    )


def mol_to_graph(mol: Chem.Mol, smiles: str | None = None) -> Data:
    """Featurize a sanitized molecule (implicit hydrogens) as a graph with N atoms and E bonds.

    Returns ``Data(x: (N, ATOM_FEATURE_DIM) uint8 0/1, edge_index: (2, 2E), edge_attr: (2E,
    BOND_FEATURE_DIM) uint8 0/1)`` plus the integer labels listed in the module docstring.
    """
    name = smiles if smiles is not None else Chem.MolToSmiles(mol)
    elements, features = [], []
    for atom in mol.GetAtoms():
        element = _ELEMENT_BY_ATOMIC_NUMBER.get(atom.GetAtomicNum(), OTHER_ELEMENT)
        elements.append(element)
        features.append(_atom_features(atom, element))

    sources, targets, bond_types, bond_features = [], [], [], []
    for bond in mol.GetBonds():
        bond_type = _BOND_INDEX.get(bond.GetBondType())
        if bond_type is None:
            raise ValueError(
                f"SMILES {name!r}: bond type {bond.GetBondType()} is not one of "
                f"{[str(b) for b in BOND_TYPES]}"
            )
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        feature = _one_hot(bond_type, len(BOND_TYPES)) + [
            float(bond.GetIsConjugated()),
            float(bond.IsInRing()),
        ]
        sources += [begin, end]
        targets += [end, begin]
        bond_types += [bond_type, bond_type]
        bond_features += [feature, feature]

    atoms = list(mol.GetAtoms())
    return Data(
        x=torch.tensor(features, dtype=torch.uint8).reshape(len(atoms), ATOM_FEATURE_DIM),
        edge_index=torch.tensor([sources, targets], dtype=torch.long).reshape(2, -1),
        edge_attr=torch.tensor(bond_features, dtype=torch.uint8).reshape(-1, BOND_FEATURE_DIM),
        atom_element=torch.tensor(elements, dtype=torch.long),
        atom_charge=torch.tensor([a.GetFormalCharge() for a in atoms], dtype=torch.long),
        atom_num_hs=torch.tensor([a.GetTotalNumHs() for a in atoms], dtype=torch.long),
        atom_aromatic=torch.tensor([int(a.GetIsAromatic()) for a in atoms], dtype=torch.long),
        bond_type=torch.tensor(bond_types, dtype=torch.long),
        smiles=name,
        num_nodes=len(atoms),
    )


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
