"""GuacaMol scores of the two isomer tasks re-scored from whole `dgm optimize` runs: each run's score from
the number of molecules the task asks for (159 for C11H24, 250 for C9H10N2O2PF2Cl; ``summary.json``'s
``guacamol_score``) beside the score the same run got when at most 100 molecules were counted (recomputed
from its ``molecules.csv``: the best 100 distinct stereo-free molecules, the rest counted as 0), which
checks that the run reproduces the figure quoted before the fix.

Writes a result file (docs/results/<topic>/<name>.json, the shape CONTRIBUTING asks for) from run folders
``<runs>/design/<task>/<method>/seed<seed>/`` written by the commands given with --command.

Example:
    python bench/guacamol_isomers.py --runs /tmp/rescore/results --out docs/results/design/guacamol_isomers.json \
        --command "dgm optimize ..." --commit abc1234
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
from pathlib import Path

from dgm_science.applications.design.benchmarks import guacamol_score, molecules_needed
from dgm_science.applications.design.optimize import guacamol_molecules

METHOD_ORDER = ("reinvent", "screening", "graph-ga")


def ranked_from_csv(path: Path) -> list[tuple[float, str]]:
    """A run's distinct scored molecules (``molecules.csv`` rows with a call index), best first, ties by
    call order: the order ``optimize._ranked`` gives."""
    calls = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["call"]:
                calls.setdefault(int(row["call"]), (float(row["score"]), row["canonical"]))
    return [(score, smiles) for call, (score, smiles) in sorted(calls.items(), key=lambda kv: (-kv[1][0], kv[0]))]


def capped_at_100(task: str, ranked: list[tuple[float, str]]) -> float:
    """The score the code before the fix gave: the best 100 distinct stereo-free molecules' recorded
    scores, zeros for the rest of ``molecules_needed(task)``."""
    score_of: dict[str, float] = {}
    for score, smiles in ranked:
        score_of.setdefault(smiles, score)
    return guacamol_score(task, [score_of[smiles] for smiles in guacamol_molecules(ranked, 100)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="folder holding design/<task>/<method>/seed<n>/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--commit", required=True, help="git rev-parse --short HEAD of the code that ran")
    parser.add_argument("--command", required=True, help="the exact commands that made the runs")
    parser.add_argument("--config", default="")
    parser.add_argument("--machine", default="2 CPU cores, no GPU")
    parser.add_argument("--note", action="append", default=[])
    args = parser.parse_args()
    rows = []
    for summary_path in sorted((args.runs / "design").glob("*/*/seed*/summary.json"),
                               key=lambda p: (p.parts[-4], METHOD_ORDER.index(p.parts[-3]), p.parts[-2])):
        summary = json.loads(summary_path.read_text())
        task, method = summary["task"], summary["method"]
        ranked = ranked_from_csv(summary_path.parent / "molecules.csv")
        rows.append([task, method, summary["seed"], summary["calls"], molecules_needed(task),
                     summary["guacamol_molecules"], round(summary["guacamol_score"], 4),
                     round(capped_at_100(task, ranked), 4), round(summary["pmo_auc_top10"], 4),
                     round(summary["top1"], 4), round(summary["seconds"], 1)])
    table = {
        "title": "GuacaMol score of the isomer tasks from the molecules each task asks for (159 / 250), beside the "
                 "same runs' score with at most 100 molecules counted (the figure quoted before the fix)",
        "provenance": {"commit": args.commit, "command": args.command, "config": args.config,
                       "date": datetime.date.today().isoformat(), "machine": args.machine},
        "columns": ["task", "method", "seed", "calls", "molecules GuacaMol asks for",
                    "distinct stereo-free molecules scored", "GuacaMol score",
                    "GuacaMol score with at most 100 molecules (before the fix)", "PMO AUC top-10", "top-1",
                    "wall seconds"],
        "rows": rows,
        "notes": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(rows)} runs")


if __name__ == "__main__":
    main()
