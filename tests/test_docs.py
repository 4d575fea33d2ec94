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

    from dgm_science import report, report_parts

    moses = report.Table(["model", "FCD/Test", "samples"], [("", ["smiles-arm", "0.7081", "10,000"]),
                                                            ("published", ["CharRNN (published)", "0.073", "–"])])
    # the shared macros, as sections use them
    macros = report_parts._environment(report_parts.SHARED_TEMPLATES).get_template("_macros.html.j2").module
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


def _published_row(rendered: str, first_cell: str) -> list[str]:
    """The cells of the rendered table's row whose first cell is ``first_cell``."""
    for line in rendered.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in {rendered!r}")


def test_a_published_block_is_filled_from_the_packages_own_numbers(monkeypatch):
    from dgm_science.domains.molecules import report

    page = "# P\n\n<!-- published: moses -->\n| CharRNN | hand-typed | 0.999 |\n<!-- /published -->\n"
    filled = docs.fill_blocks(page)
    header = [c.strip() for c in filled.split("<!-- published: moses -->\n")[1].splitlines()[0].strip("|").split("|")]
    fcd = header.index("FCD Test ↓")
    assert _published_row(filled, "CharRNN")[fcd] == "0.0732" == f"{report.PUBLISHED_MOSES['CharRNN']['FCD/Test']:.4f}"
    assert "hand-typed" not in filled
    assert "`PUBLISHED_MOSES` in `dgm_science/domains/molecules/report.py`" in filled and "Polykovskiy" in filled
    # change detection: the block follows the constant the report reads, not a copy of it
    monkeypatch.setitem(report.PUBLISHED_MOSES["CharRNN"], "FCD/Test", 0.1234)
    assert _published_row(docs.fill_blocks(page), "CharRNN")[fcd] == "0.1234"
    assert docs.fill_blocks(filled) != filled  # the page filled before the change is now stale


def test_published_csv_tables_are_read_from_the_packages_files():
    import csv

    from dgm_science.applications.design.report import PUBLISHED

    with open(PUBLISHED / "guacamol_table2.csv", newline="") as fh:
        total = next(row for row in csv.DictReader(fh) if row["task"] == "total")
    guacamol = docs.render_published("guacamol")
    assert _published_row(guacamol, "total") == ["total", *(total[c] for c in ("best_of_dataset", "smiles_lstm",
                                                                               "smiles_ga", "graph_ga", "graph_mcts"))]
    assert "checked number by number against the authors' result files" in guacamol
    assert _published_row(docs.render_published("pmo"), "deco_hop")[1:] == ["0.667±0.045", "0.619±0.005",
                                                                           "0.590±0.002"]
    multi2d = docs.render_published("maze2d-planners-multi2d")
    assert _published_row(multi2d, "Hierarchical Diffuser")[1:4] == ["144.1", "140.2", "165.5"]
    assert "Maze2D" not in multi2d  # a protocol's table holds only the rows measured under it
    assert _published_row(docs.render_published("corl-maze2d"), "IQL")[1:] == ["maze2d-umaze-v1", "42.11 ± 0.58",
                                                                               "50.92 ± 4.23"]


def test_every_registered_published_table_renders_and_names_its_package_source():
    from dgm_science.domains.trajectories.rollout import PROTOCOLS

    assert {f"maze2d-planners-{p}" for p in PROTOCOLS} <= set(docs.PUBLISHED_TABLES)
    assert {"moses", "qm9", "qm9-3d", "qm9-properties-3d", "guacamol", "pmo", "corl-maze2d"} <= set(
        docs.PUBLISHED_TABLES)
    for name in docs.PUBLISHED_TABLES:
        table = docs.get_published(name)
        assert table.rows and all(len(row) == len(table.columns) for row in table.rows), name
        path = re.search(r"`(dgm_science/[^`]+)`", table.read_from)[1]
        assert (ROOT / path).is_file(), (name, path)
        constant = re.match(r"`([A-Z0-9_]+)` in", table.read_from)
        assert constant is None or constant[1] in (ROOT / path).read_text(), name
        assert docs.untraced_rows(docs.render_published(name)) != []  # numeric rows, which the block traces
        assert docs.untraced_rows(docs.fill_blocks(f"<!-- published: {name} -->\n<!-- /published -->\n")) == []


def test_an_unknown_published_table_or_a_stale_block_fails_the_check(tmp_path):
    with pytest.raises(docs.PublishedTableError, match="unknown published table 'nope'; known: .*moses"):
        docs.fill_blocks("<!-- published: nope -->\n<!-- /published -->\n")
    site = tmp_path / "docs"
    (site / "results").mkdir(parents=True)
    page = site / "page.md"
    fresh = docs.fill_blocks("# P\n\n<!-- published: qm9-3d -->\n<!-- /published -->\n")
    page.write_text(fresh)
    assert not [p for p in docs.problems(site) if p.startswith("docs/page.md")]
    edm = "| EDM | Hoogeboom et al. 2022, GPU | 0.987 |"
    assert edm in fresh
    page.write_text(fresh.replace(edm, "| EDM | Hoogeboom et al. 2022, GPU | 0.99 |"))
    assert "docs/page.md: out of date (run python -m dgm_science.docs)" in docs.problems(site)
    page.write_text("# P\n\n<!-- published: nope -->\n<!-- /published -->\n")
    with pytest.raises(docs.PublishedTableError, match="page.md: unknown published table 'nope'"):
        docs.problems(site)


def test_the_results_page_lists_the_published_tables_the_pages_use(tmp_path):
    site = tmp_path / "docs"
    (site / "results").mkdir(parents=True)
    assert "## Published tables" not in docs.render_results_page(site / "results")
    (site / "molecules.md").write_text("<!-- published: qm9 -->\n<!-- /published -->\n")
    listed = docs.render_results_page(site / "results")
    assert "- `qm9`: QM9 (implicit hydrogens)" in listed and "[molecules.md](molecules.md)" in listed


def test_export_timings_sums_the_runs_benchmark_files_per_domain(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, seconds, rss, cpu in (("molecules/moses/prepare.tsv", 60, 512, 50), ("molecules/qm9/x/seed0/train.tsv",
                                   120, 2048, 110), ("structures/ala2/simulate.tsv", 30, 256, 29)):
        path = tmp_path / "benchmarks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{seconds}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n")
    data = docs.export_timings(tmp_path / "benchmarks", command="make run", config="default.yaml", commit="abc1234",
                               run_time="51 min")
    assert data["rows"] == [["molecules", 2, 3.0, 2.7, 2.0], ["structures", 1, 0.5, 0.5, 0.25],
                            ["all", 3, 3.5, 3.2, 2.0]]
    assert data["provenance"]["run_time"] == "51 min"
    with pytest.raises(docs.ResultFileError, match="no Snakemake benchmark files"):
        docs.export_timings(tmp_path / "nothing", command="c", config="c", commit="c")
