"""Property prediction with models that know when not to trust themselves (``dgm predict``,
``dgm evaluate-predictor``): a hybrid (``hybrid-arm``) model or a deep ensemble of discriminative
(``regressor-arm``) models predicts QM9 properties with their uncertainty; the evaluation scores the
MAE, NLL, interval coverage, selective prediction and OOD detection on shifted sets. The targets and
their standardisation, which the domain trains on, are ``dgm_science.domains.molecules.targets``."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.domains.molecules.data import read_property_table, read_smiles
from dgm_science.domains.molecules.properties import map_molecules
from dgm_science.domains.molecules.targets import destandardize, without_elements
from dgm_science.errors import DataError

HARTREE_MEV = 27211.386245988
"""meV per Hartree (CODATA 2018): QM9's orbital energies are stored in Hartree, reported in meV."""

REPORT_UNITS = {"homo": ("meV", HARTREE_MEV), "lumo": ("meV", HARTREE_MEV), "gap": ("meV", HARTREE_MEV),
                "zpve": ("meV", HARTREE_MEV), "u0": ("meV", HARTREE_MEV), "u298": ("meV", HARTREE_MEV),
                "h298": ("meV", HARTREE_MEV), "g298": ("meV", HARTREE_MEV)}
"""Targets whose errors the literature reports in other units than QM9 stores: name -> (unit, factor)."""


def report_unit(name: str, unit: str) -> tuple[str, float]:
    """The unit a target's errors are reported in, and the factor from its stored unit (QM9's energies
    stored in Hartree: meV; any other target as stored, e.g. a user's column named like one)."""
    return REPORT_UNITS[name] if name in REPORT_UNITS and unit == "Ha" else (unit, 1.0)


@dataclasses.dataclass
class Predictions:
    """Row-aligned predictions for n molecules and K targets, in the targets' stored units: the
    predictive mean and variance (NaN where no model could read the molecule), the aleatoric part
    (the mean of the members' predicted variances) and the epistemic part (the variance of their
    means; 0 for one model), log p(x) in nats and the typicality OOD score (NaN where the model has
    no density of x)."""

    names: list[str]
    units: list[str]
    mean: np.ndarray
    variance: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    log_likelihood: np.ndarray
    ood_score: np.ndarray
    members: int = 1
    tasks: list[str] | None = None


