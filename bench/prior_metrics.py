"""The shipped SMILES priors' own metrics: each samples N molecules (seed 0) with ``dgm sample`` and is scored
by ``dgm evaluate`` (MOSES's metrics: validity, uniqueness, novelty against its training set, FCD / SNN / Frag /
Scaf against its data's test split); written beside the checkpoint as metrics.json and, for the docs, as one
table of every prior given (docs/results/design/priors.json).

    python bench/prior_metrics.py --prior moses=resources/molecules/moses/data \\
        --prior zinc250k=resources/molecules/zinc250k/data --n 30000 --evaluate zinc250k

``--evaluate`` names the priors sampled and scored in this run; the others' rows are read from their committed
metrics.json (the run that made each is named in the row's note).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import brief, provenance  # noqa: E402

RESULT = ROOT / "docs/results/design/priors.json"
LABELS = {"unique@10000": "unique@10k", "reference_test_size": "test-set molecules", "training_steps": "training steps",
          "training_seconds": "training seconds"}
SHOWN = ("valid", "unique@10000", "novelty", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test", "IntDiv1", "Filters",
         "reference_test_size", "training_steps", "training_seconds")


def dgm(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dgm_science.cli", *args], check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", action="append", required=True,
                        help="NAME=DATA: data/models/NAME-smiles-arm/model.ckpt and its prepared data folder (with "
                             "train_all.smi and ref_test.npz from `dgm reference`)")
    parser.add_argument("--evaluate", nargs="*", default=[], help="the priors sampled and scored in this run")
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    priors = dict(item.split("=", 1) for item in args.prior)
    record = provenance(__file__, argv, f"{args.n} samples at temperature 1, seed 0, one torch thread; MOSES metrics "
                                        f"against each prior's own data", threads=1, arguments=args)
    rows, notes = [], []
    for name, data in priors.items():
        folder = ROOT / "data/models" / f"{name}-smiles-arm"
        if name in args.evaluate:
            with tempfile.TemporaryDirectory() as tmp:
                samples = Path(tmp) / "samples.csv"
                dgm("sample", "--checkpoint", str(folder / "model.ckpt"), "-n", str(args.n), "--seed", "0",
                    "--out", str(samples), "--threads", "1")
                dgm("evaluate", "--domain", "molecules", "--samples", str(samples), "--checkpoint",
                    str(folder / "model.ckpt"), "--reference", data, "--out", str(folder / "metrics.json"),
                    "--jobs", str(args.jobs))
        else:
            notes.append(f"{name}: its committed {folder.relative_to(ROOT)}/metrics.json (data/models/README.md "
                         f"names the run that made it)")
        metrics = json.loads((folder / "metrics.json").read_text())
        values = [metrics.get(key) for key in SHOWN]
        rows.append([name, *(round(v, 4) for v in values[:-3]), *(round(v) for v in values[-3:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "title": f"The shipped SMILES priors: {args.n:,} samples each, MOSES metrics against each prior's own test "
                 f"split",
        "provenance": brief(record), "columns": ["prior", *(LABELS.get(key, key) for key in SHOWN)], "rows": rows,
        "notes": notes}, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
