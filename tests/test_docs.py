"""The documentation: generated pages up to date, every quoted table backed by a result file or declared,
result files with their provenance, and a README that is a front page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dgm_science import docs

ROOT = Path(__file__).resolve().parent.parent


def _result(**overrides):
    data = {"title": "planners on U-Maze", "columns": ["policy", "score"],
            "rows": [["diffuser", 119.04], ["straight", None]],
            "provenance": {"commit": "abc1234", "command": "dgm rollout --episodes 100", "config": "default.yaml",
                           "date": "2026-12-06", "machine": "2 CPU cores"}}
    data.update(overrides)
    return data


def test_generated_pages_are_up_to_date_and_every_figure_is_backed_or_declared():
    assert docs.problems() == []


def test_a_result_block_is_filled_from_its_file_and_names_its_provenance(tmp_path):
    (tmp_path / "mazes").mkdir()
    (tmp_path / "mazes" / "u.json").write_text(json.dumps(_result()))
    page = "# P\n\n<!-- result: mazes/u.json -->\nstale | 1.0\n<!-- /result -->\n"
    filled = docs.fill_blocks(page, tmp_path)
    assert "| diffuser | 119 |" in filled and "| straight | – |" in filled and "stale" not in filled
    assert "commit `abc1234`" in filled and "`dgm rollout --episodes 100`" in filled
    assert docs.untraced_rows(filled) == []  # figures inside a block are traced
    assert docs.untraced_rows("| a | 0.94 |\n") == ["| a | 0.94 |"]
    assert docs.untraced_rows("| `molsets==0.3.1` | pip 24.1.2 |\n") == []  # versions are not figures


@pytest.mark.parametrize("broken, message", [
    ({"provenance": {"commit": "abc", "command": "", "config": "c", "date": "d", "machine": "m"}}, "lacks command"),
    ({"rows": [["only one value"]]}, "row 0 must be a list of 2"),
    ({"title": docs.PROVENANCE_KEYS}, None),  # replaced below: the title removed
])
def test_a_result_file_without_provenance_or_with_ragged_rows_is_refused(tmp_path, broken, message):
    data = _result(**broken)
    if message is None:
        del data["title"]
        message = "missing key 'title'"
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(docs.ResultFileError, match=message):
        docs.load_result("r.json", tmp_path)
    with pytest.raises(docs.ResultFileError, match="no such result file"):
        docs.fill_blocks("<!-- result: missing.json -->\n<!-- /result -->", tmp_path)


def test_every_committed_result_file_loads_with_its_provenance():
    names = docs.result_files()
    for name in names:
        data = docs.load_result(name)
        assert data["rows"], name


def test_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make run" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#]+)", readme)
    assert links and all((ROOT / link).exists() for link in links), [l for l in links if not (ROOT / l).exists()]
    assert docs.untraced_rows(readme) == []  # no hand-typed figures on the front page


def test_cli_reference_lists_every_registered_command():
    from dgm_science import registry

    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for name in registry.names("command"):
        assert f"## dgm {name}\n" in page, name


def test_export_makes_a_result_file_of_a_runs_metrics(tmp_path):
    results = tmp_path / "results"
    for seed, stable in ((0, 0.2), (1, 0.4)):
        run = results / "structures" / "qm9-3d" / "qm9-edm" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"molecule_stability": stable, "atom_stability": 0.9}))
    data = docs.export_run(results, "structures", ["molecule_stability", "validity"], title="EDM",
                           command="make run", config="workflows/config/default.yaml", commit="abc1234")
    assert data["columns"] == ["dataset", "model", "seed", "molecule_stability", "validity"]
    assert data["rows"] == [["qm9-3d", "qm9-edm", 0, 0.2, None], ["qm9-3d", "qm9-edm", 1, 0.4, None]]
    (tmp_path / "edm.json").write_text(json.dumps(data))
    assert docs.load_result("edm.json", tmp_path)["provenance"]["command"] == "make run"
    with pytest.raises(docs.ResultFileError, match="no <dataset>/<model>/seed<n>/metrics.json"):
        docs.export_run(results, "molecules", ["valid"], title="t", command="c", config="c", commit="c")


def test_export_report_makes_one_result_file_per_table_of_the_rendered_report(tmp_path):
    from markupsafe import Markup

    from dgm_science import report

    moses = report.Table(["model", "FCD/Test", "samples"], [("", ["smiles-arm", "0.7081", "10,000"]),
                                                            ("published", ["CharRNN (published)", "0.073", "–"])])
    macros = report._environment(report.SHARED_TEMPLATES).get_template("_macros.html.j2").module  # as sections use
    env_table, note = macros.table, macros.note
    body = Markup("<h2>Molecules</h2><h3>MOSES &amp; more</h3>") + note("10k samples, seed 0.") + env_table(moses) \
        + env_table(report.Table(["model", "valid"], [("", ["graph-vae", "0.25"])])) \
        + Markup("<h3>QM9</h3><h4>Closed loop, D4RL</h4>") \
        + env_table(report.Table(["model", "valid"], [("", ["graph-flow", "1"])])) \
        + Markup("<h4>A figure</h4><img src='x.png'>") + env_table(report.Table(["model"], [("", ["x"])]))
    sections, contents = report.with_anchors([str(body)])
    page = report.render("report.html.j2", sections=sections, contents=contents, summary=report.Table(["a"]))
    (tmp_path / "report.html").write_text(page)
    files = docs.export_report(tmp_path / "report.html", command="make run", config="default.yaml", commit="abc1234",
                               run_time="50 min")
    assert sorted(files) == ["moses-more-2.json", "moses-more.json", "qm9-closed-loop-d4rl.json", "qm9.json"]
    first = files["moses-more.json"]
    assert first["title"] == "Molecules / MOSES & more"
    assert first["columns"] == ["model", "FCD/Test", "samples"]
    assert first["rows"] == [["smiles-arm", 0.7081, 10000], ["CharRNN (published)", 0.073, "–"]]
    assert first["notes"] == ["10k samples, seed 0."]
    caption = files["qm9-closed-loop-d4rl.json"]
    assert caption["title"] == "Molecules / QM9 / Closed loop, D4RL" and caption["rows"] == [["graph-flow", 1]]
    assert files["qm9.json"]["rows"] == [["x"]] and "notes" not in files["qm9.json"]
    assert first["provenance"]["run_time"] == "50 min" and first["provenance"]["commit"] == "abc1234"
    (tmp_path / "moses.json").write_text(json.dumps(first))
    assert "| CharRNN (published) | 0.073 | – |" in docs.render_table(docs.load_result("moses.json", tmp_path), "m")
    (tmp_path / "empty.html").write_text("<h2>x</h2><p>no table</p>")
    with pytest.raises(docs.ResultFileError, match="no tables"):
        docs.export_report(tmp_path / "empty.html", command="c", config="c", commit="c")


def test_adopt_moves_a_typed_table_into_a_result_file_and_quotes_it(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# P\n\n```\n| not | a table |\n|---|---|\n| 1.5 | 2 |\n```\n\n| model | FCD | note |\n"
                    "|---|---|---|\n| `smiles-arm` | 0.708 | a \\| b |\n| graph-vae | 4.58 | 10,000 |\n\ntext\n\n"
                    "| x | y |\n|---|---|\n| 1.0 | 2.0 |\n")
    assert len(docs.markdown_tables(page.read_text())) == 2  # the fenced one is not a table
    provenance = {"commit": "bfa7d87", "command": "make run", "config": "default.yaml", "date": "2026-11-26",
                  "machine": "2 CPU cores"}
    data = docs.adopt_table(page, 0, "old/moses.json", title="MOSES", provenance=provenance, notes=["one seed"],
                            root=tmp_path / "results")
    assert data["columns"] == ["model", "FCD", "note"]
    assert data["rows"] == [["`smiles-arm`", 0.708, "a | b"], ["graph-vae", 4.58, 10000]]
    text = page.read_text()
    assert "<!-- result: old/moses.json -->\n| model | FCD | note |" in text and "- one seed" in text
    assert "| graph-vae | 4.58 | 10,000 |" in text and "commit `bfa7d87`" in text
    assert docs.untraced_rows(text) == ["| 1.0 | 2.0 |"]  # the other table is still typed
    assert len(docs.markdown_tables(text)) == 1
    with pytest.raises(docs.ResultFileError, match="no table 1"):
        docs.adopt_table(page, 1, "x.json", title="t", provenance=provenance, root=tmp_path / "results")
