"""The HTML report: one section per domain, each rendered by the domain's registered reporter."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

from dgm_science import registry
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
tr.published td{color:#555;background:#fafafa}
.note{color:#555;font-size:13px}
img{max-width:100%}
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def collect_runs(results: Path, domain: str) -> list[dict[str, Any]]:
    """Every ``results/{domain}/{dataset}/{model}/seed{seed}/metrics.json``, with its path parts."""
    runs = []
    for path in sorted((results / domain).glob("*/*/seed*/metrics.json")):
        dataset, model, seed = path.parts[-4], path.parts[-3], path.parts[-2]
        runs.append({"dataset": dataset, "model": model, "seed": int(seed[4:]), "dir": path.parent,
                     "metrics": json.loads(path.read_text())})
    return runs


def run_scale(run_dir: Path, unit: str) -> str:
    """Training scale of a run from its checkpoint: examples, steps (the kept best), time, parameters."""
    from dgm_science import checkpoint

    ckpt = run_dir / "model.ckpt"
    if not ckpt.is_file():
        return "?"
    info = checkpoint.load(ckpt)["info"]
    best = f" (kept step {info['best_step']:,})" if "best_step" in info else ""
    return (f"{info.get('train_examples', 0):,} {unit}, {info.get('global_step', 0):,} steps{best}, "
            f"{info.get('train_seconds', 0) / 60:.1f} min, {info.get('parameters', 0) / 1e6:.2f} M params")


def table_html(header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """rows: (css class, cells)."""
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for css, cells in rows:
        out.append(f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>"


def write_report(results: Path, out: Path) -> None:
    """Render every registered domain reporter that has runs under ``results``."""
    sections = []
    for name in registry.names("report"):
        section = registry.build("report", name, results)
        if section:
            sections.append(section)
    if not sections:
        sections.append("<p>No finished runs under results/ yet.</p>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>dgm-science report</title>"
        f"<style>{STYLE}</style></head><body><h1>dgm-science report</h1>" + "\n".join(sections) + "</body></html>"
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page)
