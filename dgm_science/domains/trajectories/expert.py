"""Expert PointMaze data in the style of D4RL's maze2d: a shortest-path + PD-controller policy.

:class:`ExpertPolicy` follows the BFS shortest path of the maze's cell grid (the centers of the
cells on the way, then the exact goal) with a PD controller on the position, optionally with
Gaussian action noise (D4RL's maze2d data used noise 0.5 on a similar waypoint controller).

:func:`collect` runs D4RL-style episodes: each is one long continuing run (``continuing_task=True,
reset_target=True``) of ``episode_steps`` steps in which the env draws a new goal each time the
ball comes within 0.45 of the current one (the observation of the arrival step still shows the old
goal: the env copies it before resampling, so ``desired_goal`` changes one step later).
:func:`write_expert_dataset` stores the episodes as a local Minari dataset (``minari_io``) with
``collect.json`` beside it. :func:`evaluate` measures the policy on the env's evaluation protocol
(one fixed goal per episode, ``max_episode_steps`` steps).

Planner success (``collect`` stats): a goal counts as reached in time when the ball gets to it at
most ``max_episode_steps`` (the maze's evaluation time limit) steps after it was set, as failed when
it took longer or is still pending at the episode's end after more than ``max_episode_steps``
steps; a goal still pending at the end after fewer steps is left out (censored).
``planner_success_rate`` = in time / (in time + failed).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dgm_science.domains.trajectories.mazes import GOAL_RADIUS, Maze, MazeSpec, make_env, maze_spec
from dgm_science.utils import atomic_dir

log = logging.getLogger(__name__)

DEFAULT_KP = 10.0
DEFAULT_KD = 1.0
DEFAULT_REACH = 0.5


class ExpertPolicy:
    """Shortest path + PD controller: ``act(obs) = clip(kp (w - pos) - kd vel + noise, -1, 1)``.

    ``w`` is the current waypoint of ``maze.shortest_path(position, desired_goal)``; the path is
    cached and re-planned when the goal changes or the ball leaves it (e.g. pushed by noise). An
    intermediate waypoint (a cell center) counts as reached once the ball is in its cell within
    ``reach`` of the center; the last one is the exact goal. ``noise``: std of the Gaussian
    action noise (seeded by ``seed``)."""

    def __init__(self, maze: Maze, *, kp: float = DEFAULT_KP, kd: float = DEFAULT_KD, noise: float = 0.0,
                 reach: float = DEFAULT_REACH, seed: int | np.random.SeedSequence | None = None) -> None:
        self.maze, self.kp, self.kd, self.noise, self.reach = maze, float(kp), float(kd), float(noise), float(reach)
        self.rng = np.random.default_rng(seed)
        self.replans = 0
        self.reset()

    def reset(self, seed: int | np.random.SeedSequence | None = None) -> None:
        """Forget the cached path (new episode); reseed the action noise if ``seed`` is given."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._goal: np.ndarray | None = None
        self._path = np.zeros((0, 2))
        self._cells = np.zeros((0, 2), dtype=np.int64)
        self._index = 0

    def _plan(self, pos: np.ndarray, goal: np.ndarray) -> None:
        self._goal = goal.copy()
        self._path = self.maze.shortest_path(pos, goal)
        self._cells = np.concatenate([self.maze.xy_to_cell(pos)[None], self.maze.xy_to_cell(self._path)])
        self._index = 0
        self.replans += 1

    def waypoint(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The current target point for a ball at ``pos`` heading to ``goal`` (updates the plan)."""
        if self._goal is None or not np.array_equal(goal, self._goal):
            self._plan(pos, goal)
        # _cells[0] is the plan's start cell, _cells[k + 1] the cell of waypoint k
        cell = self.maze.xy_to_cell(pos)
        on_path = np.flatnonzero((self._cells[self._index + 1:] == cell).all(axis=1))
        if len(on_path):  # in the cell of waypoint k: target it, or the next one once near its center
            k = self._index + int(on_path[-1])
            if k < len(self._path) - 1 and np.linalg.norm(pos - self._path[k]) <= self.reach:
                k += 1
            self._index = k
        elif not (self._cells[self._index] == cell).all():
            self._plan(pos, goal)  # neither in the target's cell nor in the one before: off the path
            return self.waypoint(pos, goal)
        return self._path[self._index]

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        state = np.asarray(obs["observation"], dtype=np.float64)
        pos, vel = state[:2], state[2:4]
        target = self.waypoint(pos, np.asarray(obs["desired_goal"], dtype=np.float64))
        action = self.kp * (target - pos) - self.kd * vel
        if self.noise > 0:
            action = action + self.noise * self.rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.act(obs)


def _episode_seeds(seed: int, episodes: int) -> list[tuple[int, np.random.SeedSequence]]:
    """Per episode: the env's reset seed and the policy's noise seed, both derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(episodes)
    return [(int(child.generate_state(1, np.uint32)[0]), child) for child in children]


def evaluate(maze_name: str | MazeSpec, *, episodes: int = 50, seed: int = 0, noise: float = 0.0,
             max_episode_steps: int | None = None, **policy_kwargs: Any) -> dict[str, Any]:
    """The expert on the env's evaluation protocol (``continuing_task=True, reset_target=False``:
    random start and goal cells, one goal, ``max_episode_steps`` steps, reward 1 per step within
    0.45 of the goal): success rate, steps to the goal, return and its D4RL-normalised score."""
    spec = maze_spec(maze_name)
    steps = int(max_episode_steps or spec.max_episode_steps)
    env = make_env(spec, continuing_task=True, reset_target=False, max_episode_steps=steps)
    policy = ExpertPolicy(Maze(spec), noise=noise, **policy_kwargs)
    first_hits, returns = [], []
    try:
        for env_seed, noise_seed in _episode_seeds(seed, episodes):
            obs, _ = env.reset(seed=env_seed)
            policy.reset(noise_seed)
            hit, total = None, 0.0
            for t in range(steps):
                obs, reward, terminated, truncated, info = env.step(policy.act(obs))
                total += float(reward)
                if hit is None and info["success"]:
                    hit = t + 1
                if terminated or truncated:
                    break
            first_hits.append(hit)
            returns.append(total)
    finally:
        env.close()
    reached = [h for h in first_hits if h is not None]
    mean_return = float(np.mean(returns))
    return {"maze": spec.name, "episodes": episodes, "episode_steps": steps, "noise": noise,
            "success_rate": len(reached) / episodes,
            "mean_steps_to_goal": float(np.mean(reached)) if reached else float("nan"),
            "max_steps_to_goal": int(max(reached)) if reached else None,
            "mean_return": mean_return, "d4rl_normalized_score": float(spec.normalized_score(mean_return))}


def collect(maze_name: str | MazeSpec, *, episodes: int, episode_steps: int, noise: float = 0.0, seed: int = 0,
            kp: float = DEFAULT_KP, kd: float = DEFAULT_KD, reach: float = DEFAULT_REACH) -> dict[str, Any]:
    """``episodes`` D4RL-maze2d-style runs of ``episode_steps`` steps (the goal resampled on arrival).

    Returns {"episodes": [per-episode dict], "stats": {...}}; an episode holds observations
    {"observation": (T+1, 4), "achieved_goal": (T+1, 2), "desired_goal": (T+1, 2)} (float64),
    actions (T, 2) float32 (exactly what the env got), rewards (T,) float64, terminations and
    truncations (T,) bool (the last step truncated) and its env reset seed. Same seed, same arrays.
    """
    spec = maze_spec(maze_name)
    if episodes < 1 or episode_steps < 1:
        raise ValueError(f"episodes and episode_steps must be >= 1, got {episodes} and {episode_steps}")
    env = make_env(spec.plain(), continuing_task=True, reset_target=True, max_episode_steps=episode_steps)
    policy = ExpertPolicy(Maze(spec), kp=kp, kd=kd, noise=noise, reach=reach)
    limit = spec.max_episode_steps
    out, times_to_goal = [], []
    in_time = failed = censored = 0
    start = time.perf_counter()
    try:
        for env_seed, noise_seed in _episode_seeds(seed, episodes):
            obs, _ = env.reset(seed=env_seed)
            policy.reset(noise_seed)
            observations = {k: np.empty((episode_steps + 1, len(v)), dtype=np.float64) for k, v in obs.items()}
            actions = np.empty((episode_steps, 2), dtype=np.float32)
            rewards = np.empty(episode_steps, dtype=np.float64)
            terminations = np.zeros(episode_steps, dtype=bool)
            truncations = np.zeros(episode_steps, dtype=bool)
            for key, value in obs.items():
                observations[key][0] = value
            set_at = 0
            for t in range(episode_steps):
                action = policy.act(obs)
                obs, reward, terminated, truncated, _ = env.step(action)
                actions[t], rewards[t], terminations[t], truncations[t] = action, reward, terminated, truncated
                for key, value in obs.items():
                    observations[key][t + 1] = value
                if reward > 0:  # arrived (sparse reward): the env draws the next goal now
                    times_to_goal.append(t + 1 - set_at)
                    in_time += times_to_goal[-1] <= limit
                    failed += times_to_goal[-1] > limit
                    set_at = t + 1
                if terminated or (truncated and t < episode_steps - 1):
                    raise RuntimeError(f"{spec.env_id} ended the episode at step {t + 1} of {episode_steps}")
            truncations[-1] = True
            pending = episode_steps - set_at
            failed += pending > limit
            censored += pending <= limit
            out.append({"observations": observations, "actions": actions, "rewards": rewards,
                        "terminations": terminations, "truncations": truncations, "seed": env_seed})
    finally:
        env.close()
    seconds = time.perf_counter() - start
    total = episodes * episode_steps
    reached = len(times_to_goal)
    stats = {
        "maze": spec.name, "env_id": spec.env_id, "episodes": episodes, "episode_steps": episode_steps,
        "total_steps": total, "noise": noise, "seed": seed, "kp": kp, "kd": kd, "reach": reach,
        "goal_radius": GOAL_RADIUS, "goals_reached": reached, "goals_reached_per_1000_steps": 1000 * reached / total,
        "goals_in_time": int(in_time), "goals_failed": int(failed), "goals_pending_censored": int(censored),
        "time_limit": limit, "planner_success_rate": in_time / max(in_time + failed, 1),
        "mean_steps_to_goal": float(np.mean(times_to_goal)) if times_to_goal else float("nan"),
        "max_steps_to_goal": int(max(times_to_goal)) if times_to_goal else None,
        "seconds": seconds, "steps_per_s": total / seconds if seconds > 0 else float("nan"),
    }
    log.info("collected %s: %d episodes x %d steps, %d goals reached (%.3f success), %.0f steps/s",
             spec.name, episodes, episode_steps, reached, stats["planner_success_rate"], stats["steps_per_s"])
    return {"episodes": out, "stats": stats}


def dataset_id(maze_name: str | MazeSpec, noise: float = 0.0) -> str:
    """Minari id of the expert data: dgm/pointmaze-{maze}-expert-v0 (noisy-expert with noise > 0)."""
    kind = "noisy-expert" if noise > 0 else "expert"
    return f"dgm/pointmaze-{maze_spec(maze_name).label}-{kind}-v0"


def write_expert_dataset(out_dir: str | Path, maze_name: str | MazeSpec, *, episodes: int, episode_steps: int,
                         noise: float = 0.0, seed: int = 0, overwrite: bool = False, **policy_kwargs: Any
                         ) -> dict[str, Any]:
    """Collect and write ``out_dir/minari`` (a Minari dataset, see ``minari_io``) and
    ``out_dir/collect.json`` (settings and stats); returns the stats.

    Everything is written into a temporary folder beside ``out_dir`` that is renamed to ``out_dir``
    at the end, so an interrupted run never leaves a complete-looking half dataset. An existing
    ``out_dir`` raises ``FileExistsError`` unless ``overwrite``."""
    from dgm_science.domains.trajectories.minari_io import write_minari

    spec = maze_spec(maze_name)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; remove it or pass overwrite=True")
    result = collect(spec, episodes=episodes, episode_steps=episode_steps, noise=noise, seed=seed, **policy_kwargs)
    stats = result["stats"]
    with atomic_dir(out_dir) as tmp:
        ident = dataset_id(spec, noise)
        write_minari(
            tmp / "minari", result["episodes"], dataset_id=ident, env_id=spec.env_id,
            env_kwargs={"continuing_task": True, "reset_target": True, "max_episode_steps": episode_steps,
                        **spec.plain().map_kwargs},
            description=(f"PointMaze {spec.label} ({spec.env_id}) expert data in the style of D4RL "
                         f"{'maze2d (a user map)' if spec.custom_map else spec.d4rl_id}: {episodes} continuing "
                         f"episodes of {episode_steps} steps, the goal "
                         f"resampled on arrival; BFS shortest path over the maze cells + PD controller "
                         f"(kp {stats['kp']}, kd {stats['kd']}), Gaussian action noise std {noise}."
                         + ("" if spec.custom_map else f" ref_min_score / ref_max_score are D4RL's {spec.d4rl_id} "
                                                       "reference scores.")),
            algorithm_name="shortest-path-pd-controller",
            metadata={"collect": stats} if spec.custom_map else
            {"ref_min_score": spec.d4rl_random_score, "ref_max_score": spec.d4rl_expert_score, "collect": stats},
        )
        settings = {"maze": spec.name, "env_id": spec.env_id, "dataset_id": ident, "minari": "minari",
                    "episodes": episodes, "episode_steps": episode_steps, "noise": noise, "seed": seed,
                    "versions": _versions(), "stats": stats}
        (tmp / "collect.json").write_text(json.dumps(settings, indent=2) + "\n")
    return stats


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gymnasium", "gymnasium-robotics", "mujoco", "minari", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
