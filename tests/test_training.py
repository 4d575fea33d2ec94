"""Training through Lightning: loss per step in CSV logs, a checkpoint that resumes a killed run."""

from __future__ import annotations

import csv
import dataclasses

import torch

from dgm_science import api, checkpoint


def _data(tmp_path, smiles):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.smi").write_text("\n".join(smiles[:200]) + "\n")
    (data / "valid.smi").write_text("\n".join(smiles[200:240]) + "\n")
    return data


def _config(max_steps):
    return api.RunConfig.parse("smiles-arm", {
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.0, "max_length": 90},
        "train": {"batch_size": 16, "max_steps": max_steps, "warmup_steps": 2, "val_every_steps": 4,
                  "val_batches": 1, "checkpoint_every_steps": 4, "accelerator": "cpu"},
    })


def test_train_logs_loss_per_step_and_resumes(tmp_path, moses_smiles):
    data = _data(tmp_path, moses_smiles)
    out = tmp_path / "run" / "model.ckpt"
    first = api.train("smiles-arm", data, _config(8), seed=0, out=out)
    assert first["global_step"] == 8 and first["resumed_from"] is None
    rows = list(csv.DictReader(open(tmp_path / "run/train/logs/metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    assert any(r.get("val/nll") for r in rows)
    # last.ckpt stays; the same config resumes from it (nothing left to train), another budget is
    # another run (its learning-rate schedule differs from step 0) and starts afresh
    assert (tmp_path / "run/train/checkpoints/last.ckpt").is_file()
    again = api.train("smiles-arm", data, _config(8), seed=0, out=out)
    assert again["resumed_from"] is not None and again["global_step"] == 8
    second = api.train("smiles-arm", data, _config(12), seed=0, out=out)
    assert second["resumed_from"] is None and second["global_step"] == 12
    payload = checkpoint.load(out)
    assert payload["info"]["global_step"] == 12 and payload["model"] == "smiles-arm"
    assert payload["domain_state"]["tokenizer"]["kind"] == "smiles"


def test_keep_best_restores_the_weights_of_the_lowest_validation_nll():
    from types import SimpleNamespace

    from dgm_science.training import KeepBest

    module = SimpleNamespace(model=torch.nn.Linear(3, 2))
    keep = KeepBest()
    assert keep.restore(module) == {}  # no validation yet: nothing to restore
    snapshots = []
    for step, nll in ((10, 3.0), (20, 2.0), (30, 5.0)):
        with torch.no_grad():
            module.model.weight.add_(1.0)
        snapshots.append(module.model.weight.detach().clone())
        keep.on_validation_end(SimpleNamespace(callback_metrics={"val/nll": torch.tensor(nll)}, global_step=step),
                               module)
    assert keep.restore(module) == {"best_step": 20, "best_val_nll": 2.0}
    assert torch.equal(module.model.weight, snapshots[1])


def test_bf16_mixed_precision_trains_with_gradient_clipping(tmp_path, moses_smiles):
    """paper.yaml's precision on the CPU (and what ``auto`` becomes on a bf16 GPU): Lightning refuses
    to clip the gradients of a fused optimizer under mixed precision, so this failed at step 1."""
    data = _data(tmp_path, moses_smiles)
    config = _config(3)
    config = api.RunConfig(config.model, dataclasses.replace(config.train, precision="bf16-mixed", grad_clip=1.0),
                           config.sample)
    result = api.train("smiles-arm", data, config, seed=0, out=tmp_path / "run" / "model.ckpt")
    assert result["global_step"] == 3
    rows = list(csv.DictReader(open(tmp_path / "run/train/logs/metrics.csv")))
    assert all(torch.isfinite(torch.tensor(float(r["train/loss"]))) for r in rows if r.get("train/loss"))


def test_snapshots_keep_a_loadable_model_every_n_steps(tmp_path, moses_smiles):
    """train.snapshot_every_steps: the learning curve's checkpoints, each the model at its step
    (different weights), loadable and sampleable like the final one."""
    data = _data(tmp_path, moses_smiles)
    out = tmp_path / "run" / "model.ckpt"
    cfg = api.RunConfig.parse("smiles-arm", {**_config(8).to_dict(), "train": {
        **_config(8).to_dict()["train"], "snapshot_every_steps": 3}})
    api.train("smiles-arm", data, cfg, seed=0, out=out)
    snaps = sorted((tmp_path / "run/train/snapshots").glob("*.ckpt"))
    assert [p.name for p in snaps] == ["step0000003.ckpt", "step0000006.ckpt"]
    first, second = (checkpoint.load(p) for p in snaps)
    assert first["info"]["global_step"] == 3 and second["info"]["global_step"] == 6
    final = checkpoint.load(out)["state_dict"]
    name = next(k for k, v in final.items() if v.is_floating_point() and v.numel() > 1)
    assert not torch.equal(first["state_dict"][name], second["state_dict"][name])
    assert not torch.equal(second["state_dict"][name], final[name])
    assert len(api.load(snaps[0], device="cpu").sample(3, seed=0)) == 3
    # without the key no snapshot is written
    api.train("smiles-arm", data, _config(4), seed=0, out=tmp_path / "plain" / "model.ckpt")
    assert not (tmp_path / "plain/train/snapshots").exists()
