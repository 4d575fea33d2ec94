"""The documentation site's generated parts, and the check that every quoted figure has a file behind it.

``python -m dgm_science.docs`` (``make docs`` runs it before ``mkdocs build --strict``) writes:

- ``docs/reference/cli.md``: every ``dgm`` subcommand's ``--help``, from the parser itself;
- ``docs/reference/config.md``: the configuration reference, ``workflows/config/README.md`` (which a
  test keeps equal to the schema's keys);
- ``docs/results.md``: every committed result file under ``docs/results/`` as a table with the commit,
  config and command that made it;
- in any page, the block between ``<!-- result: <file> -->`` and ``<!-- /result -->``: that result file's
  table, so a page quotes a figure only through its file;
- in any page, the block between ``<!-- published: <name> -->`` and ``<!-- /published -->``: the published
  table ``name`` (``PUBLISHED_TABLES``: papers' numbers as the package holds them, in the constants and CSVs
  its reports read), with a source line naming the paper, the package file or constant and what it was
  checked against, so a page quotes a paper's number only from the package's own copy.

``python -m dgm_science.docs --check`` changes nothing and exits 1 when a generated part is stale (a result or
published block included), or a page shows numeric table rows outside result and published blocks without
declaring them: a warning admonition titled "Figures without a result file" whose first line says why, shown
to the reader on the page. It exits 2 when a block names a result file that does not exist or lacks its
provenance, or a published table that is not registered.

A result file is JSON: ``title``, ``provenance`` (``commit``, ``command``, ``config``, ``date``, ``machine``),
``columns``, ``rows`` (one list per row) and optional ``notes``. ``python -m dgm_science.docs export`` writes one
from a pipeline run's ``results/<domain>/`` (the chosen ``metrics.json`` keys of every dataset, model and seed);
``python -m dgm_science.docs export-report`` writes one per table of a run's HTML report (the rows the report shows,
published rows beside ours included, with the notes of the table's section), so that a page quotes the report's
tables as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import html.parser
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
PROVENANCE_KEYS = ("commit", "command", "config", "date", "machine")

BLOCK = re.compile(r"(<!-- result: (?P<file>[^ ]+) -->\n)(?P<body>.*?)(<!-- /result -->)", re.S)
PUBLISHED_BLOCK = re.compile(r"(<!-- published: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- /published -->)", re.S)
UNTRACED_TITLE = '!!! warning "Figures without a result file"'
UNTRACED = re.compile(re.escape(UNTRACED_TITLE) + r"\n    (?P<why>[^\n]+)")
# a Markdown table row holding a measured-looking number (a decimal, a percentage or a ± spread), once code
# spans and version numbers (1.11.1) are taken out
NUMERIC_ROW = re.compile(r"^\|.*(\d\.\d|\d ?%|±)")
NOT_FIGURES = re.compile(r"`[^`]*`|\bv?\d+\.\d+\.\d+\b")


class ResultFileError(ValueError):
    """A result file that cannot stand behind a figure: missing, malformed or without provenance."""


class PublishedTableError(ValueError):
    """A published block naming a table that is not registered in ``PUBLISHED_TABLES``."""


def load_result(name: str, root: Path = RESULTS) -> dict[str, Any]:
    """The result file ``root/name``, checked: a title, full provenance, and rows as wide as the columns."""
    path = root / name
    if not path.is_file():
        raise ResultFileError(f"{path}: no such result file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultFileError(f"{path}: line {err.lineno} column {err.colno}: {err.msg}") from err
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: a result file is a JSON object")
    for key in ("title", "provenance", "columns", "rows"):
        if key not in data:
            raise ResultFileError(f"{path}: missing key {key!r}")
    provenance = data["provenance"]
    if not isinstance(provenance, dict):
        raise ResultFileError(f"{path}: 'provenance' must be an object")
    missing = [key for key in PROVENANCE_KEYS if not str(provenance.get(key) or "").strip()]
    if missing:
        raise ResultFileError(f"{path}: provenance lacks {', '.join(missing)}")
    width = len(data["columns"])
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, list) or len(row) != width:
            raise ResultFileError(f"{path}: row {i} must be a list of {width} values (the columns)")
    return data


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_table(data: dict[str, Any], name: str) -> str:
    """A result file as a Markdown table, its notes and a source line naming the file, commit and command."""
    lines = ["| " + " | ".join(_cell(c) for c in data["columns"]) + " |",
             "|" + "---|" * len(data["columns"])]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in data["rows"]]
    if data.get("notes"):
        lines += [""] + [f"- {note}" for note in data["notes"]]
    p = data["provenance"]
    lines += ["", f"Source: `docs/results/{name}` (commit `{p['commit']}`, {p['date']}, {p['machine']}; "
                  f"config: {p['config']}; command: `{p['command']}`)."]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class PublishedTable:
    """A paper's table as the package holds it. ``rows``: cells as text, as the package's report formats them
    (or as its CSV stores them), one list per row, as wide as ``columns``; ``source``: the paper and table;
    ``read_from``: the package's file or constant and the function that reads it; ``checked``: what the package
    records about checking the numbers against the paper (None: it records nothing)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    source: str
    read_from: str
    checked: str | None = None


