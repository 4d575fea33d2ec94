"""The ``dgm`` commands of the trajectories domain: sampling plans into a Minari dataset, rollouts,
and one clear error for each kind of bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dgm_science import cli

CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "umaze_planner.ckpt"


def run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_sample_writes_plans_between_given_points_as_minari(tmp_path, capsys):
    import minari

    out = tmp_path / "plans.minari"
    code, err = run(["sample", "--checkpoint", str(CHECKPOINT), "-n", "3", "--start", "-1,1", "--goal", "1,-1",
                     "--out", str(out), "--seed", "4"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "plans.csv")))
    assert [r["valid"] for r in rows] == ["1", "1", "1"]
    assert {(r["start_x"], r["start_y"], r["goal_x"], r["goal_y"]) for r in rows} == {("-1", "1", "1", "-1")}
    dataset = minari.MinariDataset(out / "data")
    episode = next(dataset.iterate_episodes())
    np.testing.assert_allclose(episode.observations["observation"][0], [-1, 1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(episode.observations["desired_goal"][0], [1, -1])


@pytest.mark.parametrize("argv, message", [
    (["--goal", "9,9"], "goal (9.00, 9.00) is outside the umaze maze"),
    (["--start", "0,0"], "start (0.00, 0.00) lies in a wall cell"),
    (["--label", "Firmicutes"], "--label: "),
    (["--within-reach", "--goal", "1,-1"], "--within-reach draws both the start and the goal"),
    (["--within-reach"], "--within-reach needs the data's step length"),  # the checkpoint predates it
])
def test_sample_rejects_points_off_the_maze_and_foreign_options(argv, message, tmp_path, capsys):
    out = tmp_path / "x.minari"
    code, err = run(["sample", "--checkpoint", str(CHECKPOINT), "-n", "2", "--out", str(out), *argv], capsys)
    assert code == 2 and message in err.strip().splitlines()[-1], err
    assert not out.exists()


def test_rollout_of_a_checkpoint_and_of_a_baseline(tmp_path, capsys):
    out = tmp_path / "rollout.json"
    code, err = run(["rollout", "--checkpoint", str(CHECKPOINT), "--maze", "umaze", "--episodes", "4",
                     "--out", str(out), "--plot", str(tmp_path / "plans.png")], capsys)
    assert code == 0, err
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 4 and summary["plan_calls"] == 1 and summary["protocol"] == "d4rl"
    assert {row["method"]: row["score"] for row in summary["published"]}["Diffuser"] == 113.9
    assert summary["map_aided"] is False
    assert (tmp_path / "plans.png").stat().st_size > 10_000
    code, err = run(["rollout", "--baseline", "straight", "--maze", "umaze", "--episodes", "4", "--protocol",
                     "multi2d", "--out", str(tmp_path / "straight.json")], capsys)
    assert code == 0, err
    straight = json.loads((tmp_path / "straight.json").read_text())
    assert straight["protocol"] == "multi2d" and straight["map_aided"] is False
    assert {row["method"]: row["score"] for row in straight["published"]}["Diffuser"] == 128.9


@pytest.mark.parametrize("argv, message", [
    (["rollout", "--checkpoint", str(CHECKPOINT), "--maze", "medium", "--out", "r.json"],
     "was trained on PointMaze umaze, not medium"),
    (["rollout", "--baseline", "expert", "--out", "r.json"], "a baseline needs --maze"),
    (["rollout", "--baseline", "expert", "--maze", "PointMaze_Spiral-v3", "--out", "r.json"], "unknown"),
    (["collect", "spiral", "--out", "raw", "--episodes", "2", "--episode-steps", "10"], "spiral"),
])
def test_unknown_mazes_and_mismatches_are_one_clear_error(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(argv, capsys)
    assert code == 2 and message in err.strip().splitlines()[-1], err
