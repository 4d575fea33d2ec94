"""The property targets of the molecule models that learn them (``hybrid-arm``, ``regressor-arm``): the
property columns ``prepare`` writes beside each split's SMILES (QM9's DFT properties, or the columns of a
user's file: ``source.properties``), read without the molecules holding an excluded element, each
target's task (regression, or classification of a 0/1 column) and standardisation (what the checkpoint
keeps). The domain trains on them; property prediction (``dgm_science/applications/prediction``) reads
them back to predict in units."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dgm_science.domains.molecules.data import QM9_PROPERTIES, read_property_table, read_smiles
from dgm_science.domains.molecules.properties import map_molecules
from dgm_science.errors import DataError

TASKS = ("auto", "regression", "classification")
"""A target's task as configured (``PropertyARMConfig.tasks``): ``auto`` is classification where every
value of the training split is 0 or 1 (both present), else regression."""


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
        raise DataError(f"{table}: not found: property models need data prepared with its properties "
                        "(fetch and prepare QM9 again; your own file: name its columns in source.properties)")
    smiles = read_smiles(data_dir / f"{split}.smi")
    check_target_columns(table, model_cfg.targets)
    _, y = read_property_table(table, list(model_cfg.targets))
    if len(y) != len(smiles):
        raise DataError(f"{table}: {len(y)} rows for the {len(smiles)} molecules of {data_dir / f'{split}.smi'}; "
                        "prepare the data again")
    keep = without_elements(smiles, model_cfg.exclude_elements)
    return [s for s, k in zip(smiles, keep) if k], y[keep]


def user_data(data_dir: Path) -> bool:
    """Whether the prepared folder is a user's file (``dgm prepare --source``: its prepare.json names
    the file kind), whose property columns have no QM9 units."""
    import json

    stats = Path(data_dir) / "prepare.json"
    if not stats.is_file():
        return False
    return "kind" in json.loads(stats.read_text())


def training_targets(data_dir: Path, model_cfg: Any) -> dict[str, Any]:
    """``target_state`` of the training split of ``data_dir`` for ``model_cfg`` (targets, tasks, units):
    QM9's units on QM9 data, ``model_cfg.units`` (or none) on a user's."""
    _, y = property_split(data_dir, "train", model_cfg)
    units = list(getattr(model_cfg, "units", []) or [])
    if not units and not user_data(data_dir):
        units = None
    return target_state(model_cfg.targets, y, f"{data_dir}/properties_train.csv",
                        tasks=getattr(model_cfg, "tasks", ()), units=units)


def check_target_columns(table: Path, names: Sequence[str]) -> None:
    """One clear error where a target is not a column of the prepared property table."""
    with open(table, encoding="utf-8") as fh:
        header = [h.strip() for h in fh.readline().strip().split(",") if h.strip()]
    missing = [n for n in names if n.lower() not in {h.lower() for h in header}]
    if missing:
        raise DataError(f"{table}: target {', '.join(map(repr, missing))} is not a property column of the prepared "
                        f"data (its columns: {', '.join(header) or 'none'}); name one of them in the model's targets "
                        "(for your own file, the columns listed in source.properties)")


def is_binary(values: np.ndarray) -> bool:
    """Every finite value is 0 or 1, and both occur: a 0/1 column (``auto`` -> classification)."""
    seen = set(np.unique(values[np.isfinite(values)]).tolist())
    return seen == {0.0, 1.0}


def resolve_tasks(names: Sequence[str], y: np.ndarray, tasks: Sequence[str], where: str) -> list[str]:
    """Each target's task: as configured (``tasks`` aligned with ``names``; empty: all ``auto``), ``auto``
    resolved on the training values ``y`` (n, K) by ``is_binary``. A classification target's values must
    lie in [0, 1] (a duplicate molecule's averaged labels are a soft label)."""
    tasks = list(tasks) or ["auto"] * len(names)
    if len(tasks) != len(names):
        raise DataError(f"{where}: {len(tasks)} tasks for the {len(names)} targets {list(names)}: give one per target")
    out = []
    for j, (name, task) in enumerate(zip(names, tasks)):
        if task not in TASKS:
            raise DataError(f"{where}: target {name!r}: task {task!r} is not one of {', '.join(TASKS)}")
        values = y[:, j][np.isfinite(y[:, j])]
        if task == "auto":
            task = "classification" if is_binary(y[:, j]) else "regression"
        if task == "classification" and (values.size and (values.min() < 0 or values.max() > 1)):
            raise DataError(f"{where}: target {name!r} is declared classification but has values outside [0, 1] "
                            f"({values.min():g} .. {values.max():g}): a classification target is a 0/1 column")
        out.append(task)
    return out


def target_state(names: Sequence[str], y: np.ndarray, where: str, *, tasks: Sequence[str] = (),
                 units: Sequence[str] | None = None) -> dict[str, Any]:
    """What the checkpoint keeps of the targets: names, units, tasks (regression / classification), the
    number of training molecules with a value of each (``observed``; a molecule without one, NaN, is
    skipped for that target: ``missing``) and the training split's mean and standard deviation of each
    regression target (the standardisation the model was trained in; 0 and 1 for a classification
    target, whose head predicts the logit of P(y = 1)). ``units``: one per target; None: QM9's units for
    QM9's property names (``QM9_PROPERTIES``), "" otherwise."""
    names = list(names)
    resolved = resolve_tasks(names, y, tasks, where)
    observed = np.isfinite(y).sum(axis=0)
    if units is None or not len(units):
        units = [QM9_PROPERTIES[n][1] if units is None and n in QM9_PROPERTIES else "" for n in names]
    if len(units) != len(names):
        raise DataError(f"{where}: {len(units)} units for the {len(names)} targets {names}: give one per target")
    mean, std = [], []
    for j, (name, task) in enumerate(zip(names, resolved)):
        if not observed[j]:
            raise DataError(f"{where}: target {name!r} has no value in the training split (every row is empty)")
        if task == "classification":
            mean.append(0.0)
            std.append(1.0)
            continue
        m, s = float(np.nanmean(y[:, j])), float(np.nanstd(y[:, j]))
        if not (math.isfinite(s) and s > 0):
            raise DataError(f"{where}: target {name!r} has no spread over the training molecules")
        mean.append(m)
        std.append(s)
    return {"names": names, "units": list(units), "tasks": resolved, "mean": mean, "std": std,
            "observed": [int(n) for n in observed], "missing": [int(len(y) - n) for n in observed]}


def classification_mask(targets: dict[str, Any]) -> list[bool]:
    """Per target: whether it is a 0/1 classification target (checkpoints without ``tasks``: none is)."""
    return [t == "classification" for t in targets.get("tasks", ["regression"] * len(targets["names"]))]


def standardize(y: np.ndarray, targets: dict[str, Any]) -> np.ndarray:
    """Targets in their units -> standardised (zero mean, unit variance on the training split)."""
    return (np.asarray(y, dtype=np.float64) - np.asarray(targets["mean"])) / np.asarray(targets["std"])


def destandardize(mean: np.ndarray, variance: np.ndarray, targets: dict[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A prediction's mean and variance, standardised -> in the targets' units."""
    scale = np.asarray(targets["std"])
    return np.asarray(mean) * scale + np.asarray(targets["mean"]), np.asarray(variance) * scale ** 2
