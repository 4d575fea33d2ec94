"""Sampled plans made into experience an RL agent can learn from: each plan is executed in the
simulator and what the simulator did is recorded.

A trajectory model draws states and actions jointly, and nothing forces the drawn action to move
the point from one drawn state to the next (``metrics.plan_metrics`` measures how far apart they
are). ``execute_plans`` resets PointMaze to the plan's start state and goal (``set_state`` on the
MuJoCo point, the env's own goal), then tracks the plan's states with the planner's PD controller
(``policy.track``: the same controller and gains as ``PlannerPolicy``; the goal at rest once the plan
has arrived) for the plan's length, recording each (observation, action, reward, next observation)
from ``env.step``. So every transition is the simulator's own (dynamically consistent by
construction) and every reward is the env's ``compute_reward`` (sparse: 1 within 0.45 of the goal,
the D4RL evaluation protocol's ``continuing_task=True, reset_target=False``). What is lost is
reported: how far the executed path strays from the plan.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dgm_science.domains.trajectories.data import Trajectory
from dgm_science.domains.trajectories.policy import track
from dgm_science.errors import DataError

log = logging.getLogger(__name__)


def dataset_maze(path: Path) -> str:
    """The maze of a PointMaze Minari dataset, from the env spec it stores (no env is built)."""
    from dgm_science.domains.trajectories.minari_io import load_minari
    from dgm_science.domains.trajectories.mazes import maze_spec

    env_spec = load_minari(path).spec.env_spec
    env_id = getattr(env_spec, "id", None)
    try:
        return maze_spec(str(env_id)).name
    except ValueError:
        raise DataError(f"{path}: a dataset of {env_id!r}, not of a PointMaze maze") from None


def execute_plans(maze: str, plans: Sequence[Trajectory], *, kp: float = 10.0, kd: float = 1.0,
                  arrive: float = 0.2) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each plan executed from its start state toward its goal for ``len(plan) - 1`` steps:
    Minari episodes (the env's dict observations, actions, rewards; truncated at the end) and a
    summary (plan-to-path deviation, goal reach, return, transitions per second)."""
    from dgm_science.domains.trajectories.mazes import GOAL_RADIUS, Maze, make_env, maze_spec

    spec = maze_spec(maze)
    geometry = Maze(spec)
    env = make_env(spec)
    episodes, deviation, final_distance, returns = [], [], [], []
    start_time = time.perf_counter()
    try:
        env.reset(seed=0)
        world = env.unwrapped
        for i, plan in enumerate(plans):
            states = np.asarray(plan.observations, dtype=np.float64)
            goal = np.asarray(plan.goal, dtype=np.float64).reshape(2)
            if states.ndim != 2 or states.shape[1] != 4 or len(states) < 2 or not np.isfinite(states).all():
                raise DataError(f"plan {i}: observations of shape {states.shape} (need (H >= 2, 4), finite)")
            geometry.check_point(states[0, :2], f"plan {i}'s start")
            geometry.check_point(goal, f"plan {i}'s goal")
            world.goal = goal.copy()
            world.update_target_site_pos()
            world.point_env.set_state(states[0, :2].copy(), states[0, 2:].copy())
            near = np.linalg.norm(states[:, :2] - goal, axis=1) <= arrive
            arrival = int(np.argmax(near)) if near.any() else len(states)
            steps = len(states) - 1
            observed = np.empty((steps + 1, 4))
            observed[0] = states[0]
            actions = np.empty((steps, 2), dtype=np.float32)
            rewards = np.empty(steps)
            for t in range(steps):
                waypoint = states[t + 1] if t + 1 < arrival else np.r_[goal, 0.0, 0.0]
                actions[t] = track(observed[t:t + 1], waypoint[None], kp, kd)[0]
                obs, rewards[t], _, _, _ = env.step(actions[t])
                observed[t + 1] = obs["observation"]
            goals = np.broadcast_to(goal, (steps + 1, 2)).copy()
            episodes.append({"observations": {"observation": observed, "achieved_goal": observed[:, :2].copy(),
                                              "desired_goal": goals},
                             "actions": actions, "rewards": rewards, "terminations": np.zeros(steps, dtype=bool),
                             "truncations": np.arange(steps) == steps - 1})
            deviation.append(np.linalg.norm(observed[:, :2] - states[:, :2], axis=1))
            final_distance.append(float(np.linalg.norm(observed[-1, :2] - goal)))
            returns.append(float(rewards.sum()))
    finally:
        env.close()
    seconds = time.perf_counter() - start_time
    if not episodes:
        raise DataError("no plans to execute")
    deviation_all = np.concatenate(deviation)
    transitions = sum(len(e["actions"]) for e in episodes)
    final = np.asarray(final_distance)
    summary = {
        "maze": spec.name, "plans": float(len(episodes)), "transitions": float(transitions),
        "kp": kp, "kd": kd,
        "plan_deviation_mean": float(deviation_all.mean()),
        "plan_deviation_p95": float(np.percentile(deviation_all, 95)),
        "plan_deviation_max_mean": float(np.mean([d.max() for d in deviation])),
        "reaches_goal": float((final <= GOAL_RADIUS).mean()),
        "return_mean": float(np.mean(returns)),
        "seconds": seconds, "transitions_per_second": transitions / seconds if seconds > 0 else float("nan"),
    }
    log.info("executed %d plans on %s: %.0f%% end at the goal, mean deviation from the plan %.3f, %.0f "
             "transitions/s", len(episodes), spec.name, 100 * summary["reaches_goal"],
             summary["plan_deviation_mean"], summary["transitions_per_second"])
    return episodes, summary


def execute_dataset(plans_path: Path, out: Path, *, kp: float = 10.0, kd: float = 1.0) -> dict[str, float]:
    """``dgm execute``: the plans of a Minari dataset (``dgm sample`` of a trajectory model)
    executed, written as a Minari dataset at ``out``; returns the summary."""
    from dgm_science.domains.trajectories.data import episode_trajectory
    from dgm_science.domains.trajectories.mazes import maze_spec
    from dgm_science.domains.trajectories.minari_io import read_minari, write_minari

    maze = dataset_maze(plans_path)
    plans = [episode_trajectory(e) for e in read_minari(plans_path)]
    episodes, summary = execute_plans(maze, plans, kp=kp, kd=kd)
    spec = maze_spec(maze)
    write_minari(out, episodes, dataset_id=f"dgm/pointmaze-{spec.label}-executed-plans-v0", env_id=spec.env_id,
                 env_kwargs={"continuing_task": True, "reset_target": False, **spec.map_kwargs},
                 description=f"{len(episodes)} sampled plans executed in the simulator with a PD tracker "
                             f"(kp {kp}, kd {kd}): dynamically consistent transitions, the env's rewards",
                 algorithm_name="plan execution (PD tracking of a trajectory model's plans)")
    summary["source"] = str(plans_path)
    return summary
