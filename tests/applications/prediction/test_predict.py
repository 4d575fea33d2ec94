"""Property prediction: QM9 properties through fetch/prepare, the hybrid and regressor models, their
metrics and ``dgm predict`` on real (tiny) checkpoints."""

from __future__ import annotations

import csv
import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dgm_science import api
from dgm_science.cli import main
from dgm_science.applications.prediction import predict
from dgm_science.domains.molecules import targets
from dgm_science.domains.molecules.data import QM9_PROPERTIES, prepare_qm9, read_property_table, read_smiles
from dgm_science.errors import DataError

DATA = Path(__file__).parents[2] / "data"
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "head_hidden": 16}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The 300 committed QM9 rows (index, SMILES, properties) prepared as ``dgm prepare qm9`` does."""
    root = tmp_path_factory.mktemp("qm9")
    (root / "raw").mkdir()
    with gzip.open(root / "raw" / "qm9.csv.gz", "wt") as fh:
        fh.write((DATA / "qm9_sample.csv").read_text())
    prepare_qm9(root / "raw", root / "prep", train_size=200, val_size=70, seed=0, n_jobs=1)
    return root / "prep"


@pytest.fixture(scope="module")
def checkpoints(prepared, tmp_path_factory) -> dict[str, Path]:
    """A hybrid-arm and two regressor-arm seeds, trained for 40 steps without fluorine."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, seed in (("hybrid-arm", 0), ("regressor-arm", 0), ("regressor-arm", 1)):
        config = api.RunConfig.parse(name, {"model": {**SMALL, "exclude_elements": ["F"]},
                                            "train": {"max_steps": 40, "batch_size": 32, "val_every_steps": 20}})
        path = root / f"{name}-{seed}" / "model.ckpt"
        api.train(name, prepared, config, seed=seed, out=path)
        out[f"{name}-{seed}"] = path
    return out


def test_prepare_writes_each_splits_properties_row_by_row_beside_its_smiles(prepared):
    wheel_rows = {}
    with open(DATA / "qm9_sample.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            wheel_rows[row["index"]] = row
    from dgm_science.domains.molecules.properties import canonical_smiles

    by_smiles = {canonical_smiles(r["SMILES"]): r for r in wheel_rows.values()}
    for split, size in (("train", 200), ("valid", 70), ("test", 30)):
        smiles = read_smiles(prepared / f"{split}.smi")
        names, values = read_property_table(prepared / f"properties_{split}.csv", list(QM9_PROPERTIES))
        assert len(smiles) == len(values) == size
        for s, row in zip(smiles, values):
            assert row[names.index("gap")] == float(by_smiles[s]["gap"])
            assert row[names.index("mu")] == float(by_smiles[s]["mu"])


def test_property_split_leaves_out_the_excluded_elements(prepared):
    config = api.RunConfig.parse("hybrid-arm", {"model": {"exclude_elements": ["F"], "targets": ["gap"]}}).model
    smiles, y = targets.property_split(prepared, "train", config)
    everything = read_smiles(prepared / "train.smi")
    with_fluorine = [s for s in everything if "F" in s]
    assert with_fluorine, "the fixture's training split holds fluorine"
    assert len(smiles) == len(everything) - len(with_fluorine) and not any("F" in s for s in smiles)
    assert y.shape == (len(smiles), 1)


def test_the_typical_set_of_a_model_trained_without_an_element_leaves_it_out(tmp_path):
    from dgm_science.domains.molecules.domain import MoleculeDomain

    valid = ["CC1=CC=C(F)C=C1C", "CCO", "FC(F)F", "c1ccncc1", "OCC(F)C#N", "CC(=O)N"]
    (tmp_path / "valid.smi").write_text("\n".join(valid) + "\n")
    config = api.RunConfig.parse("hybrid-arm", {"model": {"exclude_elements": ["F"]}}).model
    assert MoleculeDomain.typical_set(tmp_path) == valid
    assert MoleculeDomain.typical_set(tmp_path, config) == ["CCO", "c1ccncc1", "CC(=O)N"]
    subset = MoleculeDomain.typical_set(tmp_path, config, max_molecules=2)  # drawn after the elements are left out
    assert len(subset) == 2 and set(subset) < {"CCO", "c1ccncc1", "CC(=O)N"}


def test_each_shifted_set_changes_one_thing_and_states_its_composition(checkpoints, prepared, tmp_path):
    """The MOSES set holds only the elements the models saw (no fluorine, which they were trained
    without, though the MOSES file has C/N/O/F molecules with it), so it shifts the source and size
    alone; the fluorine molecules shift the elements alone; randomized SMILES neither."""
    from dgm_science.domains.molecules.candidates import molecule_elements

    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    train = read_smiles(prepared / "train.smi")
    rows = (prepared / "properties_train.csv").read_text().splitlines()[1:]
    fluorine = [i for i, s in enumerate(train) if "F" in molecule_elements(s)]
    with open(data / "test.smi", "a") as fh:  # the fixture's 30 test molecules hold no fluorine
        fh.writelines(train[i] + "\n" for i in fluorine)
    with open(data / "properties_test.csv", "a") as fh:
        fh.writelines(rows[i] + "\n" for i in fluorine)
    moses = tmp_path / "moses.smi"
    moses_smiles = (DATA / "moses_sample.smi").read_text().split()
    assert any("F" in e and e <= predict.QM9_ELEMENTS for e in map(molecule_elements, moses_smiles))
    moses.write_text("\n".join(moses_smiles) + "\n")
    predictor = predict.Predictor([api.load(checkpoints["hybrid-arm-0"], device="cpu")])
    metrics = predict.evaluate_predictor(predictor, data, moses=moses, max_molecules=50, batch_size=16)
    test = metrics["test_composition"]
    assert test["element_set"] == ["C", "N", "O"] and test["heavy_atoms"]["max"] <= 9
    shifted = metrics["shifted"]
    assert {name: row["shift"] for name, row in shifted.items()} == {
        "randomized": "representation", "excluded_elements": "elements", "moses": "source"}
    assert shifted["moses"]["composition"]["element_set"] == ["C", "N", "O"]
    assert shifted["moses"]["composition"]["n"] == shifted["moses"]["n_out"] == 50
    assert shifted["moses"]["differs_in"] == ["size"] and shifted["randomized"]["differs_in"] == []
    assert shifted["randomized"]["composition"]["elements"] == test["elements"]
    assert shifted["excluded_elements"]["composition"]["n"] == len(fluorine) > 0
    assert "F" in shifted["excluded_elements"]["composition"]["element_set"]
    assert shifted["excluded_elements"]["differs_in"] == ["elements"]


def test_a_property_table_with_a_missing_column_or_a_bad_value_is_one_clear_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("gap,mu\n0.2,1.0\n")
    with pytest.raises(DataError, match="no column 'homo'"):
        read_property_table(path, ["gap", "homo"])
    assert read_property_table(path, ["homo"], required=False) is None
    path.write_text("gap,mu\n0.2,abc\n")
    with pytest.raises(DataError, match="line 2"):
        read_property_table(path, ["gap", "mu"])
    path.write_text("gap,mu\n0.2,\n")
    assert math.isnan(read_property_table(path, ["mu"])[1][0, 0])


def test_prepared_data_without_properties_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "train.smi").write_text("CCO\n")
    config = api.RunConfig.parse("regressor-arm", {}).model
    with pytest.raises(DataError, match="fetch and prepare QM9 again"):
        targets.property_split(tmp_path, "train", config)


