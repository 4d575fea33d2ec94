"""CLI: typed options, and one clear error line with a non-zero exit for bad input."""

from __future__ import annotations

import pytest
import torch

from dgm_science import api, checkpoint, cli
from dgm_science.config import SampleConfig, TrainConfig, from_dict
from dgm_science.registry import get


def run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


TINY = {
    "smiles-arm": {"d_model": 32, "n_layers": 1, "n_heads": 4, "max_length": 80},
    "graph-vae": {"d_model": 32, "n_layers": 1, "n_heads": 4, "max_length": 80, "latent_dim": 4,
                  "encoder_hidden": 16, "encoder_layers": 1},
}


def make_checkpoint(path, name, state):
    spec = get("model", name)
    cfg = from_dict(spec.Config, TINY[name], "m")
    torch.manual_seed(0)
    model = spec.build(cfg, state)
    checkpoint.save(path, domain="molecules", model_name=name,
                    config=api.RunConfig(cfg, TrainConfig(), SampleConfig()).to_dict(),
                    state_dict=model.state_dict(), domain_state=state)
    return path


@pytest.fixture()
def tiny_checkpoint(tmp_path, molecule_state):
    return make_checkpoint(tmp_path / "model.ckpt", "smiles-arm", molecule_state)


@pytest.mark.parametrize("name", sorted(TINY))
def test_sample_writes_properties_and_likelihood(name, tmp_path, capsys, molecule_state):
    tiny_checkpoint = make_checkpoint(tmp_path / f"{name}.ckpt", name, molecule_state)
    out = tmp_path / "cands.csv"
    code, err = run(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "20", "--out", str(out),
                     "--seed", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "smiles,valid,qed,sa,logp,mw,log_likelihood"
    assert len(lines) == 21
    # every row that has a SMILES the model emitted carries its (negative) log-likelihood
    rows = [line.split(",") for line in lines[1:]]
    if name == "smiles-arm":  # exact likelihood of every emitted string
        assert all(float(r[6]) < 0 for r in rows if r[0])
    else:  # the ELBO needs a molecular graph: valid molecules only
        assert all((r[6] != "") == (r[1] == "1") for r in rows)
    again = tmp_path / "again.csv"
    run(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "20", "--out", str(again), "--seed", "1",
         "--device", "cpu"], capsys)
    assert again.read_text() == out.read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--checkpoint", "{tmp}/missing.ckpt", "-n", "5", "--out", "{tmp}/x.csv"], "missing.ckpt"),
        (["sample", "--checkpoint", "{tmp}/corrupt.ckpt", "-n", "5", "--out", "{tmp}/x.csv"], "corrupt.ckpt"),
        (["train", "--model", "smiles-arm", "--data", "{tmp}", "--out", "{tmp}/m.ckpt", "--config",
          '{{"train": {{"bach_size": 4}}}}'], "bach_size"),
        (["train", "--model", "no-such-model", "--data", "{tmp}", "--out", "{tmp}/m.ckpt"], "unknown model"),
        (["evaluate", "--samples", "{tmp}/empty.csv", "--reference", "{tmp}", "--out", "{tmp}/m.json"],
         "empty.csv"),
        (["prepare", "moses", "--raw", "{tmp}/no-such-dir", "--out", "{tmp}/s"], "train.csv.gz"),
        (["featurize", "--smiles", "{tmp}/empty.smi", "--out", "{tmp}/g.pt"], "empty.smi"),
    ],
)
def test_bad_input_gives_one_clear_error(argv, message, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x00garbage")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "empty.smi").write_text("\n\n")
    argv = [a.format(ckpt=tiny_checkpoint, tmp=tmp_path) for a in argv]
    code, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dgm: error:")
    assert message in err


def test_zero_samples_is_a_usage_error(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "0", "--out", str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2
    assert "-n: must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_sample_output_is_atomic_on_interrupt(tiny_checkpoint, tmp_path, monkeypatch):
    """An interrupted write leaves neither a half file nor a temp file behind."""
    from dgm_science.domains.molecules import domain

    import math

    isnan, rows = math.isnan, []

    def interrupt_on_third_row(x):  # Ctrl-C while write_samples is half-way through the file
        rows.append(x)
        if len(rows) == 3:
            raise KeyboardInterrupt
        return isnan(x)

    monkeypatch.setattr(domain.math, "isnan", interrupt_on_third_row)
    out = tmp_path / "cands.csv"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "5", "--out", str(out), "--device", "cpu"])
    assert not out.exists()
    assert list(tmp_path.glob(".cands.csv*")) == []