class Predictor:
    """One hybrid model, or a deep ensemble of regressors (Lakshminarayanan et al. 2017: the
    members' Gaussians combined into one, mean of means, variance = mean of variances + variance of
    means), all over the same targets."""

    def __init__(self, members: Sequence[Any]) -> None:
        if not members:
            raise ValueError("a predictor needs at least one checkpoint")
        for loaded in members:
            if "targets" not in loaded.state:
                where = f"{loaded.path}: " if loaded.path else ""
                raise ValueError(f"{where}a {loaded.name} model predicts no properties (a hybrid-arm or "
                                 "regressor-arm checkpoint does)")
        names = [list(m.state["targets"]["names"]) for m in members]
        if any(n != names[0] for n in names):
            raise ValueError(f"the checkpoints predict different targets: {names}")
        self.members = list(members)
        self.targets = members[0].state["targets"]

    @property
    def has_density(self) -> bool:
        return len(self.members) == 1 and self.members[0].model.likelihood != "none"

    @torch.no_grad()
    def _member(self, loaded: Any, smiles: Sequence[str | None], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        n, k = len(smiles), len(self.targets["names"])
        mean, variance = np.full((n, k), math.nan), np.full((n, k), math.nan)
        loaded.model.eval()
        for start in range(0, n, batch_size):
            chunk = list(range(start, min(n, start + batch_size)))
            batch, keep = loaded.domain.batch_of([smiles[i] for i in chunk], loaded.spec, loaded.config.model,
                                                 loaded.state)
            if batch is None:
                continue
            m, v = loaded.model.predict({key: value.to(loaded.device) for key, value in batch.items()})
            rows = [chunk[j] for j in keep]
            mean[rows], variance[rows] = destandardize(m.double().cpu().numpy(), v.double().cpu().numpy(),
                                                       loaded.state["targets"])
        return mean, variance

    def predict(self, smiles: Sequence[str | None], batch_size: int = 500, *, canonicalize: bool = True,
                n_jobs: int = 1) -> Predictions:
        """Predictions for ``smiles`` in order. A SMILES RDKit cannot parse gets none (NaN). With
        ``canonicalize`` each molecule is read in RDKit's canonical form, the form the models were
        trained on, so that the prediction does not depend on how the SMILES was written; without
        it the string is read as written (how the randomized-SMILES shift is measured)."""
        from dgm_science.domains.molecules.properties import canonical_smiles

        keys = map_molecules(canonical_smiles, list(smiles), n_jobs=n_jobs)
        smiles = [("" if k is None else k if canonicalize else s) for s, k in zip(smiles, keys)]
        outputs = [self._member(m, smiles, batch_size) for m in self.members]
        means = np.stack([o[0] for o in outputs])
        variances = np.stack([o[1] for o in outputs])
        mean, aleatoric = means.mean(0), variances.mean(0)
        epistemic = means.var(0) if len(outputs) > 1 else np.zeros_like(mean)
        n = len(smiles)
        log_likelihood, ood = np.full(n, math.nan), np.full(n, math.nan)
        if self.has_density:
            loaded = self.members[0]
            log_likelihood = loaded.log_likelihood(list(smiles))
            score = loaded.ood_score(log_likelihood, list(smiles))
            ood = np.full(n, math.nan) if score is None else score
        return Predictions(list(self.targets["names"]), list(self.targets["units"]), mean, aleatoric + epistemic,
                           aleatoric, epistemic, log_likelihood, ood, members=len(outputs),
                           tasks=list(self.targets.get("tasks", ["regression"] * len(self.targets["names"]))))


# ----------------------------------------------------------------------------- metrics


def interval_coverage(y: np.ndarray, mean: np.ndarray, variance: np.ndarray, level: float = 0.9) -> float:
    """Fraction of ``y`` inside the central ``level`` interval of N(mean, variance)."""
    from scipy.stats import norm

    half = norm.ppf(0.5 + level / 2) * np.sqrt(variance)
    return float(np.mean(np.abs(y - mean) <= half))


def gaussian_nll_np(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """-log N(y; mean, variance) per element, nats (in the units y is given in)."""
    return 0.5 * (np.log(2 * np.pi * variance) + (y - mean) ** 2 / variance)


SELECTIVE_COVERAGES = (1.0, 0.9, 0.8, 0.5)
"""Fractions of the test molecules kept in selective prediction."""


def selective_mae(error: np.ndarray, confidence: np.ndarray, coverages: Sequence[float] = SELECTIVE_COVERAGES
                  ) -> dict[str, float]:
    """MAE over the ``coverage`` fraction of molecules with the highest ``confidence`` (the least
    likely, or most uncertain, rejected first); ties broken by order (stable sort)."""
    order = np.argsort(-np.asarray(confidence, dtype=float), kind="stable")
    out = {}
    for coverage in coverages:
        kept = order[: max(1, int(round(coverage * len(order))))]
        out[f"{coverage:.2f}"] = float(np.mean(np.abs(error[kept])))
    return out


OOD_THRESHOLD = 3.0
"""Default typicality score above which ``dgm predict`` flags a molecule out of distribution: 3
standard deviations of the held-out molecules' -log p(x) per heavy atom from their mean."""

COLUMN_UNITS = {"D": "D", "bohr^3": "bohr3", "bohr^2": "bohr2", "meV": "meV", "Ha": "Ha",
                "cal/(mol K)": "cal_per_mol_K"}
"""Units as they appear in a column name."""


def write_predictions(path: Path, smiles: Sequence[str], result: Predictions, *, ood_threshold: float) -> int:
    """The predictions as a CSV, one row per input SMILES in order (atomically): ``smiles``,
    ``scored``, per target ``{name}_{unit}`` and ``{name}_std_{unit}`` (and with an ensemble
    ``{name}_epistemic_std_{unit}``) in the reporting unit (meV for orbital energies; no suffix for a
    target without a unit; ``{name}_probability`` and ``{name}_std`` for a 0/1 classification target),
    ``log_likelihood``, ``ood_score`` and ``ood`` (1 above ``ood_threshold``; empty without p(x)).
    Returns the number of molecules scored."""
    import csv

    from dgm_science.utils import atomic_path

    ensemble = result.members > 1
    header, columns = ["smiles", "scored"], []
    tasks = result.tasks or ["regression"] * len(result.names)
    for j, (name, unit) in enumerate(zip(result.names, result.units)):
        shown, factor = report_unit(name, unit)
        suffix = "_probability" if tasks[j] == "classification" else f"_{COLUMN_UNITS.get(shown, shown)}" if shown else ""
        std_suffix = suffix if tasks[j] == "regression" else ""
        columns.append((result.mean[:, j] * factor, np.sqrt(result.variance[:, j]) * factor,
                        np.sqrt(result.epistemic[:, j]) * factor))
        header += [f"{name}{suffix}", f"{name}_std{std_suffix}"]
        header += [f"{name}_epistemic_std{std_suffix}"] if ensemble else []
    header += ["log_likelihood", "ood_score", "ood"]
    scored = np.isfinite(result.mean).all(axis=1)

    def cell(value: float, digits: int = 6) -> str:
        return "" if not math.isfinite(value) else f"{value:.{digits}g}"

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, s in enumerate(smiles):
            row: list[str] = [s, str(int(scored[i]))]
            for mean, std, epistemic in columns:
                row += [cell(mean[i]), cell(std[i])] + ([cell(epistemic[i])] if ensemble else [])
            score = result.ood_score[i]
            row += [cell(result.log_likelihood[i]), cell(score, 4), "" if not math.isfinite(score)
                    else str(int(score > ood_threshold))]
            writer.writerow(row)
    return int(scored.sum())


def _uncertainty(result: Predictions, targets: dict[str, Any]) -> np.ndarray:
    """One uncertainty per molecule: the predictive variance of each target in training standard
    deviations, averaged over the targets (inf where the molecule could not be read)."""
    scaled = result.variance / np.asarray(targets["std"]) ** 2
    return np.where(np.isfinite(scaled).all(1), scaled.mean(1), np.inf)


def classification_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """A 0/1 target's metrics from the predicted P(y = 1) ``p`` and the labels ``y`` (n,), on the rows with
    both: AUROC (the Mann-Whitney statistic, ties half; NaN with one class only), accuracy at p > 0.5,
    log-loss (mean binary cross-entropy, nats, p clipped to [1e-7, 1 - 1e-7]) and the Brier score. A
    soft label (a duplicate molecule's averaged 0 and 1) counts in the log-loss and Brier score only."""
    from dgm_science.domains.molecules.candidates import auroc

    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok]
    hard = (y == 0) | (y == 1)
    q = np.clip(p, 1e-7, 1 - 1e-7)
    labels = y[hard]
    both = bool(hard.any() and labels.min() == 0 and labels.max() == 1)
    return {"task": "classification", "unit": "", "n": int(ok.sum()), "positives": int((labels == 1).sum()),
            "negatives": int((labels == 0).sum()), "soft_labels": int((~hard).sum()),
            "auroc": auroc(p[hard][labels == 0], p[hard][labels == 1]) if both else math.nan,
            "accuracy": float(np.mean((p[hard] > 0.5) == (labels == 1))) if hard.any() else math.nan,
            "log_loss": float(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)))) if ok.any() else math.nan,
            "brier": float(np.mean((p - y) ** 2)) if ok.any() else math.nan,
            "base_rate": float(np.mean(labels)) if hard.any() else math.nan}