def test_selective_mae_rejects_the_least_confident_first():
    error = np.array([4.0, 3.0, 2.0, 1.0])
    confidence = np.array([0.0, 1.0, 2.0, 3.0])
    assert predict.selective_mae(error, confidence, (1.0, 0.5, 0.25)) == {"1.00": 2.5, "0.50": 1.5, "0.25": 1.0}


def test_interval_coverage_and_gaussian_nll_match_their_definitions():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200_000)
    assert abs(predict.interval_coverage(y, np.zeros_like(y), np.ones_like(y)) - 0.9) < 0.005
    assert predict.gaussian_nll_np(np.array([1.0]), np.array([0.0]), np.array([4.0]))[0] == pytest.approx(
        0.5 * math.log(2 * math.pi * 4) + 1 / 8)


def test_the_ensemble_combines_its_members_as_one_gaussian(checkpoints, prepared):
    members = [api.load(checkpoints["regressor-arm-0"]), api.load(checkpoints["regressor-arm-1"])]
    smiles = read_smiles(prepared / "test.smi")[:10]
    ensemble = predict.Predictor(members).predict(smiles)
    single = [predict.Predictor([m]).predict(smiles) for m in members]
    means = np.stack([s.mean for s in single])
    assert np.allclose(ensemble.mean, means.mean(0))
    assert np.allclose(ensemble.variance, np.stack([s.variance for s in single]).mean(0) + means.var(0))
    assert ensemble.members == 2 and (ensemble.epistemic > 0).all()
    assert np.isnan(ensemble.log_likelihood).all()


def test_the_hybrid_scores_its_inputs_and_the_regressor_does_not(checkpoints, prepared):
    hybrid = api.load(checkpoints["hybrid-arm-0"])
    regressor = api.load(checkpoints["regressor-arm-0"])
    assert hybrid.typicality is not None and regressor.typicality is None
    assert sum(p.numel() for p in hybrid.model.parameters()) == sum(p.numel() for p in regressor.model.parameters())
    smiles = read_smiles(prepared / "test.smi")[:5]
    result = predict.Predictor([hybrid]).predict(smiles)
    assert np.allclose(result.log_likelihood, hybrid.log_likelihood(smiles))
    assert np.isfinite(result.ood_score).all()


