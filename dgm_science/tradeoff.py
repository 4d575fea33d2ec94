"""The report's family trade-off table: one row per model family (autoregressive, normalizing
flow, VAE, hierarchical VAE, diffusion, energy-based, implicit), a column per property of the
family table, each measured from the runs under ``results/`` rather than quoted:

- training stability: the sd over seeds of the domain's headline sample metric (``Domain.headline``)
  in the metric's own unit, and relative to its mean only where the metric is a ratio-scale quantity
  (``Domain.headline_ratio_scale``); likewise the sd over seeds of the held-out likelihood, in its own
  unit only (bits/residue, nats/atom, ...: a continuous log-density has no meaningful zero, its value
  shifts with the coordinates' unit, so a relative spread would say nothing); a seed whose training
  diverged stops with an error (a non-finite loss raises), so it shows as a missing seed;
- likelihood: the kind (exact / bound / unnormalized / none, ``GenerativeModel.likelihood``) and the
  held-out value where one exists: the test set's bits per residue (``dgm likelihood``), else -log p
  per unit of size on held-out validation items (the typicality statistics in the checkpoint), else
  the trainer's validation NLL per example;
- sampling speed: samples per second of ``dgm sample --timing`` (drawing and decoding, not scoring), per
  (domain, dataset), at the torch thread count ``sampling.json`` records: a sample is a molecule, a
  sequence, a conformation or a plan, so speeds of different domains are not compared;
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
from dgm_science.report_parts import MISSING, Table, bold, collect_runs, format_values, generative_folders, render
from dgm_science.utils import read_json

FAMILY_ORDER = ["autoregressive", "normalizing flow", "VAE", "hierarchical VAE", "diffusion", "energy-based",
                "implicit (GAN)"]
"""Rows in the order of the family table; a family not listed here comes after them."""
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
    for folder in generative_folders(results):
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


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _spread(values: list[Any], unit: str = "", relative: bool = False) -> str:
    """mean ± sd over seeds (4 significant digits for the mean, 2 for the sd) in the quantity's ``unit``,
    with the seed count; with ``relative`` (a ratio-scale quantity) also the sd as a percentage of the mean."""
    kept = _finite(values)
    if not kept:
        return MISSING
    unit = f" {unit}" if unit else ""
    if len(kept) == 1:
        return f"{kept[0]:.4g}{unit} (1 seed)"
    spread = relative_spread(kept) if relative else None
    percent = f", sd {100 * spread:.2g} % of the mean" if spread is not None else ""
    return f"{statistics.mean(kept):.4g} ± {statistics.stdev(kept):.2g}{unit} ({_seeds(len(kept))}{percent})"


def relative_spread(values: list[Any]) -> float | None:
    """sd / |mean| over seeds; None with fewer than 2 finite values or a zero mean. Meaningful only for a
    ratio-scale quantity (``Domain.headline_ratio_scale``), not for a log-density."""
    kept = _finite(values)
    if len(kept) < 2 or not statistics.mean(kept):
        return None
    return statistics.stdev(kept) / abs(statistics.mean(kept))


def seed_sd(values: list[Any]) -> float | None:
    """The sd over seeds (sample sd, n - 1), in the values' own unit; None with fewer than 2 finite values."""
    kept = _finite(values)
    return statistics.stdev(kept) if len(kept) >= 2 else None


def likelihood_value(cell: Cell) -> tuple[list[float], str, str] | None:
    """The cell's held-out likelihood per seed, its unit (bits/residue, nats/heavy atom, ...) and what it
    was measured on; None for a model without a normalized density."""
    if cell.likelihood not in ("exact", "bound"):
        return None
    test = cell.files("test_likelihood.json")
    if test:
        return [t["bits_per_residue"] for t in test], "bits/residue", "test set"
    infos = [r["info"] for r in cell.runs]
    typical = [i["typicality"] for i in infos if "typicality" in i]
    if typical:
        return [t["mean"] for t in typical], f"nats/{cell.space.size_unit}", f"validation, {typical[0]['n']:,} items"
    nll = [i.get("best_val_nll", i.get("val/nll")) for i in infos]
    if any(v is not None for v in nll):
        return nll, "nats/example", "validation batches"
    return None


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _speeds_by_threads(cell: Cell) -> dict[int | None, list[float]]:
    """Samples per second of the cell's seeds, grouped by the torch thread count each ran at (None: not
    recorded): speeds at different thread counts are not averaged."""
    groups: dict[int | None, list[float]] = {}
    for timing in cell.files("sampling.json"):
        if timing.get("samples_per_second"):
            groups.setdefault(timing.get("threads"), []).append(float(timing["samples_per_second"]))
    return groups


def _threads(threads: int | None) -> str:
    return "threads not recorded" if threads is None else f"{threads} thread{'s' if threads != 1 else ''}"


def sampling_speed(cell: Cell) -> str:
    """Samples per second over the cell's seeds (mean ± sd), per thread count they ran at."""
    groups = _speeds_by_threads(cell)
    if not groups:
        return MISSING
    parts = []
    for threads, speeds in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        text = (_rate(speeds[0]) if len(speeds) == 1
                else f"{_rate(statistics.mean(speeds))} ± {_rate(statistics.stdev(speeds))}")
        parts.append(f"{text} samples/s at {_threads(threads)} ({_seeds(len(speeds))})")
    return "; ".join(parts)


def compression(cell: Cell) -> str:
    measured = [c["range_coded_bits_per_residue"] for c in cell.files("compression.json")]
    if measured:
        return f"{format_values(measured, 3)} bits/residue (range coder, bit-exact)"
    return COMPRESSION_BY_KIND.get(cell.likelihood, MISSING)


