"""Preparing a user's SMILES file at scale: `dgm prepare --source` (parse, standardise, canonicalise, Bemis-Murcko
scaffolds, deduplicate, scaffold split) of N molecules, its wall time, the peak memory of its whole process tree
(the workers included) and how many cores it kept busy, for each number of worker processes.

The file is the first N molecules of MOSES's training set (the molsets wheel, as `dgm fetch moses` writes it) as a
user's CSV would hold them: every 20th molecule as its hydrochloride salt (`.Cl`, which standardisation strips) and
every 50th repeated (which deduplication removes), so that each step does work.

    python bench/bench_prepare_smiles.py --moses resources/molecules/moses/raw/train.csv.gz --n 1000000 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_user_file(moses: Path, n: int, out: Path) -> int:
    """The first ``n`` MOSES training SMILES as a CSV (smiles, id), salts and repeats added; rows written."""
    rows = 0
    with gzip.open(moses, "rt") as src, open(out, "w", newline="") as dst:
        reader = csv.reader(src)
        header = [h.lower() for h in next(reader)]
        col = header.index("smiles")
        writer = csv.writer(dst)
        writer.writerow(["smiles", "id"])
        for i, row in enumerate(reader):
            if i >= n:
                break
            smiles = row[col] + (".Cl" if i % 20 == 0 else "")
            writer.writerow([smiles, f"mol{i}"])
            rows += 1
            if i % 50 == 0:
                writer.writerow([row[col], f"mol{i}-repeat"])
                rows += 1
    return rows


def measure(command: list[str], interval: float = 0.2) -> dict:
    """Run ``command``; its wall time, the peak summed RSS of its process tree and the CPU seconds of the tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    top = psutil.Process(proc.pid)
    peak, cpu = 0, {}
    while proc.poll() is None:
        try:
            tree = [top, *top.children(recursive=True)]
            rss = 0
            for p in tree:
                try:
                    rss += p.memory_info().rss
                    times = p.cpu_times()  # the process's own time (its children are in the tree)
                    cpu[p.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(interval)
    stderr = proc.stderr.read()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    cpu_s = sum(cpu.values())
    return {"wall_s": wall, "peak_rss_gb": peak / 2**30, "cpu_s": cpu_s, "cores_busy": cpu_s / wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moses", type=Path, required=True, help="MOSES train.csv.gz (`dgm fetch moses`)")
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000], help="molecules per file")
    parser.add_argument("--jobs", type=int, nargs="+", default=[os.cpu_count() or 1], help="worker processes")
    parser.add_argument("--split", default="scaffold", choices=["scaffold", "random"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/bench/prepare_smiles.json")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv, f"source {{kind: smiles, smiles_column: smiles, split: {args.split}, valid: 0.1, "
                      "test: 0.1, standardize: true}; the first N MOSES training SMILES, every 20th as its "
                      "hydrochloride, every 50th repeated", threads="--jobs", arguments=args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            user = Path(tmp) / f"user_{n}.csv"
            written = write_user_file(args.moses, n, user)
            for jobs in args.jobs:
                out = Path(tmp) / f"out_{n}_{jobs}"
                block = json.dumps({"kind": "smiles", "path": str(user), "split": args.split})
                figures = measure([sys.executable, "-m", "dgm_science.cli", "prepare", "--source", block,
                                   "--out", str(out), "--jobs", str(jobs)])
                stats = json.loads((out / "prepare.json").read_text())
                row = [n, written, jobs, round(figures["wall_s"], 1), round(written / figures["wall_s"]),
                       round(figures["peak_rss_gb"], 2), round(figures["cores_busy"], 2), stats["standardized"],
                       stats["duplicates_removed"], stats["skipped"], stats["unique"],
                       f"{stats['train']} / {stats['valid']} / {stats['test']}"]
                rows.append(row)
                print(row, flush=True)
    result = {"title": "dgm prepare --source of a user's SMILES CSV: wall time, peak memory (the process tree) and "
                       "cores kept busy, per number of worker processes",
              "provenance": made,
              "columns": ["molecules", "rows in the file", "worker processes", "wall s", "rows per s",
                          "peak RSS GB", "cores busy (CPU s / wall s)", "standardised", "duplicates removed",
                          "skipped", "unique", "train / valid / test"],
              "rows": rows,
              "notes": ["CPU seconds: each process's own user + system time, sampled every 0.2 s (a worker's last "
                        "0.2 s may be missed).",
                        "Peak RSS is the largest sum, sampled every 0.2 s, of the resident memory of the dgm process "
                        "and its worker processes.",
                        "Measured on a machine shared with other jobs (its load average is in provenance.host): "
                        "the wall times are upper bounds."]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
