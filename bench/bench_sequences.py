"""Benchmark: genetic-sequence steps on this machine: training throughput (residue tokens/s),
sampling throughput (sequences/s, decoded) of every model of a dataset in the default config,
lossless compression and decompression speed (MB/s) with bits per residue beside gzip -9 / xz -9,
and the novelty aligner (nearest training identity, samples/s). Writes
bench/results/sequences_{dataset}.json.

Uses the prepared data and the trained checkpoints of the default run (`make run`, or
`snakemake sequences`) when they exist. Not a test: figures depend on the machine.

    python bench/bench_sequences.py --dataset 16s-v4 [--steps 20] [--sample 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml
from timing import provenance, shown_path, time_model

ROOT = Path(__file__).resolve().parents[1]


def bench_compression(checkpoint: Path, fasta: Path, threads: int) -> dict:
    """Compress and decompress ``fasta`` with a trained seq-arm (round trip checked); bits per
    residue beside gzip -9 / xz -9, and MB/s."""
    from dgm_science import api
    from dgm_science.domains.sequences import compression

    torch.set_num_threads(threads)
    loaded = api.load(checkpoint, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        return compression.compress_verified(loaded, fasta, Path(tmp) / "x.dgmz")


def bench_novelty(data: Path, kind: str, n: int, threads: int) -> dict:
    """Nearest-training identity of ``n`` validation sequences (the novelty metric's cost)."""
    from dgm_science.domains.sequences.clusters import nearest_identity
    from dgm_science.domains.sequences.fasta import read_fasta

    queries = [r.sequence for r in read_fasta(data / "valid.fasta")][:n]
    train = [r.sequence for r in read_fasta(data / "train.fasta")]
    start = time.perf_counter()
    identity = nearest_identity(queries, train, kind, n_jobs=threads)
    seconds = time.perf_counter() - start
    return {"queries": len(queries), "references": len(train), "jobs": threads, "seconds": seconds,
            "queries_per_s": len(queries) / seconds, "mean_identity": float(identity.mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="16s-v4", help="16s-v4, 16s or swissprot")
    parser.add_argument("--models", nargs="*", default=None, help="models to time (default: all in the config)")
    parser.add_argument("--config", type=Path, default=ROOT / "workflows/config/default.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--sample", type=int, default=500, help="sequences to sample per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--data", type=Path, default=None, help="default: resources/sequences/{dataset}/data")
    parser.add_argument("--results", type=Path, default=None,
                        help="trained checkpoints {model}/seed0/model.ckpt (default: results/sequences/{dataset})")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/sequences_{dataset}.json")
    args = parser.parse_args(argv)
    data = args.data or ROOT / f"resources/sequences/{args.dataset}/data"
    runs = args.results or ROOT / f"results/sequences/{args.dataset}"
    out = args.out or ROOT / f"bench/results/sequences_{args.dataset}.json"
    models = yaml.safe_load(args.config.read_text())["sequences"][args.dataset]["models"]
    if args.models:
        models = {name: models[name] for name in args.models}
    kind = json.loads((data / "prepare.json").read_text())["kind"]
    made = provenance(__file__, argv, f"{shown_path(args.config)}: sequences.{args.dataset}.models "
                      f"({', '.join(models)}), their quick sizes", threads=args.threads, arguments=args, models=models)
    results: dict = {"provenance": made, "machine": platform.processor() or platform.machine(), "threads": args.threads,
                     "torch": torch.__version__, "dataset": args.dataset, "models": {}}
    for name, model_config in models.items():
        results["models"][name] = time_model(name, data, model_config, args.steps, args.sample, args.threads,
                                             runs / name / "seed0" / "model.ckpt", unit="sequences")
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    arm = runs / "seq-arm" / "seed0" / "model.ckpt"
    if arm.is_file():
        results["compression"] = bench_compression(arm, data / "test.fasta", args.threads)
        print("compression", json.dumps(results["compression"], indent=1), flush=True)
    results["novelty"] = bench_novelty(data, kind, 1000, args.threads)
    print("novelty", json.dumps(results["novelty"], indent=1), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
