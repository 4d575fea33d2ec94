"""Per-molecule RDKit descriptors, MOSES structural filters and the one-pass molecule featuriser.

Definitions follow MOSES (Polykovskiy et al. 2020) as implemented in molsets 0.3.1.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, Descriptors, rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold
from rdkit.Contrib.SA_Score import sascorer

from dgm_science.chem import map_molecules

FILTERS_DIR = Path(__file__).resolve().parent / "filters"
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
MORGAN_RADIUS = 2
MORGAN_BITS = 1024
SCAFFOLD_MIN_RINGS = 2
_PATTERN_FP_BITS = 2048


def parse_smiles(smiles: str | None) -> Chem.Mol | None:
    """Sanitised RDKit molecule, or None for None, empty or unparseable SMILES (MOSES `get_mol`)."""
    if not isinstance(smiles, str) or not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)
    except ValueError:
        return None
    return mol


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit canonical SMILES, or None if `smiles` is not a valid molecule."""
    mol = parse_smiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def mol_properties(mol: Chem.Mol) -> dict[str, float]:
    """QED (Bickerton et al. 2012), SA score (Ertl & Schuffenhauer 2009), Crippen logP and molecular weight.

    logP is the Crippen.MolLogP that QED computes anyway (on the H-stripped molecule, identical for molecules
    parsed from SMILES, whose hydrogens are already implicit).
    """
    qed_inputs = QED.properties(mol)
    return {
        "qed": QED.qed(mol, qedProperties=qed_inputs),
        "sa": sascorer.calculateScore(mol),
        "logp": qed_inputs.ALOGP,
        "mw": Descriptors.MolWt(mol),
    }


@functools.lru_cache(maxsize=None)
def filter_patterns() -> tuple[tuple[Chem.Mol, ...], np.ndarray]:
    """MCF + PAINS SMARTS from `filters/` (molsets 0.3.1 data), compiled once per process.

    Returns the query molecules and their RDKit pattern fingerprints, packed uint8 (n_patterns, 256), used
    only to skip queries that provably cannot match (the substructure-screening of RDKit's SubstructLibrary).
    """
    smarts: list[tuple[str, str]] = []
    mcf_path = FILTERS_DIR / "mcf.csv"
    with mcf_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            smarts.append((f"{mcf_path}:{row['names']}", row["smarts"].strip()))
    pains_path = FILTERS_DIR / "wehi_pains.csv"
    with pains_path.open(newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            smarts.append((f"{pains_path}:{line_number}", row[0].strip()))
    patterns = []
    screens = []
    for where, pattern in smarts:
        query = Chem.MolFromSmarts(pattern)
        if query is None:
            raise ValueError(f"{where}: RDKit cannot parse SMARTS {pattern!r}")
        patterns.append(query)
        screen_copy = Chem.Mol(query)
        screen_copy.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(screen_copy)
        screens.append(_pattern_bits(screen_copy))
    return tuple(patterns), np.stack(screens)


def _pattern_bits(mol: Chem.Mol) -> np.ndarray:
    fingerprint = Chem.PatternFingerprint(mol, fpSize=_PATTERN_FP_BITS)
    return np.frombuffer(DataStructs.BitVectToBinaryText(fingerprint), dtype=np.uint8)


def matches_structural_alert(mol_with_hydrogens: Chem.Mol) -> bool:
    """True if the molecule (explicit hydrogens) matches an MCF or PAINS SMARTS alert."""
    patterns, screens = filter_patterns()
    mol_bits = _pattern_bits(mol_with_hydrogens)
    candidates = np.flatnonzero(~(screens & ~mol_bits).any(axis=1))
    return any(mol_with_hydrogens.HasSubstructMatch(patterns[i]) for i in candidates)


def passes_filters(mol: Chem.Mol | str | None) -> bool:
    """MOSES `mol_passes_filters`: no ring of >= 8 atoms, no charge, atoms in C N S O F Cl Br H,
    no MCF/PAINS match on the H-added molecule, and a non-isomeric SMILES that parses back."""
    if isinstance(mol, str):
        mol = parse_smiles(mol)
    if mol is None:
        return False
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return False
    if any(atom.GetSymbol() not in ALLOWED_ATOMS for atom in mol.GetAtoms()):
        return False
    if matches_structural_alert(Chem.AddHs(mol)):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


@functools.lru_cache(maxsize=None)
def _morgan_generator() -> Any:
    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)


def morgan_fingerprint(mol: Chem.Mol) -> np.ndarray:
    """Morgan bit vector, radius 2, 1024 bits, as uint8 (1024,); same bits as MOSES'
    `GetMorganFingerprintAsBitVect(mol, 2, nBits=1024)`."""
    return _morgan_generator().GetFingerprintAsNumPy(mol).astype(np.uint8, copy=False)


def brics_fragments(mol: Chem.Mol) -> list[str]:
    """SMILES of the BRICS fragments of `mol` (MOSES `fragmenter`), with dummy attachment atoms."""
    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def murcko_scaffold(mol: Chem.Mol, min_rings: int = SCAFFOLD_MIN_RINGS) -> str | None:
    """Bemis-Murcko scaffold SMILES, or None if it has fewer than `min_rings` rings (MOSES `compute_scaffold`)."""
    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    scaffold_smiles = Chem.MolToSmiles(scaffold)
    if not scaffold_smiles or scaffold.GetRingInfo().NumRings() < min_rings:
        return None
    return scaffold_smiles


class MoleculeFeatures(NamedTuple):
    """Everything the MOSES metrics need from one valid molecule; `fingerprint` is np.packbits of the 1024 bits."""

    canonical: str
    fingerprint: bytes
    fragments: list[str]
    scaffold: str | None
    logp: float
    sa: float
    qed: float
    mw: float
    passes_filters: bool | None


def describe_molecule(
    smiles: str | None, *, from_canonical: bool = True, with_filters: bool = True
) -> MoleculeFeatures | None:
    """One RDKit pass over a SMILES: canonical form, fingerprint, fragments, scaffold, properties, filters.

    With `from_canonical` the features are computed on the molecule re-parsed from its canonical SMILES, as
    MOSES does for generated sets; otherwise on the molecule as given, as MOSES does for reference sets.
    Returns None when the SMILES is invalid.
    """
    mol = parse_smiles(smiles)
    if mol is None:
        return None
    canonical = Chem.MolToSmiles(mol)
    if from_canonical:
        reparsed = parse_smiles(canonical)
        mol = mol if reparsed is None else reparsed
    props = mol_properties(mol)
    return MoleculeFeatures(
        canonical=canonical,
        fingerprint=np.packbits(morgan_fingerprint(mol)).tobytes(),
        fragments=brics_fragments(mol),
        scaffold=murcko_scaffold(mol),
        logp=props["logp"],
        sa=props["sa"],
        qed=props["qed"],
        mw=props["mw"],
        passes_filters=passes_filters(mol) if with_filters else None,
    )


def _properties_row(smiles: str | None) -> dict[str, Any] | None:
    mol = parse_smiles(smiles)
    if mol is None:
        return None
    return {"smiles": Chem.MolToSmiles(mol), **mol_properties(mol), "passes_filters": passes_filters(mol)}


def properties_table(
    smiles: Sequence[str | None], n_jobs: int = 1, *, progress: bool = False
) -> list[dict[str, Any] | None]:
    """Per input SMILES: None if invalid, else {"smiles" (canonical), "qed", "sa", "logp", "mw", "passes_filters"}."""
    return map_molecules(_properties_row, list(smiles), n_jobs=n_jobs, progress=progress, desc="properties")
