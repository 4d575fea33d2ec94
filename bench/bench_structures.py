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
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from dgm_science import api, registry
from dgm_science.training import resolve_precision

ROOT = Path(__file__).resolve().parents[1]


def bench_md(raw: Path, picoseconds: float, platform_name: str, threads: int | None) -> dict:
    """ns/day of `dgm simulate`'s production run (a frame every 0.1 ps, as in the quick config)."""
    from dgm_science.domains.structures.md import simulate

    with tempfile.TemporaryDirectory() as tmp:
        stats = simulate(raw, Path(tmp), nanoseconds=picoseconds / 1000, save_every_ps=0.1, threads=threads,
                         checkpoint_every_ps=picoseconds, equilibration_ps=1.0, platform=platform_name)
    return {"picoseconds": picoseconds, "platform": platform_name, "threads": threads,
            "ns_per_day": stats["ns_per_day_this_run"]}


def bench_model(name: str, data: Path, model_config: dict, steps: int, n_sample: int, threads: int,
                checkpoint: Path | None) -> dict:
    torch.set_num_threads(threads)
    config = api.RunConfig.parse(name, model_config)
    spec = registry.get("model", name)
    domain = registry.get("domain", spec.domain)
    state = domain.fit_state(data, spec, config.model)
    model = spec.build(config.model, state)
    train_set, _ = domain.datasets(data, spec, config.model, state)
    loader = DataLoader(train_set, batch_size=config.train.batch_size, shuffle=True, collate_fn=train_set.collate,
                        generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, fused=True)
    precision = resolve_precision(config.train)
    model.train()
    it = iter(loader)
    examples = 0
    for step in range(steps + 3):
        if step == 3:  # warm-up excluded
            start, examples = time.perf_counter(), 0
        batch = next(it)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        examples += next(iter(batch.values())).shape[0]
    train_seconds = time.perf_counter() - start
    sampler = api.load(checkpoint, device="cpu") if checkpoint is not None and checkpoint.is_file() else None
    start = time.perf_counter()
    if sampler is not None:
        decoded = sampler.sample(n_sample, seed=0)
    else:
        model.eval()
        with torch.no_grad():
            decoded = domain.decode(model.sample(n_sample, generator=torch.Generator().manual_seed(0)), state)
    sample_seconds = time.perf_counter() - start
    return {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),  # not an EMA copy
        "batch_size": config.train.batch_size,
        "precision": precision,
        "train_examples_per_s": examples / train_seconds,
        "train_step_seconds": train_seconds / steps,
        "sample_n": n_sample,
        "sample_from": "trained checkpoint (seed 0)" if sampler is not None else "untrained model",
        "model_config": dataclasses.asdict(config.model),
        "sample_seconds": sample_seconds,
        "sample_per_s": n_sample / sample_seconds,
        "decoded": len(decoded),
    }


def main() -> None:
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
    args = parser.parse_args()
    args.data = args.data or ROOT / f"resources/structures/{args.dataset}/data"
    args.results = args.results or ROOT / f"results/structures/{args.dataset}"
    args.out = args.out or ROOT / f"bench/results/structures_{args.dataset}.json"
    models = yaml.safe_load(args.config.read_text())["structures"][args.dataset]["models"]
    if args.models:
        models = {name: models[name] for name in args.models}
    results: dict = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
                     "torch": torch.__version__, "models": {}}
    if args.dataset == "ala2" and args.md_ps > 0:
        raw = args.data.parent / "raw"
        results["md"] = [bench_md(raw, args.md_ps, name, threads)
                         for name, threads in (("Reference", None), ("CPU", 1), ("CPU", 2))]
        print("md", json.dumps(results["md"], indent=1), flush=True)
    for name, model_config in models.items():
        checkpoint = args.results / name / "seed0" / "model.ckpt"
        results["models"][name] = bench_model(name, args.data, model_config, args.steps, args.sample, args.threads,
                                              checkpoint)
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
