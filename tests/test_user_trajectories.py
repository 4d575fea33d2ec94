"""User trajectories (issue 35): the ``minari`` kind (a local Minari dataset of any Box environment) and the
``maze`` kind (a PointMaze map), their bad inputs through the real CLI (one ``dgm: error:`` line, exit 2,
nothing written), and the tutorial's commands on the shipped Pendulum-v1 dataset
(tests/data/user/trajectories/pendulum-swingup, made by make_pendulum.py beside it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgm_science.domains.trajectories import generic
from dgm_science.domains.trajectories.mazes import Maze, check_maze_map, custom_maze_name, maze_spec
from dgm_science.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = ROOT / "tests" / "data" / "user" / "trajectories" / "pendulum-swingup"
SMALL_MAP = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, "g", 1, 0, 1], [1, 1, 1, 1, 1]]


def dgm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DGLBACKEND": "pytorch"}
    return subprocess.run([sys.executable, "-m", "dgm_science.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("dgm: error:")]
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr[-3000:])
    return lines[0]


# ----------------------------------------------------------------------------- maze maps


def test_a_maze_map_is_named_and_built_as_given():
    name = custom_maze_name(SMALL_MAP)
    assert name == "map:11111/10001/10101/1g101/11111"
    spec = maze_spec(name)
    assert spec.custom_map[3][1] == "g" and spec.d4rl_goal_cell == (3, 1) and spec.label == "custom"
    assert spec.max_episode_steps == 100 + 50 * 6  # diameter: 6 moves from (3, 1) to (3, 3)
    assert np.isnan(spec.normalized_score(100.0))  # no D4RL reference returns for a user's maze
    geometry = Maze(name)
    assert len(geometry.free_cells) == 7 and geometry.is_free(geometry.cell_to_xy((3, 1)))
    assert not geometry.is_free(geometry.cell_to_xy((2, 2)))
    assert spec.plain().custom_map[3][1] == 0  # the expert's collection draws goals anywhere


@pytest.mark.parametrize("bad, message", [
    ([[1, 1, 1], [1, 0, 1, 1], [1, 1, 1]], "not rectangular (row lengths 3, 4, 3)"),
    ([[1, 1, 1], [1, 1, 1]], "0 free cell(s); a maze needs at least two"),
    ([[1, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]], "not enclosed by walls"),
    ([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]], "1 of the 2 free cells cannot be reached"),
    ([[1, 1, 1, 1], [1, 0, 2, 1], [1, 1, 1, 1]], "row 1, column 2 is 2"),
    ([], "a maze map is a non-empty list of non-empty rows"),
])
def test_bad_maze_maps_are_one_clear_error(bad, message):
    with pytest.raises(ValueError) as err:
        check_maze_map(bad)
    assert message in str(err.value)


def test_a_maze_map_env_has_the_map():
    from dgm_science.domains.trajectories.mazes import make_env

    env = make_env(custom_maze_name(SMALL_MAP))
    try:
        assert env.unwrapped.maze.maze_map[3][1] == "g" and env.spec.max_episode_steps == 400
        obs, _ = env.reset(seed=0)
        assert Maze(custom_maze_name(SMALL_MAP)).is_free(obs["achieved_goal"])
    finally:
        env.close()


# ----------------------------------------------------------------------------- generic spaces


def test_dict_observations_flatten_by_sorted_key_and_back():
    from gymnasium import spaces

    space = spaces.Dict({"observation": spaces.Box(-1, 1, (4,)), "desired_goal": spaces.Box(-1, 1, (2,)),
                         "achieved_goal": spaces.Box(-1, 1, (2,))})
    layout = generic.obs_layout(space)
    assert [key for key, _ in layout] == ["achieved_goal", "desired_goal", "observation"]
    obs = {"observation": np.arange(12.0).reshape(3, 4), "achieved_goal": np.ones((3, 2)),
           "desired_goal": np.zeros((3, 2))}
    flat = generic.flatten_obs(obs, layout)
    assert flat.shape == (3, 8) and flat[1].tolist() == [1, 1, 0, 0, 4, 5, 6, 7]
    back = generic.unflatten_obs(flat, layout)
    assert all(np.array_equal(back[k], obs[k]) for k in obs)
    box = [[None, [3]]]
    assert np.array_equal(generic.unflatten_obs(generic.flatten_obs(np.eye(3), box), box), np.eye(3))


@pytest.mark.parametrize("space, what, message", [
    ("Discrete(3)", "action", "action space is Discrete"),
    ("MultiBinary(3)", "action", "action space is MultiBinary"),
    ("Text(5)", "observation", "observation space is Text"),
    ("Dict({'a': Box(-1, 1, (2,)), 'b': Discrete(2)})", "observation", "observation space Dict key 'b' is Discrete"),
])
def test_non_box_spaces_are_named(space, what, message):
    from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, Text  # noqa: F401  (the eval below)

    with pytest.raises(DataError) as err:
        generic.check_box(eval(space), what, "x.minari")  # noqa: S307  (a literal of this test)
    assert message in str(err.value)


def test_an_env_that_is_not_installed_is_skipped_with_the_reason():
    env, why = generic.make_env("NoSuchEnv-v0", {}, None)
    assert env is None and "'NoSuchEnv-v0' is not installed" in why
    env, why = generic.make_env("Pendulum-v1", {}, 5)
    assert env is not None and why == ""
    env.close()


def test_a_maze_env_built_for_a_dataset_leaves_no_file_in_the_temp_folder(tmp_path, monkeypatch):
    """gymnasium-robotics writes every maze env's MJCF to ``<temp>/ant_maze<time>.xml`` and never
    deletes it: a user dataset recorded on a PointMaze env left one per command and test."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env, why = generic.make_env("PointMaze_UMaze-v3", {}, 10)
    assert env is not None and why == ""
    env.close()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- through the CLI


