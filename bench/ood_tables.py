"""Result tables of the OOD shift sets, in the shape of ``docs/results`` (title, provenance, columns,
rows, notes): ``bench`` turns a ``bench/bench_ood.py`` output into one row per checkpoint and
shifted set, and ``prediction`` turns ``dgm evaluate-predictor`` metrics into one row per
predictor, score and shifted set; each row states the set's composition (molecules, elements,
heavy-atom range), the factor it is meant to shift and the composition factors found to differ.

    python bench/ood_tables.py bench bench/results/ood_moses.json --out docs/results/ood/moses.json ...
    python bench/ood_tables.py prediction results/prediction/hybrid-arm/seed0/metrics.json ... --out ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dgm_science.utils import atomic_path

PREDICTION_SCORES = (("auroc_negative_log_likelihood", "-log p(x)"), ("auroc_typicality", "typicality"),
                     ("auroc_variance", "predictive variance"), ("auroc_epistemic_variance", "epistemic variance"))
COMPOSITION_COLUMNS = ["shift", "differs_in", "n", "elements (molecules holding each)", "heavy atoms min",
                       "heavy atoms median", "heavy atoms max"]


def composition_cells(entry: dict) -> list:
    """The composition columns of one set: what it shifts, what differs, count, elements, sizes."""
    composition = entry["composition"]
    sizes = composition["heavy_atoms"] or {"min": None, "median": None, "max": None}
    elements = ", ".join(f"{symbol} {count}" for symbol, count in composition["elements"].items())
    return [entry.get("shift", "none"), ", ".join(entry.get("differs_in", [])) or "none", composition["n"],
            elements, sizes["min"], sizes["median"], sizes["max"]]


def bench_rows(path: Path) -> tuple[list[str], list[list]]:
    """Rows of one bench_ood.py output: the in-distribution set, then each checkpoint against each set."""
    result = json.loads(path.read_text())
    sets = result["sets"]
    columns = ["model", "checkpoint", "set", *COMPOSITION_COLUMNS, "AUROC (typicality, unscorable = atypical)",
               "AUROC (scorable only)", "AUROC (-log p alone)", "unscorable in set"]
    rows = [["-", "-", "in-distribution: " + result["in_distribution"]["path"],
             *composition_cells({"composition": sets["in_distribution"], "shift": "none", "differs_in": []}),
             None, None, None, None]]
    for checkpoint, run in result["checkpoints"].items():
        for name, scores in run["sets"].items():
            rows.append([run["model"], checkpoint, name, *composition_cells(sets[name]),
                         *(None if scores[k] != scores[k] else round(scores[k], 4)
                           for k in ("auroc", "auroc_scorable", "auroc_negative_log_likelihood")),
                         scores["unscorable_out"]])
    return columns, rows


def prediction_rows(paths: list[Path]) -> tuple[list[str], list[list]]:
    """Rows of ``dgm evaluate-predictor`` metrics: the test set's composition, then per predictor
    (named by its folder, and seed folder where there is one), score and shifted set."""
    columns = ["predictor", "score", "set", *COMPOSITION_COLUMNS, "AUROC", "unscorable in set"]
    rows: list[list] = []
    for path in paths:
        metrics = json.loads(path.read_text())
        name = path.parent.name if not path.parent.name.startswith("seed") else \
            f"{path.parent.parent.name} {path.parent.name}"
        if not rows:
            rows.append(["-", "-", "test (in-distribution)",
                         *composition_cells({"composition": metrics["test_composition"]}), None, None])
        for key, label in PREDICTION_SCORES:
            for set_name, row in metrics["shifted"].items():
                if key in row:
                    rows.append([name, label, set_name, *composition_cells(row), round(row[key], 4),
                                 row["unscorable_out"]])
    return columns, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("bench", "prediction"))
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--title", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--date", required=True)
    parser.add_argument("--machine", default="2 CPU cores, no GPU")
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.kind == "bench":
        columns, rows = [], []
        for path in args.inputs:
            columns, more = bench_rows(path)
            rows += more
    else:
        columns, rows = prediction_rows(args.inputs)
    result = {"title": args.title,
              "provenance": {"commit": args.commit, "command": args.command, "config": args.config,
                             "date": args.date, "machine": args.machine},
              "columns": columns, "rows": rows}
    if args.note:
        result["notes"] = args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
