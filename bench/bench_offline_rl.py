"""Benchmark: offline RL on PointMaze experience on this machine: minibatch updates per second of
each TorchRL algorithm (IQL, TD3+BC, CQL; batch 256, two 256-unit layers) at 1 and 2 threads, and
synthetic transitions per second: plans sampled by a trained trajectory model, executed in the
simulator (``dgm execute``), and the two-sample test's time. Writes bench/results/offline_rl.json.

Uses the expert data and the trained maze-diffuser of the default run (`make run`) when they exist,
else collects 20 expert episodes and uses the committed test planner. Not a test: figures depend
on the machine.

    python bench/bench_offline_rl.py [--updates 300] [--plans 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from timing import ROOT, machine, provenance, shown_path


def bench_updates(data: dict, algo: str, updates: int, threads: int) -> dict:
    from dgm_science.domains.trajectories.offline_rl import OfflineRLConfig, train

    torch.set_num_threads(threads)
    train(data, OfflineRLConfig(algo=algo, updates=20), seed=0)  # warm-up
    _, summary = train(data, OfflineRLConfig(algo=algo, updates=updates), seed=0)
    return {"algo": algo, "threads": threads, "updates": updates, "updates_per_s": summary["updates_per_second"]}


def bench_synthetic(checkpoint: Path, plans: int, expert: Path) -> dict:
    """Plans sampled (one batch) and executed: transitions/s of each step and of both."""
    from dgm_science import api
    from dgm_science.domains.trajectories.execute import execute_plans
    from dgm_science.domains.trajectories.metrics import realism
    from dgm_science.domains.trajectories.minari_io import read_minari

    torch.set_num_threads(2)
    model = api.load(checkpoint, device="cpu")
    start = time.perf_counter()
    items = model.sample(plans, seed=0)
    sample_s = time.perf_counter() - start
    items = [item for item in items if item is not None]
    episodes, summary = execute_plans(model.state["maze"], items)
    transitions = summary["transitions"]
    start = time.perf_counter()
    tests = realism(read_minari(expert), {"executed": episodes})
    return {"checkpoint": shown_path(checkpoint), "plans": len(items), "transitions": transitions,
            "sample_seconds": sample_s, "execute_seconds": summary["seconds"],
            "sampled_transitions_per_s": transitions / sample_s,
            "executed_transitions_per_s": summary["transitions_per_second"],
            "synthetic_transitions_per_s": transitions / (sample_s + summary["seconds"]),
            "two_sample_seconds": time.perf_counter() - start, "auroc_executed": tests["tests"][0]["auroc"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300, help="timed updates per algorithm and thread count")
    parser.add_argument("--plans", type=int, default=200, help="plans to sample and execute")
    parser.add_argument("--expert", type=Path, default=ROOT / "resources/trajectories/pointmaze-umaze/raw/minari",
                        help="the expert Minari dataset (missing: 20 episodes are collected)")
    parser.add_argument("--checkpoint", type=Path,
                        default=ROOT / "results/trajectories/pointmaze-umaze/maze-diffuser/seed0/model.ckpt",
                        help="the trained planner whose plans are executed (missing: the committed test planner)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/offline_rl.json")
    args = parser.parse_args(argv)

    from dgm_science.domains.trajectories.minari_io import read_minari
    from dgm_science.domains.trajectories.offline_rl import ALGORITHMS, transitions

    expert, checkpoint = args.expert, args.checkpoint
    expert_words = shown_path(expert)
    if not expert.is_dir():
        expert_words = "20 U-Maze expert episodes of 1,000 steps collected by this bench (noise 0.1, seed 0)"
        from dgm_science.domains.trajectories.expert import write_expert_dataset

        root = Path(tempfile.mkdtemp(prefix="bench-offline-rl-")) / "expert"
        write_expert_dataset(root, "umaze", episodes=20, episode_steps=1000, noise=0.1, seed=0)
        expert = root / "minari"
    if not checkpoint.is_file():
        checkpoint = ROOT / "tests/data/umaze_planner.ckpt"
    made = provenance(__file__, argv, f"OfflineRLConfig defaults (batch 256, two 256-unit layers) of "
                      f"{', '.join(ALGORITHMS)}; expert data {expert_words}; planner {shown_path(checkpoint)}",
                      threads="1 and 2 (updates), 2 (synthetic)", arguments=args)
    data = transitions(read_minari(expert))
    updates = [bench_updates(data, algo, args.updates, threads) for algo in ALGORITHMS for threads in (1, 2)]
    for row in updates:
        print(f"{row['algo']:6s} {row['threads']} thread(s): {row['updates_per_s']:.1f} updates/s", flush=True)
    synthetic = bench_synthetic(checkpoint, args.plans, expert)
    print(json.dumps(synthetic, indent=1))
    result = {"provenance": made, "machine": machine(), "data": shown_path(expert), "transitions": len(data["action"]),
              "batch_size": 256, "updates": updates, "synthetic": synthetic}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
