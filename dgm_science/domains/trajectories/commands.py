"""The trajectories domain's part of the ``dgm`` command: ``collect`` (expert PointMaze data as a
Minari dataset) and ``rollout`` (closed-loop evaluation of a planner in the simulator)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dgm_science.commands import (add_device_arguments, add_seed_argument, command, confirm_size, output_argument,
                                  positive_int, write_json)
from dgm_science.utils import set_threads

log = logging.getLogger("dgm")


MAX_STEPS = 100_000_000
"""Steps (episodes x episode steps) ``dgm collect`` takes without ``--yes``: 100x the paper config."""


def _collect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("maze", help="umaze, medium, large (or PointMaze_UMaze-v3, ...)")
    output_argument(p, "--out", kind="folder", required=True, help="folder for the Minari dataset and collect.json")
    p.add_argument("--episodes", type=positive_int, required=True, help="number of episodes")
    p.add_argument("--episode-steps", type=positive_int, required=True, help="steps per episode")
    p.add_argument("--noise", type=float, default=0.0, help="std of the Gaussian action noise (diversity)")
    add_seed_argument(p, "seed of resets, goals and noise")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.add_argument("--yes", action="store_true", help=f"collect more than {MAX_STEPS:,} steps in all")


@command("collect", "expert PointMaze trajectories (shortest path + PD controller, goals resampled on arrival) "
                    "as a local Minari dataset", _collect_arguments)
def cmd_collect(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.expert import write_expert_dataset
    from dgm_science.domains.trajectories.mazes import maze_spec

    confirm_size(args, "--episodes x --episode-steps", args.episodes * args.episode_steps, limit=MAX_STEPS,
                 what="every step is simulated (100,000 took 8 s here) and held in memory")
    set_threads(args.threads)
    stats = write_expert_dataset(args.out, maze_spec(args.maze).name, episodes=args.episodes,
                                 episode_steps=args.episode_steps, noise=args.noise, seed=args.seed, overwrite=True)
    log.info("collected -> %s: %s", args.out, json.dumps(stats)[:2000])


def _rollout_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None, help="trajectory model checkpoint (planner policy)")
    p.add_argument("--baseline", default=None, choices=["expert", "straight"],
                   help="evaluate a policy without a model instead: the data-generating expert planner, or the "
                        "planner's controller aimed straight at the goal (what a plan adds)")
    p.add_argument("--maze", default=None, help="the maze (baselines); for a checkpoint: must be the one it learned")
    p.add_argument("--episodes", type=positive_int, default=100, help="seeded episodes (seeds seed .. seed + n - 1)")
    add_seed_argument(p, "seed of the first episode and of the planner")
    p.add_argument("--replan-every", type=positive_int, default=None,
                   help="re-plan every k steps (default: once per goal, as Diffuser does on Maze2D)")
    p.add_argument("--candidates", type=positive_int, default=1,
                   help="plans drawn per planning call; the one with the fewest wall states and the smallest jump "
                        "is followed (default 1, as Diffuser)")
    output_argument(p, "--plot", default=None, help="PNG of sampled plans drawn over the maze")
    output_argument(p, "--out", required=True, help="rollout.json")
    add_device_arguments(p)


@command("rollout", "closed-loop evaluation in the simulator: success rate and D4RL-normalised score over seeded "
                    "PointMaze episodes", _rollout_arguments)
def cmd_rollout(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.rollout import evaluate_closed_loop

    set_threads(args.threads)
    if (args.checkpoint is None) == (args.baseline is None):
        raise ValueError("give --checkpoint (a trajectory model) or --baseline expert|straight with --maze")
    summary = evaluate_closed_loop(checkpoint=args.checkpoint, baseline=args.baseline, maze=args.maze,
                                   episodes=args.episodes, seed=args.seed, replan_every=args.replan_every,
                                   candidates=args.candidates, plot=args.plot, device=args.device)
    write_json(args.out, summary)
    log.info("rollout -> %s: %s", args.out, json.dumps(summary))