def test_prepare_a_minari_dataset(tmp_path):
    done = dgm("prepare", "--source", f"{{kind: minari, path: {PENDULUM}, valid: 1, test: 1}}", "--out", "data",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "data" / "prepare.json").read_text())
    # 8 episodes, the last one 10 steps (< horizon 32): skipped and counted; 7 split 5 / 1 / 1 by episode
    assert stats["read"] == 8 and stats["skipped"] == 1 and stats["skipped_first"][0]["line"] == 7
    assert (stats["train_episodes"], stats["valid_episodes"], stats["test_episodes"]) == (5, 1, 1)
    assert stats["obs_dim"] == 3 and stats["act_dim"] == 1 and stats["env_id"] == "Pendulum-v1"
    assert stats["max_episode_steps"] == 40 and stats["action_low"] == [-2.0]
    with np.load(tmp_path / "data" / "train.npz") as split:
        assert split["transitions"].shape == (200, 4) and split["lengths"].tolist() == [40] * 5


def _edited_copy(tmp_path: Path, **metadata) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(PENDULUM, copy)
    meta = json.loads((copy / "data" / "metadata.json").read_text())
    meta.update(metadata)
    (copy / "data" / "metadata.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize("case", ["discrete", "text", "too-few", "too-short", "not-minari", "maze-rectangular",
                                  "maze-free", "maze-enclosed"])
