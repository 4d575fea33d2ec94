"""Objectives for goal-directed molecular design: desirability-scored components in YAML, and a cached scorer.

An objective is a weighted mean of components. Each component computes a raw value per molecule (a descriptor,
a similarity, a count of SMARTS matches, the prior's OOD score, a benchmark task's score) and maps it to a
desirability d in [0, 1] with a transform; the total is the weighted geometric or arithmetic mean of the
desirabilities, as REINVENT 4's scoring functions combine components (Loeffler et al. 2024, J. Cheminform. 16:20):

    geometric:  total = prod_i d_i ** (w_i / W)      arithmetic:  total = sum_i w_i d_i / W,      W = sum_i w_i

Schema (YAML; an unknown key, type or value is one ObjectiveError naming the file and the key)::

    name: celecoxib_analogue        # optional, default the file's stem
    aggregate: geometric            # geometric (default) | arithmetic
    components:                     # a non-empty list of
      - type: similarity            # one of the component types below
        name: similarity_celecoxib  # optional column name ([A-Za-z][A-Za-z0-9_]*); default the type, made unique
        weight: 2                   # optional, a number >= 0 (default 1); 0: computed and reported, not in the total
        transform: {type: sigmoid, low: 0.3, high: 0.7, k: 0.5}   # see the transforms below
        smiles: CC1=CC=C(...)...    # the type's own keys
        fingerprint: fcfp4

Component types (raw value; the transform is optional for values in [0, 1], required for the others):

    qed              QED (Bickerton et al. 2012), RDKit ``QED.qed``; in [0, 1]
    sa               synthetic accessibility (Ertl & Schuffenhauer 2009), RDKit Contrib sascorer: 1 (easy) to 10
    mw               average molecular weight, ``Descriptors.MolWt`` (Da)
    logp             Crippen logP, ``Descriptors.MolLogP``
    tpsa             topological polar surface area, ``Descriptors.TPSA`` (A^2)
    hbd, hba         Lipinski H-bond donors / acceptors, ``Descriptors.NumHDonors`` / ``NumHAcceptors``
    rotatable_bonds  ``Descriptors.NumRotatableBonds``
    rings            ``rdMolDescriptors.CalcNumRings``;  aromatic_rings: ``CalcNumAromaticRings``
    similarity       the largest Tanimoto similarity to ``smiles`` (one SMILES or a list), in [0, 1], on unfolded
                     count Morgan fingerprints, ``fingerprint``: ecfp4 (default) | fcfp4 | ecfp6 | fcfp6 (the
                     fingerprints and similarity of GuacaMol's similarity tasks)
    smarts           ``smarts`` (one pattern or a list) and ``mode``: required (every pattern must match) |
                     forbidden (none may); raw: how many of the patterns match; d is 1 or 0; no transform
    alerts           structural alerts, ``catalogs`` (list, default [moses]): moses (the MCF + PAINS SMARTS of
                     MOSES' filters, matched on the molecule with explicit hydrogens, as MOSES does), pains, brenk,
                     nih, zinc (RDKit FilterCatalog); raw 1 if any alert matches, d = 1 - raw; no transform
    formula          closeness to the molecular formula ``formula`` (e.g. C7H8N2O2), GuacaMol's
                     IsomerScoringFunction, ``mean``: geometric (default) | arithmetic; in [0, 1]
    task             a benchmark task's own score, ``task``: one of ``benchmarks.TASKS``; in [0, 1]
    prior_ood        the out-of-distribution score of the molecule under the prior, passed in by the optimizer
                     (``Scorer.score(smiles, prior_ood=...)``), typically with a reverse_sigmoid: a guard
                     against reward hacking
    predictor        a property predicted by a model of ``dgm train`` (your assay): ``checkpoint``, one hybrid-arm
                     checkpoint or a list of regressor-arm checkpoints (a deep ensemble), read relative to the
                     objective file's folder; ``target``, the predicted column (required when the model has
                     several); ``ood_threshold`` (default 3). Raw: the predictive mean in the target's units (a 0/1
                     target: the probability of 1). Three more raw columns: ``<name>_sd`` (the predictive standard
                     deviation), ``<name>_ood_score`` (the hybrid model's typicality score of the molecule) and
                     ``<name>_ood`` (1 above ``ood_threshold``, else 0; empty for an ensemble, which has no p(x))

Transforms, with REINVENT 4's definitions and parameter names (reinvent/scoring/transforms: sigmoids.py,
double_sigmoid.py, steps.py, sigmoid_functions.py), x the raw value::

    none             d = x
    sigmoid          low, high, k (> 0): d = 1 / (1 + 10 ** (-10 k (x - (low + high) / 2) / (high - low)));
                     low == high: d = 1 if x > low else 0
    reverse_sigmoid  low, high, k: 1 - sigmoid
    double_sigmoid   low < high, coef_div = 100, coef_si = 150, coef_se = 150: for x < (low + high) / 2
                     d = 1 / (1 + 10 ** (-(coef_si / coef_div) (x - low))), else
                     d = 1 - 1 / (1 + 10 ** (-(coef_se / coef_div) (x - high)))  (d = 0.5 at low and at high;
                     coef_div = 0: hard edges). A "range" desirability.
    step             low <= high: d = 1 if low <= x <= high else 0
    left_step        low: d = 1 if x <= low else 0
    right_step       high: d = 1 if x >= high else 0

d is clipped to [0, 1]; a component that RDKit cannot compute for a valid molecule (raw NaN) scores 0.

Builtin objectives: ``Objective.load("guacamol:<task>")`` (the twenty GuacaMol v2 tasks) and ``"pmo:<task>"``
(PMO's tasks) are the one component ``{type: task, task: <task>}``; see ``benchmarks``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import QED, Descriptors, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams
from rdkit.Contrib.SA_Score import sascorer
from scipy.special import expit

from dgm_science.compat.guacamol import import_guacamol
from dgm_science.applications.design import benchmarks
from dgm_science.applications.design.benchmarks import (
    GUACAMOL_V2_TASKS,
    TASKS,
    guacamol_score,
    pmo_auc_top10,
    top_diversity,
)
from dgm_science.domains.molecules.properties import canonical_smiles, matches_structural_alert, parse_smiles

__all__ = [
    "GUACAMOL_V2_TASKS", "TASKS", "Component", "Objective", "ObjectiveError", "ScoreBatch", "Scorer", "Transform",
    "guacamol_score", "pmo_auc_top10", "top_diversity",
]

AGGREGATES = ("geometric", "arithmetic")
RESERVED_COLUMNS = frozenset({"smiles", "canonical", "total", "score", "call_index", "new", "valid"})
_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_FORMULA = re.compile(r"(?:[A-Z][a-z]?\d*)+")
_LN10 = math.log(10.0)
_REQUIRED = object()


class ObjectiveError(ValueError):
    """A bad objective: the message starts with where, e.g. ``objective.yaml: components[2].smarts: ...``."""


# ---------------------------------------------------------------- transforms


_TRANSFORMS: dict[str, dict[str, Any]] = {
    "none": {},
    "sigmoid": {"low": _REQUIRED, "high": _REQUIRED, "k": _REQUIRED},
    "reverse_sigmoid": {"low": _REQUIRED, "high": _REQUIRED, "k": _REQUIRED},
    "double_sigmoid": {"low": _REQUIRED, "high": _REQUIRED, "coef_div": 100.0, "coef_si": 150.0, "coef_se": 150.0},
    "step": {"low": _REQUIRED, "high": _REQUIRED},
    "left_step": {"low": _REQUIRED},
    "right_step": {"high": _REQUIRED},
}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ObjectiveError(f"{where}: expected a number, got {value!r:.80}")
    number = float(value)
    if not math.isfinite(number):
        raise ObjectiveError(f"{where}: expected a finite number, got {value!r}")
    return number


@dataclass(frozen=True)
class Transform:
    """A desirability transform: raw values (n,) -> desirabilities (n,) in [0, 1] (REINVENT 4 definitions)."""

    type: str = "none"
    params: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_mapping(cls, mapping: Any, where: str) -> "Transform":
        if not isinstance(mapping, dict):
            raise ObjectiveError(f"{where}: expected a mapping with a `type` ({', '.join(_TRANSFORMS)}), "
                                 f"got {mapping!r:.80}")
        kind = mapping.get("type", _REQUIRED)
        if kind is _REQUIRED:
            raise ObjectiveError(f"{where}.type: missing; one of {', '.join(_TRANSFORMS)}")
        if kind not in _TRANSFORMS:
            raise ObjectiveError(f"{where}.type: unknown transform {kind!r:.80}; one of {', '.join(_TRANSFORMS)}")
        spec = _TRANSFORMS[kind]
        for key in mapping:
            if key != "type" and key not in spec:
                allowed = ", ".join(spec) or "no parameters"
                raise ObjectiveError(f"{where}.{key}: unknown key for a {kind} transform (it takes {allowed})")
        params = {}
        for key, default in spec.items():
            if key in mapping:
                params[key] = _number(mapping[key], f"{where}.{key}")
            elif default is _REQUIRED:
                raise ObjectiveError(f"{where}.{key}: missing; a {kind} transform needs {', '.join(spec)}")
            else:
                params[key] = float(default)
        cls._check(kind, params, where)
        return cls(kind, tuple(params.items()))

    @staticmethod
    def _check(kind: str, p: dict[str, float], where: str) -> None:
        if kind in ("sigmoid", "reverse_sigmoid"):
            if p["low"] > p["high"]:
                raise ObjectiveError(f"{where}.low: {p['low']} is above high ({p['high']})")
            if p["k"] <= 0:
                raise ObjectiveError(f"{where}.k: must be > 0, got {p['k']}")
        elif kind == "double_sigmoid":
            if p["low"] >= p["high"]:
                raise ObjectiveError(f"{where}.low: must be below high ({p['high']}), got {p['low']}")
            if p["coef_div"] < 0:
                raise ObjectiveError(f"{where}.coef_div: must be >= 0, got {p['coef_div']}")
            for key in ("coef_si", "coef_se"):
                if p[key] <= 0:
                    raise ObjectiveError(f"{where}.{key}: must be > 0, got {p[key]}")
        elif kind == "step" and p["low"] > p["high"]:
            raise ObjectiveError(f"{where}.low: {p['low']} is above high ({p['high']})")

    def to_mapping(self) -> dict[str, Any]:
        return {"type": self.type, **dict(self.params)}

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Desirabilities (n,) of raw values (n,); NaN in gives 0 out."""
        x = np.asarray(values, dtype=float)
        p = dict(self.params)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.type == "none":
                d = x.copy()
            elif self.type in ("sigmoid", "reverse_sigmoid"):
                centred = x - (p["low"] + p["high"]) / 2
                if p["high"] == p["low"]:
                    d = (centred > 0).astype(float)
                else:
                    d = expit(_LN10 * 10.0 * p["k"] / (p["high"] - p["low"]) * centred)
                if self.type == "reverse_sigmoid":
                    d = 1.0 - d
            elif self.type == "double_sigmoid":
                left = x < (p["low"] + p["high"]) / 2
                if p["coef_div"] == 0:
                    rising = ((x - p["low"]) * p["coef_si"] > 0).astype(float)
                    falling = 1.0 - ((x - p["high"]) * p["coef_se"] > 0).astype(float)
                else:
                    rising = expit(_LN10 * p["coef_si"] / p["coef_div"] * (x - p["low"]))
                    falling = 1.0 - expit(_LN10 * p["coef_se"] / p["coef_div"] * (x - p["high"]))
                d = np.where(left, rising, falling)
            elif self.type == "step":
                d = ((x >= p["low"]) & (x <= p["high"])).astype(float)
            elif self.type == "left_step":
                d = (x <= p["low"]).astype(float)
            else:  # right_step
                d = (x >= p["high"]).astype(float)
        d = np.where(np.isnan(x), 0.0, d)
        return np.clip(np.nan_to_num(d, nan=0.0), 0.0, 1.0)


