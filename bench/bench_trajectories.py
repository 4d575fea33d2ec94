"""Benchmark: trajectory models on this machine: training throughput (windows/s), planning
throughput (plans/s: start/goal drawn, sampled, decoded) of every model of a maze in the default
config, and the closed loop (environment steps/s with the planner policy re-planning in batches).
Writes bench/results/trajectories_{dataset}.json. Data generation: bench_trajectories_data.py.

Uses the prepared data and the trained checkpoints of the default run (`make run`, or
`snakemake trajectories`) when they exist. Not a test: figures depend on the machine.

    python bench/bench_trajectories.py --dataset pointmaze-umaze [--steps 20] [--sample 200]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import yaml
from timing import provenance, shown_path, time_model

ROOT = Path(__file__).resolve().parents[1]


def bench_closed_loop(checkpoint: Path, episodes: int, replan_every: int | None, threads: int,
                      rollout: dict | None = None) -> dict:
    """Closed-loop episodes with the planner policy (``rollout``: the config's candidates and
    stitching): wall time, environment steps/s, plans/s."""
    from dgm_science.domains.trajectories.policy import PlannerPolicy
    from dgm_science.domains.trajectories.rollout import closed_loop

    torch.set_num_threads(threads)
    rollout = rollout or {}
    policy = PlannerPolicy(checkpoint, replan_every=replan_every, candidates=rollout.get("candidates", 1),
                           stitch=rollout.get("stitch", False), device="cpu")
    summary, _ = closed_loop(policy.state["maze"], policy, episodes=episodes, seed=0)
    steps = summary["episodes"] * summary["episode_steps"]
    return {"episodes": episodes, "replan_every": replan_every, "candidates": policy.candidates,
            "stitch": policy.stitch, "seconds": summary["seconds"],
            "env_steps_per_s": steps / summary["seconds"], "plan_calls": summary["plan_calls"],
            "plans_per_s": summary["plan_calls"] * episodes / summary["policy_seconds"],
            "success_rate": summary["success_rate"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pointmaze-umaze")
    parser.add_argument("--models", nargs="*", default=None, help="models to time (default: all in the config)")
    parser.add_argument("--config", type=Path, default=ROOT / "workflows/config/default.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--sample", type=int, default=200, help="plans to sample per model")
    parser.add_argument("--episodes", type=int, default=100, help="closed-loop episodes per trained model")
    parser.add_argument("--replan-every", type=int, default=None, help="closed loop: re-plan every k steps")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--data", type=Path, default=None, help="default: resources/trajectories/{dataset}/data")
    parser.add_argument("--results", type=Path, default=None,
                        help="trained checkpoints {model}/seed0/model.ckpt (default: results/trajectories/{dataset})")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/trajectories_{dataset}.json")
    args = parser.parse_args(argv)
    data = args.data or ROOT / f"resources/trajectories/{args.dataset}/data"
    runs = args.results or ROOT / f"results/trajectories/{args.dataset}"
    out = args.out or ROOT / f"bench/results/trajectories_{args.dataset}.json"
    block = yaml.safe_load(args.config.read_text())["trajectories"][args.dataset]
    models = block["models"]
    if args.models:
        models = {name: models[name] for name in args.models}
    made = provenance(__file__, argv, f"{shown_path(args.config)}: trajectories.{args.dataset}.models "
                      f"({', '.join(models)}) and .rollout, their quick sizes", threads=args.threads,
                      arguments=args, models=models, rollout=block.get("rollout"))
    results: dict = {"provenance": made, "machine": platform.processor() or platform.machine(), "threads": args.threads,
                     "torch": torch.__version__, "dataset": args.dataset, "models": {}}
    for name, model_config in models.items():
        checkpoint = runs / name / "seed0" / "model.ckpt"
        timing = time_model(name, data, model_config, args.steps, args.sample, args.threads, checkpoint,
                            unit="windows")
        timing["plans_per_s"] = timing.pop("sample_windows_per_s")
        if checkpoint.is_file():
            timing["closed_loop"] = bench_closed_loop(checkpoint, args.episodes, args.replan_every, args.threads,
                                                      block.get("rollout"))
        results["models"][name] = timing
        print(name, json.dumps(timing, indent=1), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
