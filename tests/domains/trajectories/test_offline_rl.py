"""Sampled plans as RL experience: execution in the simulator (dynamically consistent, the env's
rewards), the two-sample realism test, offline RL agents (TorchRL) that learn the maze, their saved
policies, and the CLI's errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dgm_science import cli
from dgm_science.domains.trajectories.data import Trajectory
from dgm_science.domains.trajectories.mazes import GOAL_RADIUS
from dgm_science.errors import DataError

CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "umaze_planner.ckpt"


def run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def expert(tmp_path_factory) -> Path:
    """A U-Maze expert Minari dataset of 20 episodes x 1,000 steps (goals resampled on arrival)."""
    from dgm_science.domains.trajectories.expert import write_expert_dataset

    root = tmp_path_factory.mktemp("expert") / "data"
    write_expert_dataset(root, "umaze", episodes=20, episode_steps=1000, noise=0.1, seed=3)
    return root / "minari"


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> Path:
    """Plans sampled by the committed U-Maze planner (``dgm sample``)."""
    out = tmp_path_factory.mktemp("plans") / "samples.minari"
    assert cli.main(["sample", "--checkpoint", str(CHECKPOINT), "-n", "24", "--seed", "1", "--out", str(out)]) == 0
    return out


def test_transitions_pair_each_observation_and_goal_with_the_next(expert):
    from dgm_science.domains.trajectories.minari_io import read_minari
    from dgm_science.domains.trajectories.offline_rl import transitions

    episodes = read_minari(expert)
    data = transitions(episodes)
    assert data["observation"].shape == (20_000, 6) and data["action"].shape == (20_000, 2)
    first = episodes[0]
    np.testing.assert_allclose(data["observation"][1, :4], first["observations"]["observation"][1], rtol=1e-6)
    np.testing.assert_allclose(data["observation"][1, 4:], first["observations"]["desired_goal"][1], rtol=1e-6)
    np.testing.assert_allclose(data["next_observation"][999, :4], first["observations"]["observation"][1000],
                               rtol=1e-6)
    np.testing.assert_allclose(data["observation"][1000, :4], episodes[1]["observations"]["observation"][0],
                               rtol=1e-6)
    assert data["reward"].sum() == sum(e["rewards"].sum() for e in episodes) > 0
    broken = dict(first, observations={"observation": first["observations"]["observation"]})
    with pytest.raises(DataError, match="no PointMaze dict observations"):
        transitions([broken], "x.minari")
    bad = {k: v for k, v in first.items()}
    bad["rewards"] = first["rewards"].copy()
    bad["rewards"][3] = np.nan
    with pytest.raises(DataError, match="non-finite values in reward"):
        transitions([bad], "x.minari")


def test_executed_plans_are_the_simulators_own_transitions_with_the_envs_rewards(plans):
    from dgm_science.domains.trajectories.data import episode_trajectory
    from dgm_science.domains.trajectories.execute import execute_plans
    from dgm_science.domains.trajectories.metrics import simulate_transitions
    from dgm_science.domains.trajectories.minari_io import read_minari

    sampled = [episode_trajectory(e) for e in read_minari(plans)]
    episodes, summary = execute_plans("umaze", sampled)
    assert len(episodes) == 24 and summary["transitions"] == 24 * (len(sampled[0].observations) - 1)
    for episode, plan in zip(episodes[:6], sampled):
        obs = episode["observations"]["observation"]
        np.testing.assert_array_equal(obs[0], plan.observations[0])  # starts where the plan starts
        replay = simulate_transitions("umaze", obs[:-1], episode["actions"])
        np.testing.assert_allclose(replay, obs[1:], atol=1e-9)  # every transition is the simulator's
        reached = np.linalg.norm(obs[1:, :2] - plan.goal, axis=1) <= GOAL_RADIUS
        np.testing.assert_array_equal(episode["rewards"], reached.astype(float))  # the env's sparse reward
        assert np.abs(episode["actions"]).max() <= 1
    assert 0 <= summary["plan_deviation_mean"] < summary["plan_deviation_p95"]


def test_a_dynamically_consistent_plan_is_executed_exactly_and_a_start_in_a_wall_is_refused(expert):
    from dgm_science.domains.trajectories.execute import execute_plans
    from dgm_science.domains.trajectories.minari_io import read_minari

    episode = read_minari(expert)[0]
    obs = episode["observations"]["observation"][:64]
    real = Trajectory(obs, np.zeros((64, 2)), episode["observations"]["desired_goal"][0])
    executed, summary = execute_plans("umaze", [real])
    # the (noisy) expert's own path is followed by the PD tracker to within its lag of a few hundredths
    assert summary["plan_deviation_mean"] < 0.1 and summary["plan_deviation_p95"] < 0.2, summary
    walled = Trajectory(np.array([[0.0, 0.0, 0, 0], [0.1, 0.0, 0, 0]]), np.zeros((2, 2)), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="start .* lies in a wall cell"):
        execute_plans("umaze", [walled])


def test_two_sample_auroc_is_chance_for_one_distribution_and_near_one_for_another():
    from dgm_science.domains.trajectories.metrics import two_sample_auroc

    rng = np.random.default_rng(0)
    same = two_sample_auroc(rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10)))
    shifted = two_sample_auroc(rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10)) + np.r_[0.8, np.zeros(9)])
    assert 0.44 < same["auroc"] < 0.56 and shifted["auroc"] > 0.65 and same["rows_per_class"] == 2000
    with pytest.raises(ValueError, match="at least 10 rows of each"):
        two_sample_auroc(np.zeros((3, 10)), np.zeros((30, 10)))


@pytest.mark.parametrize("algo", ["iql", "cql", "td3bc"])
def test_each_algorithm_trains_the_actor_it_returns_and_is_seeded(algo, expert):
    from dgm_science.domains.trajectories.minari_io import read_minari
    from dgm_science.domains.trajectories.offline_rl import ActorPolicy, OfflineRLConfig, train, transitions

    data = transitions(read_minari(expert))
    obs = [{"observation": np.array([1.0, 1.0, 0, 0]), "desired_goal": np.array([-1.0, -1.0])}]
    cfg = OfflineRLConfig(algo=algo, updates=40, batch_size=64, cql_bc_steps=10)
    torch.manual_seed(0)
    actor, summary = train(data, cfg, seed=5, log_every=10)
    again, _ = train(data, cfg, seed=5)
    other, _ = train(data, OfflineRLConfig(algo=algo, updates=1, batch_size=64), seed=5)
    action = ActorPolicy(actor).act_batch(obs)
    assert action.shape == (1, 2) and np.abs(action).max() <= 1
    np.testing.assert_allclose(ActorPolicy(again).act_batch(obs), action, atol=1e-6)  # same seed, same agent
    assert not np.allclose(ActorPolicy(other).act_batch(obs), action, atol=1e-4)  # 40 updates moved it
    assert summary["transitions"] == 20_000 and summary["updates"] == 40
    assert summary["losses"] and all(np.isfinite(v) for v in summary["losses"].values())


def test_iql_on_expert_data_learns_the_maze(expert):
    """1,500 IQL updates on 20 expert episodes solve U-Maze's seeded episodes (a random or
    untrained actor does not: the straight-at-the-goal controller reaches about half of them)."""
    from dgm_science.domains.trajectories.minari_io import read_minari
    from dgm_science.domains.trajectories.offline_rl import ActorPolicy, OfflineRLConfig, train, transitions
    from dgm_science.domains.trajectories.rollout import closed_loop

    actor, _ = train(transitions(read_minari(expert)), OfflineRLConfig(algo="iql", updates=1500), seed=0)
    summary, _ = closed_loop("umaze", ActorPolicy(actor), episodes=20, seed=0)
    assert summary["success_rate"] >= 0.8, summary
    untrained, _ = train(transitions(read_minari(expert)), OfflineRLConfig(algo="iql", updates=1), seed=0)
    assert closed_loop("umaze", ActorPolicy(untrained), episodes=20, seed=0)[0]["success_rate"] < 0.5


def test_offline_rl_cli_pools_datasets_saves_a_policy_that_loads_weights_only(expert, plans, tmp_path, capsys):
    from dgm_science.domains.trajectories.offline_rl import load_policy

    executed = tmp_path / "executed.minari"
    code, err = run(["execute", "--plans", str(plans), "--out", str(executed), "--stats",
                     str(tmp_path / "execute.json")], capsys)
    assert code == 0, err
    stats = json.loads((tmp_path / "execute.json").read_text())
    assert stats["plans"] == 24 and stats["maze"] == "umaze"
    out, policy = tmp_path / "offline_rl.json", tmp_path / "policy.pt"
    code, err = run(["offline-rl", "--dataset", str(expert), str(executed), "--algo", "td3bc", "--updates", "20",
                     "--episodes", "3", "--protocol", "d4rl", "multi2d", "--out", str(out), "--policy", str(policy),
                     "--threads", "1"], capsys)
    assert code == 0, err
    summary = json.loads(out.read_text())
    assert summary["dataset_transitions"] == [20_000, stats["transitions"]]
    assert summary["transitions"] == 20_000 + stats["transitions"]
    assert summary["protocols"] == ["d4rl", "multi2d"] and summary["corl_last"] == 29.41 and summary["maze"] == "umaze"
    assert [summary["rollouts"][p]["episodes"] for p in ("d4rl", "multi2d")] == [3, 3]
    assert summary["rollouts"]["multi2d"]["protocol"] == "multi2d"
    loaded, info = load_policy(policy)
    assert info["algo"] == "td3bc" and info["maze"] == "umaze"
    obs = {"observation": np.array([1.0, 1.0, 0, 0]), "desired_goal": np.array([-1.0, -1.0])}
    assert loaded.act(obs).shape == (2,)
    code, err = run(["two-sample", "--real", str(expert), "--synthetic", str(plans), str(executed), "--out",
                     str(tmp_path / "two.json"), "--max-rows", "2000", "--threads", "1"], capsys)
    assert code == 0, err
    tests = json.loads((tmp_path / "two.json").read_text())
    assert [t["synthetic"] for t in tests["tests"]] == [str(plans), str(executed)]
    assert 0 <= tests["real_vs_real"]["auroc"] <= 1 and tests["tests"][0]["rows_per_class"] == 2000


def test_offline_rl_cli_errors(expert, tmp_path, capsys):
    from dgm_science.domains.trajectories.expert import write_expert_dataset

    out = tmp_path / "o.json"
    code, err = run(["offline-rl", "--dataset", str(tmp_path / "missing.minari"), "--out", str(out)], capsys)
    assert code != 0 and "no Minari dataset here" in err, err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["offline-rl", "--dataset", str(expert), "--algo", "sac", "--out", str(out)])
    assert exit_info.value.code == 2 and "invalid choice: 'sac'" in capsys.readouterr().err
    write_expert_dataset(tmp_path / "medium", "medium", episodes=2, episode_steps=10, seed=0)
    code, err = run(["offline-rl", "--dataset", str(expert), str(tmp_path / "medium" / "minari"), "--updates", "1",
                     "--out", str(out)], capsys)
    assert code != 0 and "different mazes" in err, err
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    from dgm_science.domains.trajectories.offline_rl import load_policy

    with pytest.raises(DataError, match="not an offline RL policy"):
        load_policy(junk)
    (tmp_path / "text.pt").write_text("not torch")
    with pytest.raises(DataError, match="not an offline RL policy file"):
        load_policy(tmp_path / "text.pt")
    assert not out.exists()