_IDENTITY = Transform()

# ---------------------------------------------------------------- component evaluators
# An evaluator maps (valid molecules, their canonical SMILES, their prior_ood values or None) to raw values (n,).

Evaluator = Callable[[list, list, "np.ndarray | None"], np.ndarray]
_RDKIT_ERRORS = (ValueError, RuntimeError, ZeroDivisionError, OverflowError)


def _per_molecule(function: Callable[[Chem.Mol], float], mols: list) -> np.ndarray:
    """``function`` of each molecule as float (n,); NaN where RDKit raises for it."""
    out = np.empty(len(mols))
    for i, mol in enumerate(mols):
        try:
            out[i] = function(mol)
        except _RDKIT_ERRORS:
            out[i] = np.nan
    return out


def _descriptor(function: Callable[[Chem.Mol], float]) -> Evaluator:
    return lambda mols, canonical, prior: _per_molecule(function, mols)


_DESCRIPTORS: dict[str, Callable[[Chem.Mol], float]] = {
    "qed": QED.qed,
    "sa": sascorer.calculateScore,
    "mw": Descriptors.MolWt,
    "logp": Descriptors.MolLogP,
    "tpsa": Descriptors.TPSA,
    "hbd": Descriptors.NumHDonors,
    "hba": Descriptors.NumHAcceptors,
    "rotatable_bonds": Descriptors.NumRotatableBonds,
    "rings": rdMolDescriptors.CalcNumRings,
    "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
}