def regression_metrics(truth: np.ndarray, mean: np.ndarray) -> dict[str, float]:
    """RMSE and R^2 = 1 - SSE / SST (against the mean of ``truth``) of one target's predictions."""
    if not len(truth):
        return {"rmse": math.nan, "r2": math.nan}
    sse = float(np.sum((mean - truth) ** 2))
    sst = float(np.sum((truth - truth.mean()) ** 2))
    return {"rmse": math.sqrt(sse / len(truth)), "r2": 1 - sse / sst if sst > 0 else math.nan}


def evaluate_predictions(result: Predictions, y: np.ndarray, targets: dict[str, Any]) -> dict[str, Any]:
    """Per target, on the molecules with a prediction and a value of the target (``n``; ``missing``: the
    molecules without a value, skipped): for a regression target the MAE, RMSE, R^2, the NLL of y (nats,
    in the reporting unit), the coverage of the central 90 % interval, and selective prediction (MAE
    keeping 100 / 90 / 80 / 50 % of the molecules, rejecting the least likely by log p(x) where the
    model has one and, for every model, the most uncertain by the predictive variance); for a 0/1
    classification target ``classification_metrics``."""
    out: dict[str, Any] = {"n": int(len(y)), "scored": int(np.isfinite(result.mean).all(1).sum())}
    uncertainty = _uncertainty(result, targets)
    tasks = targets.get("tasks", ["regression"] * len(result.names))
    for j, (name, unit) in enumerate(zip(result.names, result.units)):
        if tasks[j] == "classification":
            out[name] = {**classification_metrics(result.mean[:, j], y[:, j]),
                         "missing": int((~np.isfinite(y[:, j])).sum())}
            continue
        shown, factor = report_unit(name, unit)
        mean, variance, truth = result.mean[:, j] * factor, result.variance[:, j] * factor ** 2, y[:, j] * factor
        ok = np.isfinite(mean) & np.isfinite(truth)
        error = mean[ok] - truth[ok]
        row = {"task": "regression", "unit": shown, "n": int(ok.sum()), "missing": int((~np.isfinite(truth)).sum()),
               "mae": float(np.mean(np.abs(error))) if ok.any() else math.nan,
               **regression_metrics(truth[ok], mean[ok]),
               "nll": float(np.mean(gaussian_nll_np(truth[ok], mean[ok], variance[ok]))) if ok.any() else math.nan,
               "coverage_90": interval_coverage(truth[ok], mean[ok], variance[ok]) if ok.any() else math.nan,
               "selective_mae_by_variance": selective_mae(error, -uncertainty[ok]) if ok.any() else {}}
        if np.isfinite(result.log_likelihood[ok]).any():
            row["selective_mae_by_log_likelihood"] = selective_mae(error, np.nan_to_num(result.log_likelihood[ok],
                                                                                        nan=-np.inf))
        out[name] = row
    return out


