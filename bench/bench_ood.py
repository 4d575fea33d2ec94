"""Benchmark: how well the typicality OOD score of trained molecule models tells held-out
in-distribution molecules from other distributions (AUROC, Mann-Whitney). Writes bench/results/ood.json.

For each checkpoint: a seeded subset of the in-distribution test set (default: the MOSES test set)
against each out-of-distribution set (default: the QM9 test set) and against randomized
(non-canonical) SMILES of the same in-distribution molecules. Each shifted set changes one thing:
an ``--ood`` set is first restricted to the elements of the in-distribution set (or ``--elements``),
and to neutral molecules where that set has no charged one (MOSES has none, QM9 has zwitterions),
so that it shifts the source (and with it the size), not the elements or charges; the randomized
SMILES change the representation only. The JSON states each set's composition (count, elements,
charged molecules, heavy-atom range) and the factors found to differ from the in-distribution set.
Reports the AUROC of the two-sided typicality score (Nalisnick et al. 2019), the same counting
molecules the model cannot score as atypical, and of -log p alone. Not a test: figures depend on
the trained checkpoints.

    python bench/bench_ood.py results/molecules/moses/smiles-arm/seed0/model.ckpt \\
        [--in-distribution resources/molecules/moses/raw/test.csv.gz] \\
        [--ood qm9=resources/molecules/qm9/data/test.smi] [--elements C,N,O,F] [--max-molecules 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from dgm_science import api
from dgm_science.domains.molecules.candidates import (
    made_of, ood_auroc, randomized_smiles, set_composition, shifted_factors,
)
from dgm_science.domains.molecules.data import read_smiles
from dgm_science.domains.molecules.properties import parse_smiles
from dgm_science.utils import atomic_path
from timing import provenance, shown_path

ROOT = Path(__file__).resolve().parents[1]


def read_valid(path: Path) -> list[str]:
    """The SMILES of a .smi / .csv(.gz) file that RDKit parses, in file order."""
    return [s for s in read_smiles(path) if s and parse_smiles(s) is not None]


def subset(smiles: list[str], max_molecules: int, seed: int) -> list[str]:
    """A seeded subset of at most ``max_molecules`` of ``smiles``, in their order."""
    if len(smiles) > max_molecules:
        index = np.sort(np.random.default_rng(seed).choice(len(smiles), max_molecules, replace=False))
        smiles = [smiles[i] for i in index]
    return smiles


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


def describe(in_distribution: list[str], sets: dict[str, dict], seed: int) -> dict[str, dict]:
    """Composition of the in-distribution set and of every shifted set, with the factor each is
    meant to change (``shift``) and those found to differ (``differs_in``, ``set_composition``)."""
    reference = set_composition(in_distribution)
    out = {"in_distribution": reference}
    randomized = {"smiles": randomized_smiles(in_distribution, seed=seed), "shift": "representation",
                  "path": "randomized SMILES of the in-distribution molecules"}
    for name, entry in {**sets, "randomized_smiles": randomized}.items():
        composition = set_composition(entry["smiles"])
        out[name] = {key: value for key, value in entry.items() if key != "smiles"}
        out[name].update(composition=composition, differs_in=shifted_factors(reference, composition))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="trained checkpoints (model.ckpt)")
    parser.add_argument("--in-distribution", type=Path, default=ROOT / "resources/molecules/moses/raw/test.csv.gz",
                        help="held-out molecules of the training distribution (default: the MOSES test set)")
    parser.add_argument("--ood", type=parse_named_path, action="append", default=None, metavar="NAME=PATH",
                        help="a set from another source, repeatable, restricted to the in-distribution elements "
                             "(default: qm9=resources/molecules/qm9/data/test.smi)")
    parser.add_argument("--elements", type=lambda text: sorted(set(text.split(","))), default=None,
                        help="comma-separated elements an --ood set may hold (default: those of the "
                             "in-distribution subset)")
    parser.add_argument("--max-molecules", type=int, default=2000, help="seeded subset size of each set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets and randomized SMILES")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ood.json", help="output JSON")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv, f"the checkpoints' own configs ({', '.join(map(shown_path, args.checkpoints))}); "
                      f"{args.max_molecules} molecules per set, seed {args.seed}", arguments=args)
    ood = dict(args.ood or [("qm9", ROOT / "resources/molecules/qm9/data/test.smi")])
    in_distribution = subset(read_valid(args.in_distribution), args.max_molecules, args.seed)
    reference = set_composition(in_distribution)
    elements, neutral = args.elements or reference["element_set"], not reference["charged"]
    sets: dict[str, dict] = {}
    for name, path in ood.items():
        molecules = read_valid(path)
        kept = made_of(molecules, elements, neutral=neutral)
        sets[name] = {"smiles": subset(kept, args.max_molecules, args.seed), "path": str(path), "shift": "source",
                      "restricted_to_elements": list(elements), "restricted_to_neutral": neutral,
                      "dropped": len(molecules) - len(kept)}
    result = {
        "provenance": made,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "in_distribution": {"path": str(args.in_distribution), "n": len(in_distribution)},
        "seed": args.seed,
        "sets": describe(in_distribution, sets, args.seed),
        "checkpoints": {str(path): bench_checkpoint(path, in_distribution,
                                                    {name: entry["smiles"] for name, entry in sets.items()},
                                                    args.device, args.seed)
                        for path in args.checkpoints},
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    for path, run in result["checkpoints"].items():
        for name, scores in run["sets"].items():
            print(f"{path}  vs {name} ({result['sets'][name]['shift']}; composition differs in: "
                  f"{', '.join(result['sets'][name]['differs_in']) or 'nothing'}): AUROC "
                  f"{scores['auroc']:.3f} (scorable only {scores['auroc_scorable']:.3f}, "
                  f"-log p alone {scores['auroc_negative_log_likelihood']:.3f})")
    return result


if __name__ == "__main__":
    main()
