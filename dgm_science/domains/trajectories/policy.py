"""Planner policies for RL agents: a trained trajectory model as a gymnasium-style policy.

>>> import gymnasium as gym
>>> from dgm_science.domains.trajectories.mazes import make_env
>>> from dgm_science.domains.trajectories.policy import PlannerPolicy
>>> policy = PlannerPolicy("results/trajectories/pointmaze-umaze/maze-diffuser/seed0/model.ckpt")
>>> env = make_env("umaze")
>>> obs, _ = env.reset(seed=0)
>>> for _ in range(300):
...     obs, reward, terminated, truncated, info = env.step(policy.act(obs))

The policy plans from the current observation to ``obs["desired_goal"]`` (start and goal imposed
by inpainting), then tracks the planned states with Diffuser's Maze2D controller
a = kp (x_{i+1} - x) + kd (v_{i+1} - v), clipped to the action box, with the expert's gains
(kp 10, kd 1) by default. Once the plan has come within ``arrive`` of the goal (and after its last
state) the waypoint is the goal at rest, so a plan that arrives early is not followed on past the
goal. It re-plans every ``replan_every`` steps (None: once per goal, as Diffuser does on Maze2D;
each new plan asks to arrive at the end of a fresh horizon, so frequent re-planning postpones
arrival). ``candidates`` > 1 draws that many plans and keeps the one with the fewest positions in
walls and the smallest jump (Diffuser draws one).

``stitch=True`` (for mazes whose paths are longer than a plan: Medium, Large) plans along the
maze's shortest path: while the goal is farther along that path than a plan of the horizon goes at
the data's pace (``reach``: the checkpoint's mean step length x (horizon - 1)), the plan's end is
imposed at the point ``reach`` ahead on the path (cell centres joined by straight lines), so each
plan is a window like those the model learned from, and the model fills the segment; the robot
follows half of it (``stitch_every``, default horizon // 2 steps) and a new segment is planned from
where it is. Once the goal is within reach, the last plan ends at it and is kept to the goal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.domains.trajectories.data import OBS_DIM, Trajectory, inpainting_condition, plan_reach


def _observation_arrays(observations: Sequence[Any], obs_dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, obs_dim) states and (n, 2) goals from PointMaze dict observations; a clear error for
    anything else."""
    states, goals = [], []
    for obs in observations:
        if not isinstance(obs, dict) or "observation" not in obs or "desired_goal" not in obs:
            raise ValueError(f"{what} expects PointMaze dict observations with 'observation' and 'desired_goal', "
                             f"got {type(obs).__name__}")
        state = np.asarray(obs["observation"], dtype=np.float64)
        if state.shape != (obs_dim,):
            raise ValueError(f"observation of shape {state.shape} does not match the model's ({obs_dim},) "
                             f"(x, y, vx, vy)")
        states.append(state)
        goals.append(np.asarray(obs["desired_goal"], dtype=np.float64).reshape(2))
    return np.stack(states), np.stack(goals)


def track(states: np.ndarray, waypoints: np.ndarray, kp: float = 10.0, kd: float = 1.0) -> np.ndarray:
    """Diffuser's Maze2D controller toward waypoints (n, 4) from states (n, 4): actions (n, 2)
    (Diffuser uses kp = kd = 1; the default gains are the expert's, which follow plans at the
    data's speed)."""
    action = kp * (waypoints[:, :2] - states[:, :2]) + kd * (waypoints[:, 2:] - states[:, 2:])
    return np.clip(action, -1.0, 1.0)


