"""The trajectories domain's part of the ``dgm`` command: ``collect`` (expert PointMaze data as a
Minari dataset) and ``rollout`` (closed-loop evaluation of a planner in the simulator)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dgm_science.commands import (add_device_arguments, add_seed_argument, command, confirm_size, output_argument,
                                  positive_int, write_json)
from dgm_science.domains.trajectories.rollout import DEFAULT_PROTOCOL, PROTOCOLS
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
    p.add_argument("--protocol", choices=[*PROTOCOLS, "env"], default=DEFAULT_PROTOCOL,
                   help="evaluation protocol: d4rl (D4RL maze2d: the maze's fixed goal cell, random start; Diffuser's "
                        "Maze2D rows, CORL) or multi2d (random start and goal; Diffuser's Multi2D rows); a model of "
                        "a user's Minari dataset (not a maze): env, its environment's own resets (skipped, with the "
                        "reason, when the environment is not installed)")
    p.add_argument("--episodes", type=positive_int, default=100, help="seeded episodes (seeds seed .. seed + n - 1)")
    add_seed_argument(p, "seed of the first episode and of the planner")
    p.add_argument("--replan-every", type=positive_int, default=None,
                   help="re-plan every k steps (default: once per goal, as Diffuser does on Maze2D)")
    p.add_argument("--candidates", type=positive_int, default=1,
                   help="plans drawn per planning call; the one with the fewest wall states and the smallest jump "
                        "is followed: uses the maze's map (default 1, as Diffuser: no map knowledge)")
    p.add_argument("--stitch", action="store_true",
                   help="plan along the maze's shortest path, one horizon's reach at a time, the model filling "
                        "each segment: uses the maze's map (default: one plan per goal, as Diffuser)")
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
                                   candidates=args.candidates, stitch=args.stitch, plot=args.plot,
                                   device=args.device, protocol=args.protocol)
    write_json(args.out, summary)
    log.info("rollout -> %s: %s", args.out, json.dumps(summary))


def _execute_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plans", type=Path, required=True, help="Minari dataset of plans (`dgm sample` of a trajectory "
                                                              "model: samples.minari)")
    output_argument(p, "--out", kind="folder", required=True, help="Minari dataset of the executed plans")
    output_argument(p, "--stats", default=None, help="execute.json: deviation from the plans, goal reach, speed")
    p.add_argument("--kp", type=float, default=10.0, help="position gain of the PD tracker (the planner's)")
    p.add_argument("--kd", type=float, default=1.0, help="velocity gain of the PD tracker")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


@command("execute", "sampled plans executed in the simulator (PD tracking from each plan's start): dynamically "
                    "consistent transitions with the env's rewards, as a Minari dataset for offline RL",
         _execute_arguments)
def cmd_execute(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.execute import execute_dataset

    set_threads(args.threads)
    summary = execute_dataset(args.plans, args.out, kp=args.kp, kd=args.kd)
    if args.stats is not None:
        write_json(args.stats, summary)
    log.info("executed -> %s: %s", args.out, json.dumps(summary))


def _reshape_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expert", type=Path, required=True, help="Minari dataset of the expert's episodes (`dgm collect`)")
    p.add_argument("--like", type=Path, required=True,
                   help="Minari dataset whose episodes give the shape: executed plans (`dgm execute`)")
    output_argument(p, "--out", kind="folder", required=True, help="Minari dataset of the reshaped expert episodes")
    output_argument(p, "--stats", default=None, help="reshape.json: counts, rewarded fractions, start speeds")
    p.add_argument("--execute", action="store_true",
                   help="execute each segment as a plan, as `dgm execute` does sampled plans: from rest, the PD "
                        "tracker following the expert's states, the goal held once reached (source expert-executed)")
    add_seed_argument(p, "seed of the segments' order and offsets")


@command("reshape", "the control for offline RL on generated experience: the expert's transitions cut into "
                    "single-goal episodes of the executed plans' shape (same count and lengths; goal = the "
                    "segment's end, the env's sparse reward)", _reshape_arguments)
def cmd_reshape(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.reshape import reshape_dataset

    summary = reshape_dataset(args.expert, args.like, args.out, seed=args.seed, execute=args.execute)
    if args.stats is not None:
        write_json(args.stats, summary)
    log.info("reshaped -> %s: %s", args.out, json.dumps(summary))


def _offline_rl_arguments(p: argparse.ArgumentParser) -> None:
    from dgm_science.domains.trajectories.offline_rl import ALGORITHMS, OfflineRLConfig

    defaults = OfflineRLConfig()
    p.add_argument("--dataset", type=Path, nargs="+", required=True,
                   help="Minari dataset(s) of one maze, pooled: the expert data, executed plans (`dgm execute`), ...")
    p.add_argument("--algo", choices=sorted(ALGORITHMS), default="iql", help="TorchRL's IQL, CQL or TD3+BC")
    p.add_argument("--updates", type=positive_int, default=defaults.updates, help="minibatch updates")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="minibatch size")
    p.add_argument("--episodes", type=positive_int, default=100, help="seeded evaluation episodes")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the first evaluation episode (the same "
                                                            "episodes as `dgm rollout --seed`)")
    p.add_argument("--protocol", nargs="+", choices=list(PROTOCOLS), default=[DEFAULT_PROTOCOL],
                   help="evaluation protocol(s), each on the same seeded episodes: d4rl (the maze's fixed goal; "
                        "CORL's rows) and/or multi2d (random goals)")
    add_seed_argument(p, "seed of the networks and the minibatches")
    output_argument(p, "--out", required=True, help="offline_rl.json: training, closed-loop score, published rows")
    output_argument(p, "--policy", default=None, help="the trained actor (weights only, `offline_rl.load_policy`)")
    add_device_arguments(p, "where the agent trains: auto, cpu, cuda, cuda:1 ... (it acts on the CPU)")


@command("offline-rl", "an offline RL agent (TorchRL: IQL, CQL, TD3+BC) trained on Minari PointMaze datasets and "
                       "evaluated closed loop: success rate and D4RL-normalised score", _offline_rl_arguments)
def cmd_offline_rl(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.offline_rl import OfflineRLConfig, run_offline_rl

    set_threads(args.threads)
    cfg = OfflineRLConfig(algo=args.algo, updates=args.updates, batch_size=args.batch_size)
    summary = run_offline_rl(args.dataset, cfg, seed=args.seed, episodes=args.episodes, eval_seed=args.eval_seed,
                             policy_path=args.policy, device=args.device, protocols=args.protocol)
    write_json(args.out, summary)
    for name, rollout in summary["rollouts"].items():
        log.info("offline RL -> %s (%s): success %.2f, normalised score %.1f", args.out, name,
                 rollout["success_rate"], rollout["normalized_score"])


def _two_sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real", type=Path, required=True, help="Minari dataset of real experience (the expert data)")
    p.add_argument("--synthetic", type=Path, nargs="+", required=True,
                   help="Minari dataset(s) to test against it (plans, executed plans), one AUROC each")
    p.add_argument("--max-rows", type=positive_int, default=20_000, help="(s, a, s') rows per class")
    add_seed_argument(p, "seed of the subsampling and the folds")
    output_argument(p, "--out", required=True, help="two_sample.json")
    p.add_argument("--threads", type=positive_int, default=None, help="threads of the classifier")


@command("two-sample", "classifier two-sample test of (state, action, next state) tuples: real against "
                       "synthetic experience, out-of-fold AUROC (0.5 = indistinguishable)", _two_sample_arguments)
def cmd_two_sample(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    from dgm_science.domains.trajectories.metrics import realism
    from dgm_science.domains.trajectories.minari_io import read_minari

    synthetic = {str(path): read_minari(path) for path in args.synthetic}
    with threadpool_limits(args.threads):
        out = {"real": str(args.real), **realism(read_minari(args.real), synthetic, max_per_class=args.max_rows,
                                                 seed=args.seed)}
    write_json(args.out, out)
    log.info("two-sample -> %s: %s", args.out, json.dumps(out))