def test_bad_trajectory_sources_are_one_clear_error(case, tmp_path):
    from gymnasium.spaces import Discrete, Text
    from minari.serialization import serialize_space

    blocks = {
        "discrete": (f"{{kind: minari, path: {{}}}}", {"action_space": serialize_space(Discrete(3))},
                     "action space is Discrete(3) (Discrete(3)); trajectory models need a Box action space"),
        "text": (f"{{kind: minari, path: {{}}}}", {"observation_space": serialize_space(Text(5))},
                 "observation space is Text"),
        "too-few": (f"{{kind: minari, path: {PENDULUM}, valid: 4, test: 3}}", None,
                    "7 episodes are too few to split into train / validation / test (valid=4, test=3; at least 8 "
                    "episodes needed)"),
        "too-short": (f"{{kind: minari, path: {PENDULUM}, horizon: 64}}", None,
                      "none of the 8 episodes has 64 steps (the longest has 40)"),
        "not-minari": (f"{{kind: minari, path: {tmp_path}}}", None, "not a Minari dataset (no data/metadata.json"),
        "maze-rectangular": ("{kind: maze, maze_map: [[1,1,1],[1,0,0,1],[1,1,1]]}", None,
                             "source.maze_map: not rectangular (row lengths 3, 4, 3)"),
        "maze-free": ("{kind: maze, maze_map: [[1,1,1],[1,1,1]]}", None, "source.maze_map: 0 free cell(s)"),
        "maze-enclosed": ("{kind: maze, maze_map: [[1,1,1,1],[1,0,0,0],[1,1,1,1]]}", None,
                          "source.maze_map: not enclosed by walls"),
    }
    block, metadata, message = blocks[case]
    if metadata is not None:
        block = block.replace("{}", str(_edited_copy(tmp_path, **metadata)))
    done = dgm("prepare", "--source", block, "--out", "out", cwd=tmp_path)
    if case == "discrete":
        message = message.replace("Discrete(3) (Discrete(3))", "Discrete (Discrete(3))")
    assert message in error_line(done)
    assert not (tmp_path / "out").exists()  # nothing written


# ----------------------------------------------------------------------------- the workflow

WORKFLOW_CONFIG = """\
seeds: [0]
trajectories:
  my-pendulum:
    source: {kind: minari, path: pendulum-swingup, valid: 1, test: 1}
    rollout: {episodes: 2}
    models:
      traj-arm:
        model: {d_model: 16, n_layers: 1, n_heads: 2, components: 2}
        train: {max_steps: 20, batch_size: 16, val_every_steps: 10, warmup_steps: 2, checkpoint_every_steps: 10}
        sample: {n: 8, batch_size: 8}
  my-maze:
    source: {kind: maze, maze_map: [[1,1,1,1,1],[1,0,0,0,1],[1,0,1,0,1],[1,g,1,0,1],[1,1,1,1,1]], episodes: 6,
             episode_steps: 100, valid: 1, test: 1}
    rollout: {episodes: 3, protocols: [d4rl, multi2d]}
    models:
      maze-diffuser:
        model: {horizon: 16, dim: 8, dim_mults: [1, 2], diffusion_steps: 8}
        train: {max_steps: 20, batch_size: 16, val_every_steps: 10, warmup_steps: 2, checkpoint_every_steps: 10}
        sample: {n: 8, batch_size: 8}
"""
"""The tiny config of the recorded Snakemake runs (notes: a user Minari dataset and a user maze map)."""


