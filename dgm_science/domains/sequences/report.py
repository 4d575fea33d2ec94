"""Genetic-sequences section of the report: sample metrics beside the data row (real held-out
sequences), test-set bits per residue, and lossless compression beside gzip -9 and xz -9."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dgm_science.registry import register
from dgm_science.report_parts import (
    MISSING, Inputs, Table, bold, collect_runs, format_metric, format_number, render, run_scale,
)

TITLES = {"16s-v4": "16S rRNA V4 amplicons (515F–806R)", "16s": "16S rRNA genes, full length",
          "swissprot": "Swiss-Prot proteins"}
UNITS = {"16s-v4": "amplicons", "16s": "genes", "swissprot": "proteins"}


def _columns(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    ks = sorted(int(key[len("kmer_js_k"):]) for key in metrics if key.startswith("kmer_js_k"))
    columns = [("valid_fraction", "Valid ↑"), ("unique_fraction", "Unique ↑"),
               ("novelty_identity_mean", "Nearest-train identity"), ("novel_fraction", "Novel ↑"),
               ("exact_copy_fraction", "Train copies ↓")]
    columns += [(f"kmer_js_k{k}", f"JS k={k} ↓") for k in ks]
    columns += [(key, label) for key, label in (("gc_w1", "GC W1 ↓"), ("length_w1", "length W1 ↓"),
                                                ("primer_retention", "primer sites kept ↑"),
                                                ("label_accuracy", "label accuracy ↑"))
                if key in metrics or f"data_{key}" in metrics]
    return columns + [("bits_per_residue", "test bits / residue ↓"), ("n_samples", "Samples")]


def _likelihood(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "test_likelihood.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _cell(key: str, value: Any, likelihood: str | None = None) -> str:
    text = format_metric(key, [value])
    if key == "bits_per_residue" and text != MISSING:
        return f"{text} ({'≥' if likelihood == 'bound' else '='})"
    return text


def _metrics_table(dataset: str, runs: list[dict]) -> Table:
    columns = _columns(runs[0]["metrics"])
    table = Table(["model", "scale"] + [label for _, label in columns])
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        values = dict(run["metrics"])
        likelihood = _likelihood(run["dir"])
        values["bits_per_residue"] = likelihood.get("bits_per_residue")
        cells = [bold(run["model"]) + f" (ours, seed {run['seed']})",
                 run_scale(run["dir"], UNITS.get(dataset, "sequences"))]
        cells += [_cell(key, values.get(key), likelihood.get("likelihood")) for key, _ in columns]
        table.rows.append(("ours", cells))
    data = {key[len("data_"):]: value for key, value in runs[0]["metrics"].items() if key.startswith("data_")}
    if data:
        cells = ["Data: held-out validation sequences vs test", "real sequences"]
        table.rows.append(("published", cells + [_cell(key, data.get(key)) for key, _ in columns]))
    return table


def _compression_table(runs: list[dict]) -> Table | None:
    table = Table(["compressor", "test FASTA", "bits / residue (whole file) ↓", "bits / residue (residues only) ↓",
                   "MB/s compress / decompress", "round trip"])
    for run in runs:
        path = run["dir"] / "compression.json"
        if not path.is_file():
            continue
        c = json.loads(path.read_text())
        table.rows.append(("ours", [bold(run["model"]) + f" + range coder (seed {run['seed']})",
                                    f"{c['records']:,} records, {c['residues']:,} residues, {c['input_bytes']:,} bytes",
                                    format_number(c["bits_per_residue"], 3),
                                    format_number(c["range_coded_bits_per_residue"], 3),
                                    f"{format_number(c.get('compress_mb_per_s', 0), 3)} / "
                                    f"{format_number(c.get('decompress_mb_per_s', 0), 3)}",
                                    c.get("round_trip", "not checked")]))
        for key, name in (("gzip9", "gzip -9"), ("xz9", "xz -9")):
            table.rows.append(("published", [name, "same file", format_number(c[key + "_bits_per_residue"], 3),
                                             format_number(c[key + "_sequences_bits_per_residue"], 3),
                                             MISSING, MISSING]))
    return table if table.rows else None


def _latent_table(runs: list[dict]) -> Table | None:
    """Per latent-variable run (VAE, hierarchical VAE): each latent layer's active units and KL on
    the test split (``test_likelihood.json``'s ``latent``) or, where ``dgm likelihood`` did not run,
    on the validation split (``metrics.json``'s, written by ``dgm evaluate``), layer 1 the lowest."""
    table = Table(["model", "latent layers", "active units per layer ↑", "KL per layer (nats / sequence)",
                   "test bits / residue ↓"])
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        likelihood = _likelihood(run["dir"])
        latent = likelihood.get("latent") or run["metrics"].get("latent")
        if not latent:
            continue
        units = " / ".join(f"{a} of {d}" for a, d in zip(latent["active_units"], latent["latent_dims"]))
        kls = " / ".join(format_number(v, 2) for v in latent["kl_nats"])
        table.rows.append(("ours", [bold(run["model"]) + f" (ours, seed {run['seed']})", str(latent["layers"]), units,
                                    kls, _cell("bits_per_residue", likelihood.get("bits_per_residue"),
                                               likelihood.get("likelihood"))]))
    return table if table.rows else None


LATENT_NOTE = ("Latent layers: a unit is active when its posterior mean varies across the test sequences "
               "(Var_x E_q[z_u | x] > 0.01, Burda et al. 2016); a layer with no active unit has collapsed to its "
               "prior and carries no information about x. KL: the mean of each layer's KL(q || p) on the test split, "
               "the nats of the ELBO spent on that layer.")

NOTE = ("Against the test split (identity clusters: no test sequence is ≥ the threshold identical to a training "
        "one). JS: Jensen–Shannon divergence (bits) of the k-mer spectra of samples and test sequences. Identity: "
        "global alignment (Biopython PairwiseAligner, EMBOSS needle scoring), identities / alignment length, to the "
        "nearest training sequence among k-mer candidates; novel = below the clustering threshold. Label accuracy: "
        "an RDP-style naive-Bayes 8-mer classifier trained on the labelled training sequences recovers the phylum "
        "the sample was generated for (data row: on the labelled test sequences). Test bits / residue: −log₂ p(x) "
        "per residue on the test split, exact (=) for the autoregressive model, an upper bound (≥) from the ELBO "
        "for diffusion and VAE. The data row compares the validation sequences with the test sequences.")


@register("report", "sequences")
def sequences_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML for every sequence run under ``results``; empty if there is none. Reads the runs'
    own files only (``test_likelihood.json``, ``compression.json``), no inputs."""
    runs = collect_runs(results, "sequences")
    if not runs:
        return ""
    datasets = []
    for dataset in sorted({r["dataset"] for r in runs}, key=lambda d: list(TITLES).index(d) if d in TITLES else 9):
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        datasets.append({"title": TITLES.get(dataset, dataset), "metrics": _metrics_table(dataset, ds_runs),
                         "compression": _compression_table(ds_runs), "latent": _latent_table(ds_runs)})
    return render(Path(__file__).with_name("report.html.j2"), datasets=datasets, footnote=NOTE,
                  latent_note=LATENT_NOTE)
