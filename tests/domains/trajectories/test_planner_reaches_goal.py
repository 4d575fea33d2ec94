"""The planner policy reaches goals behind the U-Maze's wall, where heading straight for them fails.

Uses a small U-Maze ``maze-diffuser`` trained here for 4 CPU minutes and committed as
``tests/data/umaze_planner.ckpt`` (see data/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "umaze_planner.ckpt"
# (start cell, goal cell) on opposite sides of the U-Maze's inner wall (row 2, columns 1-2).
ACROSS_THE_WALL = [((1, 1), (3, 1)), ((3, 1), (1, 2)), ((1, 2), (3, 2)), ((3, 2), (1, 1))]


def _episode(policy, start, goal, seed, steps=300):
    from dgm_science.domains.trajectories.mazes import make_env

    env = make_env("umaze", max_episode_steps=steps)
    obs, _ = env.reset(seed=seed, options={"reset_cell": np.array(start), "goal_cell": np.array(goal)})
    policy.reset()
    for step in range(steps):
        obs, _, _, _, info = env.step(policy.act(obs))
        if info["success"]:
            return step + 1
    return None


@pytest.fixture(scope="module")
def planner():
    from dgm_science.domains.trajectories.policy import PlannerPolicy

    return PlannerPolicy(CHECKPOINT, seed=0, device="cpu")


def test_planner_policy_reaches_goals_behind_the_wall(planner):
    from dgm_science.domains.trajectories.policy import StraightToGoal

    straight = StraightToGoal("umaze")
    planned = [_episode(planner, s, g, seed) for seed, (s, g) in enumerate(ACROSS_THE_WALL)]
    direct = [_episode(straight, s, g, seed) for seed, (s, g) in enumerate(ACROSS_THE_WALL)]
    assert all(steps is not None for steps in planned), planned  # every goal reached within 300 steps
    assert all(steps is None for steps in direct), direct  # the wall stops the same controller without a plan
    plan = planner.plans[0]
    assert planner.maze.is_free_batch(plan.observations[:, :2]).mean() > 0.9  # the plan goes around the wall


def test_planner_policy_replans_when_the_goal_changes(planner):
    from dgm_science.domains.trajectories.mazes import make_env

    env = make_env("umaze")
    obs, _ = env.reset(seed=3)
    planner.reset()
    planner.act(obs)
    first = planner.plan_calls
    planner.act(obs)
    assert planner.plan_calls == first  # same goal: follow the plan
    moved = {**obs, "desired_goal": obs["desired_goal"] + np.array([0.1, 0.0])}
    planner.act(moved)
    assert planner.plan_calls == first + 1


def test_stitched_planner_follows_the_shortest_path_one_reach_at_a_time():
    """With a reach of 3 cells, a goal across the wall (6 cells along the path) is reached through
    intermediate plan ends on the maze's shortest path: more than one plan per episode."""
    from dgm_science import api
    from dgm_science.domains.trajectories.policy import PlannerPolicy

    model = api.load(CHECKPOINT, device="cpu")
    with pytest.raises(ValueError, match="step length"):  # the committed checkpoint predates it
        PlannerPolicy(model, stitch=True, device="cpu")
    model.state["step_length"] = 3.0 / (model.state["horizon"] - 1)
    planner = PlannerPolicy(model, stitch=True, seed=0, device="cpu")
    assert planner.reach == pytest.approx(3.0)
    ends, final = planner.subgoals(np.array([[-1.0, 1.0], [-1.0, 1.0]]), np.array([[-1.0, -1.0], [0.0, 1.0]]))
    # U-Maze, cell centres (x, y): from (-1, 1) around the inner wall to (-1, -1) through (0, 1), (1, 1),
    # (1, 0), ...: 3 cells along is (1, 0); the goal (0, 1) is 1 cell away, within reach
    assert not final[0] and final[1]
    np.testing.assert_allclose(ends[0], [1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(ends[1], [0.0, 1.0])
    reached = []
    for seed, (start, goal) in enumerate(ACROSS_THE_WALL):
        calls = planner.plan_calls
        reached.append(_episode(planner, start, goal, seed))
        assert planner.plan_calls - calls >= 2, (start, goal)  # stitched: a new segment after each reach
    assert all(steps is not None for steps in reached), reached