PUBLISHED_TABLES: dict[str, Callable[[], PublishedTable]] = {}
"""Published table name (``<!-- published: NAME -->``) -> the function that reads it from the package."""


def published_table(name: str) -> Callable[[Callable[[], PublishedTable]], Callable[[], PublishedTable]]:
    """Decorator registering a function that returns a :class:`PublishedTable` as ``name``."""

    def decorator(fn: Callable[[], PublishedTable]) -> Callable[[], PublishedTable]:
        if name in PUBLISHED_TABLES:
            raise ValueError(f"published table {name!r} is registered twice")
        PUBLISHED_TABLES[name] = fn
        return fn

    return decorator


def get_published(name: str) -> PublishedTable:
    """The registered published table ``name``; a clear error lists the known names."""
    if name not in PUBLISHED_TABLES:
        raise PublishedTableError(f"unknown published table {name!r}; known: {', '.join(sorted(PUBLISHED_TABLES))}")
    return PUBLISHED_TABLES[name]()


def render_published(name: str) -> str:
    """A published table as a Markdown table and a source line: the paper, where the package holds the numbers
    and what they were checked against."""
    table = get_published(name)
    lines = ["| " + " | ".join(_cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
    checked = table.checked or "the package records no check of these numbers against the paper"
    lines += ["", f"Source: {table.source}. Read from {table.read_from}; {checked}."]
    return "\n".join(lines) + "\n"


def _metric_table(title: str, published: list[tuple[str, str, dict[str, float]]], columns: list[tuple[str, str]],
                  digits: int, **where: Any) -> PublishedTable:
    """(name, scale, metrics) rows over the report's metric ``columns`` (key, label) that any row has, with the
    report's ``digits``."""
    from dgm_science.report_parts import format_number

    shown = [(key, label) for key, label in columns if any(key in values for _, _, values in published)]
    rows = [[name, scale, *(format_number(values.get(key), digits) for key, _ in shown)]
            for name, scale, values in published]
    return PublishedTable(title, ["model", "scale", *(label for _, label in shown)], rows, **where)


@published_table("moses")
def _moses() -> PublishedTable:
    from dgm_science.domains.molecules import report

    return _metric_table("MOSES: published baselines", report.published_rows("moses"), report.COLUMNS, 4,
                         source=report.PUBLISHED_MOSES_SOURCE,
                         read_from="`PUBLISHED_MOSES` in `dgm_science/domains/molecules/report.py` "
                                   "(`published_rows`, as the report's MOSES table)")


@published_table("qm9")
def _qm9() -> PublishedTable:
    from dgm_science.domains.molecules import report

    return _metric_table("QM9 (implicit hydrogens): published graph generators", report.published_rows("qm9"),
                         report.QM9_COLUMNS, 4, source=report.PUBLISHED_QM9_SOURCE,
                         read_from="`PUBLISHED_QM9` in `dgm_science/domains/molecules/report.py` "
                                   "(`published_rows`, as the report's QM9 table)")


@published_table("qm9-3d")
def _qm9_3d() -> PublishedTable:
    from dgm_science.domains.structures import report

    published = [(name, scale, values) for name, (scale, values) in report.PUBLISHED_QM9_3D.items()]
    return _metric_table("QM9 conformations (with hydrogens): EDM's published rows", published,
                         report.QM9_COLUMNS, 3, source=report.PUBLISHED_QM9_3D_SOURCE,
                         read_from="`PUBLISHED_QM9_3D` in `dgm_science/domains/structures/report.py` "
                                   "(as the report's QM9-3D table)")


def _as_printed(value: float) -> str:
    """A published error as papers print it: 3 decimals below 1 (0.030), a whole number as one (63)."""
    return f"{value:.3f}" if abs(value) < 1 else f"{value:g}"


@published_table("qm9-properties-3d")
def _qm9_properties_3d() -> PublishedTable:
    from dgm_science.applications.prediction import report as prediction_report
    from dgm_science.domains.molecules.data import QM9_PROPERTIES
    from dgm_science.applications.prediction.predict import report_unit

    published = prediction_report.PUBLISHED_3D
    targets = list(dict.fromkeys(target for values in published.values() for target in values))
    columns = ["model", *(f"{target} MAE ({report_unit(target, QM9_PROPERTIES[target][1])[0]})"
                          for target in targets)]
    rows = [[model, *(_as_printed(values[target]) if target in values else "–" for target in targets)]
            for model, values in published.items()]
    return PublishedTable("QM9 properties: test MAE of published models that read the 3D coordinates", columns,
                          rows, source=prediction_report.PUBLISHED_3D_SOURCE,
                          read_from="`PUBLISHED_3D` in `dgm_science/applications/prediction/report.py` "
                                    "(as the report's property table)",
                          checked=prediction_report.PUBLISHED_3D_CHECKED)


@published_table("guacamol")
def _guacamol() -> PublishedTable:
    from dgm_science.applications.design import report as design_report

    table = design_report.published("guacamol_table2")
    baselines = [column for column in next(iter(table.values())) if column != "task"]
    source, checked = design_report.PUBLISHED_SOURCES["guacamol_table2"]
    return PublishedTable("GuacaMol Table 2: the baselines' goal-directed benchmark scores",
                          ["task", *(design_report.GUACAMOL_BASELINES.get(c, c) for c in baselines)],
                          [[task, *(row[c] for c in baselines)] for task, row in table.items()], source=source,
                          read_from="`dgm_science/applications/design/published/guacamol_table2.csv` "
                                    "(`design.report.published`, as the design report)", checked=checked)


@published_table("pmo")
def _pmo() -> PublishedTable:
    from dgm_science.applications.design import report as design_report

    table = design_report.published("pmo_auc_top10")
    source, checked = design_report.PUBLISHED_SOURCES["pmo_auc_top10"]
    return PublishedTable("PMO: AUC top-10 at 10,000 calls",
                          ["task", *design_report.PMO_METHODS.values()],
                          [[task, *(design_report.pmo_cell(row, m) for m in design_report.PMO_METHODS)]
                           for task, row in table.items()], source=source,
                          read_from="`dgm_science/applications/design/published/pmo_auc_top10.csv` "
                                    "(`design.report.published`, as the design report)", checked=checked)


MAZE2D_PROTOCOLS = ("d4rl", "multi2d")
"""The evaluation protocols with a published planner table each (``rollout.PROTOCOLS``; a test keeps them equal)."""


def _maze2d_planners(protocol: str) -> PublishedTable:
    """Published planners of every maze measured under ``protocol``: one row per method, one column per maze."""
    from dgm_science.domains.trajectories.mazes import MAZES
    from dgm_science.domains.trajectories.rollout import PROTOCOLS, published_planners
    from dgm_science.report_parts import format_number

    methods: dict[str, dict[str, str]] = {}
    for maze in MAZES.values():
        for row in published_planners(maze.name, protocol):
            cells = methods.setdefault(row["method"], {"source": row["source"], "checked": row["checked"]})
            cells[maze.d4rl_id] = format_number(row["score"], 1) + (
                "" if row["error"] is None else f" ± {format_number(row['error'], 1)}")
    columns = [maze.d4rl_id for maze in MAZES.values()]
    return PublishedTable(f"Published planners, {PROTOCOLS[protocol].description}",
                          ["method", *columns, "source", "checked against the paper"],
                          [[method, *(cells.get(c, "–") for c in columns), cells["source"], cells["checked"]]
                           for method, cells in methods.items()],
                          source="the papers and tables of the source column (D4RL-normalised scores)",
                          read_from="`dgm_science/domains/trajectories/published/maze2d_planners.csv` "
                                    "(`rollout.published_planners`, as the trajectories report)",
                          checked="whether each row was checked against its paper: the file's `checked` column")


for _protocol in MAZE2D_PROTOCOLS:
    published_table(f"maze2d-planners-{_protocol}")(functools.partial(_maze2d_planners, _protocol))


@published_table("corl-maze2d")
def _corl_maze2d() -> PublishedTable:
    from dgm_science.domains.trajectories import offline_rl
    from dgm_science.domains.trajectories.mazes import MAZES

    rows = []
    for algo, algorithm in offline_rl.ALGORITHMS.items():
        for maze in MAZES.values():
            scores = offline_rl.published_rows(algo, maze.name)
            if scores:
                rows.append([algorithm.published, maze.d4rl_id,
                             f"{scores['corl_last']:.2f} ± {scores['corl_last_sd']:.2f}",
                             f"{scores['corl_best']:.2f} ± {scores['corl_best_sd']:.2f}"])
    return PublishedTable("CORL's published offline RL scores on D4RL maze2d",
                          ["algorithm", "D4RL dataset", "last score", "best score"], rows,
                          source=offline_rl.CORL_SOURCE,
                          read_from="`dgm_science/domains/trajectories/published/corl_maze2d.csv` "
                                    "(`offline_rl.published_rows`, as `dgm offline-rl` and the report)",
                          checked=offline_rl.CORL_CHECKED)


def published_uses(docs: Path = DOCS) -> dict[str, list[str]]:
    """Published table name -> the pages (relative to ``docs``) whose blocks show it."""
    uses: dict[str, list[str]] = {}
    for page in sorted(docs.rglob("*.md")):
        for name in dict.fromkeys(m["name"] for m in PUBLISHED_BLOCK.finditer(page.read_text())):
            uses.setdefault(name, []).append(str(page.relative_to(docs)))
    return dict(sorted(uses.items()))


def result_files(root: Path = RESULTS) -> list[str]:
    """Every result file under ``root``, as a path relative to it, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.json"))


def render_results_page(root: Path = RESULTS) -> str:
    """``docs/results.md``: every result file's table, grouped by folder, and the pages that still quote
    figures without one."""
    out = ["# Results", "",
           "The figures the documentation quotes come from committed result files under `docs/results/`,",
           "each with the commit, config and command that made it, except on the pages listed first below,",
           "which still carry hand-typed tables and say so at their top. This page is generated from the files by",
           "`python -m dgm_science.docs`; a page quotes a figure through a result block, which the",
           "same command fills in, and `--check` (run by the tests) fails when a block and its file differ.", ""]
    untraced = untraced_pages(root.parent)
    if untraced:
        out += ["## Figures not yet backed by a result file", "",
                "These pages still carry hand-typed tables of earlier releases.", ""]
        out += [f"- [{page}]({page}): {why}" for page, why in untraced]
        out.append("")
    used = published_uses(root.parent)
    if used:
        out += ["## Published tables", "",
                "Papers' numbers shown through published blocks, read from the package's own copies (the same "
                "constants and files its reports read):", ""]
        for name, pages in used.items():
            table = get_published(name)
            shown = ", ".join(f"[{page}]({page})" for page in pages)
            out.append(f"- `{name}`: {table.title}; {table.source}; read from {table.read_from}. On {shown}.")
        out.append("")
    group = None
    for name in result_files(root):
        folder = str(Path(name).parent)
        if folder != group:
            group = folder
            out += [f"## {folder}", ""]
        data = load_result(name, root)
        out += [f"### {data['title']}", "", render_table(data, name)]
    return "\n".join(out).rstrip() + "\n"


def untraced_pages(docs: Path = DOCS) -> list[tuple[str, str]]:
    """(page, reason) of every page that declares figures without a result file."""
    found = []
    for page in sorted(docs.rglob("*.md")):
        match = UNTRACED.search(page.read_text())
        if match:
            found.append((str(page.relative_to(docs)), match["why"].strip()))
    return found


def fill_blocks(text: str, root: Path = RESULTS) -> str:
    """``text`` with every result block's body replaced by its file's table, and every published block's by
    its published table."""
    text = BLOCK.sub(lambda m: m[1] + render_table(load_result(m["file"], root), m["file"]) + m[4], text)
    return PUBLISHED_BLOCK.sub(lambda m: m[1] + render_published(m["name"]) + m[4], text)


def untraced_rows(text: str) -> list[str]:
    """Numeric table rows of a page that lie outside its result and published blocks."""
    outside = PUBLISHED_BLOCK.sub("", BLOCK.sub("", text))
    inside_code = False
    rows = []
    for line in outside.splitlines():
        if line.lstrip().startswith("```"):
            inside_code = not inside_code
        elif not inside_code and NUMERIC_ROW.match(NOT_FIGURES.sub("", line)):
            rows.append(line)
    return rows


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def render_cli() -> str:
    """``docs/reference/cli.md``: the ``--help`` of ``dgm`` and of each subcommand, from the parser."""
    from dgm_science.cli import build_parser

    with _columns(100):
        parser = build_parser()
        out = ["# CLI reference", "",
               "Generated from the `dgm` parser by `python -m dgm_science.docs`; `dgm COMMAND --help` prints the same.",
               "", "```text", parser.format_help().rstrip(), "```", ""]
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in subparsers.choices.items():
            help_text = sub.format_help().rstrip().replace("```", "'''")
            out += [f"## dgm {name}", "", "```text", help_text, "```", ""]
    return "\n".join(out)


def render_config() -> str:
    """``docs/reference/config.md``: the configuration reference kept beside the configs."""
    text = (ROOT / "workflows/config/README.md").read_text()
    intro = ("Generated from `workflows/config/README.md` (a test keeps it equal to the schema's keys) by "
             "`python -m dgm_science.docs`.\n\n")
    title, _, body = text.partition("\n")
    return f"{title} reference\n\n{intro}{body.lstrip()}\n{render_source_kinds()}"


def render_source_kinds() -> str:
    """The options of every registered file kind of a user dataset's ``source`` block (from their dataclasses,
    as the schema is: ``dgm_science/sources.py``)."""
    from dgm_science import registry, schema

    out = ["## User datasets: the file kinds of `source`", "",
           "A dataset block with a `source` (any name that is not a built-in dataset's) is a user dataset "
           "(docs/your-data/): `<group>.<name>.{source, models, ...}`. Its `source` takes `kind` and that kind's "
           "options below; the rest of the block is the domain's `user_dataset.<domain>` in "
           "`workflows/schemas/config.schema.yaml`. Generated from the registered kinds.", ""]
    for kind in registry.names("source"):
        cls = registry.get("source", kind)
        options = schema.dataclass_schema(cls.Options)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out += [f"### `{kind}` ({cls.domain})", "", doc, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, prop in options["properties"].items():
            if key == "kind":
                continue
            if key == "split":
                kind_type, default = " / ".join(cls.split_methods), cls.split_methods[0]
            else:
                kind_type = _schema_type(prop)
                default = prop.get("default", "–")
            out.append(f"| `{key}` | {kind_type} | {_shown_default(default)} | {prop.get('description', '')} |")
        out.append("")
    return "\n".join(out)


def _schema_type(prop: dict) -> str:
    if "enum" in prop:
        return " / ".join(map(str, prop["enum"]))
    if "anyOf" in prop or "oneOf" in prop:
        return " or ".join(_schema_type(p) for p in prop.get("anyOf", prop.get("oneOf")))
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict) and "type" in prop["items"]:
        return f"array of {_schema_type(prop['items'])}"
    types = prop.get("type", "")
    return " or ".join(types) if isinstance(types, list) else str(types)


def _shown_default(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def generated(docs: Path = DOCS) -> dict[Path, str]:
    """Every generated file's path and wanted content (pages with result or published blocks included)."""
    root = docs / "results"
    reference = {docs / "reference" / "cli.md", docs / "reference" / "config.md", docs / "results.md"}
    pages = {}
    for page in sorted(docs.rglob("*.md")):  # first, so that an unknown published table is reported with its page
        if page in reference or page.is_relative_to(root):
            continue
        text = page.read_text()
        if BLOCK.search(text) or PUBLISHED_BLOCK.search(text):
            try:
                pages[page] = fill_blocks(text, root)
            except PublishedTableError as err:
                raise PublishedTableError(f"{page.relative_to(docs.parent)}: {err}") from err
    return {docs / "reference" / "cli.md": render_cli(), docs / "reference" / "config.md": render_config(),
            docs / "results.md": render_results_page(root), **pages}


def problems(docs: Path = DOCS) -> list[str]:
    """What ``--check`` reports: stale generated files and blocks, and pages with undeclared figures."""
    found = []
    for path, text in generated(docs).items():
        if not path.is_file() or path.read_text() != text:
            found.append(f"{path.relative_to(docs.parent)}: out of date (run python -m dgm_science.docs)")
    reference = {docs / "reference" / "cli.md", docs / "reference" / "config.md", docs / "results.md"}
    for page in sorted(set(docs.rglob("*.md")) - reference):  # the reference pages hold defaults, not figures
        text = page.read_text()
        rows = untraced_rows(text)
        if rows and not UNTRACED.search(text):
            found.append(f"{page.relative_to(docs.parent)}: {len(rows)} table rows with figures outside result "
                         f"and published blocks and no {UNTRACED_TITLE!r} warning, e.g. {rows[0][:80]!r}")
    return found


def current_commit(root: Path = ROOT) -> str:
    """The short commit of the working tree, with ``-dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    return git("rev-parse", "--short", "HEAD").strip() + ("-dirty" if dirty else "")


def machine() -> str:
    """The machine in words: CPU cores, and the GPU when torch sees one."""
    words = f"{os.cpu_count()} CPU cores"
    import torch

    if torch.cuda.is_available():
        words += f", {torch.cuda.get_device_name(0)}"
    return words


def export_run(results: Path, domain: str, metrics: list[str], *, title: str, command: str, config: str,
               commit: str | None = None) -> dict[str, Any]:
    """A result file of a pipeline run: one row per ``results/<domain>/<dataset>/<model>/seed<n>/metrics.json``
    with the ``metrics`` keys (null where a run lacks one), and the provenance of the run."""
    from dgm_science.utils import read_json

    files = sorted(Path(results, domain).glob("*/*/seed*/metrics.json"))
    if not files:
        raise ResultFileError(f"{Path(results, domain)}: no <dataset>/<model>/seed<n>/metrics.json to export")
    rows = []
    for path in files:
        values = read_json(path)
        rows.append([path.parts[-4], path.parts[-3], int(path.parts[-2].removeprefix("seed")),
                     *[values.get(key) for key in metrics]])
    return {"title": title, "columns": ["dataset", "model", "seed", *metrics], "rows": rows,
            "provenance": {"commit": commit or current_commit(), "command": command, "config": config,
                           "date": datetime.date.today().isoformat(), "machine": machine()}}


class _ReportTables(html.parser.HTMLParser):
    """The tables of a rendered report: for each, the ``<h2>`` / ``<h3>`` it sits under (text and ``id``), the
    ``<h4>`` caption right above it (if no image came between), its header and body cells as text, and the
    section's ``<p class="note">`` paragraphs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: dict[int, tuple[str, str]] = {}
        self.notes: list[str] = []
        self.tables: list[dict[str, Any]] = []
        self._text: list[str] | None = None
        self._what: tuple[str, ...] = ()
        self._table: dict[str, Any] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("h2", "h3", "h4"):
            self._text, self._what = [], (tag, attributes.get("id") or "")
        elif tag == "img":
            self.headings.pop(4, None)  # a figure's caption, not the next table's
        elif tag == "p" and "note" in (attributes.get("class") or "").split():
            self._text, self._what = [], ("note",)
        elif tag == "table":
            self._table = {"header": [], "rows": [], "headings": dict(self.headings), "notes": self.notes}
            self.tables.append(self._table)
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._text, self._what = [], (tag,)
        elif tag == "br" and self._text is not None:
            self._text.append(" ")

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._text is not None and self._what and tag == ("p" if self._what[0] == "note" else self._what[0]):
            text = " ".join("".join(self._text).split())
            kind = self._what[0]
            if kind in ("h2", "h3", "h4"):
                level = int(kind[1])
                self.headings = {k: v for k, v in self.headings.items() if k < level}
                self.headings[level] = (text, self._what[1] or re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-"))
                if level < 4:
                    self.notes = []  # a new section: its own notes (a list shared by the section's tables)
            elif kind == "note":
                self.notes.append(text)
            elif self._row is not None:
                self._row.append(text)
            self._text, self._what = None, ()
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._table["header"] or not self._row:
                self._table["rows"].append(self._row)
            else:
                self._table["header"] = self._row
            self._row = None
        elif tag == "table":
            self._table = None


def _number(text: str) -> Any:
    """A cell's text as a number where it is one (so that result files hold numbers), else the text."""
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return text
    return int(value) if re.fullmatch(r"-?[\d,]+", text) else value


def _short(slug: str, limit: int = 60) -> str:
    """``slug`` cut after its last whole word within ``limit`` characters (a file name, not a sentence)."""
    return slug if len(slug) <= limit else slug[:limit + 1].rsplit("-", 1)[0]


def export_report(report: Path, *, command: str, config: str, commit: str | None = None,
                  run_time: str | None = None) -> dict[str, dict[str, Any]]:
    """One result file per table of a rendered report, named ``<section id>[-<caption>][-k].json`` after the
    ``<h3>`` (or ``<h2>``) the table sits under and its ``<h4>`` caption: its title is the headings, its rows the
    table's cells as the report shows them (numbers as numbers), its notes the section's notes."""
    parser = _ReportTables()
    parser.feed(Path(report).read_text())
    provenance = {"commit": commit or current_commit(), "command": command, "config": config,
                  "date": datetime.date.today().isoformat(), "machine": machine()}
    if run_time:
        provenance["run_time"] = run_time
    out: dict[str, dict[str, Any]] = {}
    for table in parser.tables:
        if not table["header"]:
            continue
        levels = sorted(table["headings"])
        slug = "-".join(_short(table["headings"][level][1]) for level in levels if level > 2 or len(levels) == 1) \
            or "report"
        name, k = f"{slug}.json", 2
        while name in out:
            name, k = f"{slug}-{k}.json", k + 1
        width = len(table["header"])
        rows = [[_number(cell) for cell in (row + [""] * width)[:width]] for row in table["rows"]]
        data = {"title": " / ".join(table["headings"][level][0] for level in levels) or "report",
                "provenance": provenance, "columns": table["header"], "rows": rows}
        if table["notes"]:
            data["notes"] = list(table["notes"])
        out[name] = data
    if not out:
        raise ResultFileError(f"{report}: no tables")
    return out



BENCHMARK_FIELDS = {"s": "wall seconds", "max_rss": "max RSS MB", "cpu_time": "CPU seconds", "mean_load": "mean load %"}
"""The columns of a Snakemake ``benchmark:`` file this reads, and what they are."""


def read_benchmarks(benchmarks: Path, pattern: str = "**/*.tsv") -> list[tuple[str, dict[str, float | None]]]:
    """Every repeat of every Snakemake ``benchmark:`` file ``benchmarks/<pattern>`` (one TSV per job: a header
    line, then one line per repeat): (the job, as the file's path under ``benchmarks`` without ``.tsv``, the
    ``BENCHMARK_FIELDS`` as numbers, None where Snakemake wrote NA), sorted by file."""
    files = sorted(Path(benchmarks).glob(pattern))
    if not files:
        raise ResultFileError(f"{benchmarks}: no Snakemake benchmark files match {pattern!r}")
    found = []
    for path in files:
        lines = path.read_text().splitlines()
        header = lines[0].split("\t") if lines else []
        if not set(BENCHMARK_FIELDS) <= set(header):
            raise ResultFileError(f"{path}: line 1 is not a Snakemake benchmark header: {lines[:1]!r}")
        job = str(path.relative_to(benchmarks).with_suffix(""))
        for line in lines[1:]:
            value = dict(zip(header, line.split("\t")))
            found.append((job, {key: None if value[key] == "NA" else float(value[key]) for key in BENCHMARK_FIELDS}))
    return found


def export_timings(benchmarks: Path, *, command: str, config: str, commit: str | None = None,
                   run_time: str | None = None) -> dict[str, Any]:
    """A run's Snakemake ``benchmark:`` files (``benchmarks/<domain>/.../<rule>.tsv``) summed per domain: jobs,
    the jobs' wall time and CPU time in minutes (jobs run side by side, so the sums exceed the run's wall time)
    and the largest resident memory of one job; a last row for the whole run."""
    last = dict(read_benchmarks(benchmarks))  # a file holds one line per repeat; the pipeline runs each job once
    per: dict[str, list[float]] = {}
    for job, value in last.items():
        total = per.setdefault(Path(job).parts[0], [0, 0.0, 0.0, 0.0])
        total[0] += 1
        total[1] += (value["s"] or 0) / 60
        total[2] += (value["cpu_time"] or 0) / 60
        total[3] = max(total[3], (value["max_rss"] or 0) / 1024)
    rows_out = [[name, int(v[0]), round(v[1], 1), round(v[2], 1), round(v[3], 2)] for name, v in sorted(per.items())]
    rows_out.append(["all", sum(r[1] for r in rows_out), round(sum(r[2] for r in rows_out), 1),
                     round(sum(r[3] for r in rows_out), 1), max(r[4] for r in rows_out)])
    provenance = {"commit": commit or current_commit(), "command": command, "config": config,
                  "date": datetime.date.today().isoformat(), "machine": machine()}
    if run_time:
        provenance["run_time"] = run_time
    return {"title": "The run's jobs per domain (Snakemake benchmark files)", "provenance": provenance,
            "columns": ["domain", "jobs", "job wall time, summed (min)", "job CPU time, summed (min)",
                        "largest job's peak RSS (GB)"],
            "rows": rows_out}

CELL_SPLIT = re.compile(r"(?<!\\)\|")


def markdown_tables(text: str) -> list[tuple[int, int]]:
    """(first line, end line) of every Markdown table of ``text`` outside result and published blocks and code
    fences."""
    lines = text.split("\n")
    found, start, fenced = [], None, False
    for i, line in enumerate(lines + [""]):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            if start is None:
                start = i
        elif start is not None:
            if i - start >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[start + 1].strip()):
                found.append((start, i))
            start = None
    inside = [(text[:m.start()].count("\n"), text[:m.end()].count("\n"))
              for pattern in (BLOCK, PUBLISHED_BLOCK) for m in pattern.finditer(text)]
    return [(a, b) for a, b in found if not any(lo <= a <= hi for lo, hi in inside)]


def adopt_table(page: Path, index: int, name: str, *, title: str, provenance: dict[str, str],
                notes: list[str] | None = None, root: Path = RESULTS) -> dict[str, Any]:
    """Move the ``index``-th Markdown table of ``page`` (outside result blocks) into the result file ``name``
    with ``provenance``, and put a result block naming it in its place: for figures measured by an earlier
    release whose run is known (commit, config, command) but whose table was typed into a page."""
    text = page.read_text()
    tables = markdown_tables(text)
    if not 0 <= index < len(tables):
        raise ResultFileError(f"{page}: no table {index} (it has {len(tables)} outside result blocks)")
    start, end = tables[index]
    lines = text.split("\n")

    def cells(line: str) -> list[Any]:
        parts = CELL_SPLIT.split(line.strip().strip("|"))
        return [_number(part.strip().replace("\\|", "|")) for part in parts]

    columns = [str(c) for c in cells(lines[start])]
    rows = [cells(line) for line in lines[start + 2:end]]
    data = {"title": title, "provenance": provenance, "columns": columns,
            "rows": [(row + [""] * len(columns))[:len(columns)] for row in rows]}
    if notes:
        data["notes"] = notes
    out = root / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    load_result(name, root)
    lines[start:end] = [f"<!-- result: {name} -->", render_table(data, name) + "<!-- /result -->"]
    page.write_text("\n".join(lines))
    return data


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    if argv[:1] == ["export-report"]:
        return export_report_main(argv[1:])
    if argv[:1] == ["adopt"]:
        return adopt_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m dgm_science.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            found = problems()
            for line in found:
                print(line, file=sys.stderr)
            return 1 if found else 0
        for path, text in generated().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
    except (ResultFileError, PublishedTableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def export_main(argv: list[str]) -> int:
    """``python -m dgm_science.docs export``: a run's metrics as a result file under docs/results/."""
    parser = argparse.ArgumentParser(prog="python -m dgm_science.docs export", description=export_main.__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"), help="the run's results/ folder")
    parser.add_argument("--domain", required=True, help="the folder under results/ (molecules, structures, ...)")
    parser.add_argument("--metrics", required=True, help="comma-separated metrics.json keys, the table's columns")
    parser.add_argument("--out", required=True, help="the result file, relative to docs/results/")
    parser.add_argument("--title", required=True)
    parser.add_argument("--command", required=True, help="the command that made the run, e.g. 'make run'")
    parser.add_argument("--config", required=True, help="the run's config files")
    parser.add_argument("--commit", default=None, help="the commit the run ran at (default: this tree's)")
    args = parser.parse_args(argv)
    try:
        data = export_run(args.results, args.domain, [m.strip() for m in args.metrics.split(",") if m.strip()],
                          title=args.title, command=args.command, config=args.config, commit=args.commit)
    except ResultFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = RESULTS / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    load_result(args.out)
    print(f"wrote {out.relative_to(ROOT)} ({len(data['rows'])} rows)")
    return 0



def export_report_main(argv: list[str]) -> int:
    """``python -m dgm_science.docs export-report``: every table of a run's report as a result file."""
    parser = argparse.ArgumentParser(prog="python -m dgm_science.docs export-report",
                                     description=export_report_main.__doc__)
    parser.add_argument("report", type=Path, help="the run's results/report.html")
    parser.add_argument("--out", required=True, help="a folder relative to docs/results/, e.g. default-run")
    parser.add_argument("--command", required=True, help="the command that made the run, e.g. 'make run'")
    parser.add_argument("--config", required=True, help="the run's config files")
    parser.add_argument("--commit", default=None, help="the commit the run ran at (default: this tree's)")
    parser.add_argument("--run-time", default=None, help="the run's wall time, recorded with the provenance")
    parser.add_argument("--benchmarks", type=Path, default=None,
                        help="the run's benchmarks/ folder: also write timing.json, its jobs' times per domain")
    args = parser.parse_args(argv)
    try:
        files = export_report(args.report, command=args.command, config=args.config, commit=args.commit,
                              run_time=args.run_time)
        if args.benchmarks is not None:
            files["timing.json"] = export_timings(args.benchmarks, command=args.command, config=args.config,
                                                  commit=args.commit, run_time=args.run_time)
    except (ResultFileError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = RESULTS / args.out
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
        load_result(str(Path(args.out, name)))
    print(f"wrote {len(files)} result files under {folder.relative_to(ROOT)}")
    return 0


def adopt_main(argv: list[str]) -> int:
    """``python -m dgm_science.docs adopt``: a table typed into a page becomes a result file with its run's
    provenance, and the page quotes it through a result block."""
    parser = argparse.ArgumentParser(prog="python -m dgm_science.docs adopt", description=adopt_main.__doc__)
    parser.add_argument("page", type=Path)
    parser.add_argument("--table", type=int, required=True, help="which table of the page, from 0, outside blocks")
    parser.add_argument("--out", required=True, help="the result file, relative to docs/results/")
    parser.add_argument("--title", required=True)
    for key in PROVENANCE_KEYS:
        parser.add_argument(f"--{key}", required=True, help=f"the run's {key}")
    parser.add_argument("--note", action="append", default=[], help="a caveat shown under the table (repeatable)")
    args = parser.parse_args(argv)
    try:
        adopt_table(args.page, args.table, args.out, title=args.title, notes=args.note,
                    provenance={key: getattr(args, key) for key in PROVENANCE_KEYS})
    except (ResultFileError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote docs/results/{args.out}; {args.page} quotes it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
