"""Result table of property prediction on a user's assay: per predictor and target, each metric's mean and
sample standard deviation over seeds and the value at each seed, read from the ``dgm evaluate-predictor``
metrics of ``{runs}/{model}-{target}/seed{s}/metrics.json``; writes a table in the shape of ``docs/results``.

    python bench/user_prediction_table.py --runs /tmp/pred/runs --seeds 0 1 2 --commit abc1234 \\
        --command "..." --config "..." --out docs/results/user-data/prediction_chembl2321810.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from dgm_science.utils import atomic_path

REGRESSION = (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R^2"), ("nll", "NLL (nats)"), ("coverage_90", "90 % coverage"))
CLASSIFICATION = (("auroc", "AUROC"), ("accuracy", "accuracy (p > 0.5)"), ("log_loss", "log-loss (nats)"),
                  ("brier", "Brier score"))
SHIFTED = (("randomized", "randomized SMILES of the test molecules"), ("moses", "MOSES sample"),
           ("qm9", "QM9 sample"))


def _value(metrics: dict, *path: str) -> float:
    node = metrics
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    return math.nan if node is None else float(node)


def rows_of(runs: Path, model: str, target: str, seeds: list[int]) -> list[list]:
    """The table's rows of one predictor on one target (the OOD rows for a model of x only)."""
    found = [json.loads((runs / f"{model}-{target}" / f"seed{s}" / "metrics.json").read_text()) for s in seeds]
    task = found[0]["test"][target]["task"]
    metrics = [((f"test: {label}"), ("test", target, key)) for key, label in
               (CLASSIFICATION if task == "classification" else REGRESSION)]
    if found[0].get("density"):
        metrics.append(("test: flagged OOD (typicality > 3)", ("ood_rate_test",)))
        for name, label in SHIFTED:
            metrics.append((f"{label}: flagged OOD", ("shifted", name, "ood_rate_out")))
            metrics.append((f"{label}: AUROC of the typicality score vs test", ("shifted", name, "auroc_typicality")))
    rows = []
    for label, path in metrics:
        values = np.array([_value(m, *path) for m in found])
        ok = values[np.isfinite(values)]
        mean = float(ok.mean()) if len(ok) else None
        sd = float(ok.std(ddof=1)) if len(ok) > 1 else None
        rows.append([model, f"{target} ({task})", label, _round(mean), _round(sd),
                     *(_round(v if math.isfinite(v) else None) for v in values)])
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--targets", nargs="+", default=["Act", "active"])
    parser.add_argument("--models", nargs="+", default=["hybrid-arm", "regressor-arm"])
    parser.add_argument("--commit", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--date", default="2026-12-06")
    parser.add_argument("--title", required=True)
    parser.add_argument("--notes", nargs="*", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = [row for target in args.targets for model in args.models
            for row in rows_of(args.runs, model, target, args.seeds)]
    table = {"title": args.title,
             "provenance": {"commit": args.commit, "command": args.command, "config": args.config, "date": args.date,
                            "machine": "2 CPU cores, no GPU"},
             "columns": ["model", "target (task)", "metric", f"mean over {len(args.seeds)} seeds", "sd",
                         *(f"seed {s}" for s in args.seeds)],
             "rows": rows, "notes": args.notes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()