def ood_detection(in_distribution: Predictions, shifted: Predictions, targets: dict[str, Any]) -> dict[str, float]:
    """AUROC of telling ``shifted`` from ``in_distribution`` molecules by the predictive variance
    (mean over targets, in training standard deviations), by the epistemic variance of an ensemble,
    and for a model of x by -log p(x) and by the typicality score. A molecule a model cannot read
    counts as maximally atypical (an unknown token is a certain sign of a shift)."""
    from dgm_science.domains.molecules.candidates import auroc

    out = {"n_in": len(in_distribution.mean), "n_out": len(shifted.mean),
           "unscorable_out": int((~np.isfinite(shifted.mean).all(1)).sum()),
           "auroc_variance": auroc(_uncertainty(in_distribution, targets), _uncertainty(shifted, targets))}
    if in_distribution.members > 1:
        def epistemic(r: Predictions) -> np.ndarray:
            scaled = r.epistemic / np.asarray(targets["std"]) ** 2
            return np.where(np.isfinite(r.mean).all(1), scaled.mean(1), np.inf)

        out["auroc_epistemic_variance"] = auroc(epistemic(in_distribution), epistemic(shifted))
    if np.isfinite(in_distribution.log_likelihood).any():
        out["auroc_negative_log_likelihood"] = auroc(np.nan_to_num(-in_distribution.log_likelihood, nan=np.inf),
                                                     np.nan_to_num(-shifted.log_likelihood, nan=np.inf))
        out["auroc_typicality"] = auroc(np.nan_to_num(in_distribution.ood_score, nan=np.inf),
                                        np.nan_to_num(shifted.ood_score, nan=np.inf))
        out["ood_rate_in"] = ood_rate(in_distribution.ood_score)
        out["ood_rate_out"] = ood_rate(shifted.ood_score)
    return out


