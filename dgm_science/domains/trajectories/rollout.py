"""Closed-loop evaluation in the simulator: a policy runs seeded PointMaze episodes under one of
two evaluation protocols (:data:`PROTOCOLS`; the episode seeds are shared by every policy, so rows
compare on the same tasks), and the D4RL-normalised score is computed from the return.

- ``d4rl``: D4RL's own maze2d-{umaze,medium,large}-v1 protocol, Diffuser's "Maze2D" rows and
  CORL's: each maze's fixed goal (the centre of the "G" cell of D4RL's maze, ``MazeSpec.d4rl_goal_cell``),
  the start in a cell drawn uniformly from all free cells (the goal's included, as D4RL's
  ``empty_and_goal_locations``), both drawn from the episode's seed.
- ``multi2d``: Diffuser's "Multi2D" setting: start and goal in random cells, as gymnasium-robotics'
  PointMaze resets draw them (the goal anywhere in the maze; an easier task on D4RL's scale, since
  a goal near the start is reached early and scores more).

Both: ``continuing_task=True``, ``reset_target=False``, the environment's own episode length (U-Maze
300, Medium 600, Large 800 steps), sparse reward 1 for every step within 0.45 of the goal; the
episode does not end at the goal, so reaching it early scores more. Normalised score =
100 (return - random) / (expert - random) with D4RL's reference returns of
maze2d-{umaze,medium,large}-v1 (``mazes.MazeSpec``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def _reset_multi2d(env: Any, maze: Any, seed: int) -> dict[str, np.ndarray]:
    """gymnasium-robotics' own reset: start and goal cells drawn from the seed (Diffuser's Multi2D)."""
    return env.reset(seed=seed)[0]


def _reset_d4rl(env: Any, maze: Any, seed: int) -> dict[str, np.ndarray]:
    """D4RL maze2d-*-v1: the goal at the centre of the maze's "G" cell, the start cell uniform over
    the free cells (the goal's included) from the seed; the start position jittered as the env's reset
    does (+-0.25 of a cell; D4RL: +-0.1)."""
    from dgm_science.domains.trajectories.mazes import Maze

    if maze.d4rl_goal_cell is None:
        raise ValueError(f"the d4rl protocol needs the maze's fixed goal: a 'g' cell in the map of {maze.label} "
                         "(or use --protocol multi2d)")
    geometry = Maze(maze)
    free = geometry.free_cells
    start_cell = free[int(np.random.default_rng(seed).integers(len(free)))]
    observation = env.reset(seed=seed, options={"goal_cell": np.array(maze.d4rl_goal_cell),
                                                "reset_cell": np.array(start_cell)})[0]
    world = env.unwrapped
    world.goal = geometry.cell_to_xy(maze.d4rl_goal_cell)
    world.update_target_site_pos()
    return {**observation, "desired_goal": world.goal.copy()}


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol: how an episode's start and goal are drawn from its seed (``reset``:
    env, ``MazeSpec``, seed -> first observation); ``name`` is also the ``protocol`` column of the
    published rows measured under it (``published/maze2d_planners.csv``)."""

    name: str
    description: str
    reset: Callable[[Any, Any, int], dict[str, np.ndarray]]


PROTOCOLS: dict[str, Protocol] = {
    "d4rl": Protocol("d4rl", "D4RL maze2d: the maze's fixed goal cell, random start (Diffuser's Maze2D, CORL)",
                     _reset_d4rl),
    "multi2d": Protocol("multi2d", "Multi2D: random start and random goal cells (Diffuser's Multi2D)",
                        _reset_multi2d),
}
DEFAULT_PROTOCOL = "d4rl"


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def reset_episodes(maze: str, seeds: Sequence[int], protocol_name: str = DEFAULT_PROTOCOL,
                   max_steps: int | None = None) -> tuple[list[Any], list[dict[str, np.ndarray]]]:
    """One env per seed, reset under the protocol: (envs, first observations)."""
    from dgm_science.domains.trajectories.mazes import make_env, maze_spec

    spec = maze_spec(maze)
    reset = get_protocol(protocol_name).reset
    envs = [make_env(spec.name, max_episode_steps=max_steps or spec.max_episode_steps) for _ in seeds]
    return envs, [reset(env, spec, int(seed)) for env, seed in zip(envs, seeds)]


def closed_loop(maze: str, policy: Any, *, episodes: int = 100, seed: int = 0, max_steps: int | None = None,
                protocol: str = DEFAULT_PROTOCOL) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run ``episodes`` seeded episodes (seeds ``seed`` .. ``seed + episodes - 1``, reset under
    ``protocol``) in lockstep with ``policy.act_batch`` (one batched call per step for all
    environments). Returns the summary (protocol, success rate, return, normalised score with its
    standard error, steps to the goal, wall time) and per-episode arrays."""
    from dgm_science.domains.trajectories.mazes import maze_spec

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    spec = maze_spec(maze)
    steps = max_steps or spec.max_episode_steps
    envs, observations = reset_episodes(spec.name, range(seed, seed + episodes), protocol, max_steps=steps)
    starts = np.stack([o["observation"][:2] for o in observations])
    goals = np.stack([o["desired_goal"] for o in observations])
    policy.reset()
    returns = np.zeros(episodes)
    first_success = np.full(episodes, -1)
    paths = np.zeros((episodes, steps + 1, 2))
    paths[:, 0] = starts
    start_time = time.perf_counter()
    policy_seconds = 0.0
    for step in range(steps):
        tick = time.perf_counter()
        actions = policy.act_batch(observations)
        policy_seconds += time.perf_counter() - tick
        for i, env in enumerate(envs):
            observations[i], reward, _, _, info = env.step(actions[i])
            returns[i] += reward
            if info.get("success") and first_success[i] < 0:
                first_success[i] = step + 1
            paths[i, step + 1] = observations[i]["achieved_goal"]
    for env in envs:
        env.close()
    wall = time.perf_counter() - start_time
    score = spec.normalized_score(returns)
    reached = first_success > 0
    summary = {
        "protocol": protocol, "episodes": float(episodes), "episode_steps": float(steps),
        "success_rate": float(reached.mean()),
        "return_mean": float(returns.mean()),
        "normalized_score": float(score.mean()),
        "normalized_score_sem": float(score.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
        "steps_to_goal": float(first_success[reached].mean()) if reached.any() else float("nan"),
        "seconds": wall, "policy_seconds": policy_seconds,
    }
    if spec.custom_map is not None:
        summary["normalized_score"] = summary["normalized_score_sem"] = None
        summary["normalized_score_note"] = ("not available: D4RL's reference returns exist for its three mazes only; "
                                            "compare return_mean and success_rate with the expert and straight "
                                            "baselines' rollouts on the same seeded episodes")
    if hasattr(policy, "plan_calls"):
        summary["plan_calls"] = float(policy.plan_calls)
    log.info("%s (%s): success %.3f, return %.1f, normalised score %s over %d episodes in %.1f s", spec.label,
             protocol, summary["success_rate"], summary["return_mean"],
             "n/a" if summary["normalized_score"] is None else
             f"{summary['normalized_score']:.1f} +- {summary['normalized_score_sem']:.1f}", episodes, wall)
    per_episode = {"returns": returns, "score": score, "first_success": first_success, "starts": starts,
                   "goals": goals, "paths": paths}
    return summary, per_episode


def published_planners(maze: str, protocol: str) -> list[dict[str, Any]]:
    """Published planner rows of ``maze`` measured under ``protocol`` (``published/maze2d_planners.csv``):
    method, score, error (the ± the paper prints; None where the file leaves it empty), source, checked. Rows
    of the other protocol are never returned."""
    import csv
    from pathlib import Path

    from dgm_science.domains.trajectories.mazes import maze_spec

    get_protocol(protocol)
    name = maze_spec(maze).name
    with open(Path(__file__).parent / "published" / "maze2d_planners.csv", newline="") as fh:
        return [{"method": row["method"], "score": float(row["score"]),
                 "error": float(row["error"]) if row["error"] else None,
                 "source": row["source"], "checked": row["checked"]}
                for row in csv.DictReader(fh) if row["maze"] == name and row["protocol"] == protocol]


def plot_plans(maze: str, path: Any, plans: list[Any], paths: np.ndarray | None = None, title: str = "") -> None:
    """A picture of plans (``Trajectory``) drawn over the maze, with the executed paths if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from dgm_science.domains.trajectories.mazes import Maze

    geometry = Maze(maze)
    fig, ax = plt.subplots(figsize=(5, 5))
    for x0, y0, x1, y1 in geometry.wall_rectangles():
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.3"))
    colors = plt.cm.tab10(np.arange(len(plans)) % 10)
    for i, (plan, color) in enumerate(zip(plans, colors)):
        xy = plan.observations[:, :2]
        ax.plot(xy[:, 0], xy[:, 1], "-", color=color, lw=1.5, alpha=0.9, label="plan" if i == 0 else None)
        if paths is not None:
            ax.plot(paths[i, :, 0], paths[i, :, 1], ":", color=color, lw=1, label="executed" if i == 0 else None)
        ax.plot(*xy[0], "o", color=color, ms=6)
        ax.plot(*plan.goal, "*", color=color, ms=12, mec="k")
    walls = np.array(geometry.wall_rectangles())
    ax.set_xlim(walls[:, 0].min(), walls[:, 2].max())
    ax.set_ylim(walls[:, 1].min(), walls[:, 3].max())
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title or f"PointMaze {maze}: sampled plans (o start, * goal)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_closed_loop(*, checkpoint: Any = None, baseline: str | None = None, maze: str | None = None,
                         episodes: int = 100, seed: int = 0, replan_every: int | None = None,
                         candidates: int = 1, stitch: bool = False, plot: Any = None, device: str = "auto",
                         plot_plans_n: int = 6, protocol: str = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """``dgm rollout``: closed-loop summary of a trajectory model (``checkpoint``; ``maze``, if
    given, must be the one it was trained on) or of a ``baseline`` policy on ``maze``: "expert"
    (the data-generating planner) or "straight" (the controller aimed straight at the goal), under
    the evaluation ``protocol`` (:data:`PROTOCOLS`). A planner with ``candidates > 1`` (ranked by
    wall hits) or ``stitch`` (the maze's shortest path) uses the map: ``map_aided`` says so.
    ``plot``: a PNG of the first plans of the first episodes with the executed paths."""
    from dgm_science.domains.trajectories.mazes import maze_spec
    from dgm_science.domains.trajectories.policy import BASELINES, PlannerPolicy

    first_plans: list[Any] = []
    if checkpoint is not None:
        from dgm_science import api

        model = api.load(checkpoint, device=device)
        if model.domain.name == "trajectories" and model.state.get("maze") is None:
            from dgm_science.domains.trajectories import generic  # a user's environment (not a maze)

            summary = generic.closed_loop(model, episodes=episodes, seed=seed, replan_every=replan_every)
            return {**summary, "policy": str(checkpoint)}
        if protocol == "env":
            raise ValueError("--protocol env is the closed loop of a model of a user's Minari dataset; a maze "
                             f"model takes {', '.join(PROTOCOLS)}")
        policy: Any = PlannerPolicy(model, replan_every=replan_every, candidates=candidates, seed=seed,
                                    stitch=stitch, device=device)
        name = policy.state["maze"]
        if maze is not None and maze_spec(maze).name != name:
            raise ValueError(f"{checkpoint} was trained on PointMaze {name}, not {maze_spec(maze).name}: its plans "
                             "would not fit this maze")
        original = policy.plan

        def recording_plan(states: np.ndarray, goals: np.ndarray) -> list[Any]:
            plans = original(states, goals)
            if not first_plans:
                first_plans.extend(plans[:plot_plans_n])
            return plans

        policy.plan = recording_plan  # type: ignore[method-assign]
    else:
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}")
        if maze is None:
            raise ValueError("a baseline needs --maze")
        name = maze_spec(maze).name
        policy = BASELINES[baseline](name)
    summary, per_episode = closed_loop(name, policy, episodes=episodes, seed=seed, protocol=protocol)
    spec = maze_spec(name)
    planner = checkpoint is not None
    summary.update({"maze": name, "policy": baseline if checkpoint is None else str(checkpoint),
                    "replan_every": replan_every or 0, "candidates": candidates if planner else 0,
                    "stitch": bool(stitch and planner), "map_aided": bool(planner and (stitch or candidates > 1)),
                    "published": published_planners(name, protocol),
                    "d4rl_random_score": spec.d4rl_random_score, "d4rl_expert_score": spec.d4rl_expert_score})
    if plot is not None:
        from dgm_science.domains.trajectories.data import Trajectory

        plans = first_plans or [Trajectory(np.c_[p, np.zeros_like(p)], np.zeros((len(p), 2)), g)
                                for p, g in zip(per_episode["paths"][:plot_plans_n], per_episode["goals"])]
        title = f"PointMaze {name} ({protocol}): " + ("first plans (solid) and executed paths (dotted)" if first_plans
                                          else f"{baseline} paths")
        plot_plans(name, plot, plans, per_episode["paths"][:len(plans)] if first_plans else None, title=title)
    return summary