FINGERPRINTS = {"ecfp4": (2, False), "fcfp4": (2, True), "ecfp6": (3, False), "fcfp6": (3, True)}
"""Unfolded count Morgan fingerprints: name -> (radius, feature invariants); equal to GuacaMol's get_fingerprint."""


@functools.lru_cache(maxsize=None)
def _morgan_generator(fingerprint: str) -> Any:
    radius, features = FINGERPRINTS[fingerprint]
    invariants = rdFingerprintGenerator.GetMorganFeatureAtomInvGen() if features else None
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, atomInvariantsGenerator=invariants)


def _strings(value: Any, where: str) -> list[str]:
    """One non-empty string or a non-empty list of them, as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ObjectiveError(f"{where}: expected a string or a non-empty list of strings, got {value!r:.80}")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            at = where if isinstance(value, str) else f"{where}[{i}]"
            raise ObjectiveError(f"{at}: expected a non-empty string, got {item!r:.80}")
    return [item.strip() for item in items]


def _choice(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise ObjectiveError(f"{where}: {value!r:.80} is not one of {', '.join(choices)}")
    return value


def _similarity(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    references = _strings(options["smiles"], f"{where}.smiles")
    fingerprint = _choice(options["fingerprint"], tuple(FINGERPRINTS), f"{where}.fingerprint")
    generator = _morgan_generator(fingerprint)
    reference_fps = []
    for i, smiles in enumerate(references):
        with rdBase.BlockLogs():
            mol = parse_smiles(smiles)
        if mol is None:
            at = f"{where}.smiles" + (f"[{i}]" if isinstance(options["smiles"], list) else "")
            raise ObjectiveError(f"{at}: RDKit cannot parse the reference SMILES {smiles!r:.120}")
        reference_fps.append(generator.GetSparseCountFingerprint(mol))

    def largest(mol: Chem.Mol) -> float:
        return max(DataStructs.BulkTanimotoSimilarity(generator.GetSparseCountFingerprint(mol), reference_fps))

    return {"smiles": references, "fingerprint": fingerprint}, _descriptor(largest)


def _smarts(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    patterns = _strings(options["smarts"], f"{where}.smarts")
    mode = _choice(options["mode"], ("required", "forbidden"), f"{where}.mode")
    queries = []
    for i, smarts in enumerate(patterns):
        with rdBase.BlockLogs():
            query = Chem.MolFromSmarts(smarts)
        if query is None:
            at = f"{where}.smarts" + (f"[{i}]" if isinstance(options["smarts"], list) else "")
            raise ObjectiveError(f"{at}: RDKit cannot parse the SMARTS {smarts!r:.120}")
        queries.append(query)

    def matched(mol: Chem.Mol) -> float:
        return float(sum(mol.HasSubstructMatch(query) for query in queries))

    return {"smarts": patterns, "mode": mode}, _descriptor(matched)


ALERT_CATALOGS = {
    "pains": FilterCatalogParams.FilterCatalogs.PAINS,
    "brenk": FilterCatalogParams.FilterCatalogs.BRENK,
    "nih": FilterCatalogParams.FilterCatalogs.NIH,
    "zinc": FilterCatalogParams.FilterCatalogs.ZINC,
}


def _alerts(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    names = _strings(options["catalogs"], f"{where}.catalogs")
    for i, name in enumerate(names):
        _choice(name, ("moses", *ALERT_CATALOGS), f"{where}.catalogs[{i}]")
    names = list(dict.fromkeys(names))
    catalog = None
    if any(name in ALERT_CATALOGS for name in names):
        params = FilterCatalogParams()
        for name in names:
            if name in ALERT_CATALOGS:
                params.AddCatalog(ALERT_CATALOGS[name])
        catalog = FilterCatalog(params)
    with_moses = "moses" in names

    def alert(mol: Chem.Mol) -> float:
        if catalog is not None and catalog.HasMatch(mol):
            return 1.0
        return float(with_moses and matches_structural_alert(Chem.AddHs(mol)))

    return {"catalogs": names}, _descriptor(alert)


@functools.lru_cache(maxsize=1)
def _element_symbols() -> frozenset[str]:
    table = Chem.GetPeriodicTable()
    return frozenset(table.GetElementSymbol(number) for number in range(1, 119))


def _formula(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    formula = options["formula"]
    if not isinstance(formula, str) or not _FORMULA.fullmatch(formula):
        raise ObjectiveError(f"{where}.formula: {formula!r:.80} is not a molecular formula such as C7H8N2O2")
    elements = re.findall(r"[A-Z][a-z]?", formula)
    for element in elements:
        if element not in _element_symbols():
            raise ObjectiveError(f"{where}.formula: {element!r} in {formula!r} is not an element")
    repeated = sorted({e for e in elements if elements.count(e) > 1})
    if repeated:
        raise ObjectiveError(f"{where}.formula: {', '.join(repeated)} appears more than once in {formula!r}; "
                             f"give each element once with its total count")
    mean = _choice(options["mean"], ("geometric", "arithmetic"), f"{where}.mean")
    try:
        scoring = import_guacamol("common_scoring_functions")
    except ModuleNotFoundError as err:
        raise ObjectiveError(f"{where}.formula: {err}") from None
    isomer = scoring.IsomerScoringFunction(formula, mean_function=mean)

    def closeness(mol: Chem.Mol) -> float:  # IsomerScoringFunction.raw_score on a parsed molecule
        return isomer.mean_function([f.modify_score(f.score_mol(mol)) for f in isomer.scoring_functions])

    return {"formula": formula, "mean": mean}, _descriptor(closeness)


def _task(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    task = options["task"]
    if not isinstance(task, str) or task not in benchmarks.TASKS:
        raise ObjectiveError(f"{where}.task: {benchmarks.unknown_task_message(str(task)[:80])}")
    try:
        objective = benchmarks.task_benchmark(task).objective
    except ModuleNotFoundError as err:
        raise ObjectiveError(f"{where}.task: {err}") from None

    def task_scores(mols: list, canonical: list, prior: np.ndarray | None) -> np.ndarray:
        with rdBase.BlockLogs():
            scores = np.asarray(objective.score_list(list(canonical)), dtype=float)
        return np.where(scores < 0, np.nan, scores)  # GuacaMol's corrupt score (-1): could not be computed

    return {"task": task}, task_scores


def _prior(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    def given(mols: list, canonical: list, prior: np.ndarray | None) -> np.ndarray:
        if prior is None:
            raise ValueError("a prior_ood component needs the prior_ood values")
        return np.asarray(prior, dtype=float)

    return {}, given


PREDICTOR_EXTRAS = ("sd", "ood_score", "ood")
"""The columns a predictor component writes beside its own (``<name>_sd`` ...): the predictive standard
deviation, the typicality OOD score and the OOD flag (1 / 0; empty without a density, e.g. an ensemble)."""


def _predictor(options: dict[str, Any], where: str) -> tuple[dict[str, Any], Evaluator]:
    from dgm_science import api
    from dgm_science.applications.prediction.predict import OOD_THRESHOLD, Predictor
    from dgm_science.checkpoint import CheckpointError

    paths = _strings(options["checkpoint"], f"{where}.checkpoint")
    members = []
    for i, path in enumerate(paths):
        at = f"{where}.checkpoint" + (f"[{i}]" if len(paths) > 1 else "")
        if not Path(path).is_file():
            raise ObjectiveError(f"{at}: {path}: file not found (a checkpoint of `dgm train --model hybrid-arm` "
                                 f"or regressor-arm)")
        try:
            members.append(api.load(path, device="cpu"))
        except (CheckpointError, ValueError) as err:
            raise ObjectiveError(f"{at}: {err}") from None
    try:
        predictor = Predictor(members)
    except ValueError as err:
        raise ObjectiveError(f"{where}.checkpoint: {err}") from None
    names = list(predictor.targets["names"])
    target = options["target"]
    if target is None:
        if len(names) > 1:
            raise ObjectiveError(f"{where}.target: missing; the model predicts {', '.join(names)}: name one")
        target = names[0]
    if target not in names:
        raise ObjectiveError(f"{where}.target: {target!r:.80} is not a target of the model ({', '.join(names)})")
    threshold = OOD_THRESHOLD if options["ood_threshold"] is None else _number(options["ood_threshold"],
                                                                                f"{where}.ood_threshold")
    column = names.index(target)

    def predicted(mols: list, canonical: list, prior: np.ndarray | None) -> np.ndarray:
        result = predictor.predict(list(canonical), canonicalize=False)
        score = result.ood_score
        flag = np.where(np.isnan(score), np.nan, (score > threshold).astype(float))
        return np.column_stack([result.mean[:, column], np.sqrt(result.variance[:, column]), score, flag])

    return {"checkpoint": paths, "target": target, "ood_threshold": threshold}, predicted


@dataclass(frozen=True)
class _Kind:
    values: str  # "unit": raw in [0, 1], transform optional; "any": transform required; "binary": no transform
    options: dict[str, Any]
    build: Callable[[dict[str, Any], str], tuple[dict[str, Any], Evaluator]]
    column: Callable[[dict[str, Any]], str]
    extras: tuple[str, ...] = ()
    """Columns the evaluator returns after the component's own value (``<name>_<extra>``): it returns (n, 1 + k)."""
    paths: tuple[str, ...] = ()
    """Options that name files: read relative to the objective file's folder."""


