"""Closed-loop evaluation in the simulator: a policy runs seeded PointMaze episodes (random start
and goal cells, as gymnasium-robotics resets them; the episode seeds are shared by every policy,
so rows compare on the same tasks), and the D4RL-normalised score is computed from the return.

Protocol (D4RL Maze2D, as Diffuser evaluates it): ``continuing_task=True``, ``reset_target=False``,
the environment's own episode length (U-Maze 300, Medium 600, Large 800 steps), sparse reward 1 for
every step within 0.45 of the goal; the episode does not end at the goal, so reaching it early
scores more. Normalised score = 100 (return - random) / (expert - random) with D4RL's reference
returns of maze2d-{umaze,medium,large}-v1 (``mazes.MazeSpec``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def closed_loop(maze: str, policy: Any, *, episodes: int = 100, seed: int = 0,
                max_steps: int | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Run ``episodes`` seeded episodes in lockstep with ``policy.act_batch`` (one batched call per
    step for all environments). Returns the summary (success rate, return, normalised score with
    its standard error, steps to the goal, wall time) and per-episode arrays."""
    from dgm_science.domains.trajectories.mazes import make_env, maze_spec

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    spec = maze_spec(maze)
    steps = max_steps or spec.max_episode_steps
    envs = [make_env(spec.name, max_episode_steps=steps) for _ in range(episodes)]
    observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
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
        "episodes": float(episodes), "episode_steps": float(steps),
        "success_rate": float(reached.mean()),
        "return_mean": float(returns.mean()),
        "normalized_score": float(score.mean()),
        "normalized_score_sem": float(score.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
        "steps_to_goal": float(first_success[reached].mean()) if reached.any() else float("nan"),
        "seconds": wall, "policy_seconds": policy_seconds,
    }
    if hasattr(policy, "plan_calls"):
        summary["plan_calls"] = float(policy.plan_calls)
    log.info("%s: success %.3f, normalised score %.1f +- %.1f over %d episodes in %.1f s", spec.name,
             summary["success_rate"], summary["normalized_score"], summary["normalized_score_sem"], episodes, wall)
    per_episode = {"returns": returns, "score": score, "first_success": first_success, "starts": starts,
                   "goals": goals, "paths": paths}
    return summary, per_episode


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
                         plot_plans_n: int = 6) -> dict[str, Any]:
    """``dgm rollout``: closed-loop summary of a trajectory model (``checkpoint``; ``maze``, if
    given, must be the one it was trained on) or of a ``baseline`` policy on ``maze``: "expert"
    (the data-generating planner) or "straight" (the controller aimed straight at the goal).
    ``plot``: a PNG of the first plans of the first episodes with the executed paths."""
    from dgm_science.domains.trajectories.mazes import maze_spec
    from dgm_science.domains.trajectories.policy import BASELINES, PlannerPolicy

    first_plans: list[Any] = []
    if checkpoint is not None:
        policy: Any = PlannerPolicy(checkpoint, replan_every=replan_every, candidates=candidates, seed=seed,
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
    summary, per_episode = closed_loop(name, policy, episodes=episodes, seed=seed)
    spec = maze_spec(name)
    summary.update({"maze": name, "policy": baseline if checkpoint is None else str(checkpoint),
                    "replan_every": replan_every or 0, "candidates": candidates if checkpoint is not None else 0,
                    "stitch": bool(stitch and checkpoint is not None),
                    "diffuser_published_score": spec.diffuser_score,
                    "d4rl_random_score": spec.d4rl_random_score, "d4rl_expert_score": spec.d4rl_expert_score})
    if plot is not None:
        from dgm_science.domains.trajectories.data import Trajectory

        plans = first_plans or [Trajectory(np.c_[p, np.zeros_like(p)], np.zeros((len(p), 2)), g)
                                for p, g in zip(per_episode["paths"][:plot_plans_n], per_episode["goals"])]
        title = f"PointMaze {name}: " + ("first plans (solid) and executed paths (dotted)" if first_plans
                                          else f"{baseline} paths")
        plot_plans(name, plot, plans, per_episode["paths"][:len(plans)] if first_plans else None, title=title)
    return summary
