"""Seeds of a 3D-molecule model side by side: the last row (the trained model's samples) of each seed's learning
curve (``bench/edm_learning_curve.py``'s result files), with the mean and sd over the seeds, as one result file
(docs/results/families/graph_conformer_seeds.json). Not a test: it only reads the curves.

    python bench/conformer_seeds.py --curves docs/results/families/graph_conformer_curve_seed{0,1,2}.json \\
        --out docs/results/families/graph_conformer_seeds.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

METRICS = ("atom stability", "molecule stability", "validity")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=Path, nargs="+", required=True, help="one learning-curve result per seed")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--notes", nargs="*", default=[])
    args = parser.parse_args(argv)
    rows, configs, commits = [], set(), set()
    for path in args.curves:
        table = json.loads(path.read_text())
        last = dict(zip(table["columns"], table["rows"][-1]))
        seed = json.loads(table["provenance"]["config"]).get("seed", table["title"].split("seed ")[-1].split(")")[0])
        rows.append([f"seed {seed}", last["step"], last["samples"], last["sampling steps"],
                     *(last[m] for m in METRICS), last["train seconds"], last["sample seconds"]])
        configs.add(table["provenance"]["config"])
        commits.add(table["provenance"]["commit"])
    if len(configs) != 1:
        raise SystemExit("the curves come from different configs")
    columns = ["run", "step", "samples", "sampling steps", *METRICS, "train seconds", "sample seconds"]
    for label, fn in (("mean", statistics.mean), ("sd", statistics.stdev)):
        rows.append([label, None, None, None, *(round(fn(r[4 + i] for r in rows[: len(args.curves)]), 4)
                                                 for i in range(len(METRICS))), None, None])
    first = json.loads(args.curves[0].read_text())
    table = {
        "title": first["title"].split(" learning curve")[0] + f": {len(args.curves)} seeds at the end of training "
                 "(the last row of each seed's learning curve)",
        "provenance": {"commit": ", ".join(sorted(commits)),
                       "command": "python bench/conformer_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                       "config": configs.pop(), "date": datetime.date.today().isoformat(),
                       "machine": first["provenance"]["machine"]},
        "columns": columns,
        "rows": rows,
        "notes": args.notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
