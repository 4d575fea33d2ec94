"""Property prediction on a user's assay: the predictors train on property columns of a user's file
(``dgm prepare --source`` -> ``properties_<split>.csv``), a 0/1 column as classification (Bernoulli head,
AUROC), empty values skipped and counted, the OOD flag calibrated on the user's own data, a bad column
one clear error; and the tutorial's Snakemake run on the tiny assay file shipped under
tests/data/user/molecules/ (every 12th of the 1,017 compounds of ChEMBL assay CHEMBL2321810 as RDKit's Contrib
ships them, joined by bench/user_assay.py)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgm_science import api
from dgm_science.applications.prediction import predict
from dgm_science.cli import main
from dgm_science.domains.molecules.data import read_smiles

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "head_hidden": 16, "dropout": 0.0, "max_length": 80}


def aromatic_nitrogen(smiles: str) -> int:
    """The label of the synthetic-but-chemical assay: 1 if the molecule has an aromatic nitrogen."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return int(any(a.GetSymbol() == "N" and a.GetIsAromatic() for a in mol.GetAtoms()))


@pytest.fixture(scope="module")
def assay(tmp_path_factory) -> Path:
    """The 300 MOSES-sample molecules as a user's CSV: ``hit`` (0/1: an aromatic nitrogen, a substructure),
    ``logp`` (RDKit's Crippen logP, empty on every 4th row), prepared by ``dgm prepare --source``."""
    from rdkit import Chem
    from rdkit.Chem import Crippen

    root = tmp_path_factory.mktemp("assay")
    rows = []
    for i, s in enumerate((DATA / "moses_sample.smi").read_text().split()):
        logp = "" if i % 4 == 0 else f"{Crippen.MolLogP(Chem.MolFromSmiles(s)):.3f}"
        rows.append((s, aromatic_nitrogen(s), logp))
    with open(root / "assay.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["smiles", "hit", "logp"])
        writer.writerows(rows)
    source = json.dumps({"kind": "smiles", "path": str(root / "assay.csv"), "split": "random", "valid": 0.15,
                         "test": 0.25, "properties": ["hit", "logp"]})
    assert main(["prepare", "--source", source, "--out", str(root / "data")]) == 0
    return root / "data"


@pytest.fixture(scope="module")
def hybrid(assay, tmp_path_factory) -> Path:
    """A hybrid-arm on both columns, 150 steps."""
    config = api.RunConfig.parse("hybrid-arm", {"model": {**SMALL, "targets": ["hit", "logp"]},
                                                "train": {"max_steps": 150, "batch_size": 32, "lr": 0.003,
                                                          "warmup_steps": 10, "val_every_steps": 50}})
    path = tmp_path_factory.mktemp("hybrid") / "model.ckpt"
    api.train("hybrid-arm", assay, config, seed=0, out=path)
    return path


def test_auroc_accuracy_and_log_loss_match_a_hand_example():
    # sklearn's roc_auc_score example: of the 4 (negative, positive) pairs 3 are ordered right
    p = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    row = predict.classification_metrics(p, y)
    assert row["auroc"] == pytest.approx(0.75)
    assert row["accuracy"] == pytest.approx(0.75)  # 0.35 is called 0
    assert row["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert row["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert (row["positives"], row["negatives"]) == (2, 2)
    tied = predict.classification_metrics(np.array([0.5, 0.5, np.nan]), np.array([0.0, 1.0, 1.0]))
    assert tied["auroc"] == 0.5 and tied["n"] == 2  # a tie counts half; no prediction: left out
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(float)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # ties on purpose
    assert predict.classification_metrics(scores, labels)["auroc"] == pytest.approx(
        sklearn.roc_auc_score(labels, scores))


def test_regression_metrics_match_their_definitions():
    truth, mean = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.5])
    row = predict.regression_metrics(truth, mean)
    assert row["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 0.25) / 4))
    assert row["r2"] == pytest.approx(1 - 1.5 / 5.0)


def test_a_0_1_column_trains_a_bernoulli_head_and_reports_auroc(hybrid, assay):
    loaded = api.load(hybrid)
    targets = loaded.state["targets"]
    assert targets["tasks"] == ["classification", "regression"]  # detected: hit holds only 0 and 1
    assert targets["units"] == ["", ""]  # a user's columns have no QM9 units
    assert (targets["mean"][0], targets["std"][0]) == (0.0, 1.0)  # a logit, not standardised
    predictor = predict.Predictor([loaded])
    metrics = predict.evaluate_predictor(predictor, assay, moses=None, max_molecules=1000)
    hit = metrics["test"]["hit"]
    assert hit["task"] == "classification" and hit["n"] == len(read_smiles(assay / "test.smi"))
    assert hit["auroc"] > 0.8, hit  # the label is a substructure the SMILES spells out
    result = predictor.predict(read_smiles(assay / "test.smi"))
    p = result.mean[:, 0]
    assert np.all((p >= 0) & (p <= 1))  # probabilities
    assert np.allclose(result.variance[:, 0], p * (1 - p))  # Bernoulli variance
    assert metrics["test"]["logp"]["task"] == "regression" and "r2" in metrics["test"]["logp"]


def test_dgm_predict_writes_a_probability_for_a_0_1_column_and_no_unit_for_the_users_columns(hybrid, tmp_path):
    smiles = tmp_path / "new.smi"
    smiles.write_text("c1ccncc1\nCCO\n")
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--checkpoint", str(hybrid), "--smiles", str(smiles), "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["smiles", "scored", "hit_probability", "hit_std", "logp", "logp_std", "log_likelihood",
                             "ood_score", "ood"]
    p = float(rows[0]["hit_probability"])
    assert 0 <= p <= 1 and float(rows[0]["hit_std"]) == pytest.approx(math.sqrt(p * (1 - p)), rel=1e-3)


def test_empty_target_values_are_skipped_and_counted(hybrid, assay):
    table = np.genfromtxt(assay / "properties_train.csv", delimiter=",", skip_header=1)
    targets = api.load(hybrid).state["targets"]
    empty = int(np.isnan(table[:, 1]).sum())
    assert empty > 0  # every 4th row of the file has no logp
    assert targets["missing"] == [0, empty] and targets["observed"] == [len(table), len(table) - empty]
    metrics = predict.evaluate_predictor(predict.Predictor([api.load(hybrid)]), assay, moses=None, max_molecules=1000)
    test_table = np.genfromtxt(assay / "properties_test.csv", delimiter=",", skip_header=1)
    logp = metrics["test"]["logp"]
    assert logp["missing"] == int(np.isnan(test_table[:, 1]).sum()) > 0
    assert logp["n"] == len(test_table) - logp["missing"]


def test_the_ood_reference_is_the_users_own_data(hybrid, assay):
    loaded = api.load(hybrid)
    stats = loaded.typicality
    valid = read_smiles(assay / "valid.smi")
    assert stats["n"] == len(valid)
    # the typical set's statistics are those of the user's validation molecules under the model ...
    sizes = loaded.domain.item_sizes(valid)
    nll = -loaded.log_likelihood(valid) / sizes
    assert stats["mean"] == pytest.approx(float(np.mean(nll)), rel=1e-4)
    assert stats["std"] == pytest.approx(float(np.std(nll, ddof=1)), rel=1e-4)
    # ... and not QM9's: the QM9 sample sits elsewhere, and its molecules are flagged far more often
    qm9 = [s for s in (DATA / "qm9_sample.smi").read_text().split()]
    qm9_nll = -loaded.log_likelihood(qm9) / loaded.domain.item_sizes(qm9)
    assert abs(np.nanmean(qm9_nll) - stats["mean"]) > 2 * stats["std"] / math.sqrt(len(valid))
    test = read_smiles(assay / "test.smi")
    metrics = predict.evaluate_predictor(predict.Predictor([loaded]), assay, moses=None, max_molecules=1000,
                                         shifted={"qm9": DATA / "qm9_sample.smi"})
    assert metrics["typicality"] == stats and metrics["ood_rate_test"] < metrics["shifted"]["qm9"]["ood_rate_out"]
    assert metrics["shifted"]["qm9"]["n_in"] == len(test)


def test_a_target_that_is_not_a_column_is_one_clear_error(assay, tmp_path, capsys):
    config = json.dumps({"model": {**SMALL, "targets": ["pIC50"]}, "train": {"max_steps": 1}})
    out = tmp_path / "model.ckpt"
    assert main(["train", "--model", "regressor-arm", "--data", str(assay), "--config", config,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "dgm: error:" in err and "'pIC50' is not a property column" in err and "hit, logp" in err
    assert not out.exists()


def test_a_classification_target_with_other_values_is_refused(assay, tmp_path, capsys):
    config = json.dumps({"model": {**SMALL, "targets": ["logp"], "tasks": ["classification"]},
                         "train": {"max_steps": 1}})
    assert main(["train", "--model", "regressor-arm", "--data", str(assay), "--config", config,
                 "--out", str(tmp_path / "model.ckpt")]) == 2
    assert "declared classification but has values outside [0, 1]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the tutorial

TUTORIAL_CONFIG = """\
seeds: [0]
molecules:
  my-assay:
    source: {kind: smiles, path: assay.csv, split: scaffold, properties: [Act, active]}
    models:
      smiles-arm:
        model: {d_model: 32, n_layers: 1, n_heads: 2, dropout: 0.0, max_length: 100}
        train: {batch_size: 16, max_steps: 10, val_every_steps: 5, val_batches: 1, checkpoint_every_steps: 5}
        sample: {n: 20, batch_size: 20}
prediction:
  dataset: my-assay
  targets: [Act, active]
  ensemble_seeds: [0, 1]
  max_molecules: 100
  models:
    hybrid-arm:
      model: {d_model: 32, n_layers: 1, n_heads: 2, dropout: 0.0, max_length: 100, head_hidden: 16}
      train: {batch_size: 16, max_steps: 10, val_every_steps: 5, val_batches: 1, checkpoint_every_steps: 5}
    regressor-arm:
      model: {d_model: 32, n_layers: 1, n_heads: 2, dropout: 0.0, max_length: 100, head_hidden: 16}
      train: {batch_size: 16, max_steps: 10, val_every_steps: 5, val_batches: 1, checkpoint_every_steps: 5}
"""
"""The tutorial's config (the notes' "predict your assay" page), run as written on the shipped file."""


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(workdir), "--configfile", str(workdir / "user.yaml"), "--cores", "2", *args],
                          env=env, capture_output=True, text=True, timeout=1800)


def test_a_prediction_block_naming_a_column_the_file_does_not_have_is_one_clear_error(tmp_path):
    shutil.copy(DATA / "user" / "molecules" / "assay.csv", tmp_path / "assay.csv")
    (tmp_path / "user.yaml").write_text(TUTORIAL_CONFIG.replace("targets: [Act, active]", "targets: [pIC50]"))
    result = _snakemake(tmp_path, "--dry-run")
    assert result.returncode != 0
    assert "prediction.targets ['pIC50']: not among the property columns of molecules.my-assay.source.properties" \
        in result.stdout + result.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_the_tutorial_predicts_the_users_assay_end_to_end(tmp_path):
    shutil.copy(DATA / "user" / "molecules" / "assay.csv", tmp_path / "assay.csv")
    (tmp_path / "user.yaml").write_text(TUTORIAL_CONFIG)
    result = _snakemake(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    prepared = json.loads((tmp_path / "resources/molecules/my-assay/data/prepare.json").read_text())
    assert prepared["properties"] == ["Act", "active"] and prepared["split"] == "scaffold"
    for predictor in ("hybrid-arm", "regressor-arm", "ensemble"):
        metrics = json.loads((tmp_path / f"results/prediction/{predictor}/metrics.json").read_text())
        assert metrics["targets"]["tasks"] == ["regression", "classification"]
        assert {"mae", "rmse", "r2"} <= set(metrics["test"]["Act"]) and "auroc" in metrics["test"]["active"]
        assert metrics["test"]["n"] == prepared["test"]
    hybrid = json.loads((tmp_path / "results/prediction/hybrid-arm/metrics.json").read_text())
    assert hybrid["typicality"]["n"] == prepared["valid"]  # the user's own validation molecules
    report = (tmp_path / "results/report.html").read_text()
    assert "active AUROC" in report and "Act MAE" in report