def _plain(kind: str) -> Callable[[dict[str, Any], str], tuple[dict[str, Any], Evaluator]]:
    return lambda options, where: ({}, _descriptor(_DESCRIPTORS[kind]))


KINDS: dict[str, _Kind] = {
    **{name: _Kind("unit" if name == "qed" else "any", {}, _plain(name), lambda o, n=name: n) for name in _DESCRIPTORS},
    "similarity": _Kind("unit", {"smiles": _REQUIRED, "fingerprint": "ecfp4"}, _similarity, lambda o: "similarity"),
    "smarts": _Kind("binary", {"smarts": _REQUIRED, "mode": _REQUIRED}, _smarts, lambda o: f"smarts_{o['mode']}"),
    "alerts": _Kind("binary", {"catalogs": ["moses"]}, _alerts, lambda o: "alerts"),
    "formula": _Kind("unit", {"formula": _REQUIRED, "mean": "geometric"}, _formula, lambda o: "formula"),
    "task": _Kind("unit", {"task": _REQUIRED}, _task, lambda o: o["task"]),
    "prior_ood": _Kind("any", {}, _prior, lambda o: "prior_ood"),
    "predictor": _Kind("any", {"checkpoint": _REQUIRED, "target": None, "ood_threshold": None}, _predictor,
                       lambda o: "predicted_" + re.sub(r"[^A-Za-z0-9_]", "_", o["target"])[:54],
                       extras=PREDICTOR_EXTRAS, paths=("checkpoint",)),
}
"""Component types: what each computes is in the module docstring."""

