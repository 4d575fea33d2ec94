"""Evaluation protocols: D4RL maze2d's fixed goal (each maze's "G" cell, random start from the seed,
the env's episode length) against Multi2D's random goals; and the offline RL control, the expert's
transitions reshaped into the executed plans' single-goal episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dgm_science import cli
from dgm_science.domains.trajectories.mazes import GOAL_RADIUS, MAZES, Maze, make_env
from dgm_science.domains.trajectories.reshape import reshape_expert
from dgm_science.domains.trajectories.rollout import PROTOCOLS, closed_loop, reset_episodes
from dgm_science.errors import DataError

# D4RL's maze strings (d4rl/pointmaze/maze_model.py), "G" = the goal tile of maze2d-*-v1
D4RL_MAZES = {
    "umaze": ["#####", "#GOO#", "###O#", "#OOO#", "#####"],
    "medium": ["########", "#OO##OO#", "#OO#OOO#", "##OOO###", "#OO#OOO#", "#O#OO#O#", "#OOO#OG#", "########"],
    "large": ["############", "#OOOO#OOOOO#", "#O##O#O#O#O#", "#OOOOOO#OOO#", "#O####O###O#", "#OO#O#OOOOO#",
              "##O#O#O#O###", "#OO#OOO#OGO#", "############"],
}
GOAL_XY = {"umaze": (-1.0, 1.0), "medium": (2.5, -2.5), "large": (3.5, -3.0)}
"""The goal cells' centres in gymnasium-robotics' coordinates (x = col + 0.5 - W/2, y = H/2 - row - 0.5)."""


@pytest.mark.parametrize("maze", list(MAZES))
def test_the_fixed_goal_is_d4rls_goal_cell_and_the_maps_agree(maze):
    d4rl = D4RL_MAZES[maze]
    ours = Maze(maze)
    # D4RL's maze array and gymnasium-robotics' map: the same rows, walls in the same cells
    assert np.array_equal(np.array([[c == "#" for c in row] for row in d4rl]), ours.walls)
    goal_cell = next((r, c) for r, row in enumerate(d4rl) for c, tile in enumerate(row) if tile == "G")
    assert MAZES[maze].d4rl_goal_cell == goal_cell
    envs, observations = reset_episodes(maze, range(6), "d4rl")
    try:
        for env, obs in zip(envs, observations):
            assert np.allclose(obs["desired_goal"], GOAL_XY[maze]) and np.allclose(env.unwrapped.goal, GOAL_XY[maze])
            assert ours.is_free(obs["observation"][:2])
    finally:
        for env in envs:
            env.close()


def test_fixed_goal_starts_vary_with_the_seed_and_repeat_for_the_same_seed():
    _, first = reset_episodes("medium", range(20), "d4rl")
    _, again = reset_episodes("medium", range(20), "d4rl")
    starts = np.stack([o["observation"][:2] for o in first])
    assert np.array_equal(starts, np.stack([o["observation"][:2] for o in again]))
    cells = {tuple(c) for c in Maze("medium").xy_to_cell(starts)}
    assert len(cells) >= 8, cells  # uniform over Medium's 26 free cells
    # Multi2D draws the goals too: they differ between episodes
    _, multi = reset_episodes("medium", range(20), "multi2d")
    assert len({tuple(np.round(o["desired_goal"], 6)) for o in multi}) == 20


def test_closed_loop_records_the_protocol_and_runs_the_envs_episode_length():
    from dgm_science.domains.trajectories.policy import BASELINES

    summary, per_episode = closed_loop("umaze", BASELINES["straight"]("umaze"), episodes=3, seed=2, protocol="d4rl")
    assert summary["protocol"] == "d4rl" and summary["episode_steps"] == MAZES["umaze"].max_episode_steps == 300
    assert per_episode["paths"].shape == (3, 301, 2) and np.allclose(per_episode["goals"], GOAL_XY["umaze"])
    assert set(PROTOCOLS) == {"d4rl", "multi2d"}
    with pytest.raises(ValueError, match="unknown evaluation protocol 'maze2d'"):
        closed_loop("umaze", BASELINES["straight"]("umaze"), episodes=1, protocol="maze2d")


def test_rollout_cli_rejects_an_unknown_protocol(capsys):
    with pytest.raises(SystemExit):
        cli.main(["rollout", "--baseline", "straight", "--maze", "umaze", "--protocol", "maze2d", "--out", "r.json"])
    assert "invalid choice: 'maze2d'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the reshaped expert control


def _expert(episodes=3, steps=400, seed=1):
    from dgm_science.domains.trajectories.expert import collect

    return collect("umaze", episodes=episodes, episode_steps=steps, noise=0.1, seed=seed)["episodes"]


def _like(lengths):
    """Template episodes (as executed plans): given lengths, starting at rest, mostly rewarded."""
    out = []
    for n in lengths:
        obs = np.zeros((n + 1, 4))
        out.append({"observations": {"observation": obs, "achieved_goal": obs[:, :2].copy(),
                                     "desired_goal": np.zeros((n + 1, 2))},
                    "actions": np.zeros((n, 2), dtype=np.float32), "rewards": np.ones(n),
                    "terminations": np.zeros(n, dtype=bool), "truncations": np.arange(n) == n - 1})
    return out


def test_reshaped_expert_matches_the_plans_shape_and_recomputes_the_reward():
    expert = _expert()
    lengths = [127, 90, 127, 50, 127, 127, 60]
    episodes, summary = reshape_expert("umaze", expert, _like(lengths), seed=4)
    assert [len(e["actions"]) for e in episodes] == lengths  # same count, same lengths, same order
    assert summary["episodes"] == len(lengths) and summary["transitions"] == sum(lengths)
    env = make_env("umaze")
    expert_obs = [np.asarray(e["observations"]["observation"]) for e in expert]
    expert_act = [np.asarray(e["actions"]) for e in expert]
    for episode, n in zip(episodes, lengths):
        obs = episode["observations"]["observation"]
        assert obs.shape == (n + 1, 4) and episode["actions"].shape == (n, 2)
        goal = episode["observations"]["desired_goal"]
        # the goal: where the expert is at the segment's end, for every step; reached at the last step
        assert np.allclose(goal, obs[-1, :2]) and np.allclose(episode["observations"]["achieved_goal"], obs[:, :2])
        rewards = env.unwrapped.compute_reward(obs[1:, :2], goal[1:], {})
        assert np.array_equal(episode["rewards"], rewards) and episode["rewards"][-1] == 1.0
        assert np.array_equal(episode["rewards"], (np.linalg.norm(obs[1:, :2] - goal[1:], axis=1) <= GOAL_RADIUS))
        assert episode["truncations"][-1] and not episode["truncations"][:-1].any()
        assert not episode["terminations"].any()
        # the transitions are the expert's own, unchanged
        assert any(np.array_equal(o[s:s + n + 1], obs) and np.array_equal(expert_act[i][s:s + n], episode["actions"])
                   for i, o in enumerate(expert_obs) for s in range(len(o) - n))
    env.close()
    assert 0 < summary["reward_fraction"] < 1 and summary["template_reward_fraction"] == 1.0
    again, _ = reshape_expert("umaze", expert, _like(lengths), seed=4)
    assert all(np.array_equal(a["actions"], b["actions"]) for a, b in zip(episodes, again))
    other, _ = reshape_expert("umaze", expert, _like(lengths), seed=5)
    assert not all(np.array_equal(a["actions"], b["actions"]) for a, b in zip(episodes, other))


def test_segments_do_not_overlap():
    expert = _expert(episodes=2, steps=300)
    episodes, _ = reshape_expert("umaze", expert, _like([100] * 4), seed=0)
    spans = []
    for episode in episodes:
        obs = episode["observations"]["observation"]
        for i, e in enumerate(expert):
            o = np.asarray(e["observations"]["observation"])
            hits = [s for s in range(len(o) - 100) if np.array_equal(o[s:s + 101], obs)]
            if hits:
                spans.append((i, hits[0]))
    assert len(spans) == 4
    for a in spans:
        for b in spans:
            if a != b and a[0] == b[0]:
                assert abs(a[1] - b[1]) >= 100, spans


def test_executed_control_starts_at_rest_and_holds_the_expert_position_reached_at_the_plans_arrival():
    expert = _expert()
    like = _like([120, 120, 80])
    like[0]["rewards"][:] = 0
    like[0]["rewards"][40:] = 1  # first reward at step 40: the goal is where the expert is at observation 41
    like[1]["rewards"][:] = 0  # never rewarded: the goal is the segment's end
    cut, _ = reshape_expert("umaze", expert, like, seed=3)
    executed, summary = reshape_expert("umaze", expert, like, seed=3, execute=True)
    env = make_env("umaze")
    for segment, episode, n, arrival in zip(cut, executed, (120, 120, 80), (41, 120, 1)):
        obs = episode["observations"]["observation"]
        assert obs.shape == (n + 1, 4) and np.array_equal(obs[0, 2:], [0.0, 0.0])  # from rest
        assert np.allclose(obs[0, :2], segment["observations"]["observation"][0, :2])
        goal = segment["observations"]["observation"][arrival, :2]
        assert np.allclose(episode["observations"]["desired_goal"], goal)
        assert np.array_equal(episode["rewards"], env.unwrapped.compute_reward(obs[1:, :2], goal, {}))
    env.close()
    # the first one arrives early and is held at rest at the goal
    held = executed[0]["observations"]["observation"][-20:]
    assert np.linalg.norm(held[:, :2] - held[-1, :2], axis=1).max() < 0.1 and executed[0]["rewards"][-20:].all()
    assert summary["rest_at_goal_fraction"] > 0 and summary["episodes"] == 3


def test_reshape_refuses_more_than_the_expert_holds():
    expert = _expert(episodes=2, steps=100)
    with pytest.raises(DataError, match="exceed the expert's"):
        reshape_expert("umaze", expert, _like([150, 150]), seed=0)
    with pytest.raises(DataError, match="non-overlapping"):
        reshape_expert("umaze", expert, _like([60, 60, 60]), seed=0)


def test_reshape_cli_writes_a_minari_dataset_offline_rl_reads(tmp_path, capsys):
    from dgm_science.domains.trajectories.expert import write_expert_dataset
    from dgm_science.domains.trajectories.minari_io import read_minari, write_minari
    from dgm_science.domains.trajectories.offline_rl import transitions

    write_expert_dataset(tmp_path / "expert", "umaze", episodes=3, episode_steps=300, noise=0.1, seed=0)
    like = tmp_path / "like.minari"
    write_minari(like, _like([127, 127, 80]), dataset_id="dgm/pointmaze-umaze-executed-plans-v0",
                 env_id="PointMaze_UMaze-v3")
    out, stats = tmp_path / "reshaped.minari", tmp_path / "reshape.json"
    code = cli.main(["reshape", "--expert", str(tmp_path / "expert" / "minari"), "--like", str(like), "--out", str(out),
                     "--stats", str(stats), "--seed", "2"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(stats.read_text())
    assert summary["episodes"] == 3 and summary["transitions"] == 334 and summary["maze"] == "umaze"
    data = transitions(read_minari(out), out)
    assert data["observation"].shape == (334, 6) and np.isclose(data["reward"].mean(), summary["reward_fraction"])
    assert Path(summary["like"]) == like
