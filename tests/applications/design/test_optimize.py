"""Goal-directed design (``dgm optimize``): the REINVENT loop, its diversity filter and replay
memory, the budget count, the baselines, the outputs, and bad input through the real CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dgm_science.applications.design import optimize
from dgm_science.applications.design.objectives import Objective

QED_OBJECTIVE = {"name": "qed", "aggregate": "arithmetic",
                 "components": [{"type": "qed", "weight": 1.0}]}


@pytest.fixture(scope="module")
def prior(tmp_path_factory, train_tiny_arm) -> Path:
    """A tiny SMILES transformer on 240 QM9 molecules: short SMILES, so that a few seconds of
    training give ~25 % valid samples (a tiny MOSES model gives ~1 %)."""
    qm9 = (Path(__file__).parents[2] / "data" / "qm9_sample.smi").read_text().split()
    path, _, _ = train_tiny_arm(tmp_path_factory.mktemp("prior"), qm9[:240], qm9[240:],
                                model={"d_model": 32, "n_layers": 2, "n_heads": 2, "max_length": 100}, steps=300,
                                lr=5e-3)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- parts


def test_diversity_filter_zeroes_full_scaffold_buckets_and_repeats():
    df = optimize.DiversityFilter(bucket_size=2, min_score=0.4)
    benzenes = ["Cc1ccccc1", "CCc1ccccc1", "CCCc1ccccc1"]  # one scaffold: c1ccccc1
    reward = df(benzenes, np.array([0.9, 0.8, 0.7]))
    assert reward.tolist() == [0.9, 0.8, 0.0]  # the third finds its bucket full
    # below min_score: neither memorised nor zeroed; another scaffold has its own bucket
    assert df(["CCCCc1ccccc1", "C1CCCCC1C", "CCCCc1ccccc1"], np.array([0.3, 0.9, 0.3])).tolist() == [0.3, 0.9, 0.3]
    # a memorised molecule seen again gets 0, in a later batch or in the same one
    assert df(["C1CCCCC1C", None], np.array([0.9, 0.0])).tolist() == [0.0, 0.0]
    assert df(["OCC1CCCCC1", "OCC1CCCCC1"], np.array([0.9, 0.9])).tolist() == [0.9, 0.0]


def test_memory_keeps_the_best_distinct_molecules():
    memory = optimize.Memory(size=2)
    rows = [torch.tensor([1, 5, 2]), torch.tensor([1, 6, 2]), torch.tensor([1, 7, 2])]
    memory.add(["A", "B", "C"], np.array([0.5, 0.9, 0.7]), rows)
    assert sorted(memory.items) == ["B", "C"]
    memory.add(["A", "D"], np.array([0.95, 0.0]), rows[:2])  # D: zero reward is never kept
    assert sorted(memory.items) == ["A", "B"]
    picked, scores = memory.sample(5, __import__("random").Random(0))
    assert len(picked) == 2 and sorted(scores.tolist()) == [0.9, 0.95]


def test_memory_replay_by_score_draws_in_proportion_to_the_scores_without_replacement():
    import random

    memory = optimize.Memory(size=10)
    memory.add(["A", "B", "C"], np.array([0.05, 0.9, 0.05]), [torch.tensor([1, i, 2]) for i in range(3)])
    rng = random.Random(0)
    firsts = [memory.sample(1, rng, by_score=True)[1][0] for _ in range(400)]
    assert 0.8 < np.mean(np.array(firsts) == 0.9) < 0.97  # 0.9 / 1.0 of the draws
    uniform = [memory.sample(1, rng)[1][0] for _ in range(400)]
    assert 0.25 < np.mean(np.array(uniform) == 0.9) < 0.42
    _, all_three = memory.sample(5, rng, by_score=True)
    assert sorted(all_three.tolist()) == [0.05, 0.05, 0.9]


def test_memory_purge_drops_every_molecule_of_a_penalised_scaffold():
    memory = optimize.Memory(size=10)
    keys = ["Cc1ccccc1", "CCc1ccccc1", "C1CCCCC1C", "CCO"]
    memory.add(keys, np.array([0.9, 0.8, 0.7, 0.6]), [torch.tensor([1, i, 2]) for i in range(4)])
    assert memory.purge({"c1ccccc1"}) == 2 and sorted(memory.items) == ["C1CCCCC1C", "CCO"]
    assert memory.purge({""}) == 1 and sorted(memory.items) == ["C1CCCCC1C"]  # acyclic: the empty scaffold


def test_randomized_smiles_are_the_same_molecules_written_otherwise_and_seeded():
    import random

    from rdkit import Chem

    smiles = ["CC(=O)Nc1ccc(O)cc1", "c1ccc2ccccc2c1", None, "not a smiles"]
    first = optimize.randomized_smiles(smiles * 5, random.Random(0))
    again = optimize.randomized_smiles(smiles * 5, random.Random(0))
    assert first == again
    for text, original in zip(first, smiles * 5):
        if original in (None, "not a smiles"):
            assert text == original
        else:
            assert Chem.CanonSmiles(text) == Chem.CanonSmiles(original)
    assert len({t for t, o in zip(first, smiles * 5) if o == smiles[0]}) > 1  # not one fixed order


def test_offspring_are_new_molecules_bred_from_the_best_within_the_budget():
    import random

    from dgm_science.applications.design.objectives import Scorer

    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    recorder = optimize.Recorder(Scorer(objective), budget=60)
    parents = ["CC(=O)Nc1ccc(O)cc1", "c1ccc2ccccc2c1", "CCOC(=O)c1ccccc1N", "OCC(O)CO", "CCN(CC)CCNC(=O)c1ccc(N)cc1"]
    assert optimize._offspring(recorder, 20, 1024, random.Random(0)) == []  # nothing scored yet
    recorder.score(parents, step=1)
    children = optimize._offspring(recorder, 40, 3, random.Random(0))
    assert children == optimize._offspring(recorder, 40, 3, random.Random(0))  # seeded
    assert 0 < len(children) <= 40 and len(set(children)) == len(children)
    assert not set(children) & set(recorder.seen)
    recorder.score(children[:50], step=2)
    left = recorder.budget - recorder.calls
    assert len(optimize._offspring(recorder, 200, 1024, random.Random(1))) <= left


def test_score_curve_points():
    scores = [0.1] * 5 + [0.9] + [0.2] * 4
    curve = optimize.score_curve(scores, every=4)
    assert [p["calls"] for p in curve] == [4, 8, 10]
    assert curve[0]["best"] == pytest.approx(0.1) and curve[1]["best"] == pytest.approx(0.9)
    assert curve[-1]["top10"] == pytest.approx(np.mean(scores))


def test_method_config_errors():
    from dgm_science.config import ConfigError

    assert optimize.method_config("reinvent", {"sigma": 64}).sigma == 64.0
    for bad in ({"sigmaa": 1}, {"batch_size": 0}, {"ga_population_size": 0}, {"ga_offspring": -1},
                {"sigma": float("nan")}, {"lr": -1}, {"batch_size": 2.5},
                {"unique_sequences": 1}, {"precision": "fp16"}, {"precision": 32}):
        with pytest.raises(ConfigError):
            optimize.method_config("reinvent", bad)
    with pytest.raises(ConfigError, match="unknown method"):
        optimize.method_config("hill-climb", {})
    assert optimize.method_config("reinvent", {"precision": "bf16-mixed"}).precision == "bf16-mixed"
    assert optimize.method_config("reinvent", {}).precision == "32-true"  # REINVENT 4 as published: float32
    assert optimize.method_config("augmented-memory", {}).precision == "auto"
    with pytest.raises(ConfigError, match="precision must be one of '32-true', 'bf16-mixed', 'auto', got 'fp16'"):
        optimize.method_config("augmented-memory", {"precision": "fp16"})


def test_auto_precision_is_bf16_mixed_only_where_the_cpu_computes_bfloat16(monkeypatch):
    cpu = torch.device("cpu")
    assert optimize.update_precision("32-true", cpu) == "32-true"
    assert optimize.update_precision("bf16-mixed", cpu) == "bf16-mixed"
    for amx, avx512_bf16, expected in ((True, False, "bf16-mixed"), (False, True, "bf16-mixed"),
                                       (False, False, "32-true")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        assert optimize.update_precision("auto", cpu) == expected


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("method, settings", [("reinvent", {}), ("augmented-memory", {}),
                                              ("augmented-memory", {"ga_offspring": 32}), ("screening", {}),
                                              ("graph-ga", {})])
def test_run_spends_exactly_the_budget_and_records_every_proposal(prior, tmp_path, method, settings, one_thread):
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    budget = 150
    summary = optimize.optimize(prior, objective, method=method, budget=budget, seed=0, out=tmp_path / "run",
                                top=20, config=optimize.method_config(method, settings))
    assert summary["calls"] == budget
    rows = _rows(tmp_path / "run" / "molecules.csv")
    assert len(rows) == summary["proposals"]
    calls = [int(r["call"]) for r in rows if r["call"]]
    assert sorted(set(calls)) == list(range(1, budget + 1))
    first_calls = {}
    for r in rows:  # a molecule's call index is the one of its first appearance
        if r["canonical"]:
            first_calls.setdefault(r["canonical"], r["call"])
            assert r["call"] == first_calls[r["canonical"]]
        else:
            assert r["call"] == "" and float(r["score"]) == 0.0
    best = _rows(tmp_path / "run" / "best.csv")
    scores = [float(r["score"]) for r in best]
    assert len(best) == 20 and scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(summary["top1"])
    from rdkit.Chem import QED
    from rdkit import Chem

    assert scores[0] == pytest.approx(QED.qed(Chem.MolFromSmiles(best[0]["smiles"])), abs=1e-5)
    curve = _rows(tmp_path / "run" / "curve.csv")
    assert int(curve[-1]["calls"]) == budget and float(curve[-1]["best"]) == pytest.approx(summary["top1"], abs=1e-5)
    for name in ("best.sdf", "best.png", "curve.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["method"] == method and saved["objective"] == objective.to_mapping()
    assert 0 < saved["pmo_auc_top10"] <= saved["top10_mean"] + 1e-9


def test_same_seed_same_run_other_seed_another(prior, tmp_path, one_thread):
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        optimize.optimize(prior, objective, method="reinvent", budget=80, seed=seed, out=tmp_path / name)
        runs[name] = [r["smiles"] for r in _rows(tmp_path / name / "molecules.csv")]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_reinvent_moves_the_agent_toward_the_objective(prior, tmp_path, one_thread, precision):
    """With REINVENT 4's defaults the agent's molecules score far higher by the end of the budget
    than at its start, and far above the prior's own samples at equal calls: the update learns, in float32
    and with bf16-mixed updates alike."""
    objective = Objective.from_mapping({"name": "heavy", "aggregate": "arithmetic", "components": [
        {"type": "mw", "weight": 1.0, "transform": {"type": "sigmoid", "low": 130, "high": 170, "k": 0.5}}]},
        "test")  # heavier than the QM9 molecules the prior learned (9 heavy atoms, ~125 Da)
    rl = optimize.optimize(prior, objective, method="reinvent", budget=400, seed=0, out=tmp_path / "rl",
                           config=optimize.method_config("reinvent", {"precision": precision}))
    screen = optimize.optimize(prior, objective, method="screening", budget=400, seed=0, out=tmp_path / "sc")
    assert rl["precision"] == precision
    scores = [float(r["score"]) for r in _rows(tmp_path / "rl" / "molecules.csv") if r["valid"] == "1"]
    # measured, both precisions: 0.04 -> 0.44, AUC 0.67 vs 0.35 (the same molecules: on this tiny prior bf16's
    # log-likelihoods differ from float32's by < 0.06 nat, too little to change a sampled token in 400 calls)
    assert np.mean(scores[-100:]) > np.mean(scores[:100]) + 0.2
    assert rl["pmo_auc_top10"] > screen["pmo_auc_top10"] + 0.1


def test_pmo_loop_settings_reward_the_score_of_repeats_and_the_regulariser_changes_the_update(prior, tmp_path,
                                                                                               one_thread):
    """PMO's REINVENT loop: without the diversity filter every proposal's reward is its score (a repeat's too,
    which REINVENT 4's filter zeroes); the likelihood regulariser changes the updates, so the runs differ."""
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    pmo = {"diversity_filter": False, "unique_sequences": True, "replay_weighting": "score", "batch_size": 32,
           "temperature": 0.5}  # repeats across batches are likely
    runs = {}
    for name, extra in (("plain", {}), ("regularised", {"likelihood_regularizer": 5000.0}), ("filtered", None)):
        settings = {"batch_size": 32, "temperature": 0.5} if extra is None else {**pmo, **extra}
        optimize.optimize(prior, objective, method="reinvent", budget=150, seed=0, out=tmp_path / name,
                          config=optimize.method_config("reinvent", settings))
        runs[name] = _rows(tmp_path / name / "molecules.csv")
    valid = [r for r in runs["plain"] if r["valid"] == "1"]
    assert all(float(r["reward"]) == float(r["score"]) for r in valid)
    def repeats(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        seen, out = set(), []
        for r in rows:
            if r["valid"] == "1":
                (out.append(r) if r["canonical"] in seen else seen.add(r["canonical"]))
        return out

    assert repeats(runs["plain"]) and repeats(runs["filtered"])
    assert all(float(r["reward"]) == 0.0 for r in repeats(runs["filtered"]))
    assert all(float(r["reward"]) == float(r["score"]) > 0 for r in repeats(runs["plain"]))
    assert [r["smiles"] for r in runs["plain"]] != [r["smiles"] for r in runs["regularised"]]
    from dgm_science.config import ConfigError

    with pytest.raises(ConfigError, match="replay_weighting"):
        optimize.method_config("reinvent", {"replay_weighting": "best"})


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgm_science.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("case", ["unknown_component", "bad_smarts", "negative_weight", "budget_zero",
                                  "unknown_setting", "not_a_prior", "missing_objective"])
def test_bad_input_is_one_clear_error_before_any_work(prior, tmp_path, case):
    objective = tmp_path / "objective.yaml"
    body = {"unknown_component": "components:\n  - {type: potency, weight: 1}\n",
            "bad_smarts": "components:\n  - {type: substructure, smarts: 'c1ccc(', weight: 1}\n",
            "negative_weight": "components:\n  - {type: qed, weight: -1}\n"}.get(case, "components:\n  - {type: qed}\n")
    objective.write_text("name: t\n" + body)
    args = ["optimize", "--prior", str(prior), "--objective", str(objective), "--budget", "50", "--out",
            str(tmp_path / "run")]
    if case == "budget_zero":
        args[args.index("50")] = "0"
    if case == "unknown_setting":
        args += ["--config", '{"sigmaa": 3}']
    if case == "not_a_prior":
        bad = tmp_path / "not.ckpt"
        bad.write_bytes(b"not a checkpoint")
        args[args.index(str(prior))] = str(bad)
    if case == "missing_objective":
        args[args.index(str(objective))] = str(tmp_path / "nope.yaml")
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("dgm: error:", "dgm optimize: error:"))]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    expected = {"unknown_component": "potency", "bad_smarts": "smarts", "negative_weight": "weight",
                "budget_zero": "--budget", "unknown_setting": "sigmaa", "not_a_prior": "not.ckpt",
                "missing_objective": "nope.yaml"}[case]
    assert expected in errors[0]
    assert not (tmp_path / "run").exists()


