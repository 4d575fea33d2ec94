"""The report's shared parts: number formatting, input names, sections rendered with an input
missing, model names escaped, and the page written by ``write_report``."""

from __future__ import annotations

import json
import math

import pytest

from dgm_science.domains.structures.report import structures_section
from dgm_science.domains.trajectories.report import trajectories_section
from dgm_science.errors import DataError
from dgm_science.catalog import input_name
from dgm_science.report import (format_count, format_metric, format_number, format_values, summary,
                                write_report)


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def test_number_formatting():
    assert format_number(0.12345) == "0.1235" and format_number(2.5, 1) == "2.5"
    assert format_number(None) == format_number(math.nan) == format_values([]) == "–"
    assert format_values([0.5, None, math.nan]) == "0.5000"
    assert format_values([1.0, 3.0], 2) == "2.00±1.41"
    assert format_count(12345.0) == "12,345" and format_count(None) == "–"
    assert format_metric("n_samples", [10000.0, 5.0]) == "10,000" and format_metric("n_samples", []) == "–"
    assert format_metric("validity", [0.9, 0.7]) == "0.8000±0.1414"


def test_input_names_follow_the_resources_layout():
    assert input_name("resources/structures/qm9-3d/data/data_row.json") == "structures/qm9-3d/data_row"
    assert input_name("resources/molecules/moses/data/ref_test.npz") == "molecules/moses/ref_test"
    assert (input_name("resources/trajectories/pointmaze-umaze/expert_rollout.json")
            == "trajectories/pointmaze-umaze/expert_rollout")
    with pytest.raises(ValueError, match="results/x.json"):
        input_name("results/x.json")


MODEL = 'qm9-<b>&"x'


@pytest.fixture()
def qm9_results(tmp_path):
    results = tmp_path / "results"
    _write(results / "structures" / "qm9-3d" / MODEL / "seed0" / "metrics.json",
           {"atom_stability": 0.9, "molecule_stability": 0.5, "n_samples": 1000})
    data_row = _write(tmp_path / "resources/structures/qm9-3d/data/data_row.json",
                      {"atom_stability": 0.99, "n_samples": 13083})
    return results, data_row


def test_section_without_an_input_leaves_its_row_out(qm9_results):
    results, data_row = qm9_results
    without = structures_section(results, {})
    assert "Data (QM9 test, ours)" not in without and "EDM (published)" in without
    with_row = structures_section(results, {"structures/qm9-3d/data_row": data_row})
    assert "Data (QM9 test, ours)" in with_row and "13,083 molecules" in with_row


def test_a_given_input_that_does_not_exist_is_an_error_naming_it(qm9_results, tmp_path):
    results, _ = qm9_results
    with pytest.raises(DataError, match="missing.json.*structures/qm9-3d/data_row"):
        structures_section(results, {"structures/qm9-3d/data_row": tmp_path / "missing.json"})


def test_html_in_a_model_name_is_escaped(qm9_results, tmp_path):
    results, _ = qm9_results
    section = structures_section(results, {})
    assert MODEL not in section
    assert "<b>qm9-&lt;b&gt;&amp;&#34;x</b> (ours, 1 seed)" in section
    out = tmp_path / "report.html"
    write_report(results, out)
    page = out.read_text()
    assert page.startswith("<!doctype html>") and '<h2 id="3d-structures">3D structures</h2>' in page
    assert MODEL not in page and '<a href="#3d-structures">3D structures</a>' in page


def test_the_summary_sets_each_headline_beside_its_anchor_and_flags_capped_and_failed_runs(tmp_path):
    results = tmp_path / "results"
    runs = results / "structures" / "qm9-3d" / "qm9-edm"
    _write(runs / "seed0" / "metrics.json", {"molecule_stability": 0.2, "training_hit_time_cap": False})
    _write(runs / "seed1" / "metrics.json", {"molecule_stability": 0.4, "training_hit_time_cap": True})
    (runs / "seed2").mkdir()
    (runs / "seed2" / "model.ckpt").write_bytes(b"")  # trained, never evaluated
    _write(results / "structures" / "ala2" / "ala2-flow" / "seed0" / "metrics.json", {"kl_ramachandran": 0.27})
    table = summary(results)
    rows = {cells[1]: (css, cells) for css, cells in table.rows}
    css, cells = rows["qm9-edm"]
    assert css == "flagged" and cells[2] == "2" and cells[4] == "0.300 ± 0.141"  # seed2 has no metrics
    assert cells[5] == "EDM (GPU, 3,000 epochs): 0.820"
    assert "seed1: stopped by the time cap" in cells[6] and "seed2: no metrics" in cells[6]
    css, cells = rows["ala2-flow"]
    assert css == "" and cells[4] == "0.270" and cells[5] == "–" and cells[6] == "none"
    out = tmp_path / "report.html"
    write_report(results, out)
    page = out.read_text()
    assert page.index('id="summary"') < page.index('id="contents"') < page.index('id="3d-structures"')
    assert 'class="flagged"' in page and "EDM (GPU, 3,000 epochs): 0.820" in page


def test_trajectories_without_baseline_inputs(tmp_path):
    results = tmp_path / "results"
    run = results / "trajectories" / "pointmaze-umaze" / "maze-diffuser" / "seed0"
    _write(run / "metrics.json", {"dynamic_position_error": 0.06, "goal_distance": math.nan})
    _write(run / "rollout_d4rl.json", {"maze": "umaze", "success_rate": 0.5, "normalized_score": 80.0,
                                       "episodes": 10})
    rows = [cells for _, cells in summary(results).rows]
    assert [cells[3:6] for cells in rows] == [["plan points in walls ↓", "–", "–"],
                                              ["closed-loop score, d4rl ↑", "80.000", "Diffuser (d4rl, GPU): 113.900"]]
    html = trajectories_section(results, {})
    assert "<b>maze-diffuser</b> (ours, map-free, seed 0)" in html and "80.0 ± 0.0" in html and "113.9" in html
    assert "Expert planner" not in html and "No planner" not in html and "The training data" not in html
    prepare = _write(tmp_path / "resources/trajectories/pointmaze-umaze/data/prepare.json",
                     {"train_episodes": 10, "valid_episodes": 2, "train_steps": 1000, "valid_steps": 200})
    html = trajectories_section(results, {"trajectories/pointmaze-umaze/prepare": prepare})
    assert "The training data" in html and "<td>1,200</td>" in html


def test_empty_results_give_the_placeholder_page(tmp_path):
    out = tmp_path / "report.html"
    write_report(tmp_path / "results", out, {})
    assert "No finished runs under results/ yet." in out.read_text()