_COMMON_KEYS = ("type", "name", "weight", "transform")


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Component:
    """One scored property: its type and options, column name, weight and desirability transform."""

    type: str
    name: str
    weight: float
    transform: Transform
    options: tuple[tuple[str, Any], ...] = ()
    evaluate: Evaluator | None = field(default=None, compare=False, repr=False)
    extras: tuple[str, ...] = ()
    """Raw columns beside the component's own value, ``<name>_<extra>`` (``_Kind.extras``)."""

    @property
    def raw_columns(self) -> list[str]:
        """The raw values this component writes: its own (``name``), then ``<name>_<extra>`` for each extra."""
        return [self.name, *(f"{self.name}_{extra}" for extra in self.extras)]

    def option(self, key: str) -> Any:
        return _thawed(dict(self.options)[key])

    def desirability(self, raw: np.ndarray) -> np.ndarray:
        """Desirabilities (n,) in [0, 1] of raw values (n,)."""
        if self.type == "smarts":
            wanted = len(self.option("smarts")) if self.option("mode") == "required" else 0
            return (np.asarray(raw) == wanted).astype(float)
        if self.type == "alerts":
            return np.where(np.asarray(raw) == 0, 1.0, 0.0)
        return self.transform(raw)

    def to_mapping(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {"type": self.type, "name": self.name, "weight": self.weight}
        if self.transform.type != "none":
            mapping["transform"] = self.transform.to_mapping()
        mapping.update((key, _thawed(value)) for key, value in self.options)
        return mapping


def _component(spec: Any, where: str, base: Path | None = None) -> tuple[Component, bool]:
    """A component from its mapping, and whether its name was given; a file named by an option is read
    relative to ``base`` (the objective file's folder; None: the working directory)."""
    if not isinstance(spec, dict):
        raise ObjectiveError(f"{where}: expected a mapping with a `type`, got {spec!r:.80}")
    kind_name = spec.get("type", _REQUIRED)
    if kind_name is _REQUIRED:
        raise ObjectiveError(f"{where}.type: missing; one of {', '.join(KINDS)}")
    if kind_name not in KINDS:
        hint = ""
        if kind_name in benchmarks.PMO_UNSUPPORTED_TASKS:
            hint = f" ({benchmarks.unknown_task_message(kind_name)})"
        elif kind_name in benchmarks.TASKS:
            hint = f" (a benchmark task: write type: task, task: {kind_name})"
        raise ObjectiveError(f"{where}.type: unknown component {kind_name!r:.80}{hint}; one of {', '.join(KINDS)}")
    kind = KINDS[kind_name]
    for key in spec:
        if key not in _COMMON_KEYS and key not in kind.options:
            own = ", ".join(kind.options) or "none"
            raise ObjectiveError(f"{where}.{key}: unknown key for a {kind_name} component "
                                 f"(its own keys: {own}; every component: {', '.join(_COMMON_KEYS)})")
    options = {}
    for key, default in kind.options.items():
        if key in spec:
            options[key] = spec[key]
        elif default is _REQUIRED:
            raise ObjectiveError(f"{where}.{key}: missing; a {kind_name} component needs {key}")
        else:
            options[key] = default
    for key in kind.paths:
        if base is not None and options[key] is not None:
            options[key] = [str(base / p) if isinstance(p, str) and p.strip() and not Path(p.strip()).is_absolute()
                            else p for p in ([options[key]] if isinstance(options[key], str) else options[key])]
    weight = _number(spec.get("weight", 1.0), f"{where}.weight")
    if weight < 0:
        raise ObjectiveError(f"{where}.weight: must be >= 0, got {spec['weight']}")
    if "transform" in spec:
        transform = Transform.from_mapping(spec["transform"], f"{where}.transform")
    else:
        transform = _IDENTITY
    if kind.values == "binary" and transform.type != "none":
        raise ObjectiveError(f"{where}.transform: {kind_name} components score 1 or 0 and take no transform")
    if kind.values == "any" and transform.type == "none":
        shapes = ", ".join(t for t in _TRANSFORMS if t != "none")
        raise ObjectiveError(f"{where}.transform: missing; {kind_name} values are not in [0, 1], so a "
                             f"{kind_name} component needs a transform ({shapes})")
    options, evaluate = kind.build(options, where)
    named = "name" in spec
    if named:
        name = spec["name"]
        if not isinstance(name, str) or not _COLUMN.fullmatch(name):
            raise ObjectiveError(f"{where}.name: {name!r:.80} is not a column name ([A-Za-z][A-Za-z0-9_]*, "
                                 f"at most 64 characters)")
        if name in RESERVED_COLUMNS:
            raise ObjectiveError(f"{where}.name: {name!r} is reserved ({', '.join(sorted(RESERVED_COLUMNS))})")
    else:
        name = kind.column(options)
    frozen = tuple((key, _frozen(value)) for key, value in options.items())
    return Component(kind_name, name, weight, transform, frozen, evaluate, kind.extras), named


# ---------------------------------------------------------------- objective


@dataclass(frozen=True)
class Objective:
    """A named weighted mean (geometric or arithmetic) of components; see the module docstring for the YAML."""

    name: str
    aggregate: str
    components: tuple[Component, ...]

    @classmethod
    def load(cls, spec: str | Path) -> "Objective":
        """From a YAML (or JSON) file, or a builtin ``guacamol:<task>`` / ``pmo:<task>``; ObjectiveError otherwise."""
        text = str(spec)
        namespace, _, task = text.partition(":")
        if not isinstance(spec, Path) and task and namespace in benchmarks.NAMESPACES:
            if task not in benchmarks.NAMESPACES[namespace]:
                raise ObjectiveError(f"{text}: {benchmarks.unknown_task_message(task, namespace)}")
            return cls.from_mapping(builtin_mapping(task), text)
        from dgm_science.config import ConfigError, load_mapping

        path = Path(text)
        if not text.lstrip().startswith("{") and not _is_file(path):
            hint = ""
            if text in benchmarks.TASKS or text in benchmarks.PMO_UNSUPPORTED_TASKS:
                hint = f" (a builtin objective is named guacamol:{text} or pmo:{text})"
            raise ObjectiveError(f"{text}: objective file not found{hint}")
        try:
            mapping = load_mapping(path)
        except ConfigError as err:
            raise ObjectiveError(str(err)) from None
        return cls.from_mapping(mapping, str(path), base=None if text.lstrip().startswith("{") else path.parent)

    @classmethod
    def from_mapping(cls, mapping: dict, where: str, base: Path | None = None) -> "Objective":
        """Check and build an objective; ``where`` (the file) starts every error message; files its
        components name are read relative to ``base`` (None: the working directory)."""
        if not isinstance(mapping, dict):
            raise ObjectiveError(f"{where}: expected a mapping (name, aggregate, components), got {mapping!r:.80}")
        for key in mapping:
            if key not in ("name", "aggregate", "components"):
                raise ObjectiveError(f"{where}: {key}: unknown key (an objective has name, aggregate, components)")
        name = mapping.get("name", Path(where).stem or "objective")
        if not isinstance(name, str) or not name.strip():
            raise ObjectiveError(f"{where}: name: expected a non-empty string, got {name!r:.80}")
        aggregate = mapping.get("aggregate", "geometric")
        if aggregate not in AGGREGATES:
            raise ObjectiveError(f"{where}: aggregate: {aggregate!r:.80} is not one of {', '.join(AGGREGATES)}")
        specs = mapping.get("components")
        if not isinstance(specs, list) or not specs:
            raise ObjectiveError(f"{where}: components: expected a non-empty list of components, got {specs!r:.80}")
        built = []
        for i, spec in enumerate(specs):
            try:
                built.append(_component(spec, f"components[{i}]", base))
            except ObjectiveError as err:
                raise ObjectiveError(f"{where}: {err}") from None
        explicit: dict[str, int] = {}
        for i, (component, named) in enumerate(built):
            if named:
                if component.name in explicit:
                    raise ObjectiveError(f"{where}: components[{i}].name: {component.name!r} is already the name "
                                         f"of components[{explicit[component.name]}]")
                explicit[component.name] = i
        used = set(explicit)
        components = []
        for component, named in built:
            if not named:
                name_base, number, column = component.name, 1, component.name
                while column in used:
                    number += 1
                    column = f"{name_base}_{number}"
                component = dataclasses.replace(component, name=column)
            for extra in component.raw_columns[1:]:
                if extra in used or extra in RESERVED_COLUMNS:
                    raise ObjectiveError(f"{where}: components[{len(components)}]: its column {extra!r} is already "
                                         f"taken; rename the component or the other column")
            used.update(component.raw_columns)
            components.append(component)
        if sum(c.weight for c in components) <= 0:
            raise ObjectiveError(f"{where}: components: every weight is 0; at least one must be > 0")
        return cls(name.strip(), aggregate, tuple(components))

    def to_mapping(self) -> dict[str, Any]:
        """JSON-safe; ``from_mapping`` of it builds an equal objective."""
        return {"name": self.name, "aggregate": self.aggregate, "components": [c.to_mapping() for c in self.components]}

    @property
    def needs_prior(self) -> bool:
        """Whether a component is the prior's OOD score (``Scorer.score`` then needs ``prior_ood``)."""
        return any(c.type == "prior_ood" for c in self.components)

    @property
    def task(self) -> str | None:
        """The benchmark task this objective is exactly (one ``task`` component, untransformed), else None."""
        only = self.components[0]
        if len(self.components) == 1 and only.type == "task" and only.transform.type == "none":
            return only.option("task")
        return None

    @property
    def columns(self) -> list[str]:
        """The components' column names, in order; unique."""
        return [c.name for c in self.components]

    @property
    def raw_columns(self) -> list[str]:
        """Every raw value's column, component by component (each one's own, then its extras); unique."""
        return [column for c in self.components for column in c.raw_columns]

    @property
    def weights(self) -> np.ndarray:
        return np.array([c.weight for c in self.components], dtype=float)

    def combine(self, desirabilities: np.ndarray) -> np.ndarray:
        """Totals (n,) of desirabilities (n, n_components): the weighted geometric or arithmetic mean."""
        d = np.asarray(desirabilities, dtype=float)
        weights = self.weights
        if self.aggregate == "arithmetic":
            return d @ weights / weights.sum()
        return np.prod(np.power(d, weights), axis=1) ** (1.0 / weights.sum())


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # e.g. a name too long, a NUL byte: load_mapping reports it
        return True


def builtin_mapping(task: str) -> dict[str, Any]:
    """The objective of a benchmark task: its one ``task`` component."""
    return {"name": task, "aggregate": "arithmetic", "components": [{"type": "task", "task": task}]}


# ---------------------------------------------------------------- scoring


@dataclass
class ScoreBatch:
    """Scores of one batch of SMILES (n rows, in input order); see ``Scorer.score``."""

    canonical: list[str | None]
    total: np.ndarray
    components: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    call_index: np.ndarray
    new: np.ndarray


def _evaluate(objective: Objective, smiles: Sequence[str], prior: np.ndarray | None
              ) -> tuple[list[str | None], np.ndarray, np.ndarray, np.ndarray]:
    """Parse each SMILES once and score it: (canonical or None, raw (n, R), desirabilities (n, C), totals (n,));
    R: ``objective.raw_columns``."""
    n, width = len(smiles), len(objective.components)
    canonical: list[str | None] = [None] * n
    mols, rows = [], []
    for i, text in enumerate(smiles):
        mol = parse_smiles(text)
        if mol is not None:
            canonical[i] = Chem.MolToSmiles(mol)
            mols.append(mol)
            rows.append(i)
    raw = np.full((n, len(objective.raw_columns)), np.nan)
    desirability = np.zeros((n, width))
    total = np.zeros(n)
    if rows:
        valid_canonical = [canonical[i] for i in rows]
        valid_prior = None if prior is None else prior[rows]
        start = 0
        for j, component in enumerate(objective.components):
            values = np.asarray(component.evaluate(mols, valid_canonical, valid_prior), dtype=float)
            values = values.reshape(len(rows), len(component.raw_columns))
            raw[rows, start:start + values.shape[1]] = values
            start += values.shape[1]
            desirability[rows, j] = component.desirability(values[:, 0])
        total[rows] = objective.combine(desirability[rows])
    return canonical, raw, desirability, total


class ScoreStore:
    """Every molecule an objective scored, on disk as it is scored: what lets a killed run resume without
    calling the objective again on a molecule it already paid for.

    A CSV, appended after each scored batch and synced to disk: a first line ``# dgm-score-store 1 <JSON>``
    (the run it belongs to: ``key``, e.g. the objective, method, seed and budget), the header (canonical,
    total, each component's desirability ``d_<name>``, each raw column) and one row per molecule in call
    order, floats written so that they read back bit for bit. ``load`` returns the rows; a last line cut by a
    kill is dropped; a store of another run (another key) is a ValueError naming the file, never reused."""

    MAGIC = "# dgm-score-store 1 "

    def __init__(self, path: Path, objective: Objective, key: dict[str, Any]) -> None:
        import json

        self.path, self.objective = Path(path), objective
        self.key = json.dumps({"objective": objective.to_mapping(), **key}, sort_keys=True, default=str)
        self.header = ["canonical", "total", *(f"d_{c}" for c in objective.columns), *objective.raw_columns]

    def load(self) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
        """canonical SMILES -> (total, desirabilities (C,), raw values (R,)), in call order; {} without a file."""
        import csv

        if not self.path.is_file():
            return {}
        width, n_components = len(self.header), len(self.objective.columns)
        rows: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}
        with open(self.path, encoding="utf-8", newline="") as fh:
            first = fh.readline()
            if not first.startswith(self.MAGIC):
                raise ValueError(f"{self.path}: not a dgm score store (first line {first[:60]!r}); remove it or "
                                 f"choose another --out")
            if first[len(self.MAGIC):].rstrip("\n") != self.key:
                raise ValueError(f"{self.path}: the scores of an interrupted run with other settings (objective, "
                                 f"method, seed, budget or prior); remove it to start afresh, or choose another --out")
            text = fh.read()
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]  # a line cut by a kill
        reader = csv.reader(complete.splitlines())
        if next(reader, None) != self.header:
            raise ValueError(f"{self.path}: its columns are not this objective's; remove it or choose another --out")
        for line, row in enumerate(reader, start=3):
            if len(row) != width:
                raise ValueError(f"{self.path}: line {line}: {len(row)} fields, expected {width}")
            values = np.array([float(v) for v in row[1:]], dtype=float)
            rows[row[0]] = (float(values[0]), values[1:1 + n_components], values[1 + n_components:])
        return rows

    def append(self, entries: Sequence[tuple[str, float, np.ndarray, np.ndarray]]) -> None:
        """Add scored molecules (canonical, total, desirabilities, raw values) and sync the file to disk."""
        import csv
        import os

        if not entries:
            return
        fresh = not self.path.is_file()
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            if fresh:
                fh.write(self.MAGIC + self.key + "\n")
                csv.writer(fh, lineterminator="\n").writerow(self.header)
            writer = csv.writer(fh, lineterminator="\n")
            for canonical, total, desirability, raw in entries:
                writer.writerow([canonical, repr(float(total)), *map(repr, map(float, desirability)),
                                 *map(repr, map(float, raw))])
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


