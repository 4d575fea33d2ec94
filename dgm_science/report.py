"""The HTML report: one section per domain and application, each rendered by its registered reporter
(registry ``report``: ``section(results, inputs) -> str``) from a Jinja2 template beside it
(``report.html.j2`` in its folder), then the sections across domains (registry ``report-across-domains``:
the trade-off table), with the page and the shared macros in ``dgm_science/templates``. What a section
is built from (tables, formats, inputs, rendering) is ``report_parts.py``, re-exported here; this module
imports no section, and no section imports it.

Extra files a section shows (a data row, a baseline's rollout, reference statistics) are passed
in by name, never read from fixed paths: ``inputs`` maps ``<domain>/<dataset>/<stem>`` (see
:func:`dgm_science.catalog.input_name`) to a file, and a section leaves out what is not given.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from markupsafe import Markup

from dgm_science import registry
from dgm_science.report_parts import (  # noqa: F401  (re-exported: what a section is built from)
    MISSING, SHARED_TEMPLATES, Figure, Inputs, Row, Table, bold, collect_runs, figure_png, format_count, format_metric,
    format_number, format_values, generative_folders, input_json, input_path, png_data_uri, render,
    run_scale,
)
from dgm_science.utils import atomic_path, read_json

log = logging.getLogger(__name__)

REPORT_SECTIONS = ("report", "report-across-domains")
"""The registry kinds of the report's sections, in page order: each ``section(results, inputs) -> str``,
sorted by name within a kind; the domains' sections, then those across domains."""

# ----------------------------------------------------------------------------- summary and contents


HEADING = re.compile(r"<h([23])>(.*?)</h\1>", re.S)


def with_anchors(sections: list[str]) -> tuple[list[Markup], list[tuple[int, str, Markup]]]:
    """The sections with an ``id`` on every ``<h2>`` / ``<h3>``, and the table of contents:
    (level, id, heading HTML) in page order."""
    contents: list[tuple[int, str, Markup]] = []
    used: set[str] = set()

    def anchor(match: re.Match[str]) -> str:
        level, inner = int(match[1]), match[2]
        base = re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>|&[a-z#0-9]+;", "", inner).lower()).strip("-") or "section"
        slug, k = base, 2
        while slug in used:
            slug, k = f"{base}-{k}", k + 1
        used.add(slug)
        contents.append((level, slug, Markup(inner)))
        return f'<h{level} id="{slug}">{inner}</h{level}>'

    return [Markup(HEADING.sub(anchor, str(section))) for section in sections], contents


def summary(results: Path) -> Table:
    """The report's first screen: per dataset and model, the domain's headline metric over its seeds beside
    the domain's published anchor for that dataset (``Domain.headline_anchor``), and a flag on every run the
    time cap stopped before its step budget or that has a checkpoint but no metrics (its evaluation failed or
    never ran)."""
    known = set(registry.names("model"))
    table = Table(["dataset", "model", "seeds", "headline metric", "ours", "published anchor", "flags"])
    for folder in generative_folders(results):
        for model_dir in sorted(p for p in folder.glob("*/*") if p.is_dir() and p.name in known):
            space = registry.get("domain", registry.get("model", model_dir.name).domain)
            flags, seeds = [], sorted(model_dir.glob("seed*"))
            for seed_dir in seeds:
                metrics_path = seed_dir / "metrics.json"
                if not metrics_path.is_file():
                    if (seed_dir / "model.ckpt").is_file():
                        flags.append(f"{seed_dir.name}: no metrics (evaluation failed or did not run)")
                elif read_json(metrics_path).get("training_hit_time_cap"):
                    flags.append(f"{seed_dir.name}: stopped by the time cap before its step budget")
            row_class = "flagged" if flags else ""
            for label, values, anchor in space.summary_rows(model_dir.parent.name, seeds):
                table.rows.append((row_class, [model_dir.parent.name, model_dir.name, str(len(values)), label,
                                               format_values(values, 3, " ± "),
                                               f"{anchor[0]}: {anchor[1]:.3f}" if anchor else MISSING,
                                               "; ".join(flags) or "none"]))
    return table


def write_report(results: Path, out: Path, inputs: dict[str, Path] | None = None) -> None:
    """Render every registered domain section (registry ``report``) that has runs under ``results`` into
    ``out``, then the sections across domains (registry ``report-across-domains``: the family trade-off
    table), after a one-screen summary and a table of contents."""
    inputs = dict(inputs or {})
    sections = []
    for kind in REPORT_SECTIONS:
        for name in registry.names(kind):
            section = registry.build(kind, name, results, inputs)
            if section:
                sections.append(section)
    sections, contents = with_anchors(sections)
    page = render("report.html.j2", sections=sections, contents=contents, summary=summary(results))
    with atomic_path(out) as tmp:
        tmp.write_text(page)
