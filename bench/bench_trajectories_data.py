"""Benchmark: PointMaze data generation on this machine, per maze: environment steps/s of the raw
env under random actions, of the expert ``collect`` (shortest-path + PD policy included, D4RL-style
continuing episodes), of writing the Minari dataset; and the noiseless expert's evaluation (success
rate, steps to the goal over seeded episodes). Writes bench/results/trajectories_data.json.

Not a test: figures depend on the machine.

    python bench/bench_trajectories_data.py [--steps 20000] [--eval-episodes 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from timing import provenance  # noqa: E402 (after MUJOCO_GL)

ROOT = Path(__file__).resolve().parents[1]


def bench_random(maze: str, steps: int, seed: int) -> dict:
    """Raw env steps/s with uniformly random actions (no policy), one continuing episode."""
    from dgm_science.domains.trajectories.mazes import make_env

    env = make_env(maze, continuing_task=True, reset_target=True, max_episode_steps=steps)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    seconds = time.perf_counter() - start
    env.close()
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def bench_collect(maze: str, steps: int, episodes: int, noise: float, seed: int) -> dict:
    """Expert collection steps/s (policy included) and the Minari write time."""
    from dgm_science.domains.trajectories.expert import collect
    from dgm_science.domains.trajectories.minari_io import write_minari
    from dgm_science.domains.trajectories.mazes import maze_spec

    episode_steps = steps // episodes
    start = time.perf_counter()
    result = collect(maze, episodes=episodes, episode_steps=episode_steps, noise=noise, seed=seed)
    seconds = time.perf_counter() - start
    stats = result["stats"]
    with tempfile.TemporaryDirectory() as tmp:
        begin = time.perf_counter()
        write_minari(Path(tmp) / "d", result["episodes"], dataset_id=f"bench/{maze}-v0", env_id=maze_spec(maze).env_id,
                     env_kwargs={"continuing_task": True, "reset_target": True, "max_episode_steps": episode_steps})
        write_s = time.perf_counter() - begin
        size = sum(p.stat().st_size for p in (Path(tmp) / "d").rglob("*") if p.is_file())
    keep = ("goals_reached", "goals_reached_per_1000_steps", "planner_success_rate", "mean_steps_to_goal",
            "max_steps_to_goal")
    return {"episodes": episodes, "episode_steps": episode_steps, "noise": noise, "seconds": seconds,
            "steps_per_s": stats["total_steps"] / seconds, **{k: stats[k] for k in keep},
            "minari_write_s": write_s, "minari_mb": size / 2**20}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mazes", nargs="*", default=["umaze", "medium", "large"])
    parser.add_argument("--steps", type=int, default=20000, help="environment steps per timing")
    parser.add_argument("--episodes", type=int, default=4, help="collect episodes (steps split between them)")
    parser.add_argument("--noise", type=float, default=0.5, help="expert action noise while collecting")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/trajectories_data.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="gymnasium_robotics")
    from dgm_science.domains.trajectories.expert import DEFAULT_KD, DEFAULT_KP, DEFAULT_REACH, evaluate

    made = provenance(__file__, argv, f"no config file: the expert's defaults (kp {DEFAULT_KP}, kd {DEFAULT_KD}, "
                      f"reach {DEFAULT_REACH}) and this script's arguments", threads=1, arguments=args)
    results: dict = {"provenance": made, "machine": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(),
                     "python": platform.python_version(),
                     "versions": {p: version(p) for p in ("gymnasium", "gymnasium-robotics", "mujoco", "minari")},
                     "expert": {"kp": DEFAULT_KP, "kd": DEFAULT_KD, "reach": DEFAULT_REACH}, "mazes": {}}
    for maze in args.mazes:
        row = {"random": bench_random(maze, args.steps, args.seed),
               "collect": bench_collect(maze, args.steps, args.episodes, args.noise, args.seed),
               "evaluate": evaluate(maze, episodes=args.eval_episodes, seed=args.seed)}
        results["mazes"][maze] = row
        print(maze, json.dumps(row, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