def ood_rate(score: np.ndarray, threshold: float = OOD_THRESHOLD) -> float:
    """Fraction of molecules ``dgm predict`` flags out of distribution (typicality score above
    ``threshold``; a molecule the model cannot score counts as flagged)."""
    score = np.nan_to_num(np.asarray(score, dtype=float), nan=np.inf)
    return float(np.mean(score > threshold)) if len(score) else math.nan


QM9_ELEMENTS = frozenset({"C", "N", "O", "F"})
"""QM9's heavy-atom vocabulary; the models see it less their ``exclude_elements``."""


def seen_elements(data_dir: Path, model_cfg: Any, n_jobs: int = 1) -> frozenset[str]:
    """The elements the models saw: QM9's (``QM9_ELEMENTS``) on QM9 data, those of the training split
    of a user's file, less ``exclude_elements``."""
    from dgm_science.domains.molecules.candidates import molecule_elements
    from dgm_science.domains.molecules.targets import user_data

    if user_data(data_dir):
        found = map_molecules(molecule_elements, read_smiles(Path(data_dir) / "train.smi"), n_jobs=n_jobs)
        elements = frozenset().union(*(e for e in found if e is not None))
    else:
        elements = QM9_ELEMENTS
    return elements - set(model_cfg.exclude_elements)


def shifted_sets(data_dir: Path, model_cfg: Any, *, moses: Path | None, max_molecules: int, seed: int,
                 shifted: dict[str, Path] | None = None, n_jobs: int = 1
                 ) -> tuple[tuple[list[str], np.ndarray], dict[str, list[str]], dict[str, np.ndarray]]:
    """The in-distribution test molecules (QM9's test split without the elements the models were
    trained without) with their targets, and the shifted sets, each changing one thing: ``randomized``
    (the representation: the same molecules as non-canonical SMILES, read as written),
    ``excluded_elements`` (the elements: the QM9 test molecules holding them, same source and sizes,
    with their targets: what the error does off the training distribution) and ``moses`` (the
    source: larger, drug-like MOSES molecules made only of the elements the models saw, QM9's less
    ``exclude_elements``, so that no unseen element is part of that shift), and each of ``shifted`` (name
    -> a SMILES file, e.g. another dataset's test split: the source, made only of the elements the models
    saw, ``seen_elements``). Each set at most ``max_molecules``, a seeded subset."""
    from dgm_science.domains.molecules.candidates import made_of, randomized_smiles

    data_dir = Path(data_dir)
    rng = np.random.default_rng(seed)

    def subset(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, max_molecules, replace=False)) if n > max_molecules else np.arange(n)

    smiles = read_smiles(data_dir / "test.smi")
    _, y = read_property_table(data_dir / "properties_test.csv", list(model_cfg.targets))
    if len(y) != len(smiles):
        raise DataError(f"{data_dir / 'properties_test.csv'}: {len(y)} rows for {len(smiles)} test molecules")
    inside = without_elements(smiles, model_cfg.exclude_elements)
    idx = subset(int(inside.sum()))
    test = [s for s, k in zip(smiles, inside) if k]
    test_y = y[inside]
    test, test_y = [test[i] for i in idx], test_y[idx]
    sets: dict[str, list[str]] = {"randomized": randomized_smiles(test, seed=seed)}
    targets: dict[str, np.ndarray] = {}
    if model_cfg.exclude_elements:
        outside = np.array([bool(s) for s in smiles]) & ~inside
        keep = np.flatnonzero(outside)[subset(int(outside.sum()))]
        sets["excluded_elements"], targets["excluded_elements"] = [smiles[i] for i in keep], y[keep]
    others = {**({"moses": Path(moses)} if moses is not None else {}), **(shifted or {})}
    seen = seen_elements(data_dir, model_cfg, n_jobs=n_jobs) if others else frozenset()
    for name, path in others.items():
        fits = made_of(read_smiles(path), seen, n_jobs=n_jobs)
        if not fits:
            raise DataError(f"{path}: no molecule made only of {', '.join(sorted(seen))}")
        sets[name] = [fits[i] for i in subset(len(fits))]
    return (test, test_y), sets, targets


