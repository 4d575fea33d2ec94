"""Goal-directed design section of the report: per objective, each method's scores at equal calls
beside the published rows (GuacaMol Table 2; PMO's AUC top-10), the score-vs-calls curves, the
best molecules, the diversity of the top 100 and the prior's log-likelihood of what was found."""

from __future__ import annotations

import csv
import dataclasses
import functools
from pathlib import Path
from typing import Any

from dgm_science.applications.design.benchmarks import GUACAMOL_V2_TASKS, PMO_TASKS
from dgm_science.registry import register
from dgm_science.report_parts import Figure, Inputs, Table, bold, figure_png, format_number, png_data_uri, render
from dgm_science.utils import read_json

PUBLISHED = Path(__file__).with_name("published")
"""GuacaMol Table 2 and PMO's AUC top-10 (sources in published/README.md)."""
PUBLISHED_SOURCES = {
    "guacamol_table2": ("Brown et al. 2019, \"GuacaMol: Benchmarking Models for de Novo Molecular Design\", "
                        "J. Chem. Inf. Model. 59:1096, Table 2 (no call limit)",
                        "checked number by number against the authors' result files (BenevolentAI/guacamol_results), "
                        "not against the typeset table"),
    "pmo_auc_top10": ("Gao et al. 2022, \"Sample Efficiency Matters\" (PMO), NeurIPS Datasets and Benchmarks: AUC "
                      "top-10, mean ± std of 5 runs at 10,000 calls",
                      "copied from the authors' results workbook (Mol_Opt.xlsx) at full precision; the paper's table "
                      "could not be checked (it appears to print the values truncated to 3 decimals)"),
}
"""Each published table's (paper and table, what it was checked against), as published/README.md records."""
GUACAMOL_BASELINES = {"best_of_dataset": "best of dataset", "smiles_lstm": "SMILES LSTM", "smiles_ga": "SMILES GA",
                      "graph_ga": "Graph GA", "graph_mcts": "Graph MCTS"}
"""GuacaMol Table 2's baselines: CSV column -> name."""
PMO_METHODS = {"reinvent": "REINVENT", "graph_ga": "Graph GA", "screening": "screening"}
"""PMO's methods in ``pmo_auc_top10.csv``: column prefix (``{prefix}_mean``, ``{prefix}_std``) -> name."""

COLUMNS = [("top1", "top-1"), ("top10_mean", "top-10"), ("top100_mean", "top-100"),
           ("guacamol_score", "GuacaMol score"), ("pmo_auc_top10", "AUC top-10"),
           ("top100_diversity", "diversity top-100"), ("prior_log_likelihood_top100", "prior log p top-100"),
           ("valid_fraction", "valid proposals"), ("calls", "calls"), ("seconds", "seconds")]
METHOD_ORDER = ("reinvent", "screening", "graph-ga")
RL, SCREENING = "reinvent", "screening"


@dataclasses.dataclass(frozen=True)
class Total:
    """A benchmark's total over its tasks: our summaries' ``key`` summed over the ``tasks`` run, beside the
    published table's (``published_total_row``: the source's own total, quoted as printed when every task of
    the suite was run; otherwise the sum of its per-task values over the same tasks)."""

    key: str
    tasks: tuple[str, ...]
    table: str
    columns: tuple[tuple[str, str], ...]
    published_total_row: str | None
    source: str


TOTALS = {
    "GuacaMol score": Total("guacamol_score", GUACAMOL_V2_TASKS, "guacamol_table2",
                            tuple((c, GUACAMOL_BASELINES[c]) for c in ("smiles_lstm", "graph_ga", "best_of_dataset")),
                            "total", "GuacaMol Table 2"),
    "AUC top-10": Total("pmo_auc_top10", PMO_TASKS, "pmo_auc_top10",
                        tuple((f"{m}_mean", label) for m, label in PMO_METHODS.items()), None, "PMO"),
}
"""The report's totals: GuacaMol's over its 20 v2 tasks, PMO's AUC top-10 over its tasks supported here."""


@functools.cache
def published(name: str) -> dict[str, dict[str, str]]:
    """Rows of ``published/<name>.csv`` by task (empty when the file is absent)."""
    path = PUBLISHED / f"{name}.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["task"]: row for row in csv.DictReader(fh)}


def pmo_cell(row: dict[str, str], method: str) -> str:
    """A PMO row's AUC top-10 of ``method`` as the report shows it: mean±std, 3 decimals (the mean alone where
    the workbook has no std, as on its ``sum`` row)."""
    std = row.get(f"{method}_std")
    return format_number(float(row[f"{method}_mean"]), 3) + (f"±{float(std):.3f}" if std else "")


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


PMO_BUDGET = 10_000
"""The scoring calls of PMO's published AUC top-10 (Gao et al. 2022)."""


