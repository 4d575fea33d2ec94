"""Benchmark: how well the typicality OOD score of trained molecule models tells held-out
in-distribution molecules from other distributions (AUROC, Mann-Whitney). Writes bench/results/ood.json.

For each checkpoint: a seeded subset of the in-distribution test set (default: the MOSES test set)
against each out-of-distribution set (default: the QM9 test set) and against randomized
(non-canonical) SMILES of the same in-distribution molecules. Reports the AUROC of the two-sided
typicality score (Nalisnick et al. 2019), the same counting molecules the model cannot score as
atypical, and of -log p alone. Not a test: figures depend on the trained checkpoints.

    python bench/bench_ood.py results/molecules/moses/smiles-arm/seed0/model.ckpt \\
        [--in-distribution resources/molecules/moses/raw/test.csv.gz] \\
        [--ood qm9=resources/molecules/qm9/data/test.smi] [--max-molecules 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from dgm_science import api
from dgm_science.domains.molecules.candidates import ood_auroc, randomized_smiles
from dgm_science.domains.molecules.data import read_smiles
from dgm_science.domains.molecules.properties import parse_smiles
from dgm_science.utils import atomic_path

ROOT = Path(__file__).resolve().parents[1]


def subset(path: Path, max_molecules: int, seed: int) -> list[str]:
    """The valid SMILES of a seeded subset of at most ``max_molecules`` lines of a .smi / .csv(.gz)
    file, in file order."""
    smiles = [s for s in read_smiles(path) if s]
    if len(smiles) > max_molecules:
        index = np.sort(np.random.default_rng(seed).choice(len(smiles), max_molecules, replace=False))
        smiles = [smiles[i] for i in index]
    return [s for s in smiles if parse_smiles(s) is not None]


def bench_checkpoint(path: Path, in_distribution: list[str], ood_sets: dict[str, list[str]], device: str,
                     seed: int) -> dict:
    """AUROCs of one checkpoint's OOD score against every set, and its typicality statistics."""
    model = api.load(path, device=device)
    if model.typicality is None:
        raise SystemExit(f"{path}: no typicality statistics (trained before they were recorded); retrain it")
    sets = {**ood_sets, "randomized_smiles": randomized_smiles(in_distribution, seed=seed)}
    start = time.perf_counter()
    results = {name: ood_auroc(model, in_distribution, smiles) for name, smiles in sets.items()}
    return {"model": model.name, "typicality": model.typicality, "sets": results,
            "score_seconds": time.perf_counter() - start}


def parse_named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="trained checkpoints (model.ckpt)")
    parser.add_argument("--in-distribution", type=Path, default=ROOT / "resources/molecules/moses/raw/test.csv.gz",
                        help="held-out molecules of the training distribution (default: the MOSES test set)")
    parser.add_argument("--ood", type=parse_named_path, action="append", default=None, metavar="NAME=PATH",
                        help="an out-of-distribution set, repeatable "
                             "(default: qm9=resources/molecules/qm9/data/test.smi)")
    parser.add_argument("--max-molecules", type=int, default=2000, help="seeded subset size of each set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets and randomized SMILES")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ood.json", help="output JSON")
    args = parser.parse_args(argv)
    ood = dict(args.ood or [("qm9", ROOT / "resources/molecules/qm9/data/test.smi")])
    in_distribution = subset(args.in_distribution, args.max_molecules, args.seed)
    ood_sets = {name: subset(path, args.max_molecules, args.seed) for name, path in ood.items()}
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "in_distribution": {"path": str(args.in_distribution), "n": len(in_distribution)},
        "ood": {name: {"path": str(path), "n": len(ood_sets[name])} for name, path in ood.items()},
        "seed": args.seed,
        "checkpoints": {str(path): bench_checkpoint(path, in_distribution, ood_sets, args.device, args.seed)
                        for path in args.checkpoints},
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    for path, run in result["checkpoints"].items():
        for name, scores in run["sets"].items():
            print(f"{path}  vs {name}: AUROC {scores['auroc']:.3f} (scorable only {scores['auroc_scorable']:.3f}, "
                  f"-log p alone {scores['auroc_negative_log_likelihood']:.3f})")
    return result


if __name__ == "__main__":
    main()
