"""The control for offline RL on generated experience: the expert's own transitions cut into
episodes of the executed plans' shape.

Executed plans (``execute.py``) are single-goal episodes of a fixed length with the env's sparse
reward; the expert's continuing episodes resample the goal on each arrival, so few of their
transitions carry a reward. An agent that does better on the plans may owe it to that shape, not to
the generative model. ``reshape_expert`` removes the difference: it cuts the expert's episodes into
as many non-overlapping segments as there are executed plans, each as long as its plan (the same
length distribution), relabels each segment's goal with the position the expert reaches at the
segment's end (hindsight relabelling, Andrychowicz et al. 2017, "final" strategy: a goal the
expert actually reaches) and recomputes every reward with the env's own ``compute_reward``
(sparse: 1 within 0.45 of the goal). The transitions themselves are the expert's, unchanged.

What is not matched, and reported: a plan starts at rest, a segment wherever the expert is; a plan
arrives and stays at its goal, a segment reaches its goal at its last step (so fewer of its
transitions are rewarded: ``reward_fraction``).

``execute=True`` (source ``expert-executed``) removes that difference too: each expert segment is
treated as a plan and executed exactly as sampled plans are (``execute.execute_plans``: from rest at
the segment's start, the PD tracker following the expert's states, the goal held at rest once
reached), its goal the expert's position at the step where the matching executed plan first earned
a reward (its final position if it never did). What then separates it from the executed plans is
only where the plans came from: the expert's states or the generative model's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dgm_science.errors import DataError

log = logging.getLogger(__name__)


def _lengths(episodes: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([len(e["actions"]) for e in episodes], dtype=np.int64)


def _rest_at_goal_fraction(episodes: Sequence[dict[str, Any]], speed: float = 0.5) -> float:
    """Fraction of transitions that earn the reward at a speed below ``speed`` (held at the goal)."""
    held = [(np.asarray(e["rewards"]) > 0)
            & (np.linalg.norm(np.asarray(e["observations"]["observation"], dtype=np.float64)[1:, 2:], axis=1) < speed)
            for e in episodes]
    return float(np.concatenate(held).mean())


def _reward_fraction(episodes: Sequence[dict[str, Any]]) -> float:
    rewards = np.concatenate([np.asarray(e["rewards"], dtype=np.float64) for e in episodes])
    return float((rewards > 0).mean()) if len(rewards) else float("nan")


def reshape_expert(maze: str, expert: Sequence[dict[str, Any]], like: Sequence[dict[str, Any]], *,
                   seed: int = 0, execute: bool = False) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """``len(like)`` episodes cut from ``expert`` (Minari PointMaze episodes), episode i as long as
    ``like[i]`` (T_i transitions, T_i + 1 observations), non-overlapping, drawn in a seeded order
    of the expert episodes with a random offset in each; goal = the segment's final position,
    rewards[t] = the env's ``compute_reward`` of observation t + 1 against it. Returns the episodes
    and a summary (counts, rewarded fractions of the expert, the template and the result, mean start
    speeds). ``execute``: the segments executed as plans instead (module docstring). ``DataError``
    when the expert data is too short to hold the segments."""
    from dgm_science.domains.trajectories.mazes import make_env, maze_spec

    spec = maze_spec(maze)
    lengths = _lengths(like)
    if not len(lengths) or (lengths < 1).any():
        raise DataError("reshape: the template episodes are empty")
    expert_lengths = _lengths(expert)
    if lengths.sum() > expert_lengths.sum():
        raise DataError(f"reshape: the template's {lengths.sum():,} transitions exceed the expert's "
                        f"{expert_lengths.sum():,}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))  # which template episode is cut next
    segments: list[tuple[int, int, int]] = []  # (template index, expert episode, start)
    for episode in rng.permutation(len(expert)):
        if len(segments) == len(lengths):
            break
        room = int(expert_lengths[episode])
        nxt = lengths[order[len(segments)]]
        if room < nxt:
            continue
        # a random offset, then consecutive segments while they fit
        used = 0
        queue = []
        while len(segments) + len(queue) < len(lengths) and used + lengths[order[len(segments) + len(queue)]] <= room:
            queue.append(order[len(segments) + len(queue)])
            used += int(lengths[queue[-1]])
        start = int(rng.integers(0, room - used + 1))
        for index in queue:
            segments.append((int(index), int(episode), start))
            start += int(lengths[index])
    if len(segments) < len(lengths):
        raise DataError(f"reshape: the expert's {len(expert)} episodes hold only {len(segments)} non-overlapping "
                        f"segments of the template's lengths, not {len(lengths)}")
    env = make_env(spec)
    try:
        compute_reward = env.unwrapped.compute_reward
        out: list[dict[str, Any] | None] = [None] * len(lengths)
        for index, episode, start in segments:
            steps = int(lengths[index])
            source = expert[episode]
            obs = np.asarray(source["observations"]["observation"], dtype=np.float64)[start:start + steps + 1]
            achieved = obs[:, :2].copy()
            goal = achieved[-1].copy()
            rewards = np.asarray(compute_reward(achieved[1:], np.broadcast_to(goal, achieved[1:].shape), {}),
                                 dtype=np.float64)
            out[index] = {
                "observations": {"observation": obs.copy(), "achieved_goal": achieved,
                                 "desired_goal": np.broadcast_to(goal, (steps + 1, 2)).copy()},
                "actions": np.asarray(source["actions"], dtype=np.float32)[start:start + steps].copy(),
                "rewards": rewards, "terminations": np.zeros(steps, dtype=bool),
                "truncations": np.arange(steps) == steps - 1,
            }
    finally:
        env.close()
    episodes = [e for e in out if e is not None]
    if execute:
        episodes = _execute_segments(spec.name, episodes, like)
    speed = [float(np.linalg.norm(e["observations"]["observation"][0, 2:])) for e in episodes]
    like_speed = [float(np.linalg.norm(np.asarray(e["observations"]["observation"])[0, 2:])) for e in like]
    summary = {"maze": spec.name, "episodes": float(len(episodes)), "transitions": float(lengths.sum()),
               "seed": float(seed), "expert_reward_fraction": _reward_fraction(expert),
               "template_reward_fraction": _reward_fraction(like), "reward_fraction": _reward_fraction(episodes),
               "template_rest_at_goal_fraction": _rest_at_goal_fraction(like),
               "rest_at_goal_fraction": _rest_at_goal_fraction(episodes),
               "start_speed_mean": float(np.mean(speed)), "template_start_speed_mean": float(np.mean(like_speed))}
    log.info("reshaped the expert data into %d single-goal episodes (%d transitions): rewarded %.3f (template %.3f, "
             "expert as-is %.3f)", len(episodes), lengths.sum(), summary["reward_fraction"],
             summary["template_reward_fraction"], summary["expert_reward_fraction"])
    return episodes, summary


def _execute_segments(maze: str, segments: Sequence[dict[str, Any]], like: Sequence[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    """Each expert segment executed as a plan from rest (``execute_plans``), its goal the expert's
    position at the step the matching template episode first earned a reward (else the last)."""
    from dgm_science.domains.trajectories.data import Trajectory
    from dgm_science.domains.trajectories.execute import execute_plans

    plans = []
    for segment, template in zip(segments, like):
        states = np.asarray(segment["observations"]["observation"], dtype=np.float64).copy()
        states[0, 2:] = 0.0  # the plans start at rest
        rewarded = np.flatnonzero(np.asarray(template["rewards"]) > 0)
        arrival = int(rewarded[0]) + 1 if len(rewarded) else len(states) - 1
        plans.append(Trajectory(states, np.zeros((len(states), 2)), states[arrival, :2].copy()))
    return execute_plans(maze, plans)[0]


def reshape_dataset(expert_path: Path, like_path: Path, out: Path, *, seed: int = 0,
                    execute: bool = False) -> dict[str, float]:
    """``dgm reshape``: the expert Minari dataset cut into the episodes' shape of the Minari dataset
    ``like_path`` (executed plans), written as a Minari dataset at ``out``; returns the summary."""
    from dgm_science.domains.trajectories.execute import dataset_maze
    from dgm_science.domains.trajectories.mazes import maze_spec
    from dgm_science.domains.trajectories.minari_io import read_minari, write_minari

    maze = dataset_maze(expert_path)
    if dataset_maze(like_path) != maze:
        raise DataError(f"{like_path} is of PointMaze {dataset_maze(like_path)}, {expert_path} of {maze}")
    episodes, summary = reshape_expert(maze, read_minari(expert_path), read_minari(like_path), seed=seed,
                                       execute=execute)
    spec = maze_spec(maze)
    what = ("executed as plans from rest (goal: where the expert is at the template's first reward)" if execute
            else "(goal: each segment's final position)")
    kind = "executed" if execute else "reshaped"
    write_minari(out, episodes, dataset_id=f"dgm/pointmaze-{spec.label}-expert-{kind}-v0",
                 env_id=spec.env_id, env_kwargs={"continuing_task": True, "reset_target": False, **spec.map_kwargs},
                 description=f"the expert's transitions cut into {len(episodes)} single-goal episodes of the shape "
                             f"of {like_path}, {what}; the env's sparse reward",
                 algorithm_name="expert data, reshaped" + (" and executed" if execute else ""))
    summary.update({"expert": str(expert_path), "like": str(like_path), "execute": execute})
    return summary
