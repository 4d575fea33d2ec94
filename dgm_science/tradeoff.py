"""The report's family trade-off table: one row per model family (autoregressive, normalizing
flow, VAE, hierarchical VAE, diffusion, energy-based, implicit), a column per property of the
family table, each measured from the runs under ``results/`` rather than quoted:

- training stability: the spread over seeds of the domain's headline sample metric
  (``Domain.headline``); a seed whose training diverged stops with an error (a non-finite loss
  raises), so it shows as a missing seed;
- likelihood: the kind (exact / bound / unnormalized / none, ``GenerativeModel.likelihood``) and the
  held-out value where one exists: the test set's bits per residue (``dgm likelihood``), else -log p
  per unit of size on held-out validation items (the typicality statistics in the checkpoint), else
  the trainer's validation NLL per example;
- sampling speed: samples per second of ``dgm sample --timing`` (drawing and decoding, not scoring);
- lossless compression: bits per residue of ``dgm compress`` where it ran;
- representation: whether the family has a latent space (``GenerativeModel.representation``).

A detail table gives the same per (model, dataset): units differ between domains, so values are
compared within a dataset.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgm_science import registry
from dgm_science.report import MISSING, Table, bold, collect_runs, format_values, render
from dgm_science.utils import read_json

FAMILY_ORDER = ["autoregressive", "normalizing flow", "VAE", "hierarchical VAE", "diffusion", "energy-based",
                "implicit (GAN)"]
"""Rows in the order of the family table; a family not listed here comes after them."""
NOT_GENERATIVE = ("prediction", "design")
"""Folders under ``results/`` that hold no generative runs."""
COMPRESSION_BY_KIND = {"exact": "possible, not run (arithmetic coding; continuous data once discretised)",
                       "bound": "possible, not run (bits-back coding)",
                       "unnormalized": "no (no normalized density)", "none": "no (no density)"}


@dataclass
class Cell:
    """The runs (seeds) of one model on one dataset."""

    domain: str
    dataset: str
    model: str
    family: str
    likelihood: str
    representation: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    _files: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def space(self) -> Any:
        """The model's ``Domain`` class (its headline metric and size unit)."""
        return registry.get("domain", registry.get("model", self.model).domain)

    @property
    def headline(self) -> tuple[str, str]:
        return self.space.headline

    def metric(self, key: str) -> list[float]:
        return [r["metrics"].get(key) for r in self.runs]

    def files(self, name: str) -> list[dict[str, Any]]:
        """The JSON of ``name`` in each run folder that has it (read once)."""
        if name not in self._files:
            self._files[name] = [read_json(r["dir"] / name) for r in self.runs if (r["dir"] / name).is_file()]
        return self._files[name]


def _model_info(run_dir: Path) -> dict[str, Any]:
    from dgm_science import checkpoint

    path = run_dir / "model.ckpt"
    return checkpoint.load(path)["info"] if path.is_file() else {}


def _what_model(run_dir: Path, info: dict[str, Any] | None = None) -> tuple[str, str, str]:
    """(family, likelihood kind, representation) that the checkpoint records (``info``, if read
    already); for a checkpoint written before they were recorded, the model's class tells (the
    checkpoint is loaded, never unpickled); ``?`` without a checkpoint."""
    info = _model_info(run_dir) if info is None else info
    if "family" in info:
        return info["family"], info["likelihood"], info["representation"]
    if not (run_dir / "model.ckpt").is_file():
        return "?", "?", "?"
    from dgm_science import api

    model = type(api.load(run_dir / "model.ckpt").model)
    return model.family, model.likelihood, model.representation


def collect_cells(results: Path) -> list[Cell]:
    """Every generative run under ``results/<domain>/<dataset>/<model>/seed<n>/``, grouped by
    (dataset, model), with the family, likelihood kind and representation of its model."""
    known = set(registry.names("model"))
    cells: dict[tuple[str, str, str], Cell] = {}
    for folder in sorted(p for p in Path(results).iterdir() if p.is_dir() and p.name not in NOT_GENERATIVE):
        for run in collect_runs(Path(results), folder.name):
            if run["model"] not in known:
                continue
            key = (folder.name, run["dataset"], run["model"])
            run["info"] = _model_info(run["dir"])  # read once: the checkpoint holds the weights too
            if key not in cells:
                cells[key] = Cell(folder.name, run["dataset"], run["model"], *_what_model(run["dir"], run["info"]))
            cells[key].runs.append(run)
    return list(cells.values())


