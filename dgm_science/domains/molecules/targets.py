"""The property targets of the molecule models that learn them (``hybrid-arm``, ``regressor-arm``): the
QM9 properties ``prepare`` writes beside each split's SMILES, read without the molecules holding an
excluded element, and their standardisation (what the checkpoint keeps). The domain trains on them;
property prediction (``dgm_science/applications/prediction``) reads them back to predict in units."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dgm_science.domains.molecules.data import QM9_PROPERTIES, read_property_table, read_smiles
from dgm_science.domains.molecules.properties import map_molecules
from dgm_science.errors import DataError


def _elements(smiles: str) -> frozenset[str] | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return None if mol is None else frozenset(atom.GetSymbol() for atom in mol.GetAtoms())


def without_elements(smiles: Sequence[str], elements: Sequence[str], n_jobs: int = 1) -> np.ndarray:
    """Boolean mask (n,): the SMILES that parse and hold none of ``elements``."""
    if not elements:
        return np.array([bool(s) for s in smiles], dtype=bool)
    excluded = set(elements)
    found = map_molecules(_elements, list(smiles), n_jobs=n_jobs)
    return np.array([e is not None and not (e & excluded) for e in found], dtype=bool)


def property_split(data_dir: Path, split: str, model_cfg: Any) -> tuple[list[str], np.ndarray]:
    """The SMILES of ``{split}.smi`` and their ``model_cfg.targets`` (n, K) in the units of
    ``QM9_PROPERTIES``, without the molecules holding one of ``model_cfg.exclude_elements``."""
    data_dir = Path(data_dir)
    table = data_dir / f"properties_{split}.csv"
    if not table.is_file():
        raise DataError(f"{table}: not found: property models need QM9 data prepared with its properties "
                        "(fetch and prepare QM9 again)")
    smiles = read_smiles(data_dir / f"{split}.smi")
    _, y = read_property_table(table, list(model_cfg.targets))
    if len(y) != len(smiles):
        raise DataError(f"{table}: {len(y)} rows for the {len(smiles)} molecules of {data_dir / f'{split}.smi'}; "
                        "prepare the data again")
    keep = without_elements(smiles, model_cfg.exclude_elements)
    return [s for s, k in zip(smiles, keep) if k], y[keep]


def target_state(names: Sequence[str], y: np.ndarray, where: str) -> dict[str, Any]:
    """What the checkpoint keeps of the targets: names, units and the training split's mean and
    standard deviation of each (the standardisation the model was trained in)."""
    mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
    for name, s in zip(names, std):
        if not (math.isfinite(s) and s > 0):
            raise DataError(f"{where}: target {name!r} has no spread over the training molecules")
    return {"names": list(names), "units": [QM9_PROPERTIES[n][1] for n in names],
            "mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def standardize(y: np.ndarray, targets: dict[str, Any]) -> np.ndarray:
    """Targets in their units -> standardised (zero mean, unit variance on the training split)."""
    return (np.asarray(y, dtype=np.float64) - np.asarray(targets["mean"])) / np.asarray(targets["std"])


def destandardize(mean: np.ndarray, variance: np.ndarray, targets: dict[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A prediction's mean and variance, standardised -> in the targets' units."""
    scale = np.asarray(targets["std"])
    return np.asarray(mean) * scale + np.asarray(targets["mean"]), np.asarray(variance) * scale ** 2
