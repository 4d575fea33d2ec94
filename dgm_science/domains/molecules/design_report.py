"""Goal-directed design section of the report: per objective, each method's scores at equal calls
beside the published rows (GuacaMol Table 2; PMO's AUC top-10), the score-vs-calls curves, the
best molecules, the diversity of the top 100 and the prior's log-likelihood of what was found."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any

from dgm_science.registry import register
from dgm_science.report import (Figure, Inputs, Table, bold, figure_png, format_number, png_data_uri, render)
from dgm_science.utils import read_json

PUBLISHED = Path(__file__).with_name("published")
"""GuacaMol Table 2 and PMO's AUC top-10 (sources in published/README.md)."""

COLUMNS = [("top1", "top-1"), ("top10_mean", "top-10"), ("top100_mean", "top-100"),
           ("guacamol_score", "GuacaMol score"), ("pmo_auc_top10", "AUC top-10"),
           ("top100_diversity", "diversity top-100"), ("prior_log_likelihood_top100", "prior log p top-100"),
           ("valid_fraction", "valid proposals"), ("calls", "calls"), ("seconds", "seconds")]
METHOD_ORDER = ("reinvent", "screening", "graph-ga")
RL, SCREENING = "reinvent", "screening"


@functools.cache
def published(name: str) -> dict[str, dict[str, str]]:
    """Rows of ``published/<name>.csv`` by task (empty when the file is absent)."""
    path = PUBLISHED / f"{name}.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["task"]: row for row in csv.DictReader(fh)}


