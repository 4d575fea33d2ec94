"""Molecules section of the report: MOSES metrics beside the published rows, sampled molecules,
property histograms against the test set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dgm_science.registry import register
from dgm_science.report_parts import (
    Figure, Inputs, Table, bold, collect_runs, figure_png, format_number, format_values, input_path, png_data_uri,
    render, run_scale,
)

COLUMNS = [
    ("validity_without_correction", "Valid w/o corr."), ("valid", "Valid"), ("unique@1000", "Unique@1k"),
    ("unique@10000", "Unique@10k"),
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
PUBLISHED_MOSES_SOURCE = ("Polykovskiy et al. 2020, \"Molecular Sets (MOSES)\", Front. Pharmacol. 11:565644, "
                          "Table 2 and the molsets README")

QM9_COLUMNS = [
    ("validity_without_correction", "Valid w/o corr."), ("valid", "Valid"), ("unique@10000", "Unique"),
    ("novelty", "Novelty"), ("FCD/Test", "FCD Test ↓"), ("SNN/Test", "SNN Test"), ("Frag/Test", "Frag Test"),
    ("IntDiv1", "IntDiv"), ("Filters", "Filters"), ("logP", "logP W1 ↓"), ("QED", "QED W1 ↓"),
]
# QM9 without hydrogens, published: GraphAF, MoFlow and GDSS from Jo et al. (2022), "Score-based
# generative modeling of graphs via the system of SDEs" (GDSS), Table 2 (validity without
# correction, uniqueness and novelty of valid molecules, FCD against the test set; 10,000 samples;
# MoFlow's 120,803 / 13,082 split); DiGress from Vignac et al. (2023), Table 3 (QM9, implicit
# hydrogens; validity and uniqueness only, no correction used); MolGAN from De Cao & Kipf (2018),
# "MolGAN: An implicit generative model for small molecular graphs" (valid, unique and novel %
# of its QM9 samples; its uniqueness shows the GAN's mode collapse).
PUBLISHED_QM9: dict[str, tuple[str, dict[str, float]]] = {
    "DiGress": ("Vignac et al. 2023, GPU", {"validity_without_correction": 0.990, "unique@10000": 0.962}),
    "GDSS": ("Jo et al. 2022, GPU", {"validity_without_correction": 0.9572, "unique@10000": 0.9846,
                                     "novelty": 0.8627, "FCD/Test": 2.900}),
    "MoFlow": ("Zang & Wang 2020, via GDSS", {"validity_without_correction": 0.9136, "unique@10000": 0.9865,
                                              "novelty": 0.9472, "FCD/Test": 4.467}),
    "GraphAF": ("Shi et al. 2020, via GDSS", {"validity_without_correction": 0.7443, "unique@10000": 0.8864,
                                              "novelty": 0.8659, "FCD/Test": 5.268}),
    "MolGAN": ("De Cao & Kipf 2018, GPU; mode collapse: 10.4 % unique", {"validity_without_correction": 0.981,
                                                                       "unique@10000": 0.104, "novelty": 0.942}),
}
PUBLISHED_QM9_SOURCE = ("Jo et al. 2022 (GDSS), Table 2: GDSS, MoFlow, GraphAF; Vignac et al. 2023 (DiGress), "
                        "Table 3; De Cao & Kipf 2018 (MolGAN)")


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
    # a user dataset (docs/your-data/molecules.md): its own held-out split, no published row
    "user": ("Your dataset: Valid as for MOSES (graph models: after valency correction where it is on); the other "
             "metrics use the valid ones (MOSES definitions), FCD, SNN, Frag, Scaf and property W1 against your "
             "held-out test split{of_size}, novelty against your training split. No published row: a published "
             "figure is on another dataset's protocol."),
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


def _read_samples(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _grid(rows: list[dict[str, str]], n: int = 24) -> str | None:
    """Data URI of a grid of the first ``n`` valid sampled molecules; None if there is none."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols = [m for m in (Chem.MolFromSmiles(r["smiles"]) for r in rows if r["valid"] == "1") if m is not None][:n]
    if not mols:
        return None
    return png_data_uri(Draw.MolsToGridImage(mols, molsPerRow=8, subImgSize=(170, 140), returnPNG=True))


def _histograms(samples: dict[str, list[dict[str, str]]], reference: Path | None) -> str:
    """Data URI of the property histograms of each model's valid samples, over the test set's when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dgm_science.domains.molecules.metrics import load_reference

    ref = load_reference(reference) if reference is not None else None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (key, label) in zip(axes, PROPERTIES):
        series = {model: np.array([float(r[key]) for r in rows if r["valid"] == "1"])
                  for model, rows in samples.items()}
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
    return png_data_uri(png)


def _table(dataset: str, ds_runs: list[dict]) -> Table:
    columns = QM9_COLUMNS if dataset == "qm9" else COLUMNS
    table = Table(["model", "scale"] + [label for _, label in columns])
    for model in sorted({r["model"] for r in ds_runs}):
        mruns = [r for r in ds_runs if r["model"] == model]
        name = bold(model) + f" (ours, {len(mruns)} seed{'s' if len(mruns) > 1 else ''})"
        cells = [name, run_scale(mruns[0]["dir"], "mols")]
        cells += [format_values([r["metrics"].get(key) for r in mruns]) for key, _ in columns]
        table.rows.append(("ours", cells))
    for name, scale, values in published_rows(dataset):
        cells = [f"{name} (published)", scale]
        table.rows.append(("published", cells + [format_number(values.get(key)) for key, _ in columns]))
    return table


@register("report", "molecules")
def molecules_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML for every molecules run under ``results``; empty if there is none. Input
    ``molecules/<dataset>/ref_test`` (test-set statistics) adds the test set to the histograms."""
    runs = collect_runs(results, "molecules")
    if not runs:
        return ""
    datasets = []
    for dataset in sorted({r["dataset"] for r in runs}):
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        sizes = sorted({int(r["metrics"]["reference_test_size"])
                        for r in ds_runs if "reference_test_size" in r["metrics"]})
        of_size = f" of {', '.join(f'{n:,}' for n in sizes)} molecules each" if sizes else ""
        figures, samples = [], {}
        for model in sorted({r["model"] for r in ds_runs}):
            first = next(r for r in ds_runs if r["model"] == model)
            path = first["dir"] / "samples.csv"
            if path.is_file():
                samples[model] = _read_samples(path)
                figures.append(Figure(f"{model}: sampled molecules (seed {first['seed']})", _grid(samples[model]),
                                      "sampled molecules", "No valid molecules."))
        reference = input_path(inputs, f"molecules/{dataset}/ref_test")
        title = dataset.upper() if dataset in NOTES else f"{dataset}: your molecules"
        datasets.append({"name": dataset, "title": title, "table": _table(dataset, ds_runs),
                         "note": NOTES.get(dataset, NOTES["user"]).format(of_size=of_size), "figures": figures,
                         "histograms": _histograms(samples, reference) if samples else None})
    return render(Path(__file__).with_name("report.html.j2"), datasets=datasets)
