"""The design loop a chemist runs (``dgm optimize`` with their objective file): a property predictor
trained by ``dgm train`` as a component (its prediction, standard deviation and OOD flag), scaffolds and
every component's value in the outputs, and a run that resumes after a kill without scoring a molecule
twice or going past its budget."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dgm_science import api
from dgm_science.applications.design import objectives, optimize
from dgm_science.applications.design.objectives import Objective, ObjectiveError, Scorer, ScoreStore
from dgm_science.applications.prediction import predict

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
QED_OBJECTIVE = {"name": "qed", "aggregate": "arithmetic", "components": [{"type": "qed"}]}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory) -> Path:
    """A tiny hybrid-arm (p(Act, active | x) p(x)), 40 steps on a real assay as a user has it: ChEMBL
    CHEMBL2321810 (the pActivity of 1,017 sulfonamides, in RDKit's wheel) joined into one CSV by
    bench/user_assay.py and prepared by ``dgm prepare --source``."""
    from dgm_science.cli import main

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from user_assay import contrib_folder, join
    finally:
        sys.path.remove(str(ROOT / "bench"))
    root = tmp_path_factory.mktemp("assay")
    with open(root / "assay.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["smiles", "chembl_id", "Act", "active"])
        writer.writerows(join(contrib_folder(), 7.0))
    source = json.dumps({"kind": "smiles", "path": str(root / "assay.csv"), "split": "scaffold",
                         "properties": ["Act", "active"], "seed": 0})
    assert main(["prepare", "--source", source, "--out", str(root / "data"), "--jobs", "1"]) == 0
    config = api.RunConfig.parse("hybrid-arm", {
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "head_hidden": 16, "targets": ["Act", "active"]},
        "train": {"max_steps": 40, "batch_size": 32, "val_every_steps": 20}})
    path = root / "models" / "hybrid.ckpt"
    api.train("hybrid-arm", root / "data", config, seed=0, out=path)
    return path


@pytest.fixture(scope="module")
def prior(tmp_path_factory, train_tiny_arm) -> Path:
    qm9 = (DATA / "qm9_sample.smi").read_text().split()
    path, _, _ = train_tiny_arm(tmp_path_factory.mktemp("prior"), qm9[:240], qm9[240:],
                                model={"d_model": 32, "n_layers": 2, "n_heads": 2, "max_length": 100}, steps=300,
                                lr=5e-3)
    return path


MOLECULES = ["Clc1ccc(Oc2ccc(cc2C#N)S(=O)(=O)Nc3ncns3)c(c1)c4ccnc(n4)N5CCNCC5", "c1ccccc1O",
             "CC(=O)Nc1ccc(O)cc1", "O=S(=O)(Nc1cccs1)c2ccc(Oc3ccccc3c4ccccc4)c(c2)C#N", "not a smiles", "OCC(O)CO"]


# ----------------------------------------------------------------------------- the predictor component


def test_a_predictor_component_scores_the_models_prediction_with_its_sd_and_ood_flag(hybrid, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "model.ckpt").write_bytes(hybrid.read_bytes())
    (folder / "objective.yaml").write_text(
        "name: potency_design\n"
        "components:\n"
        "  - type: predictor\n"
        "    checkpoint: model.ckpt        # relative to this file\n"
        "    target: Act\n"
        "    ood_threshold: 1.5\n"
        "    transform: {type: sigmoid, low: 6.0, high: 8.0, k: 0.5}\n"
        "  - type: qed\n")
    objective = Objective.load(folder / "objective.yaml")
    assert objective.raw_columns == ["predicted_Act", "predicted_Act_sd", "predicted_Act_ood_score",
                                     "predicted_Act_ood", "qed"]
    batch = Scorer(objective).score(MOLECULES)
    expected = predict.Predictor([api.load(hybrid, device="cpu")]).predict(MOLECULES)
    valid = [i for i, s in enumerate(MOLECULES) if s != "not a smiles"]
    np.testing.assert_allclose(batch.raw["predicted_Act"][valid], expected.mean[valid, 0], rtol=1e-6)
    np.testing.assert_allclose(batch.raw["predicted_Act_sd"][valid], np.sqrt(expected.variance[valid, 0]), rtol=1e-6)
    np.testing.assert_allclose(batch.raw["predicted_Act_ood_score"][valid], expected.ood_score[valid], rtol=1e-6)
    flags = batch.raw["predicted_Act_ood"][valid]
    assert set(flags.tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(flags, (expected.ood_score[valid] > 1.5).astype(float))
    d = objective.components[0].desirability(expected.mean[valid, 0])
    np.testing.assert_allclose(batch.components["predicted_Act"][valid], d, rtol=1e-6)
    assert np.isnan(batch.raw["predicted_Act"][4]) and batch.total[4] == 0.0
    # the mapping a worker rebuilds the objective from names the checkpoint by its absolute path
    assert Objective.from_mapping(objective.to_mapping(), "worker").components[0].option("checkpoint") == [
        str(folder / "model.ckpt")]


@pytest.mark.parametrize("component, message", [
    ({"type": "predictor", "checkpoint": "missing.ckpt", "transform": {"type": "step", "low": 0, "high": 1}},
     "file not found"),
    ({"type": "predictor", "checkpoint": "{model}", "transform": {"type": "step", "low": 0, "high": 1}},
     "target: missing; the model predicts Act, active"),
    ({"type": "predictor", "checkpoint": "{model}", "target": "logp", "transform": {"type": "step", "low": 0, "high": 1}},
     "'logp' is not a target"),
    ({"type": "predictor", "checkpoint": "{model}", "target": "Act"}, "needs a transform"),
    ({"type": "predictor", "checkpoint": "{prior}", "target": "Act", "transform": {"type": "step", "low": 0, "high": 1}},
     "predicts no properties"),
    ({"type": "predictor", "name": "potency", "checkpoint": "{model}", "target": "Act",
      "transform": {"type": "step", "low": 0, "high": 1}}, None),
])
def test_predictor_component_errors_name_the_key(hybrid, prior, component, message):
    spec = {k: (v.format(model=hybrid, prior=prior) if isinstance(v, str) else v) for k, v in component.items()}
    mapping = {"components": [spec, {"type": "qed", "name": "potency_sd"}] if message is None else [spec]}
    with pytest.raises(ObjectiveError, match=r"components\[" if message is None else message):
        Objective.from_mapping(mapping, "objective.yaml")


def test_the_shipped_assay_objective_reads_the_model_beside_it(hybrid, tmp_path):
    """workflows/config/objectives/with-predictor/chembl2321810.yaml, copied beside a model of the assay as
    its header says: every component builds, and the series' own most potent compound passes the
    required sulfonamide and the PAINS filter."""
    shipped = ROOT / "workflows/config/objectives/with-predictor/chembl2321810.yaml"
    (tmp_path / "model.ckpt").write_bytes(hybrid.read_bytes())
    (tmp_path / shipped.name).write_text(shipped.read_text())
    objective = Objective.load(tmp_path / shipped.name)
    assert [c.type for c in objective.components] == ["predictor", "similarity", "smarts", "alerts", "mw", "qed",
                                                      "sa"]
    batch = Scorer(objective).score([MOLECULES[0], "c1ccccc1O"])
    assert batch.raw["similarity_actives"][0] == 1.0 and batch.components["aryl_sulfonamide"].tolist() == [1.0, 0.0]
    assert batch.components["pains"][0] == 1.0 and batch.total[1] == 0.0 and np.isfinite(batch.raw["potency_sd"][0])
    with pytest.raises(ObjectiveError, match="file not found"):
        Objective.load(shipped)  # without a model beside it


# ----------------------------------------------------------------------------- the score store


def test_the_store_reads_back_bit_for_bit_drops_a_cut_line_and_refuses_another_run(tmp_path):
    objective = Objective.from_mapping({"components": [{"type": "qed"}, {"type": "logp",
                                        "transform": {"type": "sigmoid", "low": 0, "high": 3, "k": 0.5}}]}, "t")
    store = ScoreStore(tmp_path / "s.csv", objective, {"seed": 0})
    scorer = Scorer(objective, store=store)
    batch = scorer.score(MOLECULES)
    stored = ScoreStore(tmp_path / "s.csv", objective, {"seed": 0}).load()
    assert list(stored) == [c for c in batch.canonical if c is not None]
    for i, key in enumerate(batch.canonical):
        if key is not None:
            total, d, raw = stored[key]
            assert total == batch.total[i]  # exact: a replayed run must see the same rewards
            assert d.tolist() == [batch.components["qed"][i], batch.components["logp"][i]]
            assert raw.tolist() == [batch.raw["qed"][i], batch.raw["logp"][i]]
    with open(tmp_path / "s.csv", "a") as fh:
        fh.write("CCCC,0.5,0.1")  # a line cut by a kill: no newline
    assert len(ScoreStore(tmp_path / "s.csv", objective, {"seed": 0}).load()) == len(stored)
    with pytest.raises(ValueError, match="other settings"):
        ScoreStore(tmp_path / "s.csv", objective, {"seed": 1}).load()
    (tmp_path / "bad.csv").write_text("smiles,score\nCCO,1\n")
    with pytest.raises(ValueError, match="not a dgm score store"):
        ScoreStore(tmp_path / "bad.csv", objective, {"seed": 0}).load()


def test_a_resumed_run_never_scores_past_its_budget_when_it_does_not_retrace_the_killed_one(tmp_path):
    """A store whose molecules the run never proposes (a run resumed on another machine whose sampling
    diverged): they were paid for, so the run stops once store + new molecules reach the budget."""
    objective = Objective.from_mapping(QED_OBJECTIVE, "t")
    key = {"method": "graph-ga"}
    foreign = ["C" * n + "O" for n in range(1, 31)]  # 30 alcohols graph-ga will not make from ZINC
    ScoreStore(tmp_path / "run.partial-scores.csv", objective, key).append(
        [(m, 0.1, np.array([0.1]), np.array([0.1])) for m in foreign])
    store = ScoreStore(tmp_path / "run.partial-scores.csv", objective, key)
    with Scorer(objective, store=store) as scorer:
        recorder = optimize.Recorder(scorer, budget=100)
        optimize.run_graph_ga(None, recorder, optimize.GraphGAConfig(), seed=0)
        assert scorer.oracle_calls == 100 and scorer.reused == 0
        assert recorder.calls == 70
    assert len(store.load()) == 100


# ----------------------------------------------------------------------------- resume after a kill


class Killed(BaseException):
    pass


@pytest.mark.parametrize("method, budget, kill_at", [("reinvent", 120, 40), ("graph-ga", 330, 150)])
def test_a_killed_run_resumes_where_it_stopped_without_scoring_a_molecule_twice(prior, tmp_path, method, budget,
                                                                               kill_at, one_thread, monkeypatch):
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    whole = optimize.optimize(prior, objective, method=method, budget=budget, seed=1, out=tmp_path / "whole")
    assert not optimize.partial_scores_path(tmp_path / "whole").exists()

    append = ScoreStore.append

    def killing_append(self, entries):
        append(self, entries)
        if len(self.load()) >= kill_at:
            raise Killed
    monkeypatch.setattr(ScoreStore, "append", killing_append)
    with pytest.raises(Killed):
        optimize.optimize(prior, objective, method=method, budget=budget, seed=1, out=tmp_path / "run")
    monkeypatch.setattr(ScoreStore, "append", append)
    partial = optimize.partial_scores_path(tmp_path / "run")
    stored = len(ScoreStore(partial, objective, {}).path.read_text().splitlines()) - 2
    assert kill_at <= stored < budget and not (tmp_path / "run").exists()

    evaluated = []
    evaluate = objectives._evaluate

    def counting(objective_, smiles, prior_ood):
        result = evaluate(objective_, smiles, prior_ood)
        evaluated.extend(c for c in result[0] if c is not None)
        return result
    monkeypatch.setattr(objectives, "_evaluate", counting)
    resumed = optimize.optimize(prior, objective, method=method, budget=budget, seed=1, out=tmp_path / "run")
    assert resumed["resumed"] == {"stored_scores": stored, "reused": stored}
    assert len(set(evaluated)) == len(evaluated) == budget - stored  # nothing scored twice
    assert resumed["calls"] == resumed["oracle_calls"] == budget
    assert not partial.exists()
    # the resumed run retraces the killed one and goes on as the uninterrupted run did
    assert _rows(tmp_path / "run" / "molecules.csv") == _rows(tmp_path / "whole" / "molecules.csv")
    assert resumed["pmo_auc_top10"] == whole["pmo_auc_top10"]


def test_dgm_optimize_resumes_after_sigkill(tmp_path):
    """The real thing: the CLI killed with SIGKILL mid-run, then the same command again."""
    objective = tmp_path / "objective.yaml"
    objective.write_text(json.dumps(QED_OBJECTIVE))
    scratch = tmp_path / "tmp"  # what the killed process cannot remove stays under the test's folder
    scratch.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    cmd = [sys.executable, "-m", "dgm_science.cli", "optimize", "--method", "graph-ga", "--objective", str(objective),
           "--budget", "3000", "--seed", "0", "--threads", "1", "--out", str(tmp_path / "run")]
    partial = optimize.partial_scores_path(tmp_path / "run")
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if partial.is_file() and partial.read_text().count("\n") > 600:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = partial.read_text().count("\n") - 2
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["calls"] == summary["oracle_calls"] == 3000
    assert summary["resumed"]["stored_scores"] >= stored and summary["resumed"]["reused"] == summary["resumed"][
        "stored_scores"]
    assert "resuming a killed run" in done.stderr and not partial.exists()


# ----------------------------------------------------------------------------- outputs


def test_the_outputs_carry_scaffolds_every_component_and_the_predictors_ood_flag(hybrid, prior, tmp_path, one_thread):
    objective = Objective.from_mapping({"name": "loop", "components": [
        {"type": "predictor", "name": "potency", "checkpoint": str(hybrid), "target": "Act",
         "transform": {"type": "sigmoid", "low": 6.0, "high": 8.0, "k": 0.5}},
        {"type": "qed"},
        {"type": "smarts", "name": "no_nitrile", "smarts": "C#N", "mode": "forbidden"},
        {"type": "mw", "transform": {"type": "double_sigmoid", "low": 60, "high": 200, "coef_div": 60}}]}, "t")
    optimize.optimize(prior, objective, method="reinvent", budget=60, seed=0, out=tmp_path / "run", top=10)
    best = _rows(tmp_path / "run" / "best.csv")
    assert {"scaffold", "potency", "potency_raw", "potency_sd", "potency_ood_score", "potency_ood", "qed", "qed_raw", "no_nitrile",
            "no_nitrile_raw", "mw", "mw_raw"} <= set(best[0])
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    expected = predict.Predictor([api.load(hybrid, device="cpu")]).predict([r["smiles"] for r in best])
    for i, row in enumerate(best):
        mol = Chem.MolFromSmiles(row["smiles"])
        assert row["scaffold"] == Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol))
        assert float(row["potency_raw"]) == pytest.approx(expected.mean[i, 0], rel=1e-4)
        assert row["potency_ood"] == str(int(expected.ood_score[i] > predict.OOD_THRESHOLD))
        assert float(row["no_nitrile_raw"]) == float(mol.HasSubstructMatch(Chem.MolFromSmarts("C#N")))
    supplier = Chem.SDMolSupplier(str(tmp_path / "run" / "best.sdf"))
    first = next(iter(supplier))
    assert first.GetProp("scaffold") == best[0]["scaffold"] and first.HasProp("potency_ood")
    every = _rows(tmp_path / "run" / "molecules.csv")
    assert {"potency_raw", "potency_sd", "potency_ood"} <= set(every[0])
