"""What the report's sections are built from: tables and figures, number formats, the extra input
files a section is given by name, the runs under ``results/`` and the Jinja2 rendering (with the
shared templates in ``dgm_science/templates``). The domains' and applications' sections and the
trade-off table (``tradeoff.py``) import these; the report (``report.py``) assembles the sections it
finds in the registry, so that the report and any section import neither each other."""

from __future__ import annotations

import base64
import functools
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from markupsafe import Markup

from dgm_science import registry
from dgm_science.errors import DataError
from dgm_science.utils import read_json

MISSING = "–"
Inputs = Mapping[str, Path]
Row = tuple[str, list[Any]]
"""(css class, cells); a cell is text (escaped) or Markup (kept as HTML)."""


@dataclass
class Table:
    """A table of the report: column headers and rows of (css class, cells)."""

    header: list[str]
    rows: list[Row] = field(default_factory=list)


@dataclass
class Figure:
    """An image under a caption; ``missing`` is shown instead when there is no image."""

    caption: str
    src: str | None
    alt: str = ""
    missing: str = ""


# ----------------------------------------------------------------------------- numbers


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(value)
    except TypeError:
        return False


def format_number(value: Any, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; ``–`` for None and NaN."""
    return MISSING if _is_missing(value) else f"{value:.{digits}f}"


def format_count(value: Any) -> str:
    """An integer with thousands separators; ``–`` for None and NaN."""
    return MISSING if _is_missing(value) else f"{int(value):,}"


def format_values(values: Iterable[Any], digits: int = 4, separator: str = "±") -> str:
    """One value, or mean±sd over seeds, of the values that are not None or NaN; ``–`` if none is.
    ``separator`` goes between the mean and the sd (" ± " where a cell has room)."""
    kept = [v for v in values if not _is_missing(v)]
    if not kept:
        return MISSING
    if len(kept) == 1:
        return format_number(kept[0], digits)
    return f"{statistics.mean(kept):.{digits}f}{separator}{statistics.stdev(kept):.{digits}f}"


def format_metric(key: str, values: Iterable[Any], digits: int = 4) -> str:
    """A metric's cell: counts (``n_*`` keys) from the first value, else :func:`format_values`."""
    values = list(values)
    if key.startswith("n_"):
        return format_count(values[0] if values else None)
    return format_values(values, digits)


def bold(text: str) -> Markup:
    """``<b>text</b>`` with ``text`` escaped."""
    return Markup("<b>{}</b>").format(text)


# ----------------------------------------------------------------------------- inputs


def input_path(inputs: Inputs | None, name: str) -> Path | None:
    """The file given as input ``name``; None if it was not given, DataError if it does not exist."""
    if not inputs or name not in inputs:
        return None
    path = Path(inputs[name])
    if not path.is_file():
        raise DataError(f"{path}: report input {name!r} not found")
    return path


def input_json(inputs: Inputs | None, name: str) -> dict[str, Any] | None:
    """The JSON object of input ``name``; None if it was not given."""
    path = input_path(inputs, name)
    return None if path is None else read_json(path)


# ----------------------------------------------------------------------------- runs and images


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def generative_folders(results: Path) -> list[Path]:
    """The folders under ``results`` that hold generative runs (``results/<domain>/...``), sorted: every
    folder but the registered applications' ``results_folder``; none if ``results`` is not a
    folder."""
    results = Path(results)
    if not results.is_dir():
        return []
    applications = {registry.get("application", name).results_folder for name in registry.names("application")}
    return sorted(p for p in results.iterdir() if p.is_dir() and p.name not in applications)


def collect_runs(results: Path, domain: str) -> list[dict[str, Any]]:
    """Every ``results/{domain}/{dataset}/{model}/seed{seed}/metrics.json``, with its path parts."""
    runs = []
    for path in sorted((results / domain).glob("*/*/seed*/metrics.json")):
        dataset, model, seed = path.parts[-4], path.parts[-3], path.parts[-2]
        runs.append({"dataset": dataset, "model": model, "seed": int(seed[4:]), "dir": path.parent,
                     "metrics": read_json(path)})
    return runs


def run_scale(run_dir: Path, unit: str) -> str:
    """Training scale of a run from its checkpoint: examples, steps (the kept best), time, parameters."""
    from dgm_science import checkpoint

    ckpt = run_dir / "model.ckpt"
    if not ckpt.is_file():
        return "?"
    info = checkpoint.load(ckpt)["info"]
    best = f" (kept step {info['best_step']:,})" if "best_step" in info else ""
    capped = (" (STOPPED BY THE TIME CAP before its configured steps: a slow or busy machine; not the configured "
              "model)") if info.get("hit_time_cap") else ""
    return (f"{info.get('train_examples', 0):,} {unit}, {info.get('global_step', 0):,} steps{best}{capped}, "
            f"{info.get('train_seconds', 0) / 60:.1f} min, {info.get('parameters', 0) / 1e6:.2f} M params")


# ----------------------------------------------------------------------------- rendering


SHARED_TEMPLATES = Path(__file__).with_name("templates")


@functools.cache
def _environment(folder: Path) -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader([folder, SHARED_TEMPLATES]), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str | Path, **context: Any) -> Markup:
    """HTML (autoescaped) of a template with ``context``: a path (a domain's own template, e.g.
    ``Path(__file__).with_name("report.html.j2")``), or the name of a shared one in
    ``dgm_science/templates``; either may import the shared ``_macros.html.j2``."""
    path = Path(template)
    folder = path.parent if path.is_absolute() else SHARED_TEMPLATES
    return Markup(_environment(folder).get_template(path.name).render(**context))