def collect_design(results: Path) -> list[dict[str, Any]]:
    """Every ``results/design/{objective}/{method}/seed{seed}/summary.json`` with its path parts."""
    runs = []
    for path in sorted((results / "design").glob("*/*/seed*/summary.json")):
        runs.append({"objective": path.parts[-4], "method": path.parts[-3], "seed": int(path.parts[-2][4:]),
                     "dir": path.parent, "summary": read_json(path)})
    return runs


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _curves(objective: str, runs: list[dict[str, Any]]) -> str | None:
    """Data URI of the top-10 mean against calls of each method (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    drawn = 0
    for run in sorted(runs, key=lambda r: (_order(r["method"]), r["seed"])):
        path = run["dir"] / "curve.csv"
        if run["seed"] != min(r["seed"] for r in runs if r["method"] == run["method"]) or not path.is_file():
            continue
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            ax.plot([int(r["calls"]) for r in rows], [float(r["top10"] or 0) for r in rows], label=run["method"])
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("scoring calls")
    ax.set_ylabel("top-10 mean score")
    ax.set_ylim(0, 1.02)
    ax.set_title(objective)
    ax.legend(loc="lower right")
    png = figure_png(fig)
    plt.close(fig)
    return png_data_uri(png)


def _order(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _published_rows(task: str | None, table: Table) -> None:
    if task is None:
        return
    guacamol, pmo = published("guacamol_table2").get(task), published("pmo_auc_top10").get(task)
    blank = ["–"] * (len(table.header) - 1)
    for column, label in (("smiles_lstm", "SMILES LSTM"), ("graph_ga", "Graph GA"), ("best_of_dataset",
                                                                                     "best of dataset")):
        if guacamol and guacamol.get(column):
            cells = list(blank)
            cells[table.header.index("GuacaMol score") - 1] = format_number(float(guacamol[column]), 3)
            table.rows.append(("published", [f"{label} (GuacaMol Table 2, no call limit)", *cells]))
    for column, label in (("reinvent", "REINVENT"), ("graph_ga", "Graph GA"), ("screening", "screening")):
        if pmo and pmo.get(f"{column}_mean"):
            cells = list(blank)
            std = pmo.get(f"{column}_std")
            value = format_number(float(pmo[f"{column}_mean"]), 3) + (f"±{float(std):.3f}" if std else "")
            cells[table.header.index("AUC top-10") - 1] = value
            table.rows.append(("published", [f"{label} (PMO, 10,000 calls)", *cells]))


@register("report", "molecules-design")  # after "molecules" (sections are sorted by name)
def design_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML for every ``dgm optimize`` run under ``results/design``; empty if there is none."""
    runs = collect_design(results)
    if not runs:
        return ""
    objectives, wins, ties, compared = [], 0, 0, 0
    totals: dict[str, dict[str, float]] = {"GuacaMol score": {}, "AUC top-10": {}}
    tasks: list[str] = []
    for objective in sorted({r["objective"] for r in runs}):
        oruns = [r for r in runs if r["objective"] == objective]
        first = oruns[0]["summary"]
        table = Table(["method"] + [label for _, label in COLUMNS])
        means: dict[str, dict[str, float | None]] = {}
        for method in sorted({r["method"] for r in oruns}, key=_order):
            mruns = [r["summary"] for r in oruns if r["method"] == method]
            means[method] = {key: _mean([s.get(key) for s in mruns]) for key, _ in COLUMNS}
            cells = [bold(method) + f" (ours, {len(mruns)} seed{'s' if len(mruns) > 1 else ''})"]
            cells += [format_number(means[method][key], 0 if key in ("calls", "seconds") else 3) for key, _ in COLUMNS]
            table.rows.append(("ours", cells))
            for total, key in (("GuacaMol score", "guacamol_score"), ("AUC top-10", "pmo_auc_top10")):
                if means[method].get(key) is not None and first.get("task") is not None:
                    totals[total][method] = totals[total].get(method, 0.0) + means[method][key]
        _published_rows(first.get("task"), table)
        if first.get("task") is not None:
            tasks.append(first["task"])
        if RL in means and SCREENING in means and means[RL]["pmo_auc_top10"] is not None:
            rl, screening = means[RL]["pmo_auc_top10"], means[SCREENING]["pmo_auc_top10"] or 0
            compared += 1
            wins += rl > screening
            ties += rl == screening
        best = next((r for r in sorted(oruns, key=lambda r: (_order(r["method"]), r["seed"]))
                     if (r["dir"] / "best.png").is_file()), None)
        figures = [Figure(f"{objective}: top-10 mean score against calls", _curves(objective, oruns), "curves",
                          "No curve.")]
        if best is not None:
            figures.append(Figure(f"{objective}: best molecules ({best['method']}, seed {best['seed']})",
                                  png_data_uri((best["dir"] / "best.png").read_bytes()), "best molecules"))
        objectives.append({"name": objective, "task": first.get("task"), "budget": first.get("budget"),
                           "table": table, "figures": figures})
    summary = (f"REINVENT beats screening (AUC top-10 at equal calls) on {wins} of {compared} objectives"
               + (f" ({ties} tied)" if ties else "") if compared else None)
    return render(Path(__file__).with_name("design_report.html.j2"), objectives=objectives, summary=summary,
                  totals=_totals(totals, tasks))


def _totals(ours: dict[str, dict[str, float]], tasks: list[str]) -> list[str]:
    """Sentences: each method's total over the benchmark tasks run, beside the published totals
    over the same tasks (those with a published value for every task)."""
    sources = {"GuacaMol score": ("guacamol_table2", (("smiles_lstm", "SMILES LSTM"), ("graph_ga", "Graph GA"),
                                                      ("best_of_dataset", "best of dataset"))),
               "AUC top-10": ("pmo_auc_top10", (("reinvent_mean", "REINVENT"), ("graph_ga_mean", "Graph GA"),
                                                ("screening_mean", "screening")))}
    lines = []
    for total, methods in ours.items():
        if not methods:
            continue
        text = ", ".join(f"{m} {methods[m]:.3f}" for m in sorted(methods, key=_order))
        table, columns = sources[total]
        rows = published(table)
        shown = [f"{label} {sum(float(rows[t][column]) for t in tasks):.3f}" for column, label in columns
                 if tasks and all(t in rows and rows[t].get(column) for t in tasks)]
        published_text = f"; published over the same {len(tasks)} tasks: {', '.join(shown)}" if shown else ""
        lines.append(f"{total} summed over the {len(tasks)} benchmark tasks run: {text}{published_text}.")
    return lines