_WORKER: dict[str, Any] = {}


def _init_worker(mapping: dict, where: str) -> None:
    _WORKER["logs"] = rdBase.BlockLogs()
    _WORKER["objective"] = Objective.from_mapping(mapping, where)


def _evaluate_in_worker(task: tuple[list[str], np.ndarray | None]) -> tuple:
    smiles, prior = task
    return _evaluate(_WORKER["objective"], smiles, prior)


class Scorer:
    """Scores SMILES with an objective, PMO-style: cached by canonical SMILES, counting distinct valid molecules.

    Conventions (PMO, Gao et al. 2022): an invalid SMILES (None, empty, or not parsed and sanitised by RDKit)
    scores 0 and costs no call; a valid molecule costs one call the first time its RDKit canonical SMILES is
    seen, and returns its cached score afterwards; a molecule repeated within one batch is scored once. The
    cache keeps the first score (with the prior_ood value of that first appearance). ``jobs`` > 1 scores new
    molecules on a process pool (forkserver; each worker rebuilds the objective from ``to_mapping()``), created
    at the first batch with more than ``chunk_size`` new SMILES and closed by ``close()`` or the context manager.
    Results do not depend on ``jobs`` or ``chunk_size``.

    With a ``store`` (``ScoreStore``), every molecule scored is written to it, and the molecules it already
    holds (a killed run's) are not scored again: they take their stored values when they come, in the same
    PMO call order, so a run replayed from its seed retraces the killed one at no oracle cost.
    ``oracle_calls``: the molecules the objective was actually run on, the store's included.
    """

    def __init__(self, objective: Objective, jobs: int = 1, chunk_size: int = 64, store: ScoreStore | None = None):
        if jobs < 1 or chunk_size < 1:
            raise ValueError(f"Scorer: jobs and chunk_size must be >= 1 (got {jobs}, {chunk_size})")
        self.objective = objective
        self.jobs = int(jobs)
        self.chunk_size = int(chunk_size)
        self.calls = 0
        self._cache: dict[str, tuple[int, float, np.ndarray, np.ndarray]] = {}
        self._canonical_of: dict[str, str | None] = {}
        self._order: list[str] = []
        self._pool: Any = None
        self._finalizer: Any = None
        self.store = store
        self._stored = store.load() if store is not None else {}
        self.oracle_calls = len(self._stored)
        self.reused = 0

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes, if any (the cache stays usable)."""
        if self._pool is not None:
            self._finalizer.detach()
            self._pool.close()
            self._pool.join()
            self._pool = self._finalizer = None

    def stored(self, canonical: str | None) -> bool:
        """Whether this molecule's score is in the store and not yet met (it will cost no oracle call)."""
        return canonical is not None and canonical in self._stored

    def history(self) -> tuple[list[str], np.ndarray]:
        """The molecules scored so far in call order (canonical SMILES) and their totals (calls,)."""
        return list(self._order), np.array([self._cache[c][1] for c in self._order], dtype=float)

    def _prior(self, prior_ood: Sequence[float] | None, n: int) -> np.ndarray | None:
        if not self.objective.needs_prior:
            return None
        if prior_ood is None:
            raise ValueError(f"objective {self.objective.name!r} has a prior_ood component: score() needs prior_ood")
        prior = np.asarray(prior_ood, dtype=float)
        if prior.shape != (n,):
            raise ValueError(f"prior_ood: expected one value per SMILES, shape ({n},), got {prior.shape}")
        return prior

    def _evaluate(self, smiles: list[str], prior: np.ndarray | None, meanwhile: Callable[[], None]) -> tuple:
        if self.jobs == 1 or len(smiles) <= self.chunk_size:
            meanwhile()
            with rdBase.BlockLogs():
                return _evaluate(self.objective, smiles, prior)
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = context.Pool(self.jobs, initializer=_init_worker,
                                      initargs=(self.objective.to_mapping(), f"objective {self.objective.name!r}"))
            self._finalizer = weakref.finalize(self, self._pool.terminate)
        n_chunks = max(self.jobs, math.ceil(len(smiles) / self.chunk_size))
        bounds = np.linspace(0, len(smiles), n_chunks + 1).round().astype(int)
        tasks = [(smiles[a:b], None if prior is None else prior[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        running = self._pool.map_async(_evaluate_in_worker, tasks)
        meanwhile()  # the caller's work that needs no score, while the workers score
        parts = running.get()
        canonical = [c for part in parts for c in part[0]]
        return (canonical, *(np.concatenate([part[k] for part in parts]) for k in (1, 2, 3)))

    def score(self, smiles: Sequence[str | None], prior_ood: Sequence[float] | None = None,
              meanwhile: Callable[[], None] | None = None) -> ScoreBatch:
        """Scores of ``smiles`` (n,) in input order: canonical SMILES, totals in [0, 1] (0 if invalid), each
        column's desirability and raw value (NaN if invalid), the 1-based call index that first scored each
        molecule (-1 if invalid) and whether this row cost a call. ``prior_ood`` (n,): one OOD value per SMILES,
        required when the objective has a prior_ood component (NaN: the component scores 0), ignored otherwise.
        ``meanwhile``: the caller's work that does not depend on these scores (sampling the next batch, a
        forward pass), run once, while the worker processes score (before scoring when there are none), so
        that the two overlap where the objective is slow."""
        smiles = list(smiles)
        ran = meanwhile is None

        def run_meanwhile() -> None:
            nonlocal ran
            if not ran:
                ran = True
                meanwhile()

        n, width = len(smiles), len(self.objective.components)
        prior = self._prior(prior_ood, n)
        pending: dict[str, int] = {}
        for i, text in enumerate(smiles):
            if isinstance(text, str) and text and text not in self._canonical_of and text not in pending:
                pending[text] = i
        new = np.zeros(n, dtype=bool)
        if pending and self._stored:  # a resumed run: the molecules already scored take their stored values
            with rdBase.BlockLogs():
                keys = {text: canonical_smiles(text) for text in pending}
            for text, key in keys.items():
                if key is not None and key in self._stored and key not in self._cache:
                    self.calls += 1
                    self.reused += 1
                    total_s, desirability_s, raw_s = self._stored.pop(key)
                    self._cache[key] = (self.calls, total_s, desirability_s, raw_s)
                    self._order.append(key)
                    new[pending[text]] = True
                if key is not None and key in self._cache:
                    self._canonical_of[text] = key
                    del pending[text]
        if pending:
            texts, first_rows = list(pending), list(pending.values())
            canonical, raw, desirability, total = self._evaluate(texts, None if prior is None else prior[first_rows],
                                                                 run_meanwhile)
            scored = []
            for k, text in enumerate(texts):
                key = canonical[k]
                self._canonical_of[text] = key
                if key is not None and key not in self._cache:
                    self.calls += 1
                    self.oracle_calls += 1
                    self._cache[key] = (self.calls, float(total[k]), desirability[k].copy(), raw[k].copy())
                    self._order.append(key)
                    new[first_rows[k]] = True
                    scored.append((key, float(total[k]), desirability[k], raw[k]))
            if self.store is not None:
                self.store.append(scored)
        run_meanwhile()  # if nothing new was scored, the work runs now
        batch_canonical: list[str | None] = [None] * n
        totals = np.zeros(n)
        desirabilities = np.zeros((n, width))
        raws = np.full((n, len(self.objective.raw_columns)), np.nan)
        call_index = np.full(n, -1, dtype=np.int64)
        for i, text in enumerate(smiles):
            key = self._canonical_of.get(text) if isinstance(text, str) and text else None
            if key is None:
                continue
            index, total_i, desirability_i, raw_i = self._cache[key]
            batch_canonical[i] = key
            totals[i], desirabilities[i], raws[i], call_index[i] = total_i, desirability_i, raw_i, index
        columns = self.objective.columns
        return ScoreBatch(
            canonical=batch_canonical,
            total=totals,
            components={name: desirabilities[:, j].copy() for j, name in enumerate(columns)},
            raw={name: raws[:, j].copy() for j, name in enumerate(self.objective.raw_columns)},
            call_index=call_index,
            new=new,
        )
