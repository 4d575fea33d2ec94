"""Nothing left behind: real ``dgm`` commands, each in its own process with TMPDIR pointed at an
empty folder, leave that folder empty whether they succeed, fail or are interrupted (Ctrl-C).

Before: every PointMaze env a command built left ``ant_maze<time>.xml`` there (gymnasium-robotics),
every graph model ``torch_geometric...propagate_*.py`` (PyG), and Ctrl-C printed a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "tests" / "data" / "umaze_planner.ckpt"
TIMEOUT = 120


def dgm_process(args: list[str], tmpdir: Path, **kwargs) -> subprocess.Popen:
    """``python -m dgm_science.cli *args`` with TMPDIR=tmpdir and SIGINT at its default (as from a
    terminal; a shell's background job would start with it ignored)."""
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "dgm_science.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def dgm(args: list[str], tmpdir: Path) -> tuple[int, str]:
    process = dgm_process(args, tmpdir)
    _, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, err


@pytest.fixture()
def tmpdir_(tmp_path):
    folder = tmp_path / "TMPDIR"
    folder.mkdir()
    return folder


def test_commands_that_build_mazes_leave_tmpdir_empty(tmp_path, tmpdir_):
    code, err = dgm(["collect", "umaze", "--out", str(tmp_path / "raw"), "--episodes", "2", "--episode-steps", "20"],
                    tmpdir_)
    assert code == 0, err
    assert (tmp_path / "raw" / "collect.json").is_file()
    assert sorted(os.listdir(tmpdir_)) == []
    code, err = dgm(["rollout", "--checkpoint", str(CHECKPOINT), "--maze", "umaze", "--episodes", "2",
                     "--out", str(tmp_path / "rollout.json"), "--device", "cpu"], tmpdir_)  # one env per episode
    assert code == 0, err
    assert json.loads((tmp_path / "rollout.json").read_text())["episodes"] == 2
    assert sorted(os.listdir(tmpdir_)) == []


def test_a_failed_graph_training_leaves_tmpdir_empty(tmp_path, tmpdir_):
    """graph-vae builds its PyG encoder (PyG writes its propagate module), then finds no graph file."""
    data = tmp_path / "data"
    data.mkdir()
    smiles = (ROOT / "tests" / "data" / "moses_sample.smi").read_text().splitlines()[:40]
    for name in ("train.smi", "valid.smi", "train_all.smi"):
        (data / name).write_text("\n".join(smiles) + "\n")
    config = {"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 80, "latent_dim": 4,
                        "encoder_hidden": 8, "encoder_layers": 1},
              "train": {"accelerator": "cpu", "max_steps": 1, "batch_size": 8}}
    out = tmp_path / "run" / "model.ckpt"
    code, err = dgm(["train", "--model", "graph-vae", "--data", str(data), "--out", str(out),
                     "--config", json.dumps(config), "--threads", "1"], tmpdir_)
    assert code == 2 and err.strip().splitlines()[-1].startswith("dgm: error: ") and "graphs_train.npz" in err, err
    assert "Traceback" not in err
    assert not out.exists()
    assert sorted(os.listdir(tmpdir_)) == []


@pytest.mark.parametrize("sent, code, line", [(signal.SIGINT, 130, "dgm: interrupted"),
                                              (signal.SIGTERM, 143, "dgm: terminated")], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_print_one_line_and_leave_nothing(tmp_path, tmpdir_, sent, code, line):
    """Ctrl-C, and SIGTERM (Slurm's scancel and time limit; Snakemake stopping its jobs)."""
    out = tmp_path / "raw"
    process = dgm_process(["collect", "umaze", "--out", str(out), "--episodes", "1000", "--episode-steps", "1000",
                           "--yes"], tmpdir_)  # about a minute of simulation
    deadline = time.monotonic() + TIMEOUT
    try:
        while not any(name.startswith("dgm-") for name in os.listdir(tmpdir_)):  # the command has begun
            assert process.poll() is None and time.monotonic() < deadline, "dgm collect never started its command"
            time.sleep(0.1)
        time.sleep(1.0)  # inside the collection
        assert process.poll() is None
        process.send_signal(sent)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, err
    assert err.strip().splitlines()[-1] == line
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Terminated" not in err
    assert not out.exists()  # neither the dataset nor the folder the command made
    assert [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".old"))] == []
    assert sorted(os.listdir(tmpdir_)) == []


def test_private_tempdir_restores_the_temp_folder_and_removes_its_own(monkeypatch):
    from dgm_science.utils import private_tempdir

    monkeypatch.setenv("TMPDIR", "/before")
    before = tempfile.tempdir
    with pytest.raises(RuntimeError), private_tempdir() as folder:
        assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(folder)
        handle, name = tempfile.mkstemp()
        os.close(handle)
        assert Path(name).parent == folder
        raise RuntimeError
    assert not folder.exists()
    assert tempfile.tempdir == before and os.environ["TMPDIR"] == "/before"


def test_make_env_removes_the_maze_file_and_the_env_still_runs(tmp_path, monkeypatch):
    """Library use (bench scripts, tests): each env's generated MJCF is deleted once MuJoCo compiled it."""
    from dgm_science.domains.trajectories.mazes import make_env

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    envs = [make_env("umaze", max_episode_steps=5) for _ in range(2)]
    assert os.listdir(tmp_path) == []
    for env in envs:
        assert not os.path.exists(env.unwrapped.tmp_xml_file_path)
        obs, _ = env.reset(seed=0)
        after, *_ = env.step(env.action_space.sample())
        assert not (after["observation"] == obs["observation"]).all()  # the simulation moves
        env.close()
