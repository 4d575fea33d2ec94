"""Fine-tuning (``train.init_from``, ``dgm finetune``): training starts from a checkpoint of the same
model, keeps its vocabulary, skips and counts molecules with tokens outside it, stops early on the
validation split, records what it started from, and the result is a prior ``dgm optimize`` takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dgm_science import api, checkpoint, cli, training
from dgm_science.config import ConfigError
from dgm_science.tokenizer import Tokenizer
from dgm_science.errors import DataError
from dgm_science.wheels import sha256_of

QM9 = (Path(__file__).parent / "data" / "qm9_sample.smi").read_text().split()
MODEL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "max_length": 60, "dropout": 0.0}


def _train(**changes) -> dict:
    return {"batch_size": 16, "max_steps": 2, "lr": 1e-3, "warmup_steps": 1, "val_every_steps": 1000,
            "val_batches": 1, "checkpoint_every_steps": 100000, "accelerator": "cpu", **changes}


@pytest.fixture(scope="module")
def prior(tmp_path_factory, train_tiny_arm) -> Path:
    """A tiny SMILES transformer on 240 QM9 molecules (C, N, O, F only: no Cl, S or Br in its vocabulary)."""
    path, _, _ = train_tiny_arm(tmp_path_factory.mktemp("prior"), QM9[:240], QM9[240:], model=MODEL, steps=150,
                                lr=5e-3)
    return path


@pytest.fixture(scope="module")
def series(tmp_path_factory, moses_smiles, prior) -> tuple[Path, int]:
    """A user's prepared data: QM9 molecules the prior's vocabulary covers and MOSES ones it partly does
    not; and how many training molecules have a token outside it."""
    data = tmp_path_factory.mktemp("series") / "data"
    data.mkdir()
    train = QM9[:60] + moses_smiles[:40]
    (data / "train.smi").write_text("\n".join(train) + "\n")
    (data / "train_all.smi").write_text("\n".join(train) + "\n")
    (data / "valid.smi").write_text("\n".join(QM9[240:280]) + "\n")
    vocabulary = set(checkpoint.load(prior)["domain_state"]["tokenizer"]["tokens"])
    tokenizer = Tokenizer("smiles")
    outside = sum(any(t not in vocabulary for t in tokenizer.split(s)) for s in train)
    assert 0 < outside < 40  # the MOSES molecules with S, Cl, Br...: some, not all
    return data, outside


def _run(prior: Path, data: Path, out: Path, **train) -> dict:
    config = api.RunConfig.for_training("smiles-arm", {"train": {**_train(**train), "init_from": str(prior)}})
    torch.set_num_threads(1)
    return api.train("smiles-arm", data, config, seed=0, out=out)


def test_init_from_starts_from_the_prior_and_keeps_its_vocabulary(prior, series, tmp_path):
    data, outside = series
    # a learning rate of 1e-12: after one step the weights are the prior's to 1e-6 (Adam moves each by ~lr)
    info = _run(prior, data, tmp_path / "ft/model.ckpt", lr=1e-12, max_steps=1)
    before, after = checkpoint.load(prior), checkpoint.load(tmp_path / "ft/model.ckpt")
    for name, weight in before["state_dict"].items():
        assert torch.allclose(after["state_dict"][name], weight, atol=1e-6), name
    assert after["domain_state"] == before["domain_state"]  # the prior's tokenizer, not one fitted on the series
    assert after["config"]["model"] == before["config"]["model"]  # the model block came from the prior
    # the same run from scratch (no init_from) starts elsewhere
    scratch = api.RunConfig.parse("smiles-arm", {"model": MODEL, "train": _train(lr=1e-12, max_steps=1)})
    api.train("smiles-arm", data, scratch, seed=0, out=tmp_path / "scratch/model.ckpt")
    fresh = checkpoint.load(tmp_path / "scratch/model.ckpt")
    assert fresh["domain_state"] != before["domain_state"]
    # self-describing: what it started from, by path and content
    record = after["info"]["init_from"]
    assert record["path"] == str(prior) and record["sha256"] == sha256_of(prior) and record["model"] == "smiles-arm"
    assert info["init_from"] == record
    # molecules with a token outside the prior's vocabulary: skipped and counted, not a crash
    skipped = after["info"]["skipped_unknown_tokens"]
    assert skipped["train"] == outside and skipped["valid"] == 0
    assert after["info"]["train_examples"] == 100 - outside
    assert set(skipped["tokens"]) and not set(skipped["tokens"]) & set(before["domain_state"]["tokenizer"]["tokens"])


def test_a_series_the_vocabulary_does_not_cover_is_one_error_naming_the_tokens(prior, moses_smiles, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    chlorides = [s for s in moses_smiles if "Cl" in s][:20]
    (data / "train.smi").write_text("\n".join(chlorides) + "\n")
    (data / "valid.smi").write_text("\n".join(QM9[240:260]) + "\n")
    with pytest.raises(DataError, match=r"20 training molecules have a token outside the vocabulary.*'Cl'"):
        _run(prior, data, tmp_path / "ft/model.ckpt")


def test_another_model_or_an_incompatible_config_is_one_clear_error(prior, series, tmp_path, capsys):
    data, _ = series
    with pytest.raises(ConfigError, match=r"is a 'smiles-arm' checkpoint.*not 'graph-vae'"):
        api.RunConfig.for_training("graph-vae", {"train": {"init_from": str(prior)}})
    changed = api.RunConfig.for_training("smiles-arm", {"model": {"d_model": 64, "dropout": 0.2},
                                                        "train": {**_train(), "init_from": str(prior)}})
    with pytest.raises(ConfigError, match=r"model\.d_model: 64 here, 32 in the prior") as err:
        api.train("smiles-arm", data, changed, seed=0, out=tmp_path / "x/model.ckpt")
    assert "dropout" not in str(err.value)  # a key that only acts in training may differ
    assert not (tmp_path / "x/model.ckpt").exists()
    # not a dgm-science checkpoint (a Lightning one, or any other file): the file is named
    bad = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 1}, bad)
    with pytest.raises(checkpoint.CheckpointError, match="last.ckpt: not a dgm-science checkpoint"):
        api.RunConfig.for_training("smiles-arm", {"train": {"init_from": str(bad)}})
    # through the CLI: one `dgm: error:` line, exit 2, nothing written
    code = cli.main(["train", "--model", "graph-vae", "--data", str(data), "--config",
                     json.dumps({"train": {"init_from": str(prior)}}), "--out", str(tmp_path / "y/model.ckpt")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dgm: error:")]
    assert code == 2 and len(errors) == 1 and "graph-vae" in errors[0] and "smiles-arm" in errors[0]
    assert not (tmp_path / "y").exists()


def test_early_stopping_stops_after_patience_validations_without_improvement(prior, series, tmp_path, monkeypatch):
    data, _ = series

    def worse_every_time(self, batch, batch_idx):  # the validation NLL only ever rises: best at the first one
        self.log("val/nll", torch.tensor(float(self.global_step)), batch_size=1)

    monkeypatch.setattr(training.GenerativeLightningModule, "validation_step", worse_every_time)
    info = _run(prior, data, tmp_path / "ft/model.ckpt", max_steps=50, val_every_steps=2, keep_best=True,
                early_stopping_patience=2)
    # validations at steps 2 (best), 4, 6: two without improvement, so training stops at step 6
    assert info["stopped_early"] is True and info["global_step"] == 6 and info["best_step"] == 2
    info = _run(prior, data, tmp_path / "ft2/model.ckpt", max_steps=6, val_every_steps=2,
                early_stopping_patience=5)
    assert info["stopped_early"] is False and info["global_step"] == 6


def test_dgm_finetune_writes_a_prior_that_samples_and_dgm_optimize_takes(prior, series, tmp_path):
    data, _ = series
    out = tmp_path / "ft/model.ckpt"
    code = cli.main(["finetune", "--prior", str(prior), "--data", str(data), "--config",
                     json.dumps({"train": _train(max_steps=3)}), "--out", str(out), "--threads", "1"])
    assert code == 0
    loaded = api.load(out, device="cpu")
    assert loaded.name == "smiles-arm" and loaded.info["init_from"]["sha256"] == sha256_of(prior)
    assert loaded.config.train.init_from == str(prior)
    assert loaded.config.sample == api.load(prior, device="cpu").config.sample  # the prior's sample block
    assert len(loaded.sample(16, seed=0)) == 16
    objective = tmp_path / "qed.yaml"
    objective.write_text("name: qed\ncomponents:\n  - {type: qed, weight: 1.0}\n")
    code = cli.main(["optimize", "--prior", str(out), "--objective", str(objective), "--budget", "20", "--seed", "0",
                     "--out", str(tmp_path / "run"), "--threads", "1"])
    assert code == 0
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["calls"] == 20 and summary["prior"]["sha256"] == sha256_of(out)
    # --prior and a different train.init_from: one error
    assert cli.main(["finetune", "--prior", str(prior), "--data", str(data), "--config",
                     json.dumps({"train": {"init_from": "other.ckpt"}}), "--out", str(tmp_path / "z.ckpt")]) == 2


def test_a_pipeline_entry_that_fine_tunes_may_leave_its_model_block_out(tmp_path):
    """``models: {smiles-arm: {train: {init_from: ...}}}``: valid without ``model`` (the prior's is used; the
    defaults are not filled in); an entry with neither is still an error naming ``model``."""
    import yaml
    from snakemake.utils import validate
    from snakemake_interface_common.exceptions import WorkflowError

    from dgm_science import schema

    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema.pipeline_schema(), sort_keys=False))
    source = {"kind": "smiles", "path": "series.smi", "split": "scaffold"}
    config = {"molecules": {"series": {"source": source, "models": {"smiles-arm": {
        "train": {"init_from": "data/models/moses-smiles-arm/model.ckpt", "max_steps": 300}}}}}}
    validate(config, str(path))
    entry = config["molecules"]["series"]["models"]["smiles-arm"]
    assert "model" not in entry and entry["train"]["early_stopping_patience"] is None
    bare = {"molecules": {"series": {"source": source, "models": {"smiles-arm": {"train": {"max_steps": 3}}}}}}
    with pytest.raises(WorkflowError, match="'model' is a required property"):
        validate(bare, str(path))