def test_ood_detection_counts_an_unreadable_molecule_as_most_atypical(checkpoints, prepared):
    predictor = predict.Predictor([api.load(checkpoints["hybrid-arm-0"])])
    smiles = read_smiles(prepared / "test.smi")[:20]
    inside = predictor.predict(smiles)
    shifted = predictor.predict(["[Si](C)(C)C"] * 3)  # a token the tokenizer never saw
    result = predict.ood_detection(inside, shifted, predictor.targets)
    assert result["unscorable_out"] == 3
    assert result["auroc_variance"] == result["auroc_negative_log_likelihood"] == result["auroc_typicality"] == 1.0


def test_dgm_predict_writes_one_row_per_input_in_the_reporting_units(checkpoints, prepared, tmp_path):
    smi = tmp_path / "in.smi"
    smiles = read_smiles(prepared / "test.smi")[:6] + ["C1CC"]  # an unclosed ring: RDKit cannot parse it
    smi.write_text("\n".join(smiles) + "\n")
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--checkpoint", str(checkpoints["hybrid-arm-0"]), "--smiles", str(smi),
                 "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["smiles"] for r in rows] == smiles
    assert [r["scored"] for r in rows] == ["1"] * 6 + ["0"]
    assert rows[-1]["gap_meV"] == rows[-1]["log_likelihood"] == rows[-1]["ood"] == ""
    hybrid = api.load(checkpoints["hybrid-arm-0"])
    expected = predict.Predictor([hybrid]).predict(smiles[:1])
    assert float(rows[0]["gap_meV"]) == pytest.approx(expected.mean[0, 0] * predict.HARTREE_MEV, rel=1e-5)
    assert float(rows[0]["mu_std_D"]) == pytest.approx(math.sqrt(expected.variance[0, 1]), rel=1e-5)
    assert rows[0]["ood"] in ("0", "1")
    ensemble = tmp_path / "ensemble.csv"
    assert main(["predict", "--checkpoint", str(checkpoints["regressor-arm-0"]), str(checkpoints["regressor-arm-1"]),
                 "--smiles", str(smi), "--out", str(ensemble)]) == 0
    header = ensemble.read_text().splitlines()[0].split(",")
    assert "gap_epistemic_std_meV" in header and "mu_epistemic_std_D" in header


@pytest.mark.parametrize("case", ["threshold-without-density", "not-a-predictor", "different-targets", "same-file"])
def test_dgm_predict_refuses_bad_requests_before_writing(case, checkpoints, prepared, tmp_path, capsys):
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\n")
    out = tmp_path / "out.csv"
    args = ["predict", "--smiles", str(smi), "--out", str(out), "--checkpoint"]
    if case == "threshold-without-density":
        args += [str(checkpoints["regressor-arm-0"]), "--ood-threshold", "2"]
        message = "needs a hybrid model"
    elif case == "not-a-predictor":
        prior = Path(__file__).parents[3] / "data" / "models" / "moses-smiles-arm" / "model.ckpt"
        args += [str(prior)]
        message = "predicts no properties"
    elif case == "different-targets":
        config = api.RunConfig.parse("regressor-arm", {"model": {**SMALL, "targets": ["homo"]},
                                                       "train": {"max_steps": 2, "batch_size": 32}})
        other = tmp_path / "homo" / "model.ckpt"
        api.train("regressor-arm", prepared, config, seed=0, out=other)
        args += [str(checkpoints["regressor-arm-0"]), str(other)]
        message = "different targets"
    else:
        args += [str(checkpoints["hybrid-arm-0"])]
        args[4] = str(smi)
        message = "same file"
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or case == "same-file"


def test_a_molecule_is_read_in_canonical_form_unless_asked_to_read_it_as_written(checkpoints, prepared):
    from dgm_science.domains.molecules.candidates import randomized_smiles

    predictor = predict.Predictor([api.load(checkpoints["hybrid-arm-0"])])
    canonical = read_smiles(prepared / "test.smi")[:8]
    written = randomized_smiles(canonical, seed=3)
    assert written != canonical
    same = predictor.predict(written)
    reference = predictor.predict(canonical)
    assert np.allclose(same.mean, reference.mean) and np.allclose(same.log_likelihood, reference.log_likelihood)
    raw = predictor.predict(written, canonicalize=False)
    changed = [i for i in range(8) if written[i] != canonical[i]]
    assert not np.allclose(raw.log_likelihood[changed], reference.log_likelihood[changed])
