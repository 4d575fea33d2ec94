"""Benchmark: 3D-structure steps on this machine — MD speed (ns/day of the alanine-dipeptide
simulation on 1 and 2 threads), training throughput (conformations/s) and sampling throughput
(conformations/s, decoded) of every model of a dataset in the default config. Writes
bench/results/structures_{dataset}.json.

Uses the prepared data (run `make run`, or the qm9_3d_prepare / ala2_prepare rules, first) and the
default config's quick model sizes. Not a test: figures depend on the machine.

    python bench/bench_structures.py --dataset ala2 [--steps 30] [--md-ps 50]
    python bench/bench_structures.py --dataset qm9 --sample 100
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
import yaml
from timing import provenance, shown_path, time_model

ROOT = Path(__file__).resolve().parents[1]


def bench_md(raw: Path, picoseconds: float, platform_name: str, threads: int | None) -> dict:
    """ns/day of `dgm simulate`'s production run (a frame every 0.1 ps, as in the quick config)."""
    from dgm_science.domains.structures.md import simulate

    with tempfile.TemporaryDirectory() as tmp:
        stats = simulate(raw, Path(tmp), nanoseconds=picoseconds / 1000, save_every_ps=0.1, threads=threads,
                         checkpoint_every_ps=picoseconds, equilibration_ps=1.0, platform=platform_name)
    return {"picoseconds": picoseconds, "platform": platform_name, "threads": threads,
            "ns_per_day": stats["ns_per_day_this_run"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ala2", help="ala2 or qm9")
    parser.add_argument("--models", nargs="*", default=None, help="models to time (default: all in the config)")
    parser.add_argument("--data", type=Path, default=None, help="default: resources/structures/{dataset}/data")
    parser.add_argument("--config", type=Path, default=ROOT / "workflows/config/default.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per model")
    parser.add_argument("--sample", type=int, default=10000, help="conformations to sample per model")
    parser.add_argument("--md-ps", type=float, default=50.0, help="ala2: picoseconds of MD per timing (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--results", type=Path, default=None,
                        help="trained checkpoints {model}/seed0/model.ckpt (default: results/structures/{dataset})")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/structures_{dataset}.json")
    args = parser.parse_args(argv)
    args.data = args.data or ROOT / f"resources/structures/{args.dataset}/data"
    args.results = args.results or ROOT / f"results/structures/{args.dataset}"
    args.out = args.out or ROOT / f"bench/results/structures_{args.dataset}.json"
    models = yaml.safe_load(args.config.read_text())["structures"][args.dataset]["models"]
    if args.models:
        models = {name: models[name] for name in args.models}
    made = provenance(__file__, argv, f"{shown_path(args.config)}: structures.{args.dataset}.models "
                      f"({', '.join(models)}), their quick sizes", threads=args.threads, arguments=args, models=models)
    results: dict = {"provenance": made, "machine": platform.processor() or platform.machine(), "threads": args.threads,
                     "torch": torch.__version__, "models": {}}
    if args.dataset == "ala2" and args.md_ps > 0:
        raw = args.data.parent / "raw"
        results["md"] = [bench_md(raw, args.md_ps, name, threads)
                         for name, threads in (("Reference", None), ("CPU", 1), ("CPU", 2))]
        print("md", json.dumps(results["md"], indent=1), flush=True)
    for name, model_config in models.items():
        checkpoint = args.results / name / "seed0" / "model.ckpt"
        results["models"][name] = time_model(name, args.data, model_config, args.steps, args.sample, args.threads,
                                             checkpoint, unit="conformations")
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