def latent_space(cell: Cell) -> str:
    """The family's representation, with the active latent units per seed (per layer where there are
    several) where ``dgm likelihood`` (test split) or else ``dgm evaluate`` (``metrics.json``,
    validation split) counted them (posterior collapse shows as 0)."""
    latents = [t["latent"] for t in cell.files("test_likelihood.json") if "latent" in t]
    if not latents:
        latents = [m["latent"] for m in cell.files("metrics.json") if "latent" in m]
    counts = [f"{sum(t['active_units'])}/{sum(t['latent_dims'])}"
              + (f" ({' + '.join(str(a) for a in t['active_units'])})" if len(t["active_units"]) > 1 else "")
              for t in latents]
    return f"{cell.representation}; active units {', '.join(counts)}" if counts else cell.representation


def _family_rank(family: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def detail_table(cells: list[Cell]) -> Table:
    table = Table(["family", "model (dataset)", "likelihood", "held-out likelihood (mean ± sd over seeds)",
                   "stability: headline over seeds", "samples / s (torch threads)", "lossless compression",
                   "latent space"])
    for cell in sorted(cells, key=lambda c: (_family_rank(c.family), c.dataset, c.model)):
        value = likelihood_value(cell)
        held_out = MISSING if value is None else f"{_spread(value[0], value[1])}, {value[2]}"
        label = cell.headline[1] or cell.headline[0]
        headline = _spread(cell.metric(cell.headline[0]), relative=cell.space.headline_ratio_scale)
        table.rows.append(("ours", [bold(cell.family), f"{cell.model} ({cell.dataset})", cell.likelihood, held_out,
                                    f"{label}: {headline}", sampling_speed(cell), compression(cell),
                                    latent_space(cell)]))
    return table


def _seed_spreads(group: list[Cell], values: Any, unit: Any, relative: Any, name: Any) -> str:
    """Each cell's sd over seeds of ``values(cell)``, named ``name(cell)``, in its own ``unit(cell)``, with
    the sd as a percentage of the mean where ``relative(cell)`` (a ratio-scale quantity): units differ
    between cells, so none is compared or ranked; a note when no cell has several seeds (or no values)."""
    parts = []
    for cell in sorted(group, key=lambda c: (c.domain, c.dataset, c.model)):
        kept = _finite(values(cell))
        sd = seed_sd(kept)
        if sd is None:
            continue
        share = relative_spread(kept) if relative(cell) else None
        percent = f", {100 * share:.2g} % of the mean" if share is not None else ""
        measured = " ".join(part for part in (name(cell), f"sd {sd:.2g}", unit(cell)) if part)
        parts.append(f"{cell.model} ({cell.dataset}): {measured} ({_seeds(len(kept))}{percent})")
    if parts:
        return "; ".join(parts)
    return "1 seed: no spread" if any(_finite(values(c)) for c in group) else MISSING


def _family_speeds(group: list[Cell]) -> str:
    """Samples per second of each (domain, dataset, model) of the family at the thread count it ran at:
    a sample of one domain (a molecule) is not a sample of another (a trajectory), so nothing is pooled."""
    parts = [f"{c.domain}/{c.dataset}, {c.model}: {sampling_speed(c)}"
             for c in sorted(group, key=lambda c: (c.domain, c.dataset, c.model)) if _speeds_by_threads(c)]
    return "; ".join(parts) if parts else MISSING


def family_table(cells: list[Cell]) -> Table:
    """One row per family: its likelihood kind and latent space, the models that represent it, the sd
    over seeds of each model's held-out likelihood (in its unit) and headline sample metric (in its unit,
    and relative to the mean for a ratio-scale metric), each model's sampling speed with its domain and
    thread count, and where compression was measured."""
    table = Table(["family", "models", "likelihood", "stability: sd over seeds of the held-out likelihood",
                   "… and of the headline sample metric", "sampling (samples / s per domain, torch threads)",
                   "lossless compression", "latent space"])
    families = sorted({c.family for c in cells}, key=_family_rank)
    for family in families:
        group = [c for c in cells if c.family == family]
        likelihoods = {id(c): likelihood_value(c) for c in group}
        stability = [_seed_spreads(group, lambda c: (likelihoods[id(c)] or ([], "", ""))[0],
                                   lambda c: (likelihoods[id(c)] or ([], "", ""))[1], lambda c: False, lambda c: ""),
                     _seed_spreads(group, lambda c: c.metric(c.headline[0]), lambda c: "",
                                   lambda c: c.space.headline_ratio_scale, lambda c: c.headline[1] or c.headline[0])]
        measured = [c for c in group if c.files("compression.json")]
        kinds = sorted({c.likelihood for c in group})
        compress = (", ".join(f"{compression(c)}: {c.model} ({c.dataset})" for c in measured)
                    if measured else "; ".join(COMPRESSION_BY_KIND.get(k, MISSING) for k in kinds))
        table.rows.append(("ours", [bold(family), ", ".join(sorted({f"{c.model} ({c.dataset})" for c in group})),
                                    " / ".join(kinds), *stability, _family_speeds(group), compress,
                                    " / ".join(sorted({c.representation for c in group}))]))
    return table


@registry.register("report-across-domains", "families")
def section(results: Path, inputs: Any = None) -> str:
    """The trade-off section's HTML; empty when ``results`` has no generative runs. The report's section
    across domains (``inputs`` unused): ``report.write_report`` puts it after the domains' sections."""
    cells = collect_cells(Path(results)) if Path(results).is_dir() else []
    if not cells:
        return ""
    return render("tradeoff.html.j2", families=family_table(cells), details=detail_table(cells))
