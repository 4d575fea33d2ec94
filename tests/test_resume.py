"""Resuming a killed training run is exact, and a bad ``last.ckpt`` fails clearly without running code.

The kill-and-resume test trains a tiny smiles-arm (dropout on, so the per-step random draws matter;
12 batches per epoch, validation every 4 steps, ``last.ckpt`` every 6) for 30 steps without
interruption, and the same config in a process that is killed with SIGKILL twice: paused at the
start of step 15 (checkpoint at step 12, an epoch's end, steps 12-14 in the CSV log on disk) and of
step 27 (checkpoint at 24, after a validation; steps 24-26 logged), each time resumed. The log
must hold every step once with the uninterrupted run's losses and validations, bit for bit, and the
final weights must be the uninterrupted run's.

Run as a script, this file is that training process (see ``_train`` below).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS, PAUSES = 30, (15, 27)
CONFIG = {
    "model": {"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.1, "max_length": 90},
    "train": {"batch_size": 16, "max_steps": STEPS, "warmup_steps": 2, "val_every_steps": 4, "val_batches": 1,
              "checkpoint_every_steps": 6, "accelerator": "cpu", "keep_best": True},
}


def _data(root: Path) -> Path:
    smiles = (ROOT / "tests/data/moses_sample.smi").read_text().split()
    data = root / "data"
    data.mkdir(exist_ok=True)
    (data / "train.smi").write_text("\n".join(smiles[:200]) + "\n")  # 12 batches of 16 per epoch
    (data / "valid.smi").write_text("\n".join(smiles[200:240]) + "\n")
    return data


def _start(data: Path, out: Path, *, pause_at: int | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    # a SIGKILLed process cannot remove its temporary folders: they go under the test's own folder
    scratch = out.parent / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    env.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0", DGLBACKEND="pytorch", TMPDIR=str(scratch))
    command = [sys.executable, __file__, str(data), str(out), json.dumps(CONFIG)]
    if pause_at is not None:
        command += ["--pause-at", str(pause_at)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-5000:]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "train/logs/metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_a_run_killed_twice_and_resumed_logs_and_ends_as_the_uninterrupted_run(tmp_path):
    data = _data(tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = _start(data, whole / "model.ckpt")  # alongside the killed run: 2 cores
    for pause in PAUSES:
        process = _start(data, killed / "model.ckpt", pause_at=pause)
        paused = killed / f"paused-at-{pause}"
        deadline = time.monotonic() + 120
        while not paused.exists():
            assert process.poll() is None, process.communicate()[0][-5000:]
            assert time.monotonic() < deadline, "the training never reached the step to kill it at"
            time.sleep(0.05)
        assert (killed / "train/checkpoints/last.ckpt").is_file()
        on_disk = [int(r["step"]) for r in _rows(killed) if r["train/loss"]]
        assert on_disk == list(range(pause))  # steps after the checkpoint are in the log before the kill
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
    _finish(_start(data, killed / "model.ckpt"))
    _finish(uninterrupted)

    expected, resumed = _rows(whole), _rows(killed)
    train_steps = [int(r["step"]) for r in resumed if r["train/loss"]]
    assert train_steps == list(range(STEPS))  # every step once, in order
    assert len([r for r in resumed if r["val/nll"]]) == STEPS // 4
    assert resumed == expected  # the same losses and validations, bit for bit (as written by repr)
    final = {name: torch.load(run / "model.ckpt", weights_only=True) for name, run in (("whole", whole),
                                                                                          ("killed", killed))}
    assert final["killed"]["info"]["resumed_from"] and final["whole"]["info"]["resumed_from"] is None
    assert final["killed"]["info"]["best_step"] == final["whole"]["info"]["best_step"]
    a, b = final["whole"]["state_dict"], final["killed"]["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("accumulate,rank,world_size", [(1, None, None), (2, 1, 2), (3, 0, 2)])
def test_the_training_loader_continues_its_data_order_from_a_saved_position(accumulate, rank, world_size):
    from dgm_science.batching import LengthBucketBatchSampler, ResumableDataLoader

    def loader() -> ResumableDataLoader:
        sampler = LengthBucketBatchSampler([i % 7 for i in range(50)], 3, seed=5, pool_batches=2,
                                           accumulate=accumulate, rank=rank, world_size=world_size)
        return ResumableDataLoader(list(range(50)), batch_sampler=sampler, collate_fn=list)

    def stream(source: ResumableDataLoader, epochs: int) -> list[list[int]]:
        batches = []
        for epoch in range(epochs):
            source.batch_sampler.set_epoch(epoch)  # as Lightning does before each epoch
            batches.extend(source)
        return batches

    whole = stream(loader(), 3)
    per_epoch = len(loader())
    for stop in (1, per_epoch - 1, per_epoch, per_epoch + 2):
        first = loader()
        taken = []
        for epoch in range(2):
            first.batch_sampler.set_epoch(epoch)
            for batch in first:
                taken.append(batch)
                if len(taken) == stop:
                    break
            if len(taken) == stop:
                break
        state = first.state_dict()
        assert state == {"epoch": (stop - 1) // per_epoch, "batches": (stop - 1) % per_epoch + 1}
        second = loader()
        second.load_state_dict(state)
        epoch = stop // per_epoch
        rest = []
        for e in range(epoch, 3):
            second.batch_sampler.set_epoch(e)
            rest.extend(second)
        assert taken + rest == whole, stop


class _RunsCode:
    """Unpickling this runs ``exec(code)``: what a crafted checkpoint could do."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def _tiny(steps: int, **train: object) -> object:
    from dgm_science import api

    return api.RunConfig.parse("smiles-arm", {
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "max_length": 90},
        "train": {"batch_size": 16, "max_steps": steps, "warmup_steps": 1, "val_every_steps": 1000,
                  "val_batches": 1, "checkpoint_every_steps": 2, "accelerator": "cpu", **train},
    })