SHIFT_OF_SET = {"randomized": "representation", "excluded_elements": "elements", "moses": "source"}
"""The one factor each shifted set of ``shifted_sets`` changes against the test molecules."""


def evaluate_predictor(predictor: Predictor, data_dir: Path, *, moses: Path | None, max_molecules: int = 2000,
                       seed: int = 0, batch_size: int = 500, n_jobs: int = 1,
                       shifted: dict[str, Path] | None = None) -> dict[str, Any]:
    """Everything the report shows of one predictor (a hybrid, one regressor, or an ensemble): the
    test metrics (``evaluate_predictions``), each shifted set's OOD detection AUROCs, and the
    metrics on the shifted molecules that have targets. Each set is stated beside its result:
    ``test_composition`` and each shifted set's ``composition`` (``set_composition``), the factor it
    is meant to change (``shift``) and the composition factors found to differ (``differs_in``)."""
    from dgm_science.domains.molecules.candidates import set_composition, shifted_factors
    from dgm_science.domains.molecules.targets import user_data

    model_cfg = predictor.members[0].config.model
    (test, test_y), sets, set_targets = shifted_sets(data_dir, model_cfg, moses=moses, max_molecules=max_molecules,
                                                     seed=seed, shifted=shifted, n_jobs=n_jobs)
    inside = predictor.predict(test, batch_size, n_jobs=n_jobs)
    out: dict[str, Any] = {"test": evaluate_predictions(inside, test_y, predictor.targets), "shifted": {},
                           "members": len(predictor.members), "density": predictor.has_density,
                           "user_data": user_data(data_dir),
                           "targets": predictor.targets, "test_composition": set_composition(test, n_jobs=n_jobs)}
    if predictor.has_density:  # the typicality statistics in the checkpoint are of the training data's valid split
        out["ood_rate_test"] = ood_rate(inside.ood_score)
        out["typicality"] = predictor.members[0].typicality
    for name, smiles in sets.items():
        if not smiles:  # e.g. a test split with no molecule of the excluded elements
            out["shifted"][name] = {"n_in": len(test), "n_out": 0, "shift": SHIFT_OF_SET.get(name, "source")}
            continue
        result = predictor.predict(smiles, batch_size, canonicalize=name != "randomized", n_jobs=n_jobs)
        row: dict[str, Any] = ood_detection(inside, result, predictor.targets)
        composition = set_composition(smiles, n_jobs=n_jobs)
        row.update(shift=SHIFT_OF_SET.get(name, "source"), composition=composition,
                   differs_in=shifted_factors(out["test_composition"], composition))
        if name in set_targets:
            row["metrics"] = evaluate_predictions(result, set_targets[name], predictor.targets)
        out["shifted"][name] = row
    return out
