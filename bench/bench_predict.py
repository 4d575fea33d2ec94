"""Benchmark of property prediction (`dgm predict`, `dgm evaluate-predictor`): molecules per second
of a trained hybrid (property, uncertainty and log p(x) with its typicality score) and of a deep
ensemble of regressors (each member a forward pass), on QM9 test molecules, for each --threads.
Writes bench/results/predict.json. Not a test: figures depend on the machine and checkpoints.

    python bench/bench_predict.py --data resources/molecules/qm9/data \\
        --hybrid results/prediction/hybrid-arm/seed0/model.ckpt \\
        --ensemble results/prediction/regressor-arm/seed*/model.ckpt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dgm_science import api
from dgm_science.domains.molecules.data import read_smiles
from dgm_science.applications.prediction.predict import Predictor
from dgm_science.utils import atomic_path
from timing import machine, provenance, shown_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results/predict.json"


def time_predictor(paths: list[Path], smiles: list[str], threads: int, batch_size: int) -> dict:
    """Seconds and molecules per second of one ``Predictor.predict`` call over ``smiles`` (after an
    untimed call on 50 of them)."""
    torch.set_num_threads(threads)
    predictor = Predictor([api.load(p, device="cpu") for p in paths])
    predictor.predict(smiles[:50], batch_size)
    start = time.perf_counter()
    result = predictor.predict(smiles, batch_size)
    seconds = time.perf_counter() - start
    return {"members": len(paths), "density": predictor.has_density, "molecules": len(smiles),
            "scored": int((result.mean == result.mean).all(1).sum()), "seconds": round(seconds, 3),
            "molecules_per_second": round(len(smiles) / seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "resources/molecules/qm9/data",
                        help="prepared QM9 directory (its test.smi is predicted)")
    parser.add_argument("--hybrid", type=Path, default=ROOT / "results/prediction/hybrid-arm/seed0/model.ckpt")
    parser.add_argument("--ensemble", type=Path, nargs="+", default=None,
                        help="regressor checkpoints of the ensemble (default: results/prediction/regressor-arm/seed*)")
    parser.add_argument("--n", type=int, default=5000, help="test molecules predicted")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    ensemble = args.ensemble or sorted((ROOT / "results/prediction/regressor-arm").glob("seed*/model.ckpt"))
    smiles = [s for s in read_smiles(args.data / "test.smi") if s][: args.n]
    made = provenance(__file__, argv, f"the checkpoints' own configs: hybrid {shown_path(args.hybrid)}; ensemble "
                      f"{', '.join(shown_path(p) for p in ensemble)}; {shown_path(args.data)}/test.smi",
                      threads=" and ".join(map(str, args.threads)), arguments=args)
    out: dict = {"provenance": made, "data": shown_path(args.data), "n": len(smiles), "batch_size": args.batch_size,
                 "machine": machine(), "runs": {}}
    for threads in args.threads:
        for name, paths in (("hybrid", [args.hybrid]), ("regressor", ensemble[:1]), ("ensemble", ensemble)):
            row = time_predictor(paths, smiles, threads, args.batch_size)
            print(f"{name} threads={threads}: {row}", flush=True)
            out["runs"][f"{name}/threads{threads}"] = row
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
