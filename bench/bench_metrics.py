"""Benchmark and sanity-check the MOSES metrics: reference statistics of Test/TestSF, then evaluate() on
10,000 molecules from Test (FCD/Test near 0), 10,000 from train, and 10,000 unrelated halogenated chains.

Example:
    python bench/bench_metrics.py \\
        --test resources/molecules/moses/raw/test.csv.gz \\
        --test-scaffolds resources/molecules/moses/raw/test_scaffolds.csv.gz \\
        --train resources/molecules/moses/raw/train.csv.gz --n-jobs 2
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from timing import provenance, shown_path

from dgm_science.domains.molecules.metrics import (
    canonical_smiles,
    evaluate,
    fcd_from_stats,
    load_reference,
    reference_statistics,
    save_reference,
)

ROOT = Path(__file__).resolve().parents[1]
MOSES_DATA = ROOT / "resources/molecules/moses/raw"  # written by `dgm fetch moses` (the moses_fetch rule)


def read_smiles(path: Path) -> list[str]:
    """SMILES column of a MOSES csv(.gz) file whose header row names a `SMILES` column."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if "SMILES" not in header:
            raise ValueError(f"{path}: line 1 must be a header with a SMILES column, got {header}")
        column = header.index("SMILES")
        return [row[column] for row in reader if row]


def chain_molecules(n: int, seed: int) -> list[str]:
    """n distinct valid acyclic halogenated/oxygenated chains, unlike drug-like MOSES molecules."""
    rng = np.random.default_rng(seed)
    substituents = ["F", "Cl", "Br", "O", "N", "C", "I"]
    molecules: set[str] = set()
    while len(molecules) < n:
        length = int(rng.integers(4, 30))
        atoms = []
        for _ in range(length):
            atom = "C"
            if rng.random() < 0.4:
                atom += f"({substituents[rng.integers(len(substituents))]})"
            atoms.append(atom)
        smiles = canonical_smiles("".join(atoms) + substituents[rng.integers(3)])
        if smiles is not None:
            molecules.add(smiles)
    return sorted(molecules)


def strict_json(value):
    """NaN (e.g. Scaf with no scaffold) as null, so the report is standard JSON."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def reference(name: str, smiles: list[str], cache: Path, args: argparse.Namespace, report: dict) -> dict:
    """Load cached statistics when allowed, else compute (timed) and cache them."""
    if args.reuse_cache and cache.exists():
        print(f"[{name}] loading cached statistics {cache}", flush=True)
        report["reference_statistics"][name] = {"cached": str(cache)}
        return load_reference(cache)
    print(f"[{name}] reference_statistics on {len(smiles)} molecules ...", flush=True)
    start = time.perf_counter()
    stats = reference_statistics(smiles, n_jobs=args.n_jobs, device=args.device, progress=args.progress)
    seconds = time.perf_counter() - start
    save_reference(cache, stats)
    report["reference_statistics"][name] = {"n_molecules": len(smiles), "wall_s": round(seconds, 2)}
    print(f"[{name}] {seconds:.1f} s, cached at {cache}", flush=True)
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, default=MOSES_DATA / "test.csv.gz", help="MOSES Test")
    parser.add_argument("--test-scaffolds", type=Path, default=MOSES_DATA / "test_scaffolds.csv.gz",
                        help="MOSES TestSF")
    parser.add_argument("--train", type=Path, default=MOSES_DATA / "train.csv.gz", help="MOSES train")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "resources/molecules/moses/bench_reference")
    parser.add_argument("--reuse-cache", action="store_true", help="load cached reference statistics if present")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "metrics.json")
    args = parser.parse_args(argv)

    report: dict = {
        "provenance": provenance(__file__, argv, f"MOSES metrics against {shown_path(args.test)} and "
                                 f"{shown_path(args.test_scaffolds)} (novelty: {shown_path(args.train)}); "
                                 f"{args.n_samples} molecules per set, seed {args.seed}, {args.n_jobs} processes",
                                 threads=torch.get_num_threads(), arguments=args),
        "n_jobs": args.n_jobs,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "reference_statistics": {},
        "evaluate": {},
    }
    test = read_smiles(args.test)
    test_scaffolds = read_smiles(args.test_scaffolds)
    test_stats = reference("test", test, args.cache_dir / "test.npz", args, report)
    scaffold_stats = reference("test_scaffolds", test_scaffolds, args.cache_dir / "test_scaffolds.npz", args, report)

    start = time.perf_counter()
    train_smiles = read_smiles(args.train)
    train = set(train_smiles)
    report["train_set_s"] = round(time.perf_counter() - start, 2)

    rng = np.random.default_rng(args.seed)
    samples = {
        "test_sample": [test[i] for i in rng.choice(len(test), args.n_samples, replace=False)],
        "train_sample": [train_smiles[i] for i in rng.choice(len(train_smiles), args.n_samples, replace=False)],
        "chains": chain_molecules(args.n_samples, args.seed),
    }
    for name, generated in samples.items():
        print(f"[evaluate] {name}: {len(generated)} molecules ...", flush=True)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        metrics = evaluate(
            generated,
            train=train,
            test_stats=test_stats,
            test_scaffolds_stats=scaffold_stats,
            n_jobs=args.n_jobs,
            device=args.device,
            progress=args.progress,
            timings=timings,
        )
        seconds = time.perf_counter() - start
        report["evaluate"][name] = {
            "wall_s": round(seconds, 2),
            "stage_s": {stage: round(t, 3) for stage, t in timings.items()},
            "metrics": metrics,
        }
        print(f"[evaluate] {name}: {seconds:.1f} s  {json.dumps(metrics)}", flush=True)

    start = time.perf_counter()
    ours = fcd_from_stats(
        test_stats["fcd_mu"], test_stats["fcd_sigma"], scaffold_stats["fcd_mu"], scaffold_stats["fcd_sigma"]
    )
    ours_s = time.perf_counter() - start
    from fcd.utils import calculate_frechet_distance

    start = time.perf_counter()
    scipy_sqrtm = calculate_frechet_distance(
        test_stats["fcd_mu"], test_stats["fcd_sigma"], scaffold_stats["fcd_mu"], scaffold_stats["fcd_sigma"]
    )
    report["fcd_test_vs_testsf"] = {
        "fcd_from_stats": ours,
        "fcd_from_stats_s": round(ours_s, 3),
        "fcd.calculate_frechet_distance": scipy_sqrtm,
        "fcd.calculate_frechet_distance_s": round(time.perf_counter() - start, 3),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