class PlannerPolicy:
    """A trajectory model (checkpoint path or ``api.LoadedModel``) acting in PointMaze.

    ``act(obs) -> action`` for one environment; ``act_batch(list of obs) -> (n, 2)`` for n
    environments stepped in lockstep (plans for all of them are drawn in one batch). ``reset()``
    forgets the plans (call it when the environments are reset). ``plans`` holds the current
    plans (``Trajectory`` per environment)."""

    def __init__(self, model: Any, *, replan_every: int | None = None, kp: float = 10.0, kd: float = 1.0,
                 arrive: float = 0.2, candidates: int = 1, seed: int = 0, temperature: float | None = None,
                 stitch: bool = False, stitch_every: int | None = None, device: str = "auto") -> None:
        from dgm_science import api
        from dgm_science.domains.trajectories.mazes import Maze

        if isinstance(model, (str, Path)):
            model = api.load(model, device=device)
        if model.domain.name != "trajectories":
            raise ValueError(f"{model.path}: {model.name} is a {model.domain.name} model, not a trajectory model")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every must be >= 1 (or None: once per goal), got {replan_every}")
        if stitch_every is not None and stitch_every < 1:
            raise ValueError(f"stitch_every must be >= 1, got {stitch_every}")
        self.model, self.state = model, model.state
        self.stitch = stitch
        if stitch:
            self.reach = plan_reach(self.state, f"{model.path}: stitched planning")
            self.stitch_every = stitch_every or max(1, self.state["horizon"] // 2)
        self.maze = Maze(self.state["maze"])
        self.replan_every, self.kp, self.kd, self.arrive = replan_every, kp, kd, arrive
        self.candidates = candidates
        self.temperature = temperature
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.plans: list[Trajectory] = []
        self.plan_calls = 0
        self._age = np.zeros(0, dtype=np.int64)
        self._arrival = np.zeros(0, dtype=np.int64)
        self._goals = np.zeros((0, 2))
        self._final = np.zeros(0, dtype=bool)

    def reset(self) -> None:
        self.plans, self._goals = [], np.zeros((0, 2))
        self._age, self._arrival = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self._final = np.zeros(0, dtype=bool)

    def subgoals(self, positions: np.ndarray, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stitched planning's plan ends for positions (n, 2) and goals (n, 2): the point ``reach``
        ahead along the maze's shortest path, or the goal where it is nearer; and whether it is the
        goal (n,)."""
        ends, final = goals.copy(), np.ones(len(goals), dtype=bool)
        for i, (position, goal) in enumerate(zip(positions, goals)):
            path = np.concatenate([position[None], self.maze.shortest_path(position, goal)])
            travelled = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
            if travelled[-1] > self.reach:
                segment = int(np.searchsorted(travelled, self.reach)) - 1
                fraction = (self.reach - travelled[segment]) / (travelled[segment + 1] - travelled[segment])
                ends[i] = path[segment] + fraction * (path[segment + 1] - path[segment])
                final[i] = False
        return ends, final

    @torch.no_grad()
    def plan(self, states: np.ndarray, goals: np.ndarray) -> list[Trajectory]:
        """Plans (one ``Trajectory`` of the model's horizon each) from states (n, 4) to goals (n, 2);
        a goal or start outside the maze is an error. With ``candidates`` = k > 1, k plans are
        drawn per row (one batch) and the most feasible kept (``infeasibility``)."""
        for goal in goals:
            self.maze.check_point(goal, "goal")
        for state in states:
            self.maze.check_point(state[:2], "start")
        k = self.candidates
        states, goals = np.repeat(states, k, axis=0), np.repeat(goals, k, axis=0)
        condition = inpainting_condition(states, goals, self.state).to(self.model.device)
        raw = self.model.model.sample(len(states), generator=self.generator, condition=condition,
                                      temperature=self.temperature or self.model.config.sample.temperature)
        items = self.model.domain.decode(raw, self.state, goals=goals)
        self.plan_calls += 1
        if any(item is None for item in items):
            raise RuntimeError("the model produced a non-finite plan")
        if k == 1:
            return items
        cost = self.infeasibility(items).reshape(-1, k)
        return [items[row * k + int(best)] for row, best in enumerate(cost.argmin(1))]

    def infeasibility(self, plans: Sequence[Trajectory]) -> np.ndarray:
        """Per plan: the fraction of its positions inside a wall plus its largest jump between
        consecutive positions (in cells), e.g. onto the imposed goal: what ``candidates`` > 1
        ranks by."""
        xy = np.stack([p.observations[:, :2] for p in plans])
        walls = 1 - self.maze.is_free_batch(xy.reshape(-1, 2)).reshape(xy.shape[:2]).mean(1)
        jumps = np.linalg.norm(np.diff(xy, axis=1), axis=-1).max(1) / self.maze.scaling
        return walls + jumps

    def act_batch(self, observations: Sequence[Any]) -> np.ndarray:
        states, goals = _observation_arrays(observations, self.state.get("obs_dim", OBS_DIM), "PlannerPolicy")
        n = len(states)
        if len(self.plans) != n:
            self.plans, self._goals = [None] * n, goals.copy()
            self._age, self._arrival = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
            self._final = np.ones(n, dtype=bool)
        stale = np.array([p is None for p in self.plans]) | np.any(np.abs(goals - self._goals) > 1e-9, axis=1)
        if self.replan_every is not None:
            stale |= self._age >= self.replan_every
        if self.stitch:
            stale |= ~self._final & (self._age >= np.minimum(self.stitch_every, self._arrival - 1))
        if stale.any():
            rows = np.flatnonzero(stale)
            ends, final = (self.subgoals(states[rows, :2], goals[rows]) if self.stitch
                           else (goals[rows], np.ones(len(rows), dtype=bool)))
            for row, end, plan in zip(rows, ends, self.plan(states[rows], ends)):
                self.plans[row] = plan
                near = np.linalg.norm(plan.observations[:, :2] - end, axis=1) <= self.arrive
                self._arrival[row] = int(np.argmax(near)) if near.any() else len(near)
            self._age[rows], self._final[rows] = 0, final
            self._goals[rows] = goals[rows]
        waypoints = np.empty((n, OBS_DIM))
        for i, plan in enumerate(self.plans):
            nxt = self._age[i] + 1
            waypoints[i] = plan.observations[nxt] if nxt < self._arrival[i] else [*goals[i], 0.0, 0.0]
        self._age += 1
        return track(states, waypoints, self.kp, self.kd).astype(np.float32)

    def act(self, observation: Any) -> np.ndarray:
        return self.act_batch([observation])[0]


class ExpertBatch:
    """The data-generating expert (shortest path + PD, no noise) with the ``act_batch`` interface."""

    def __init__(self, maze: str, noise: float = 0.0, seed: int = 0) -> None:
        from dgm_science.domains.trajectories.expert import ExpertPolicy
        from dgm_science.domains.trajectories.mazes import Maze

        self.maze, self.noise, self.seed = Maze(maze), noise, seed
        self.experts: list[Any] = []
        self._factory = ExpertPolicy

    def reset(self) -> None:
        self.experts = []

    def act_batch(self, observations: Sequence[Any]) -> np.ndarray:
        if len(self.experts) != len(observations):
            self.experts = [self._factory(self.maze, noise=self.noise, seed=self.seed + i)
                            for i in range(len(observations))]
        return np.stack([e.act(o) for e, o in zip(self.experts, observations)]).astype(np.float32)

    def act(self, observation: Any) -> np.ndarray:
        return self.act_batch([observation])[0]


class StraightToGoal:
    """The no-planner baseline: the planner policy's controller aimed straight at the goal (at
    rest), ignoring the walls. What a plan adds is measured against it."""

    def __init__(self, maze: str, kp: float = 10.0, kd: float = 1.0) -> None:
        self.kp, self.kd = kp, kd

    def reset(self) -> None:
        pass

    def act_batch(self, observations: Sequence[Any]) -> np.ndarray:
        states, goals = _observation_arrays(observations, OBS_DIM, "StraightToGoal")
        waypoints = np.concatenate([goals, np.zeros_like(goals)], axis=1)
        return track(states, waypoints, self.kp, self.kd).astype(np.float32)

    def act(self, observation: Any) -> np.ndarray:
        return self.act_batch([observation])[0]


BASELINES = {"expert": ExpertBatch, "straight": StraightToGoal}