def test_cli_writes_the_run_folder(prior, tmp_path):
    result = _cli("optimize", "--prior", str(prior), "--objective", "guacamol:celecoxib_rediscovery", "--budget", "60",
                  "--seed", "1", "--out", str(tmp_path / "run"), "--threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["calls"] == 60 and summary["task"] == "celecoxib_rediscovery"
    assert summary["guacamol_score"] is not None and not math.isnan(summary["guacamol_score"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.csv", "best.png", "best.sdf", "curve.csv", "curve.png", "molecules.csv", "summary.json"]


def test_a_task_needing_159_molecules_is_scored_from_159(tmp_path):
    """GuacaMol's C11H24 task asks for 159 molecules (top-159 mean): a run is scored from its 159 best
    distinct stereo-free molecules, exactly as GuacaMol's own ``assess_model`` scores them, not from 100."""
    from dgm_science.compat.guacamol import import_guacamol
    from dgm_science.applications.design.benchmarks import task_benchmark

    summary = optimize.optimize(None, Objective.load("guacamol:isomers_c11h24"), method="graph-ga", budget=600,
                                seed=0, out=tmp_path / "run", top=600)
    assert summary["guacamol_molecules_needed"] == 159 and summary["guacamol_molecules"] == 159
    ranked = [(row["smiles"], float(row["score"])) for row in _rows(tmp_path / "run" / "best.csv")]
    chemistry = import_guacamol("utils.chemistry")

    class Returns(import_guacamol("goal_directed_generator").GoalDirectedGenerator):
        """Hands GuacaMol the run's best molecules, one per stereo-free canonical SMILES."""

        def generate_optimized_molecules(self, scoring_function, number_molecules, starting_population=None):
            seen: dict[str, str] = {}
            for smiles, _ in ranked:
                seen.setdefault(chemistry.canonicalize(smiles, include_stereocenters=False), smiles)
            assert len(seen) >= number_molecules == 159
            return list(seen.values())[:number_molecules]

    expected = task_benchmark("isomers_c11h24").assess_model(Returns())
    assert summary["guacamol_score"] == pytest.approx(expected.score, abs=1e-12)
    assert expected.metadata["top_159"] == pytest.approx(summary["guacamol_score"], abs=1e-12)
    capped_at_100 = sum(score for _, score in ranked[:100]) / 159  # the old count: 59 zeros
    assert summary["guacamol_score"] > capped_at_100 + 0.01


def test_report_section_puts_runs_beside_the_published_rows(prior, tmp_path, one_thread):
    from dgm_science.applications.design.report import design_section

    objective = Objective.load("guacamol:celecoxib_rediscovery")
    for method in ("reinvent", "screening"):
        optimize.optimize(prior, objective, method=method, budget=40, seed=0,
                          out=tmp_path / "results/design/celecoxib_rediscovery" / method / "seed0")
    html = design_section(tmp_path / "results")
    assert "Goal-directed design" in html and "celecoxib_rediscovery" in html
    # GuacaMol Table 2 (Graph GA rediscovers celecoxib: 1.000) and PMO's REINVENT AUC (0.714 ± 0.067) stand in a
    # table of their own after ours, with the protocol differences named: no call limit; 10,000 calls, not 40
    ours, _, apart = html.partition("Published, another protocol: GuacaMol Table 2 ran without a call limit; "
                                    "PMO&#39;s AUC top-10 is over 10,000 calls, this run&#39;s over 40.")
    assert apart and "(PMO, 10,000 calls)" not in ours and "GuacaMol Table 2, no call limit)" not in ours
    assert "Graph GA (GuacaMol Table 2, no call limit)" in apart and "1.000" in apart
    assert "REINVENT (PMO, 10,000 calls)" in apart and "0.714±0.067" in apart
    assert "REINVENT&#39;s AUC top-10 is above screening&#39;s (equal calls) on" in html and "of 1 objectives" in html
    assert "(a single-seed observation)" in html
    assert ("PMO, its per-task values summed over the same 1 tasks: REINVENT 0.714, Graph GA 0.630, "
            "screening 0.352") in html
    assert html.count("data:image/png;base64,") == 2  # the curves and the best molecules


def test_pmo_rows_sit_beside_a_run_at_pmos_budget_only():
    from dgm_science.applications.design.report import COLUMNS, _published_rows
    from dgm_science.report import Table

    at_budget = Table(["method"] + [label for _, label in COLUMNS])
    apart, note = _published_rows("celecoxib_rediscovery", 10_000, at_budget)
    assert [cells[0] for _, cells in at_budget.rows] == ["REINVENT (PMO, 10,000 calls)", "Graph GA (PMO, 10,000 calls)",
                                                           "screening (PMO, 10,000 calls)"]
    assert note == "Published, another protocol: GuacaMol Table 2 ran without a call limit."
    assert all("GuacaMol Table 2" in cells[0] for _, cells in apart.rows)
    assert _published_rows("no_such_task", 1_000, Table(["method"])) == (None, "")


def test_a_run_that_cannot_reach_its_budget_stops_and_says_so(prior, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(optimize, "MAX_PROPOSALS_PER_CALL", 1)  # the prior is ~25 % valid: 1 per call is too few
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    summary = optimize.optimize(prior, objective, method="screening", budget=300, seed=0, out=tmp_path / "run",
                                config=optimize.method_config("screening", {"batch_size": 50}))
    assert 0 < summary["calls"] < 300 and 300 <= summary["proposals"] < 350
    assert "proposals" in summary["stopped_before_budget"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_before_budget"]


def test_pmos_convergence_rule_stops_a_run_whose_best_scores_stop_changing(prior, tmp_path, monkeypatch, one_thread):
    """mol_opt's REINVENT stops once its best 100 scores are unchanged over ``patience`` batches (after 1,000
    calls); here after 20 calls and on the best 3, so that the tiny prior's cold agent reaches it."""
    monkeypatch.setattr(optimize, "CONVERGENCE_CALLS", 20)
    monkeypatch.setattr(optimize, "CONVERGENCE_TOP", 3)
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    settings = {"batch_size": 16, "temperature": 0.3, "diversity_filter": False, "lr": 1e-6}
    runs = {}
    for patience in (0, 2):
        runs[patience] = optimize.optimize(
            prior, objective, method="reinvent", budget=200, seed=0, out=tmp_path / str(patience),
            config=optimize.method_config("reinvent", {**settings, "convergence_patience": patience}))
    assert runs[0]["calls"] == 200 and not runs[0]["stopped_before_budget"]
    stopped = runs[2]
    assert 20 < stopped["calls"] < 200 and "convergence rule" in stopped["stopped_before_budget"]
    cut, full = ([(r["step"], r["smiles"]) for r in _rows(tmp_path / name / "molecules.csv")] for name in ("2", "0"))
    assert cut == full[: len(cut)] and len(cut) < len(full)  # the same run, cut short
    # its AUC: the full run's first calls with the last top-10 carried to the budget (PMO's finish), which can be
    # above the full run's own (the trapezoid between PMO's 100-call points rises more slowly than the carry)
    from dgm_science.applications.design.benchmarks import pmo_auc_top10

    scores = dict(sorted((int(r["call"]), float(r["score"])) for r in _rows(tmp_path / "0" / "molecules.csv")
                         if r["call"]))
    assert list(scores) == list(range(1, 201))
    assert stopped["pmo_auc_top10"] == pytest.approx(
        pmo_auc_top10(list(scores.values())[: stopped["calls"]], budget=200), abs=1e-5)


def test_an_ood_guard_without_a_prior_to_compute_it_is_an_error_before_any_work(tmp_path):
    objective = Objective.from_mapping({"name": "guarded", "components": [
        {"type": "qed"}, {"type": "prior_ood", "transform": {"type": "reverse_sigmoid", "low": 2, "high": 4,
                                                              "k": 0.5}}]}, "test")
    with pytest.raises(ValueError, match="prior_ood component"):
        optimize.optimize(None, objective, method="graph-ga", budget=10, seed=0, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_report_counts_a_tie_with_screening_as_a_tie_not_a_win(tmp_path):
    """valsartan_smarts at 10,000 calls: neither REINVENT nor screening of the MOSES prior finds a
    molecule scoring above 0, so both AUCs are 0."""
    from dgm_science.applications.design.report import design_section

    for objective, scores in (("valsartan_smarts", (0.0, 0.0)), ("deco_hop", (0.715, 0.585))):
        for method, auc in zip(("reinvent", "screening"), scores):
            run = tmp_path / "results/design" / objective / method / "seed0"
            run.mkdir(parents=True)
            (run / "summary.json").write_text(json.dumps({"pmo_auc_top10": auc, "task": objective, "budget": 10000}))
    html = design_section(tmp_path / "results")
    assert "on 1 of 2 objectives (1 tied)" in html


def test_the_report_quotes_guacamol_tables_own_total_when_every_task_ran(tmp_path):
    """Over all 20 GuacaMol v2 tasks the published total is the paper's (SMILES LSTM 17.340), not the
    sum of its rounded per-task values (17.341); PMO-only tasks stay out of the GuacaMol total."""
    from dgm_science.applications.design.benchmarks import GUACAMOL_V2_TASKS
    from dgm_science.applications.design.report import design_section

    for task in (*GUACAMOL_V2_TASKS, "qed"):
        run = tmp_path / "results/design" / task / "reinvent" / "seed0"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"guacamol_score": 0.5, "pmo_auc_top10": 0.25, "task": task,
                                                      "budget": 10000}))
    html = design_section(tmp_path / "results")
    assert ("GuacaMol score summed over the 20 GuacaMol tasks run: reinvent 10.000; GuacaMol Table 2&#39;s "
            "published total over its 20 tasks: SMILES LSTM 17.340, Graph GA 17.983, best of dataset 12.144") in html
    assert "17.341" not in html
    # PMO has 18 of the 20 GuacaMol tasks plus qed: 19 tasks, its per-task values summed
    assert "AUC top-10 summed over the 19 PMO tasks run: reinvent 4.750; PMO, its per-task values summed" in html


def test_prior_is_a_shipped_name_or_a_path(tmp_path, monkeypatch):
    from dgm_science.applications.design import commands

    assert commands.prior_path(None, "reinvent") == commands.SHIPPED_PRIORS["moses"] == commands.DEFAULT_PRIOR
    assert commands.prior_path("moses", "augmented-memory").is_file()
    assert commands.prior_path(None, "graph-ga") is None  # Graph GA needs no prior
    assert commands.prior_path("runs/my.ckpt", "reinvent") == Path("runs/my.ckpt")
    monkeypatch.setitem(commands.SHIPPED_PRIORS, "zinc250k", tmp_path / "absent.ckpt")
    with pytest.raises(ValueError, match="--prior zinc250k: the shipped prior .*absent.ckpt is missing"):
        commands.prior_path("zinc250k", "reinvent")


@pytest.mark.parametrize("method", ["screening", "reinvent"])
def test_overlapped_scoring_changes_no_molecule(prior, tmp_path, method, one_thread):
    """With scoring processes, screening samples its next batch and REINVENT runs the agent's forward pass while
    a batch is scored (``meanwhile``): the run is the same, molecule for molecule, as with one process."""
    objective = Objective.from_mapping(QED_OBJECTIVE, "test")
    runs = {}
    for jobs in (1, 2):
        optimize.optimize(prior, objective, method=method, budget=150, seed=0, out=tmp_path / str(jobs), jobs=jobs)
        runs[jobs] = (tmp_path / str(jobs) / "molecules.csv").read_text()
    assert runs[1] == runs[2]