def _finite(values: list[Any]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _spread(values: list[Any]) -> str:
    """mean ± sd over seeds (4 significant digits), with the seed count and the sd relative to the mean."""
    kept = _finite(values)
    if not kept:
        return MISSING
    if len(kept) == 1:
        return f"{kept[0]:.4g} (1 seed)"
    spread = relative_spread(kept)
    relative = f", {100 * spread:.2g} %" if spread is not None else ""
    return f"{statistics.mean(kept):.4g} ± {statistics.stdev(kept):.2g} ({len(kept)} seeds{relative})"


def relative_spread(values: list[Any]) -> float | None:
    """sd / |mean| over seeds; None with fewer than 2 finite values or a zero mean."""
    kept = _finite(values)
    if len(kept) < 2 or not statistics.mean(kept):
        return None
    return statistics.stdev(kept) / abs(statistics.mean(kept))


def likelihood_value(cell: Cell) -> tuple[list[float], str] | None:
    """The cell's held-out likelihood per seed and its unit; None for a model without a
    normalized density."""
    if cell.likelihood not in ("exact", "bound"):
        return None
    test = cell.files("test_likelihood.json")
    if test:
        return [t["bits_per_residue"] for t in test], "bits/residue (test set)"
    infos = [r["info"] for r in cell.runs]
    typical = [i["typicality"] for i in infos if "typicality" in i]
    if typical:
        return [t["mean"] for t in typical], f"nats/{cell.space.size_unit} (validation, {typical[0]['n']:,} items)"
    nll = [i.get("best_val_nll", i.get("val/nll")) for i in infos]
    if any(v is not None for v in nll):
        return nll, "nats/example (validation batches)"
    return None


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _speeds(cell: Cell) -> list[float]:
    return [t["samples_per_second"] for t in cell.files("sampling.json") if t.get("samples_per_second")]


def sampling_speed(cell: Cell) -> str:
    """Samples per second over the cell's seeds (mean ± sd), with the threads they ran on."""
    speeds = _speeds(cell)
    if not speeds:
        return MISSING
    threads = cell.files("sampling.json")[0].get("threads")
    text = (_rate(speeds[0]) if len(speeds) == 1
            else f"{_rate(statistics.mean(speeds))} ± {_rate(statistics.stdev(speeds))}")
    return f"{text} ({threads} threads)" if threads else text


def compression(cell: Cell) -> str:
    measured = [c["range_coded_bits_per_residue"] for c in cell.files("compression.json")]
    if measured:
        return f"{format_values(measured, 3)} bits/residue (range coder, bit-exact)"
    return COMPRESSION_BY_KIND.get(cell.likelihood, MISSING)


def latent_space(cell: Cell) -> str:
    """The family's representation, with the active latent units per seed where ``dgm likelihood``
    counted them (posterior collapse shows as 0)."""
    counts = [f"{sum(t['latent']['active_units'])}/{sum(t['latent']['latent_dims'])}"
              for t in cell.files("test_likelihood.json") if "latent" in t]
    return f"{cell.representation}; active units {', '.join(counts)}" if counts else cell.representation


def _family_rank(family: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def detail_table(cells: list[Cell]) -> Table:
    table = Table(["family", "model (dataset)", "likelihood", "held-out likelihood", "stability: headline over seeds",
                   "samples / s", "lossless compression", "latent space"])
    for cell in sorted(cells, key=lambda c: (_family_rank(c.family), c.dataset, c.model)):
        value = likelihood_value(cell)
        held_out = MISSING if value is None else f"{_spread(value[0])} {value[1]}"
        label = cell.headline[1] or cell.headline[0]
        table.rows.append(("ours", [bold(cell.family), f"{cell.model} ({cell.dataset})", cell.likelihood, held_out,
                                    f"{label}: {_spread(cell.metric(cell.headline[0]))}", sampling_speed(cell),
                                    compression(cell), latent_space(cell)]))
    return table


def _largest_spread(group: list[Cell], values: Any, label: str | None) -> str:
    """The largest sd / mean over seeds among the group's cells, naming the metric and model; a
    note when no cell has several seeds (or the values do not exist)."""
    spreads = [(s, c) for c in group if (s := relative_spread(values(c))) is not None]
    if not spreads:
        return "1 seed: no spread" if any(_finite(values(c)) for c in group) else MISSING
    worst, cell = max(spreads, key=lambda sc: sc[0])
    name = label or cell.headline[1] or cell.headline[0]
    return f"{100 * worst:.2g} % ({name}, {cell.model}, {len(cell.runs)} seeds)"


def family_table(cells: list[Cell]) -> Table:
    """One row per family: its likelihood kind and latent space, the models that represent it, the
    largest relative spread over seeds of the held-out likelihood and of the headline sample
    metric, the range of sampling speeds and where compression was measured."""
    table = Table(["family", "models", "likelihood", "stability: sd / mean over seeds of the held-out likelihood",
                   "… and of the headline sample metric", "sampling (samples / s)", "lossless compression",
                   "latent space"])
    families = sorted({c.family for c in cells}, key=_family_rank)
    for family in families:
        group = [c for c in cells if c.family == family]
        likelihoods = {id(c): likelihood_value(c) for c in group}
        stability = [_largest_spread(group, lambda c: (likelihoods[id(c)] or ([], ""))[0], "held-out likelihood"),
                     _largest_spread(group, lambda c: c.metric(c.headline[0]), None)]
        speeds = [v for c in group for v in _speeds(c)]
        speed = MISSING if not speeds else (_rate(min(speeds)) if len(speeds) == 1 or min(speeds) == max(speeds)
                                            else f"{_rate(min(speeds))} – {_rate(max(speeds))}")
        measured = [c for c in group if c.files("compression.json")]
        kinds = sorted({c.likelihood for c in group})
        compress = (", ".join(f"{compression(c)}: {c.model} ({c.dataset})" for c in measured)
                    if measured else "; ".join(COMPRESSION_BY_KIND.get(k, MISSING) for k in kinds))
        table.rows.append(("ours", [bold(family), ", ".join(sorted({f"{c.model} ({c.dataset})" for c in group})),
                                    " / ".join(kinds), *stability, speed, compress,
                                    " / ".join(sorted({c.representation for c in group}))]))
    return table


def section(results: Path) -> str:
    """The trade-off section's HTML; empty when ``results`` has no generative runs."""
    cells = collect_cells(Path(results)) if Path(results).is_dir() else []
    if not cells:
        return ""
    return render("tradeoff.html.j2", families=family_table(cells), details=detail_table(cells))