@pytest.fixture()
def planted(tmp_path):
    """(data folder, model.ckpt path, last.ckpt path) of a run folder without a training yet."""
    data = _data(tmp_path)
    out = tmp_path / "run" / "model.ckpt"
    last = out.parent / "train" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    return data, out, last


def test_a_code_executing_last_checkpoint_is_refused_without_running_it(planted, tmp_path, one_thread):
    from dgm_science import api
    from dgm_science.checkpoint import CheckpointError

    data, out, last = planted
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "global_step": 3, "loops": {}, "x": _RunsCode(f"open({str(marker)!r}, 'w')")},
               last)
    live = tmp_path / "live-marker"  # the payload is live: a full unpickling runs it
    torch.save(_RunsCode(f"open({str(live)!r}, 'w')"), tmp_path / "live.ckpt")
    torch.load(tmp_path / "live.ckpt", weights_only=False)
    assert live.exists()
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(last))}: refusing to resume.*could run code.*delete it.*fresh") as error:
        api.train("smiles-arm", data, _tiny(2), seed=0, out=out)
    assert "Traceback" not in str(error.value) and len(str(error.value).splitlines()) == 1
    assert not marker.exists() and not out.exists()


def test_a_truncated_last_checkpoint_fails_clearly_and_fresh_starts_over(planted, one_thread):
    from dgm_science import api, checkpoint
    from dgm_science.checkpoint import CheckpointError

    data, out, last = planted
    first = api.train("smiles-arm", data, _tiny(2), seed=0, out=out)
    assert first["global_step"] == 2 and last.is_file()
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(last))}: cannot resume.*delete it.*fresh"):
        api.train("smiles-arm", data, _tiny(4), seed=0, out=out)
    last.write_bytes(b"")
    with pytest.raises(CheckpointError, match=re.escape(str(last))):
        api.train("smiles-arm", data, _tiny(4), seed=0, out=out)
    torch.save({"weights": torch.zeros(2)}, last)  # loads, but is no training checkpoint
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(last))}: .*not a Lightning training checkpoint"):
        api.train("smiles-arm", data, _tiny(4), seed=0, out=out)

    last.write_bytes(whole[: len(whole) // 2])
    again = api.train("smiles-arm", data, _tiny(3), seed=0, out=out, fresh=True)
    assert again["resumed_from"] is None and again["global_step"] == 3
    assert last.with_name("last.ckpt.ignored").read_bytes() == whole[: len(whole) // 2]  # moved aside
    rows = list(csv.DictReader(open(out.parent / "train/logs/metrics.csv")))
    assert [int(r["step"]) for r in rows if r["train/loss"]] == [0, 1, 2]  # a fresh log
    assert checkpoint.load(out)["info"]["global_step"] == 3
    resumed = api.train("smiles-arm", data, _tiny(3), seed=0, out=out)  # the new last.ckpt resumes (done)
    assert resumed["resumed_from"] == str(last) and resumed["global_step"] == 3


def test_a_checkpoint_of_another_config_is_not_resumed(planted, one_thread, caplog):
    """Snakemake retrains a model whose config changed; its old last.ckpt (a finished run of the
    old config) must not be resumed: that would train the new config from the old run's step."""
    from dgm_science import api

    data, out, last = planted
    api.train("smiles-arm", data, _tiny(4), seed=0, out=out)
    old = last.read_bytes()
    info = api.train("smiles-arm", data, _tiny(3, lr=0.002), seed=0, out=out)
    assert info["resumed_from"] is None and info["global_step"] == 3
    assert "another config: not resumed" in caplog.text
    assert last.with_name("last.ckpt.ignored").read_bytes() == old  # kept, moved aside
    rows = list(csv.DictReader(open(out.parent / "train/logs/metrics.csv")))
    assert [int(r["step"]) for r in rows if r["train/loss"]] == [0, 1, 2]
    other_seed = api.train("smiles-arm", data, _tiny(3, lr=0.002), seed=1, out=out)
    assert other_seed["resumed_from"] is None
    same = api.train("smiles-arm", data, _tiny(3, lr=0.002), seed=1, out=out)
    assert same["resumed_from"] == str(last)


def test_max_time_minutes_is_a_cap_that_says_it_stopped_the_run(planted, one_thread):
    from dgm_science import api, checkpoint

    data, out, _ = planted
    info = api.train("smiles-arm", data, _tiny(100_000, max_time_minutes=0.002), seed=0, out=out)
    assert info["hit_time_cap"] is True and 0 < info["global_step"] < 100_000
    assert checkpoint.load(out)["info"]["hit_time_cap"] is True
    done = api.train("smiles-arm", data, _tiny(2), seed=0, out=out.parent.parent / "other" / "model.ckpt")
    assert done["hit_time_cap"] is False


def test_the_learning_rate_depends_on_the_step_alone():
    from dgm_science.config import TrainConfig
    from dgm_science.training import GenerativeLightningModule

    rates = []
    for minutes in (None, 1e-6):  # a time cap long exceeded must not anneal the rate
        cfg = TrainConfig(lr=1.0, warmup_steps=2, max_steps=10, max_time_minutes=minutes, precision="32-true")
        module = GenerativeLightningModule(torch.nn.Linear(2, 2), cfg)
        scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
        rates.append([scheduler.lr_lambdas[0](step) for step in range(12)])
    assert rates[0] == rates[1]
    assert rates[0][:2] == [0.5, 1.0] and rates[0][-1] == pytest.approx(0.1)


def _train(argv: list[str]) -> None:
    """``python tests/test_resume.py DATA OUT CONFIG [--pause-at K]``: api.train with one thread; at
    the start of step K it writes the CSV log's buffered rows, creates ``OUT/../paused-at-K`` and
    waits to be killed."""
    import argparse

    import lightning as L

    sys.path.insert(0, str(ROOT))
    from dgm_science import api, training

    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("config")
    parser.add_argument("--pause-at", type=int)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    class PauseToBeKilled(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == args.pause_at:
                trainer.logger.flush()
                (args.out.parent / f"paused-at-{args.pause_at}").touch()
                time.sleep(600)

    if args.pause_at is not None:
        fit = training.fit
        training.fit = lambda *a, callbacks=(), **k: fit(*a, callbacks=[*callbacks, PauseToBeKilled()], **k)
    config = api.RunConfig.parse("smiles-arm", json.loads(args.config))
    api.train("smiles-arm", args.data, config, seed=0, out=args.out)


if __name__ == "__main__":
    _train(sys.argv[1:])
