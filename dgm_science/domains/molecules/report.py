"""Molecules section of the report: MOSES metrics beside the published rows, sampled molecules,
property histograms against the test set."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from dgm_science import checkpoint
from dgm_science.registry import register
from dgm_science.report import collect_runs, figure_png, png_data_uri, table_html

COLUMNS = [
    ("validity_without_correction", "Valid w/o corr."), ("valid", "Valid"), ("unique@1000", "Unique@1k"), ("unique@10000", "Unique@10k"),
    ("FCD/Test", "FCD Test ↓"), ("FCD/TestSF", "FCD TestSF ↓"), ("SNN/Test", "SNN Test"),
    ("SNN/TestSF", "SNN TestSF"), ("Frag/Test", "Frag Test"), ("Frag/TestSF", "Frag TestSF"),
    ("Scaf/Test", "Scaf Test"), ("Scaf/TestSF", "Scaf TestSF"), ("IntDiv1", "IntDiv"), ("IntDiv2", "IntDiv2"),
    ("Filters", "Filters"), ("novelty", "Novelty"), ("logP", "logP W1 ↓"), ("SA", "SA W1 ↓"),
    ("QED", "QED W1 ↓"), ("MW", "MW W1 ↓"),
]

# Polykovskiy et al. (2020), "Molecular Sets (MOSES)", Front. Pharmacol. 11:565644, Table 2 and the
# molsets README: means over 3 runs, 30,000 samples each, models trained on the full MOSES train
# set (1,584,663 molecules) on GPUs. Property W1 distances are not in that table.
PUBLISHED_MOSES: dict[str, dict[str, float]] = {
    "Train (data)": {"valid": 1.0, "unique@1000": 1.0, "unique@10000": 1.0, "FCD/Test": 0.008,
                     "FCD/TestSF": 0.4755, "SNN/Test": 0.6419, "SNN/TestSF": 0.5859, "Frag/Test": 1.0,
                     "Frag/TestSF": 0.9986, "Scaf/Test": 0.9907, "Scaf/TestSF": 0.0, "IntDiv1": 0.8567,
                     "IntDiv2": 0.8508, "Filters": 1.0},
    "CharRNN": {"valid": 0.9748, "unique@1000": 1.0, "unique@10000": 0.9994, "FCD/Test": 0.0732,
                "FCD/TestSF": 0.5204, "SNN/Test": 0.6015, "SNN/TestSF": 0.5649, "Frag/Test": 0.9998,
                "Frag/TestSF": 0.9983, "Scaf/Test": 0.9242, "Scaf/TestSF": 0.1101, "IntDiv1": 0.8562,
                "IntDiv2": 0.8503, "Filters": 0.9943, "novelty": 0.8419},
    "VAE": {"valid": 0.9767, "unique@1000": 1.0, "unique@10000": 0.9984, "FCD/Test": 0.099,
            "FCD/TestSF": 0.567, "SNN/Test": 0.6257, "SNN/TestSF": 0.5783, "Frag/Test": 0.9994,
            "Frag/TestSF": 0.9984, "Scaf/Test": 0.9386, "Scaf/TestSF": 0.0588, "IntDiv1": 0.8558,
            "IntDiv2": 0.8498, "Filters": 0.997, "novelty": 0.6949},
    "JTN-VAE": {"valid": 1.0, "unique@1000": 1.0, "unique@10000": 0.9992, "FCD/Test": 0.4224,
                "FCD/TestSF": 0.9962, "SNN/Test": 0.5561, "SNN/TestSF": 0.5273, "Frag/Test": 0.9962,
                "Frag/TestSF": 0.9948, "Scaf/Test": 0.8925, "Scaf/TestSF": 0.1005, "IntDiv1": 0.8512,
                "IntDiv2": 0.8453, "Filters": 0.9778, "novelty": 0.9153},
}
PUBLISHED_SCALE = "full MOSES train (1.58 M), GPU, 3 seeds × 30 k samples"

QM9_COLUMNS = [
    ("validity_without_correction", "Valid w/o corr."), ("valid", "Valid"), ("unique@10000", "Unique"),
    ("novelty", "Novelty"), ("FCD/Test", "FCD Test ↓"), ("SNN/Test", "SNN Test"), ("Frag/Test", "Frag Test"),
    ("IntDiv1", "IntDiv"), ("Filters", "Filters"), ("logP", "logP W1 ↓"), ("QED", "QED W1 ↓"),
]
# QM9 without hydrogens, published: GraphAF, MoFlow and GDSS from Jo et al. (2022), "Score-based
# generative modeling of graphs via the system of SDEs" (GDSS), Table 2 (validity without
# correction, uniqueness and novelty of valid molecules, FCD against the test set; 10,000 samples;
# MoFlow's 120,803 / 13,082 split); DiGress from Vignac et al. (2023), Table 3 (QM9, implicit
# hydrogens; validity and uniqueness only, no correction used).
PUBLISHED_QM9: dict[str, tuple[str, dict[str, float]]] = {
    "DiGress": ("Vignac et al. 2023, GPU", {"validity_without_correction": 0.990, "unique@10000": 0.962}),
    "GDSS": ("Jo et al. 2022, GPU", {"validity_without_correction": 0.9572, "unique@10000": 0.9846,
                                     "novelty": 0.8627, "FCD/Test": 2.900}),
    "MoFlow": ("Zang & Wang 2020, via GDSS", {"validity_without_correction": 0.9136, "unique@10000": 0.9865,
                                              "novelty": 0.9472, "FCD/Test": 4.467}),
    "GraphAF": ("Shi et al. 2020, via GDSS", {"validity_without_correction": 0.7443, "unique@10000": 0.8864,
                                              "novelty": 0.8659, "FCD/Test": 5.268}),
}


NOTES = {
    "moses": ("Valid: fraction of samples RDKit parses (graph models: after valency correction where it is on; "
              "'Valid w/o corr.' is MoFlow's validity before it); the other metrics use the valid ones (MOSES "
              "definitions). FCD, SNN, Frag, Scaf and property W1 against the cached Test / TestSF "
              "statistics{of_size} (published rows: all ~176k; a smaller reference lowers SNN and Scaf, since "
              "fewer neighbours and scaffolds are there to match); novelty against the whole MOSES train set."),
    "qm9": ("Valid w/o corr.: the sampled graph sanitizes as it is and is one connected molecule (MoFlow / GDSS "
            "definition); Valid: after the valency correction where the run used it. Unique: unique@10k of the "
            "valid molecules; novelty against our training split (100,000); FCD and the rest against the test "
            "split{of_size}. Published rows use their own splits and, except validity w/o corr., corrected "
            "molecules."),
}


def published_rows(dataset: str) -> list[tuple[str, str, dict[str, float]]]:
    """(name, scale, metrics) of the published baselines for a dataset."""
    if dataset == "moses":
        return [(f"{name}", PUBLISHED_SCALE if name != "Train (data)" else "MOSES train set", values)
                for name, values in PUBLISHED_MOSES.items()]
    if dataset == "qm9":
        return [(name, scale, values) for name, (scale, values) in PUBLISHED_QM9.items()]
    return []
PROPERTIES = [("logp", "logP"), ("sa", "SA"), ("qed", "QED"), ("mw", "MW")]


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f}±{statistics.stdev(values):.4f}"


def _scale(run_dir: Path) -> str:
    ckpt = run_dir / "model.ckpt"
    if not ckpt.is_file():
        return "?"
    info = checkpoint.load(ckpt)["info"]
    return (f"{info.get('train_examples', 0):,} mols, {info.get('global_step', 0):,} steps, "
            f"{info.get('train_seconds', 0) / 60:.1f} min, {info.get('parameters', 0) / 1e6:.1f} M params")


def _read_samples(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _grid(rows: list[dict[str, str]], n: int = 24) -> str:
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols = [m for m in (Chem.MolFromSmiles(r["smiles"]) for r in rows if r["valid"] == "1") if m is not None][:n]
    if not mols:
        return "<p>No valid molecules.</p>"
    image = Draw.MolsToGridImage(mols, molsPerRow=8, subImgSize=(170, 140), returnPNG=True)
    return f'<img alt="sampled molecules" src="{png_data_uri(image)}">'


def _histograms(dataset: str, samples: dict[str, list[dict[str, str]]], reference: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dgm_science.domains.molecules.metrics import load_reference

    ref = load_reference(reference) if reference.is_file() else None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (key, label) in zip(axes, PROPERTIES):
        series = {model: np.array([float(r[key]) for r in rows if r["valid"] == "1"]) for model, rows in samples.items()}
        arrays = ([ref[label]] if ref is not None else []) + [v for v in series.values() if len(v)]
        if not arrays:
            continue
        bins = np.linspace(*np.percentile(np.concatenate(arrays), [0.2, 99.8]), 50)  # edges shared by all series
        if ref is not None:
            ax.hist(ref[label], bins=bins, density=True, histtype="stepfilled", alpha=0.3, color="k", label="test")
        for model, values in series.items():
            if len(values):  # a model without valid molecules has no density to draw
                ax.hist(values, bins=bins, density=True, histtype="step", label=model)
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    png = figure_png(fig)
    plt.close(fig)
    return f'<img alt="property histograms {dataset}" src="{png_data_uri(png)}">'


@register("report", "molecules")
def molecules_section(results: Path) -> str:
    """HTML for every molecules run under ``results``; empty if there is none."""
    runs = collect_runs(results, "molecules")
    if not runs:
        return ""
    parts = ["<h2>Molecules</h2>"]
    for dataset in sorted({r["dataset"] for r in runs}):
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        models = sorted({r["model"] for r in ds_runs})
        columns = QM9_COLUMNS if dataset == "qm9" else COLUMNS
        header = ["model", "scale"] + [label for _, label in columns]
        rows: list[tuple[str, list[str]]] = []
        for model in models:
            mruns = [r for r in ds_runs if r["model"] == model]
            cells = [f"<b>{model}</b> (ours, {len(mruns)} seed{'s' if len(mruns) > 1 else ''})",
                     _scale(mruns[0]["dir"])]
            cells += [_fmt([r["metrics"].get(key) for r in mruns]) for key, _ in columns]
            rows.append(("ours", cells))
        for name, scale, values in published_rows(dataset):
            cells = [f"{name} (published)", scale]
            cells += [f"{values[key]:.4f}" if key in values else "–" for key, _ in columns]
            rows.append(("published", cells))
        parts.append(f"<h3>{dataset.upper()}</h3>")
        parts.append(table_html(header, rows))
        sizes = sorted({int(r["metrics"]["reference_test_size"]) for r in ds_runs if "reference_test_size" in r["metrics"]})
        of_size = f" of {', '.join(f'{n:,}' for n in sizes)} molecules each" if sizes else ""
        parts.append(f'<p class="note">{NOTES.get(dataset, NOTES["moses"]).format(of_size=of_size)}</p>')
        samples = {}
        for model in models:
            first = next(r for r in ds_runs if r["model"] == model)
            path = first["dir"] / "samples.csv"
            if path.is_file():
                samples[model] = _read_samples(path)
                parts.append(f"<h4>{model}: sampled molecules (seed {first['seed']})</h4>")
                parts.append(_grid(samples[model]))
        if samples:
            reference = results.parent / "resources" / "molecules" / dataset / "data" / "ref_test.npz"
            parts.append("<h4>Properties of valid samples vs the test set</h4>")
            parts.append(_histograms(dataset, samples, reference))
    return "\n".join(parts)
