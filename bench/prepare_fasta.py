"""Bench of the ``fasta`` source kind's prepare (``dgm prepare --source '{kind: fasta, ...}'``): throughput (MB of
FASTA per second, both streaming passes) and peak resident memory on generated DNA files of growing size, so that
the streaming claim (memory set by the number of records, not by the residues) is a measurement.

Each size runs in a fresh process (``python -c`` calling ``prepare_fasta``); its peak RSS is that process's own
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, beside the RSS of a child that only imports the
module (torch and the package: the floor every ``dgm`` command pays). The files: 150-base reads (wrapped at 60)
with 5 % exact duplicates and a few IUPAC codes, written by this script (seeded), random split.

    nice -n 19 python bench/prepare_fasta.py --sizes 10 100 --out docs/results/user-data/prepare_fasta_bench.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import brief, provenance  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
from dgm_science.domains.sequences.sources import FastaOptions, prepare_fasta
if sys.argv[1] != "-":
    start = time.perf_counter()
    stats = prepare_fasta(FastaOptions(kind="fasta", path=sys.argv[1], alphabet=sys.argv[3]), Path(sys.argv[2]))
    print(json.dumps({"seconds": time.perf_counter() - start, "read": stats["read"], "unique": stats["unique"],
                      "duplicates": stats["duplicates_removed"]}))
print(json.dumps({"max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_reads(path: Path, megabytes: float, seed: int = 0, length: int = 150) -> int:
    """A DNA FASTA of about ``megabytes`` MB: reads of ``length`` bases, 5 % repeats of earlier reads, 1 in 1,000
    bases an IUPAC code; returns the number of records."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    record_bytes = length + length // 60 + 1 + 12
    n = int(megabytes * 1e6 / record_bytes)
    written = 0
    with open(path, "wb") as fh:
        chunk = 50_000
        kept: list[bytes] = []
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            block = letters[rng.integers(0, 4, (m, length))]
            block[rng.random((m, length)) < 0.001] = ord("N")
            lines = []
            for i, row in enumerate(block):
                seq = row.tobytes()
                if kept and rng.random() < 0.05:
                    seq = kept[int(rng.integers(0, len(kept)))]
                elif len(kept) < 10_000:
                    kept.append(seq)
                lines.append(b">read%d sample=bench\n" % (lo + i))
                lines.extend(seq[j:j + 60] + b"\n" for j in range(0, length, 60))
            fh.write(b"".join(lines))
            written += m
    return written


def run_child(args: list[str]) -> tuple[dict, float]:
    """(the child's prepare figures, its own peak RSS in MB: ``getrusage(RUSAGE_SELF)`` at its end) of one
    fresh process."""
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return (lines[0] if len(lines) > 1 else {}), lines[-1]["max_rss_kb"] / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 100], help="file sizes in MB (increasing)")
    parser.add_argument("--gzip", action="store_true", help="also the largest file gzip-compressed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    made = provenance(__file__, argv, "generated DNA reads (150 bases, 5 % repeats), alphabet: dna, split: random",
                      threads=1, arguments=args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, floor = run_child(["-", "-", "-"])
        for size in sorted(args.sizes):
            path = tmp / f"reads_{size:g}MB.fasta"
            records = write_reads(path, size)
            stats, peak = run_child([str(path), str(tmp / f"out_{size:g}"), "dna"])
            mb = path.stat().st_size / 1e6
            rows.append([path.name, round(mb, 1), records, stats["unique"], stats["duplicates"],
                         round(stats["seconds"], 1), round(mb / stats["seconds"], 2), round(peak), round(peak - floor)])
            shutil.rmtree(tmp / f"out_{size:g}")
            print(rows[-1], flush=True)
        if args.gzip:
            gz = path.with_suffix(".fasta.gz")
            with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            stats, peak = run_child([str(gz), str(tmp / "out_gz"), "dna"])
            rows.append([gz.name + f" ({gz.stat().st_size / 1e6:.1f} MB compressed)", round(mb, 1), records,
                         stats["unique"], stats["duplicates"], round(stats["seconds"], 1),
                         round(mb / stats["seconds"], 2), round(peak), round(peak - floor)])
            print(rows[-1], flush=True)
    result = {
        "title": "dgm prepare --source {kind: fasta}: throughput and peak memory on generated DNA reads (random split)",
        "provenance": brief(made),
        "columns": ["file", "MB (uncompressed)", "records", "distinct", "duplicates removed", "seconds",
                    "MB/s (both passes)", "peak RSS MB", "peak RSS above import MB"],
        "rows": rows,
        "notes": [f"import floor (python + torch + dgm_science, no prepare): {floor:.0f} MB RSS",
                  "one process, one core, run under nice -n 19 on a machine shared with other jobs: seconds are an "
                  "upper bound", "single run per size"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
