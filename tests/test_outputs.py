"""How commands write: all outputs or none, progress kept, temp files of killed runs removed, and
outputs that would destroy an input refused before any work."""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path

import pytest

from dgm_science import checkpoint
from dgm_science.cli import training_budget
from dgm_science.commands import check_paths, json_safe, output_argument
from dgm_science.report import run_scale
from dgm_science.utils import all_or_nothing, atomic_dir, atomic_path, remove_stale_temps
from tests.robustness.corpus import _dead_pid


def write(path: Path, text: str, **kwargs) -> None:
    with atomic_path(path, **kwargs) as tmp:
        tmp.write_text(text)


def test_a_failing_command_writes_none_of_its_outputs(tmp_path):
    old, new, folder = tmp_path / "old.txt", tmp_path / "new.txt", tmp_path / "data.minari"
    old.write_text("before")
    (folder / "part").mkdir(parents=True)
    (folder / "part" / "f").write_text("before")
    with pytest.raises(RuntimeError), all_or_nothing():
        write(old, "after")
        write(new, "after")
        with atomic_dir(folder) as tmp:
            (tmp / "g").write_text("after")
        assert old.read_text() == "after" and new.is_file() and (folder / "g").is_file()  # visible meanwhile
        raise RuntimeError("the second output cannot be written")
    assert old.read_text() == "before"
    assert not new.exists()
    assert (folder / "part" / "f").read_text() == "before" and not (folder / "g").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.minari", "old.txt"]  # no temp or backup left


def test_a_succeeding_command_keeps_its_outputs_and_no_backup(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("before")
    with all_or_nothing():
        write(old, "after")
        write(old, "again")  # the same output twice
    assert old.read_text() == "again"
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_durable_progress_survives_a_failure(tmp_path):
    with pytest.raises(KeyboardInterrupt), all_or_nothing():
        write(tmp_path / "chunk_000001.chk", "progress", durable=True)
        write(tmp_path / "trajectory.dcd", "result")
        raise KeyboardInterrupt
    assert (tmp_path / "chunk_000001.chk").read_text() == "progress"
    assert not (tmp_path / "trajectory.dcd").exists()


def test_temp_files_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    host = socket.gethostname().replace(".", "-")
    out = tmp_path / "samples.csv"
    dead = tmp_path / f".samples.csv.{host}.{_dead_pid()}.a1b2c3d4.tmp"
    old_elsewhere = tmp_path / ".samples.csv.node17.42.a1b2c3d4.tmp"
    fresh_elsewhere = tmp_path / ".samples.csv.node17.43.a1b2c3d4.tmp"  # maybe a live run on another node
    running = tmp_path / f".samples.csv.{host}.{os.getpid()}.a1b2c3d4.tmp"  # this process: alive
    other_output = tmp_path / f".other.csv.{host}.{_dead_pid()}.a1b2c3d4.tmp"
    for path in (dead, old_elsewhere, fresh_elsewhere, running, other_output):
        path.write_text("half a file")
    os.utime(old_elsewhere, (time.time() - 2 * 86400,) * 2)
    (tmp_path / f".samples.csv.{host}.{_dead_pid()}.a1b2c3d4.old").mkdir()  # a folder's old version
    write(out, "rows")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([out.name, fresh_elsewhere.name, running.name, other_output.name])
    assert remove_stale_temps(out) == []


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--input", type=Path)
    output_argument(p, "--out")
    output_argument(p, "--stats", default=None)
    output_argument(p, "--folder", kind="folder", default=None)
    return p


@pytest.mark.parametrize("argv, message", [
    (["--input", "{t}/in.fasta", "--out", "{t}/in.fasta"], "--out {t}/in.fasta is the same file as the input --input"),
    (["--input", "{t}/in.fasta", "--out", "{t}/sub/../in.fasta"], "same file as the input --input"),
    (["--input", "{t}/in.fasta", "--out", "{t}/link.fasta"], "same file as the input --input"),
    (["--input", "{t}/in.fasta", "--out", "{t}/a.x", "--stats", "{t}/a.x"], "--stats {t}/a.x is the same file as the output --out"),
    (["--out", "{t}/sub"], "--out {t}/sub: is a folder"),
    (["--out", "{t}/in.fasta/x.csv"], "{t}/in.fasta is not a folder"),
    (["--out", "{t}/a.csv", "--folder", "{t}/in.fasta"], "--folder {t}/in.fasta: is a file"),
])
def test_outputs_that_would_destroy_an_input_or_cannot_be_written_are_refused(tmp_path, argv, message):
    (tmp_path / "in.fasta").write_text(">a\nACGT\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.fasta").symlink_to(tmp_path / "in.fasta")
    p = _parser()
    args = p.parse_args([a.format(t=tmp_path) for a in argv])
    with pytest.raises(ValueError) as info:
        check_paths(p, args)
    assert message.format(t=tmp_path) in str(info.value)
    assert (tmp_path / "in.fasta").read_text() == ">a\nACGT\n"


def test_check_paths_returns_the_folders_an_output_will_create(tmp_path):
    p = _parser()
    args = p.parse_args(["--out", str(tmp_path / "a" / "b" / "c.csv"), "--stats", str(tmp_path / "s.json")])
    assert check_paths(p, args) == [tmp_path / "a"]


def test_json_has_no_nan():
    assert json_safe({"fcd": float("nan"), "w1": [1.0, float("inf")], "n": 3}) == {"fcd": None, "w1": [1.0, None],
                                                                                  "n": 3}


@pytest.mark.parametrize("capped", [False, True])
def test_metrics_and_report_say_when_the_time_cap_stopped_training(tmp_path, capped):
    info = {"global_step": 120 if capped else 500, "hit_time_cap": capped, "train_seconds": 60.0,
            "train_examples": 1000, "parameters": 10}
    checkpoint.save(tmp_path / "model.ckpt", domain="molecules", model_name="smiles-arm",
                    config={"train": {"max_steps": 500}}, state_dict={}, domain_state={}, info=info)
    payload = checkpoint.load(tmp_path / "model.ckpt")
    budget = training_budget(payload["info"], payload["config"]["train"])
    assert budget == {"training_steps": info["global_step"], "training_max_steps": 500,
                      "training_hit_time_cap": capped, "training_seconds": 60.0}
    assert ("STOPPED BY THE TIME CAP" in run_scale(tmp_path, "mols")) == capped
