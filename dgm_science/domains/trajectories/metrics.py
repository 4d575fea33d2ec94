"""Open-loop quality of planned trajectories in the simulator: dynamic consistency (Janner et al.
2022 judge plans by whether the environment can follow them), wall crossings and goal reach."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dgm_science.domains.trajectories.mazes import GOAL_RADIUS


def simulate_transitions(maze: str, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The simulator's next observation for each (observation, action) pair: (N, 4) from
    observations (N, 4) and actions (N, 2), by setting the point's state and taking one step of
    the environment's own dynamics (action and velocity clipped as PointMaze does)."""
    from dgm_science.domains.trajectories.mazes import make_env

    env = make_env(maze)
    env.reset(seed=0)
    point = env.unwrapped.point_env
    out = np.empty_like(np.asarray(observations, dtype=np.float64))
    for i, (obs, action) in enumerate(zip(observations, actions)):
        point.set_state(np.asarray(obs[:2], dtype=np.float64), np.asarray(obs[2:4], dtype=np.float64))
        out[i] = point.step(np.asarray(action, dtype=np.float64))[0]
    env.close()
    return out


def plan_metrics(maze: str, trajectories: Sequence[Any]) -> dict[str, float]:
    """Mean over trajectories of: ``dynamic_position_error`` / ``dynamic_velocity_error`` (the
    distance between each planned next state and the simulator's next state from the planned
    state and action; positions in maze units, velocities in units/s), ``wall_fraction`` (planned
    positions inside a wall cell or outside the maze), ``goal_distance`` (final position to the
    goal), ``reaches_goal`` (final position within 0.45 of the goal) and ``path_length``."""
    from dgm_science.domains.trajectories.mazes import Maze

    if not trajectories:
        return {}
    geometry = Maze(maze)
    obs = np.stack([t.observations for t in trajectories]).astype(np.float64)  # (N, H, 4)
    actions = np.stack([t.actions for t in trajectories]).astype(np.float64)
    goals = np.stack([t.goal for t in trajectories]).astype(np.float64)
    n, horizon, _ = obs.shape
    predicted = simulate_transitions(maze, obs[:, :-1].reshape(-1, 4), actions[:, :-1].reshape(-1, 2))
    predicted = predicted.reshape(n, horizon - 1, 4)
    position_error = np.linalg.norm(predicted[..., :2] - obs[:, 1:, :2], axis=-1)
    velocity_error = np.linalg.norm(predicted[..., 2:] - obs[:, 1:, 2:], axis=-1)
    inside = geometry.is_free_batch(obs[..., :2].reshape(-1, 2)).reshape(n, horizon)
    goal_distance = np.linalg.norm(obs[:, -1, :2] - goals, axis=-1)
    return {
        "trajectories": float(n),
        "dynamic_position_error": float(position_error.mean()),
        "dynamic_velocity_error": float(velocity_error.mean()),
        "wall_fraction": float(1 - inside.mean()),
        "goal_distance": float(goal_distance.mean()),
        "reaches_goal": float((goal_distance <= GOAL_RADIUS).mean()),
        "path_length": float(np.linalg.norm(np.diff(obs[..., :2], axis=1), axis=-1).sum(1).mean()),
    }
