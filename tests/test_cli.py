"""CLI: typed options, and one clear error line with a non-zero exit for bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from rdkit import Chem

from dgm_science import api, checkpoint, cli
from dgm_science.config import SampleConfig, TrainConfig, from_dict
from dgm_science.domains.molecules.candidates import PropertyRange, has_structural_alert
from dgm_science.domains.molecules.domain import MoleculeDomain, MoleculeSampleConfig
from dgm_science.domains.molecules.properties import canonical_smiles, mol_properties
from dgm_science.registry import get


def run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


TINY = {
    "smiles-arm": {"d_model": 32, "n_layers": 1, "n_heads": 4, "max_length": 80},
    "graph-vae": {"d_model": 32, "n_layers": 1, "n_heads": 4, "max_length": 80, "latent_dim": 4,
                  "encoder_hidden": 16, "encoder_layers": 1},
}


def make_checkpoint(path, name, state, sample=SampleConfig()):
    spec = get("model", name)
    cfg = from_dict(spec.Config, TINY[name], "m")
    torch.manual_seed(0)
    model = spec.build(cfg, state)
    checkpoint.save(path, domain="molecules", model_name=name,
                    config=api.RunConfig(cfg, TrainConfig(), sample).to_dict(),
                    state_dict=model.state_dict(), domain_state=state)
    return path


@pytest.fixture()
def tiny_checkpoint(tmp_path, molecule_state):
    return make_checkpoint(tmp_path / "model.ckpt", "smiles-arm", molecule_state)


@pytest.mark.parametrize("name", sorted(TINY))
def test_sample_writes_properties_and_likelihood(name, tmp_path, capsys, caplog, molecule_state):
    tiny_checkpoint = make_checkpoint(tmp_path / f"{name}.ckpt", name, molecule_state)
    out = tmp_path / "cands.csv"
    code, err = run(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "20", "--out", str(out),
                     "--seed", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "smiles,valid,qed,sa,logp,mw,log_likelihood,ood_score"
    assert len(lines) == 21
    # without filters: every sample in sampling order, invalid ones included (the evaluation set)
    expected = api.load(tiny_checkpoint, device="cpu").sample(20, seed=1)
    assert [line.split(",")[0] for line in lines[1:]] == [s or "" for s in expected]
    assert all(line.split(",")[7] == "" for line in lines[1:])  # no typicality statistics in this checkpoint
    assert caplog.text.count("no typicality statistics") == 1
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
        (["evaluate", "--domain", "molecules", "--samples", "{tmp}/empty.csv", "--reference", "{tmp}", "--out", "{tmp}/m.json"],
         "empty.csv"),
        (["prepare", "moses", "--raw", "{tmp}/no-such-dir", "--out", "{tmp}/s"], "train.csv.gz"),
        (["featurize", "--smiles", "{tmp}/empty.smi", "--out", "{tmp}/g.pt"], "empty.smi"),
        (["sample", "--checkpoint", "{ckpt}", "-n", "5", "--out", "{tmp}/x.csv", "--novel"], "--train-smiles PATH"),
        (["sample", "--checkpoint", "{ckpt}", "-n", "5", "--out", "{tmp}/x.csv", "--novel", "--train-smiles",
          "{tmp}/no-such.smi"], "no-such.smi"),
        (["sample", "--checkpoint", "{ckpt}", "-n", "5", "--out", "{tmp}/x.csv", "--sort", "ood_score"],
         "no typicality statistics"),
        (["sample", "--checkpoint", "{ckpt}", "-n", "5", "--out", "{tmp}/x.csv", "--max-draws", "10"],
         "--max-draws"),
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


def test_sample_output_is_atomic_on_interrupt(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """An interrupted write leaves neither a half file nor a temp file behind; the command ends with
    one line and exit code 130 (as a shell reports SIGINT)."""
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
    code = cli.main(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "5", "--out", str(out), "--device", "cpu"])
    assert code == 130 and capsys.readouterr().err.strip().splitlines()[-1] == "dgm: interrupted"
    assert len(rows) == 3
    assert not out.exists()
    assert list(tmp_path.glob(".cands.csv*")) == []


# ---- candidate generation: filters, OOD score, SDF / PNG ---------------------------------------


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory, moses_smiles, train_tiny_arm):
    """A tiny SMILES transformer trained on 240 MOSES molecules (~5% valid samples, real ones), with
    its training data folder (train_all.smi for novelty) and typicality statistics recorded."""
    path, data, _ = train_tiny_arm(tmp_path_factory.mktemp("trained"), moses_smiles[:240], moses_smiles[240:],
                                   model={"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0,
                                          "max_length": 100}, steps=500, lr=5e-3)
    return path, data


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def sample_argv(checkpoint, out, *extra):
    return ["sample", "--checkpoint", str(checkpoint), "-n", "5", "--out", str(out), "--seed", "2", "--device",
            "cpu", "--threads", "1", "--batch-size", "250", *map(str, extra)]


def test_candidates_pass_every_filter_with_sdf_and_png(trained_checkpoint, tmp_path, capsys, one_thread):
    checkpoint_path, data = trained_checkpoint
    out, sdf, png = tmp_path / "cands.csv", tmp_path / "cands.sdf", tmp_path / "top.png"
    argv = sample_argv(checkpoint_path, out, "--valid", "--unique", "--novel", "--qed", "0.3:", "--mw", "150:500",
                       "--logp", "-1:5", "--sa", ":6", "--remove-alerts", "--max-draws", "5000", "--sort", "qed",
                       "--sdf", sdf, "--png", png, "--png-top", "3")
    code, err = run(argv, capsys)
    assert code == 0, err
    rows = read_rows(out)
    assert len(rows) == 5 and list(rows[0]) == ["smiles", "valid", "qed", "sa", "logp", "mw", "log_likelihood",
                                                "ood_score"]
    canonical = [canonical_smiles(r["smiles"]) for r in rows]
    assert None not in canonical and len(set(canonical)) == 5, "valid and unique"
    assert not set(canonical) & set((data / "train_all.smi").read_text().split()), "novel"
    for row in rows:
        mol = Chem.MolFromSmiles(row["smiles"])
        props = mol_properties(mol)
        assert props["qed"] >= 0.3 and 150 <= props["mw"] <= 500 and -1 <= props["logp"] <= 5 and props["sa"] <= 6
        assert not has_structural_alert(mol)
        assert row["valid"] == "1" and float(row["qed"]) == pytest.approx(props["qed"], abs=1e-4)
        assert float(row["log_likelihood"]) < 0 and float(row["ood_score"]) >= 0
    qed = [float(r["qed"]) for r in rows]
    assert qed == sorted(qed, reverse=True)
    mols = list(Chem.SDMolSupplier(str(sdf)))
    assert [Chem.MolToSmiles(m) for m in mols] == canonical
    assert all(m.GetNumConformers() == 1 and np.ptp(m.GetConformer().GetPositions()[:, 0]) > 0 for m in mols)
    assert [m.GetProp("ood_score") for m in mols] == [r["ood_score"] for r in rows]
    assert [m.GetProp("log_likelihood") for m in mols] == [r["log_likelihood"] for r in rows]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again.csv"
    assert run(sample_argv(checkpoint_path, again, *argv[argv.index("--valid"):argv.index("--sdf")]), capsys)[0] == 0
    assert again.read_text() == out.read_text(), "same seed, same candidates"


def test_novel_honors_the_given_training_smiles(trained_checkpoint, tmp_path, capsys, one_thread):
    checkpoint_path, _ = trained_checkpoint
    first = tmp_path / "first.csv"
    assert run(sample_argv(checkpoint_path, first, "--unique", "--max-draws", "5000"), capsys)[0] == 0
    found = [r["smiles"] for r in read_rows(first)]
    known = tmp_path / "known.smi"
    known.write_text("\n".join(canonical_smiles(s) for s in found) + "\n")
    second = tmp_path / "second.csv"
    code, err = run(sample_argv(checkpoint_path, second, "--unique", "--novel", "--train-smiles", known,
                                "--max-draws", "5000"), capsys)
    assert code == 0, err
    novel = [canonical_smiles(r["smiles"]) for r in read_rows(second)]
    assert len(novel) == 5 and not set(novel) & {canonical_smiles(s) for s in found}


def test_draw_limit_writes_what_was_found_and_warns(trained_checkpoint, tmp_path, capsys, caplog, one_thread):
    out = tmp_path / "few.csv"
    argv = sample_argv(trained_checkpoint[0], out, "--valid", "--max-draws", "100")
    argv[argv.index("-n") + 1] = "50"
    code, err = run(argv, capsys)
    assert code == 0, err
    rows = read_rows(out)
    assert len(rows) < 50 and all(r["valid"] == "1" for r in rows)
    assert "draw limit" in caplog.text and f"{len(rows)} of 50 candidates found in 100 draws" in caplog.text


def test_plain_samples_sorted_by_likelihood(trained_checkpoint, tmp_path, capsys, one_thread):
    out = tmp_path / "plain.csv"
    argv = sample_argv(trained_checkpoint[0], out, "--sort", "log_likelihood")
    argv[argv.index("-n") + 1] = "40"
    assert run(argv, capsys)[0] == 0
    rows = read_rows(out)
    assert len(rows) == 40 and any(r["valid"] == "0" for r in rows), "invalid samples are kept without filters"
    ll = [float(r["log_likelihood"]) for r in rows]
    assert ll == sorted(ll, reverse=True)
    # the OOD score is per heavy atom: defined for every valid molecule, not for invalid strings
    assert all((r["ood_score"] != "") == (r["valid"] == "1") for r in rows)


@pytest.mark.parametrize("option, value", [("--qed", "abc"), ("--mw", "5:1"), ("--sa", "1:2:3"), ("--logp", ":")])
def test_bad_property_range_is_a_usage_error(option, value, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "x.csv"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "5", "--out", str(out), option, value])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"dgm sample: error: argument {option}: range {value!r}")
    assert not out.exists()


def test_unknown_sample_flag_is_a_usage_error(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--checkpoint", str(tiny_checkpoint), "-n", "5", "--out", str(tmp_path / "x.csv"),
                  "--toxicity", "0:1"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --toxicity 0:1" in capsys.readouterr().err


def test_negative_ranges_are_values_not_options():
    args = cli.build_parser().parse_args(["sample", "--checkpoint", "m.ckpt", "-n", "1", "--out", "o.csv",
                                          "--logp", "-1:5", "--sa", "-2.5:-.5", "--mw", ":500"])
    assert args.logp == PropertyRange(-1, 5) and args.sa == PropertyRange(-2.5, -0.5)
    assert args.mw == PropertyRange(None, 500) and args.qed is None


def test_sort_choices_are_the_library_sort_keys():
    from dgm_science.domains.molecules.candidates import SORT_KEYS

    sample = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["sample"]._actions
                  if a.dest == "sort")
    assert set(sample.choices) == set(SORT_KEYS)


def test_valency_correction_and_extra_columns_reach_the_csv(tmp_path, capsys, molecule_state, monkeypatch):
    """The flag goes to the decoder (default: the checkpoint's sample.valency_correction) and the
    domain's extra per-sample columns follow the standard ones in the CSV."""
    decode_table, options_seen = MoleculeDomain.decode_table, []

    def spy(raw, state, **options):
        options_seen.append(options)
        smiles, extra = decode_table(raw, state, **options)
        return smiles, {**extra, "valid_without_correction": [int(s is not None) for s in smiles]}

    monkeypatch.setattr(MoleculeDomain, "decode_table", staticmethod(spy))
    corrected = make_checkpoint(tmp_path / "corrected.ckpt", "smiles-arm", molecule_state,
                                MoleculeSampleConfig(valency_correction=True))
    plain = make_checkpoint(tmp_path / "plain.ckpt", "smiles-arm", molecule_state)
    for path, flags, expected in [(corrected, [], {"valency_correction": True}),
                                  (corrected, ["--no-valency-correction"], {"valency_correction": False}),
                                  (plain, ["--valency-correction"], {"valency_correction": True}),
                                  (plain, [], {})]:
        options_seen.clear()
        out = tmp_path / "s.csv"
        code, err = run(["sample", "--checkpoint", str(path), "-n", "6", "--out", str(out), "--device", "cpu",
                         *flags], capsys)
        assert code == 0, err
        assert options_seen and all(o == expected for o in options_seen), (flags, options_seen)
        rows = read_rows(out)
        assert list(rows[0])[-2:] == ["ood_score", "valid_without_correction"]
        assert all(r["valid_without_correction"] == ("1" if r["smiles"] else "0") for r in rows)


def test_md_samples_need_a_dcd_and_come_with_topology_and_table(tmp_path, capsys, one_thread):
    from tests.domains.structures import fixtures_md

    state, batch = fixtures_md.tiny_state_and_batch()
    spec = get("model", "ala2-flow")
    cfg = from_dict(spec.Config, fixtures_md.TINY_CONFIG, "m")
    model = spec.build(cfg, state)
    model.loss(batch)  # ActNorm's data-dependent initialisation
    path = tmp_path / "flow.ckpt"
    checkpoint.save(path, domain="peptide-md", model_name="ala2-flow",
                    config=api.RunConfig(cfg, TrainConfig(), SampleConfig()).to_dict(),
                    state_dict=model.state_dict(), domain_state=state)
    code, err = run(["sample", "--checkpoint", str(path), "-n", "5", "--out", str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "peptide-md model writes .dcd samples" in err
    code, err = run(["sample", "--checkpoint", str(path), "-n", "5", "--valid", "--out", str(tmp_path / "s.dcd")],
                    capsys)
    assert code == 2 and "--valid: molecules models only" in err
    code, _ = run(["sample", "--checkpoint", str(path), "-n", "5", "--out", str(tmp_path / "s.dcd")], capsys)
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 5 and all(float(r["log_likelihood"]) == float(r["log_likelihood"]) for r in rows)
    assert (tmp_path / "s.pdb").is_file()