@pytest.mark.e2e
def test_the_workflow_plans_user_trajectories(tmp_path):
    from tests.workflow_fixtures import copy_workflow, run_snakemake

    copy_workflow(tmp_path)
    shutil.copytree(PENDULUM, tmp_path / "pendulum-swingup")
    (tmp_path / "user.yaml").write_text(WORKFLOW_CONFIG)
    done = run_snakemake(tmp_path, ["user.yaml"], "-n", "--quiet", "rules")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["trajectories_import"] == 2 and counts["trajectories_env_rollout"] == 1
    assert counts["trajectories_rollout"] == 2 and counts["trajectories_baseline_rollout"] == 4
    for rule in ("trajectories_collect", "trajectories_prepare", "trajectories_two_sample", "trajectories_execute"):
        assert rule not in counts, (rule, done.stdout)  # the built-in mazes' expert-data rules are not used
    done = run_snakemake(tmp_path, ["user.yaml"], "-n", "-p", "results/trajectories/my-maze/maze-diffuser/seed0/"
                         "rollout_d4rl.json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--maze map:11111/10001/10101/1g101/11111" in done.stdout


def test_a_dict_observation_dataset_is_flattened_and_written_back(tmp_path):
    """A Minari dataset with PointMaze's Dict observation (here the project's own collect on a user map):
    prepared as flat rows (achieved_goal, desired_goal, observation), its plans written back as the Dict."""
    from dgm_science.base import Samples
    from dgm_science.domains.trajectories.data import Trajectory
    from dgm_science.domains.trajectories.domain import TrajectoryDomain
    from dgm_science.domains.trajectories.expert import write_expert_dataset
    from dgm_science.domains.trajectories.minari_io import read_minari
    from dgm_science.domains.trajectories.sources import MinariOptions, MinariSource

    write_expert_dataset(tmp_path / "raw", custom_maze_name(SMALL_MAP), episodes=4, episode_steps=40, seed=0)
    options = MinariOptions(kind="minari", path=str(tmp_path / "raw" / "minari"), valid=1, test=1, horizon=16)
    stats = MinariSource.prepare(options, tmp_path / "data", n_jobs=1)
    assert stats["obs_dim"] == 8 and stats["act_dim"] == 2 and stats["env_id"] == "PointMaze_UMaze-v3"
    assert [key for key, _ in stats["obs_layout"]] == ["achieved_goal", "desired_goal", "observation"]
    assert stats["env_kwargs"]["maze_map"][3][1] == 0  # the collection's map (goal cells made plain)
    state = generic.fit_state(stats, tmp_path / "data", None)
    assert state["horizon"] == 16 and len(state["starts"]) == 1 and len(state["low"]) == 10
    raw = read_minari(tmp_path / "raw" / "minari")[0]
    flat = generic.flatten_obs(raw["observations"], stats["obs_layout"])[:16]
    plan = Trajectory(flat, np.c_[raw["actions"][:16]], np.zeros(0))
    TrajectoryDomain.write_samples(tmp_path / "samples.minari", Samples([plan, None], np.array([-1.0, np.nan])), state=state)
    back = TrajectoryDomain.read_samples(tmp_path / "samples.minari")
    assert back[1] is None and np.allclose(back[0].observations, flat)
    written = read_minari(tmp_path / "samples.minari")[0]["observations"]
    assert set(written) == {"observation", "achieved_goal", "desired_goal"}
    assert np.allclose(written["observation"], raw["observations"]["observation"][:16])


def test_the_schema_takes_user_trajectory_blocks(tmp_path):
    import copy

    import jsonschema
    import yaml
    from snakemake.utils import validate

    from dgm_science import schema

    generated = schema.pipeline_schema()
    config = yaml.safe_load(WORKFLOW_CONFIG)
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(generated))
    validate(config, str(tmp_path / "schema.yaml"))
    maze = config["trajectories"]["my-maze"]
    assert maze["source"]["noise"] == 0.0 and maze["source"]["split"] == "random"
    assert config["trajectories"]["my-pendulum"]["source"]["horizon"] == 32
    for key, value, message in (("collect", {"episodes": 3}, "'collect' was unexpected"),  # the source's options
                                ("offline_rl", {}, "'offline_rl' was unexpected")):
        bad = copy.deepcopy(yaml.safe_load(WORKFLOW_CONFIG))
        bad["trajectories"]["my-maze"][key] = value
        with pytest.raises(jsonschema.ValidationError, match=message):
            jsonschema.validate(bad, generated)
    bad = copy.deepcopy(yaml.safe_load(WORKFLOW_CONFIG))
    bad["trajectories"]["my-pendulum"]["source"]["maze_map"] = [[1]]
    with pytest.raises(jsonschema.ValidationError, match="'maze_map' was unexpected"):
        jsonschema.validate(bad, generated)


def test_closed_loop_without_the_env_says_why():
    class Model:  # never sampled: the env is missing first
        state = {"env_id": "NoSuchEnv-v0", "env_kwargs": {}, "max_episode_steps": 10, "horizon": 8}

    summary = generic.closed_loop(Model(), episodes=2, seed=0)
    assert summary == {"protocol": "env", "env_id": "NoSuchEnv-v0",
                       "skipped": "closed loop skipped: environment 'NoSuchEnv-v0' is not installed (not in "
                                  "gymnasium's registry)"}
