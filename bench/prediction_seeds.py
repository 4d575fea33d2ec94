"""Seed table of the property predictors: each seed's test metrics of two predictors evaluated
one checkpoint at a time (``dgm evaluate-predictor --out results/prediction/{model}/seed{s}/metrics.json``),
their mean and sample standard deviation over seeds, and the paired comparison of the two by seed
(difference per seed, its mean and sd, and a two-sided paired t-test, Student 1908); ``--extra``
adds a row of another predictor's metrics (e.g. the deep ensemble, one observation). Writes a
result table in the shape of ``docs/results`` (title, provenance, columns, rows, notes).

    python bench/prediction_seeds.py --seeds 0 1 2 --commit abc1234 --command "..." \\
        --out docs/results/prediction/gap_mae_seeds.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from dgm_science.utils import atomic_path

ROOT = Path(__file__).resolve().parents[1]
METRICS = (
    (("test", "gap", "mae"), "gap MAE (meV)"), (("test", "gap", "nll"), "gap NLL"),
    (("test", "gap", "coverage_90"), "gap 90 % coverage"), (("test", "mu", "mae"), "mu MAE (D)"),
    (("test", "mu", "coverage_90"), "mu 90 % coverage"),
    (("test", "gap", "selective_mae_by_variance", "0.50"), "gap MAE keeping 50 % by variance (meV)"),
    (("test", "gap", "selective_mae_by_log_likelihood", "0.50"), "gap MAE keeping 50 % by log p(x) (meV)"),
    (("shifted", "excluded_elements", "metrics", "gap", "mae"), "held-out-element molecules: gap MAE (meV)"),
    (("shifted", "excluded_elements", "metrics", "gap", "coverage_90"),
     "held-out-element molecules: gap 90 % coverage"),
)
"""(key path into a metrics.json of ``dgm evaluate-predictor``, column) of the table; a path a model
has no value at (a regressor has no log p(x)) gives NaN, written as null."""


def lookup(metrics: dict, path: tuple[str, ...]) -> float:
    """The number at ``path`` in nested dicts, NaN where a key is missing."""
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return math.nan
        metrics = metrics[key]
    return float(metrics)


def seed_values(metrics: dict) -> list[float]:
    """One seed's row of the table from its metrics.json."""
    return [lookup(metrics, path) for path, _ in METRICS]


def cell(value: float) -> float | None:
    """A table cell: rounded, null where undefined."""
    return round(float(value), 4) if math.isfinite(value) else None


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired comparison of (n,) values a and b matched by seed: mean and sd of a - b, the paired
    t statistic and its two-sided p-value (n - 1 degrees of freedom); NaN where either is undefined."""
    difference = a - b
    if not np.isfinite(difference).all():
        return {"mean": math.nan, "sd": math.nan, "t": math.nan, "p": math.nan, "n": int(len(a))}
    test = stats.ttest_rel(a, b)
    return {"mean": float(difference.mean()), "sd": float(difference.std(ddof=1)),
            "t": float(test.statistic), "p": float(test.pvalue), "n": int(len(a))}


def table(results: Path, models: list[str], seeds: list[int]) -> tuple[list[str], list[list], dict]:
    """Columns and rows: per model, one row per seed, then its mean and sd over seeds; then the
    first model less the second per seed, with mean and sd; and the paired tests by column."""
    columns = ["model", "seed", *(name for _, name in METRICS)]
    values = {m: np.array([seed_values(json.loads((results / m / f"seed{s}" / "metrics.json").read_text()))
                           for s in seeds]) for m in models}
    rows: list[list] = []
    for m in models:
        rows += [[m, s, *map(cell, row)] for s, row in zip(seeds, values[m])]
        rows.append([m, "mean", *map(cell, values[m].mean(0))])
        rows.append([m, "sd", *map(cell, values[m].std(0, ddof=1))])
    first, second = models
    difference = values[first] - values[second]
    label = f"{first} - {second}"
    rows += [[label, s, *map(cell, row)] for s, row in zip(seeds, difference)]
    rows.append([label, "mean", *map(cell, difference.mean(0))])
    rows.append([label, "sd", *map(cell, difference.std(0, ddof=1))])
    tests = {name: paired(values[first][:, j], values[second][:, j]) for j, (_, name) in enumerate(METRICS)}
    rows.append([label, "paired t-test p (two-sided)", *(cell(t["p"]) for t in tests.values())])
    return columns, rows, tests


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results/prediction")
    parser.add_argument("--models", nargs=2, default=["hybrid-arm", "regressor-arm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--commit", required=True, help="commit of the code that trained and evaluated")
    parser.add_argument("--command", required=True, help="the commands that made the metrics")
    parser.add_argument("--config", default="workflows/config/default.yaml + workflows/config/overlays/prediction.yaml")
    parser.add_argument("--date", required=True)
    parser.add_argument("--machine", default="2 CPU cores, no GPU")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="a row of another predictor's metrics.json, outside the means and tests")
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("a seed table needs at least two seeds")
    columns, rows, tests = table(args.results, args.models, args.seeds)
    for extra in args.extra:
        name, _, path = extra.partition("=")
        if not name or not path:
            parser.error(f"--extra expects NAME=PATH, got {extra!r}")
        rows.append([name, "-", *map(cell, seed_values(json.loads(Path(path).read_text())))])
    first, second = args.models
    gap = tests["gap MAE (meV)"]
    result = {
        "title": f"QM9 test metrics of {first} and {second} over seeds {', '.join(map(str, args.seeds))}, "
                 "with the paired comparison by seed",
        "provenance": {"commit": args.commit, "command": args.command, "config": args.config, "date": args.date,
                       "machine": args.machine},
        "columns": columns,
        "rows": rows,
        "notes": [f"sd: sample standard deviation over the {len(args.seeds)} seeds (ddof 1). The '{first} - "
                  f"{second}' rows pair the two models by seed; gap MAE difference {gap['mean']:.1f} +- "
                  f"{gap['sd']:.1f} meV, paired t = {gap['t']:.2f}, p = {gap['p']:.3f} (df {gap['n'] - 1})."]
                 + args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
