"""Property prediction section of the report: each predictor's test metrics, selective prediction
and out-of-distribution detection (``results/prediction/{predictor}/metrics.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgm_science.registry import register
from dgm_science.report_parts import MISSING, Figure, Inputs, Table, figure_png, format_number, png_data_uri, render
from dgm_science.utils import read_json

PREDICTOR_ORDER = ("hybrid-arm", "regressor-arm", "ensemble")
SHIFTED = (("randomized", "randomized SMILES"), ("excluded_elements", "held-out elements"),
           ("moses", "MOSES (seen elements)"))
PUBLISHED_3D: dict[str, dict[str, float]] = {
    "SchNet": {"alpha": 0.235, "gap": 63, "homo": 41, "lumo": 34, "mu": 0.033, "cv": 0.033},
    "DimeNet++": {"alpha": 0.044, "gap": 33, "homo": 25, "lumo": 20, "mu": 0.030, "cv": 0.023},
    "EGNN": {"alpha": 0.071, "gap": 48, "homo": 29, "lumo": 25, "mu": 0.029, "cv": 0.031},
}
"""Test MAE of 3D models on QM9 (Satorras et al. 2021, "E(n) equivariant graph neural networks",
Table 3, which lists SchNet and DimeNet++ beside EGNN), in the reporting units (meV for orbital
energies, D, bohr^3, cal/(mol K)). Context only: these models read the DFT-relaxed 3D coordinates
and train on about 100,000 molecules, one model per property; ours read a SMILES string. Unlike
the design baselines under ``published/``, these were transcribed without a copy of the paper at
hand to check them against: check them before citing."""
PUBLISHED_3D_SOURCE = "Satorras et al. 2021, \"E(n) equivariant graph neural networks\", ICML, Table 3"
PUBLISHED_3D_CHECKED = "transcribed without a copy of the paper at hand: not checked against it"
PUBLISHED_NOTE = ("Published rows: test MAE of models that see the 3D coordinates (Satorras et al. 2021, Table 3; "
                  "about 100 k training molecules, one model per property, GPU); ours read SMILES only.")

SCORES = (("auroc_negative_log_likelihood", "-log p(x)"), ("auroc_typicality", "typicality score"),
          ("auroc_variance", "predictive variance"), ("auroc_epistemic_variance", "epistemic variance"))


def collect_predictions(results: Path) -> dict[str, dict[str, Any]]:
    """Every ``results/prediction/{predictor}/metrics.json`` by predictor, in the report's order."""
    found = {p.parent.name: read_json(p) for p in sorted((results / "prediction").glob("*/metrics.json"))}
    return dict(sorted(found.items(), key=lambda kv: (PREDICTOR_ORDER.index(kv[0]) if kv[0] in PREDICTOR_ORDER
                                                      else len(PREDICTOR_ORDER), kv[0])))


def _label(name: str, metrics: dict[str, Any]) -> str:
    return f"{name} ({metrics['members']} models)" if metrics.get("members", 1) > 1 else name


def _curves(runs: dict[str, dict[str, Any]], target: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    unit = ""
    for name, metrics in runs.items():
        row = metrics["test"].get(target, {})
        unit = row.get("unit", unit)
        for key, style, how in (("selective_mae_by_variance", "-", "variance"),
                                ("selective_mae_by_log_likelihood", "--", "log p(x)")):
            curve = row.get(key)
            if curve:
                keys = sorted(curve, key=float)
                ax.plot([float(k) for k in keys], [curve[k] for k in keys], style, marker="o",
                        label=f"{name}, by {how}")
    if not ax.lines:
        plt.close(fig)
        return None
    ax.invert_xaxis()
    ax.set_xlabel("fraction of test molecules kept")
    ax.set_ylabel(f"{target} MAE ({unit})")
    ax.legend(fontsize=7)
    png = figure_png(fig)
    plt.close(fig)
    return png_data_uri(png)


def _shifted_columns(runs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """The shifted sets of the runs as (key, label): the built-in ones first, then those named in the
    config (``prediction.shifted``) by name."""
    found = {name for metrics in runs.values() for name in metrics.get("shifted", {})}
    known = [(key, label) for key, label in SHIFTED if key in found]
    return known + [(name, f"{name} (test split)") for name in sorted(found - {k for k, _ in SHIFTED})]


def _task(metrics: dict[str, Any], target: str) -> str:
    return metrics["test"][target].get("task", "regression")


@register("report", "molecules-prediction")
def prediction_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML of the property predictors under ``results/prediction``; empty if there is none. A
    regression target shows its MAE, NLL and 90 % coverage; a 0/1 classification target its AUROC,
    accuracy and log-loss."""
    runs = collect_predictions(results)
    if not runs:
        return ""
    some = next(iter(runs.values()))
    targets = list(some["targets"]["names"])
    first = targets[0]
    header = ["model"]
    for target in targets:
        if _task(some, target) == "classification":
            header += [f"{target} AUROC", f"{target} accuracy", f"{target} log-loss"]
            continue
        unit = some["test"][target]["unit"]
        header += [f"{target} MAE ({unit})" if unit else f"{target} MAE", f"{target} NLL", f"{target} 90 % coverage"]
    properties = Table(header)
    selective = Table(["model", "rejecting by", "100 %", "90 %", "80 %", "50 %"])
    shifted = _shifted_columns(runs)
    ood = Table(["model", "score", *(label for _, label in shifted)])
    for name, metrics in runs.items():
        test = metrics["test"]
        cells = [_label(name, metrics)]
        for target in targets:
            row = test[target]
            if _task(metrics, target) == "classification":
                cells += [format_number(row["auroc"], 3), format_number(row["accuracy"], 3),
                          format_number(row["log_loss"], 3)]
                continue
            cells += [format_number(row["mae"], 4), format_number(row["nll"], 3), format_number(row["coverage_90"], 3)]
        properties.rows.append(("ours", cells))
        for key, how in (("selective_mae_by_log_likelihood", "log p(x)"), ("selective_mae_by_variance", "variance")):
            curve = test[first].get(key)
            if curve:
                selective.rows.append(("ours", [_label(name, metrics), how,
                                                *(format_number(curve.get(k), 4) for k in ("1.00", "0.90", "0.80",
                                                                                           "0.50"))]))
        for key, label in SCORES:
            values = [metrics["shifted"].get(s, {}).get(key) for s, _ in shifted]
            if any(v is not None for v in values):
                ood.rows.append(("ours", [_label(name, metrics), label, *(format_number(v, 3) for v in values)]))
        if "ood_rate_test" in metrics:
            values = [metrics["shifted"].get(s, {}).get("ood_rate_out") for s, _ in shifted]
            ood.rows.append(("ours", [_label(name, metrics), f"flagged OOD (typicality > 3; test split: "
                                      f"{format_number(metrics['ood_rate_test'], 3)})",
                                      *(format_number(v, 3) for v in values)]))
    published = False
    qm9_units = all(u for u in some["targets"].get("units", [])) and not some.get("user_data")
    for model, values in PUBLISHED_3D.items():
        if qm9_units and any(t in values for t in targets):
            published = True
            cells = [f"{model} (3D, published)"]
            for target in targets:
                cells += [format_number(values.get(target), 3), MISSING, MISSING]
            properties.rows.append(("published", cells))
    curves = [Figure(f"{first}: MAE against the fraction of test molecules kept", _curves(runs, first), "curves",
                     "No curve.")]
    return render(Path(__file__).with_name("report.html.j2"), properties=properties, selective=selective,
                  ood=ood, curves=curves,
                  published=PUBLISHED_NOTE if published else None)