def _published_rows(task: str | None, budget: int | None, ours: Table) -> tuple[Table | None, str]:
    """The published rows of ``task``: PMO's at ``PMO_BUDGET`` calls go into ``ours`` (the same protocol) when
    the run had that budget; every other published row goes into a table of its own, returned with a line
    naming how its protocol differs. ``(None, "")`` when there is no published row."""
    if task is None:
        return None, ""
    guacamol, pmo = published("guacamol_table2").get(task), published("pmo_auc_top10").get(task)
    apart = Table(ours.header)
    blank = ["–"] * (len(ours.header) - 1)
    for column in ("smiles_lstm", "graph_ga", "best_of_dataset"):
        label = GUACAMOL_BASELINES[column]
        if guacamol and guacamol.get(column):
            cells = list(blank)
            cells[ours.header.index("GuacaMol score") - 1] = format_number(float(guacamol[column]), 3)
            apart.rows.append(("published", [f"{label} (GuacaMol Table 2, no call limit)", *cells]))
    for column, label in PMO_METHODS.items():
        if pmo and pmo.get(f"{column}_mean"):
            cells = list(blank)
            cells[ours.header.index("AUC top-10") - 1] = pmo_cell(pmo, column)
            (ours if budget == PMO_BUDGET else apart).rows.append(
                ("published", [f"{label} (PMO, {PMO_BUDGET:,} calls)", *cells]))
    differences = []
    if guacamol:
        differences.append("GuacaMol Table 2 ran without a call limit")
    if pmo and budget != PMO_BUDGET:
        differences.append(f"PMO's AUC top-10 is over {PMO_BUDGET:,} calls, this run's over {budget:,}"
                           if budget else f"PMO's AUC top-10 is over {PMO_BUDGET:,} calls")
    return (apart, "Published, another protocol: " + "; ".join(differences) + ".") if apart.rows else (None, "")


@register("report", "molecules-design")  # after "molecules" (sections are sorted by name)
def design_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML for every ``dgm optimize`` run under ``results/design``; empty if there is none."""
    runs = collect_design(results)
    if not runs:
        return ""
    objectives, wins, ties, compared = [], 0, 0, 0
    task_means: dict[str, dict[str, dict[str, float]]] = {total: {} for total in TOTALS}  # task -> method
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
            for total, spec in TOTALS.items():
                if means[method].get(spec.key) is not None and first.get("task") in spec.tasks:
                    task_means[total].setdefault(first["task"], {})[method] = means[method][spec.key]
        published_table, published_note = _published_rows(first.get("task"), first.get("budget"), table)
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
                           "table": table, "published": published_table, "published_note": published_note,
                           "figures": figures})
    seeds = min((len({r["seed"] for r in runs if r["objective"] == o and r["method"] == m})
                 for o in {r["objective"] for r in runs} for m in (RL, SCREENING)
                 if any(r["objective"] == o and r["method"] == m for r in runs)), default=0)
    summary = (f"REINVENT's AUC top-10 is above screening's (equal calls) on {wins} of {compared} objectives"
               + (f" ({ties} tied)" if ties else "")
               + (" (a single-seed observation)" if seeds < 3 else f" (means over {seeds} seeds)")
               if compared else None)
    return render(Path(__file__).with_name("report.html.j2"), objectives=objectives, summary=summary,
                  totals=_totals(task_means))


def _totals(task_means: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Sentences: per total (``TOTALS``), each method's sum over the benchmark's tasks it ran, beside the
    published total: the source's own (e.g. GuacaMol Table 2's SMILES LSTM 17.340) when every task of the
    suite was run, else the sum of the published per-task values over the same tasks."""
    lines = []
    for total, spec in TOTALS.items():
        means = task_means.get(total) or {}
        if not means:
            continue
        tasks = sorted(means, key=spec.tasks.index)
        methods = sorted({m for by_method in means.values() for m in by_method}, key=_order)
        parts = []
        for method in methods:
            ran = [t for t in tasks if method in means[t]]
            count = f" ({len(ran)} tasks)" if len(ran) != len(tasks) else ""
            parts.append(f"{method} {sum(means[t][method] for t in ran):.3f}{count}")
        rows = published(spec.table)
        whole = set(tasks) == set(spec.tasks) and spec.published_total_row in rows
        shown = []
        for column, label in spec.columns:
            if whole and rows[spec.published_total_row].get(column):
                shown.append(f"{label} {rows[spec.published_total_row][column]}")
            elif not whole and all(t in rows and rows[t].get(column) for t in tasks):
                shown.append(f"{label} {sum(float(rows[t][column]) for t in tasks):.3f}")
        if whole:
            published_text = f"; {spec.source}'s published total over its {len(tasks)} tasks: {', '.join(shown)}"
        elif shown:
            published_text = (f"; {spec.source}, its per-task values summed over the same {len(tasks)} tasks: "
                              f"{', '.join(shown)}")
        else:
            published_text = ""
        lines.append(f"{total} summed over the {len(tasks)} {spec.source.split()[0]} tasks run: "
                     f"{', '.join(parts)}{published_text}.")
    return lines
