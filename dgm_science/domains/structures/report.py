"""3D-structures section of the report: EDM's metrics on QM9 beside the data row (ours and
published) and EDM's published row; alanine-dipeptide KLs, energies and ESS beside the MD data
row, with Ramachandran plots."""

from __future__ import annotations

import json
from pathlib import Path

from dgm_science.registry import register
from dgm_science.report_parts import (
    Figure, Inputs, Table, bold, collect_runs, format_metric, format_number, input_json, png_data_uri, render,
    run_scale,
)

QM9_COLUMNS = [
    ("atom_stability", "Atom stable"), ("molecule_stability", "Mol stable"), ("validity", "Valid"),
    ("uniqueness", "Unique (of valid)"), ("validity_times_uniqueness", "Valid × Unique"), ("novelty", "Novelty"),
    ("n_samples", "Samples"),
]
# Hoogeboom et al. (2022), "Equivariant Diffusion for Molecule Generation in 3D", ICML, Table 2
# (QM9 with hydrogens, 10,000 samples, EDM trained 3,000 epochs on a GPU).
PUBLISHED_QM9_3D: dict[str, tuple[str, dict[str, float]]] = {
    "Data (QM9)": ("Hoogeboom et al. 2022", {"atom_stability": 0.990, "molecule_stability": 0.952}),
    "EDM": ("Hoogeboom et al. 2022, GPU", {"atom_stability": 0.987, "molecule_stability": 0.820,
                                           "validity": 0.919, "validity_times_uniqueness": 0.907}),
}
PUBLISHED_QM9_3D_SOURCE = ("Hoogeboom et al. 2022, \"Equivariant Diffusion for Molecule Generation in 3D\", ICML, "
                           "Table 2")

ALA2_COLUMNS = [
    ("kl_ramachandran", "KL Ramachandran ↓"), ("kl_phi", "KL φ ↓"), ("kl_psi", "KL ψ ↓"),
    ("kl_torsions_mean", "KL torsions mean ↓"), ("kl_torsions_max", "KL torsions max ↓"),
    ("energy_mean", "mean u (kT)"), ("energy_test_mean", "MD test mean u (kT)"), ("energy_w1", "energy W1 (kT) ↓"),
    ("energy_above_data_max", "u above MD max ↓"), ("ess_fraction", "ESS / N ↑"),
    ("energy_log_q_spearman", "ρ(−log q, u) ↑"),
    ("bond_length_deviation_mean", "bond dev. (nm) ↓"), ("n_samples", "Samples"),
]

NOTES = {
    "qm9-3d": ("EDM's definitions: an atom is stable when the bond orders perceived from its distances (EDM's "
            "bond-length tables and margins) sum to its allowed valency; a molecule is stable when all its atoms "
            "are. Valid: RDKit sanitizes the molecule built from the perceived bonds; unique: distinct canonical "
            "SMILES among the valid ones. The data row (ours) is the same code on real test molecules."),
    "ala2": ("Against the held-out last block of the MD trajectory. KL(MD test ‖ samples) of the 2D (φ, ψ) "
             "histogram and of each torsion's 1D histogram; u = OpenMM potential energy / kT; ESS: Kish effective "
             "sample size of the importance weights exp(−u(x) − log q(x)), as a fraction of the samples (for the "
             "energy-based model, whose q is unnormalized and only approximately what its Langevin chains sample, "
             "a diagnostic, not an exact weight); ρ: Spearman correlation of the model's −log q with u over the "
             "samples (1: the learned density orders conformations as the Boltzmann density does). The MD "
             "data row compares the training frames with the test frames: the floor finite data allows."),
}


NOTES["conformers"] = (
    "Your conformers (dgm prepare --source, kind conformers), split by molecule. EDM's definitions as for QM9, with "
    "the bond lengths and valencies of EDM's GEOM-drugs tables for elements beyond H, C, N, O, F (its sulfur "
    "allows 4 bonds only, so thioethers count as unstable); novelty is against the training split's molecules. "
    "The data row is the same code on your held-out test conformers.")

UNITS = {"qm9-3d": "molecules", "ala2": "MD frames", "conformers": "conformers"}
TITLES = {"qm9-3d": "QM9 conformations (with hydrogens)", "ala2": "Alanine dipeptide (implicit-solvent MD)"}
COLUMNS = {"qm9-3d": QM9_COLUMNS, "ala2": ALA2_COLUMNS, "conformers": QM9_COLUMNS}


USER_MD_COLUMNS = ALA2_COLUMNS[:1] + [("kl_ramachandran_mean", "KL Ramachandran mean over residues ↓"),
                                      ("backbone_pairs", "(φ, ψ) pairs")] + ALA2_COLUMNS[1:]
NOTES["user-md"] = (
    "A user's MD trajectory (file kind trajectory), against the held-out last block of its frames. KL "
    "Ramachandran: KL(MD test ‖ samples) of the (φ, ψ) histogram of the first residue that has both; its "
    "mean over every such residue beside it (empty for a molecule without a peptide backbone); KL "
    "torsions: each Z-matrix torsion's 1D histogram. The energy columns (u = OpenMM potential energy / "
    "kT, ESS, ρ) need a force field in the source block (force_field or prmtop) and are empty without "
    "one (the metrics then carry energy_skipped_no_force_field = 1). The MD data row compares the "
    "training frames with the test frames.")
UNITS["user-md"] = "MD frames"
COLUMNS["user-md"] = USER_MD_COLUMNS
USER_TITLES = {"conformers": "{dataset}: your conformers (with hydrogens)", "user-md": "{dataset} (your MD trajectory)"}


def _layout(dataset: str, runs: list[dict]) -> str | None:
    """Which table a dataset's runs fill: a built-in dataset's own, ``conformers`` for a user's conformers
    (runs scored by EDM's metrics), ``user-md`` for a user's trajectory (scored on its Z-matrix torsions),
    None for anything else."""
    if dataset in TITLES:
        return dataset
    if any("molecule_stability" in r["metrics"] for r in runs):
        return "conformers"
    if any("kl_torsions_mean" in r["metrics"] for r in runs):
        return "user-md"
    return None


def _dataset_table(dataset: str, runs: list[dict], inputs: Inputs | None, layout: str | None = None) -> Table:
    layout = layout or dataset
    columns = COLUMNS[layout]
    table = Table(["model", "scale"] + [label for _, label in columns])
    for model in sorted({r["model"] for r in runs}):
        mruns = [r for r in runs if r["model"] == model]
        cells = [bold(model) + f" (ours, {len(mruns)} seed{'s' if len(mruns) > 1 else ''})",
                 run_scale(mruns[0]["dir"], UNITS[layout])]
        cells += [format_metric(key, [r["metrics"].get(key) for r in mruns]) for key, _ in columns]
        table.rows.append(("ours", cells))
    if dataset == "qm9-3d":
        data_row = input_json(inputs, "structures/qm9-3d/data_row")
        if data_row is not None:
            cells = ["Data (QM9 test, ours)", f"{int(data_row.get('n_samples', 0)):,} molecules"]
            table.rows.append(("ours", cells + [format_metric(key, [data_row.get(key)]) for key, _ in columns]))
        for name, (scale, values) in PUBLISHED_QM9_3D.items():
            cells = [f"{name} (published)", scale]
            table.rows.append(("published", cells + [format_number(values.get(key), 3) for key, _ in columns]))
    if layout == "conformers":
        data_row = input_json(inputs, f"structures/{dataset}/data_row")
        if data_row is not None:
            cells = [f"Data ({dataset} test conformers, ours)", f"{int(data_row.get('n_samples', 0)):,} conformers"]
            table.rows.append(("ours", cells + [format_metric(key, [data_row.get(key)]) for key, _ in columns]))
    if layout in ("ala2", "user-md"):
        data = {key[len("data_"):]: value for key, value in runs[0]["metrics"].items() if key.startswith("data_")}
        if data:
            cells = ["MD data: train frames vs test frames", "same simulation"]
            table.rows.append(("published", cells + [format_metric(key, [data.get(key)]) for key, _ in columns]))
    return table


def _mixing_table(runs: list[dict]) -> Table | None:
    """The Langevin sampler's diagnostics of each energy-based run (``mixing.json``)."""
    table = Table(["model", "chains x steps", "R-hat energy", "R-hat sin φ / cos φ", "R-hat sin ψ / cos ψ",
                   "max R-hat ↓", "min bulk ESS ↑"])
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        path = run["dir"] / "mixing.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())

        def rhat(*names: str) -> str:
            return " / ".join(format_number(m[n]["rhat"], 3) if n in m else "—" for n in names)

        table.rows.append(("ours", [bold(run["model"]) + f" (ours, seed {run['seed']})",
                                    f"{m['chains']} x {m['steps']:,}", rhat("energy"), rhat("sin_phi", "cos_phi"),
                                    rhat("sin_psi", "cos_psi"), format_number(m["max_rhat"], 3),
                                    format_number(m["min_ess_bulk"], 0)]))
    return table if table.rows else None


MIXING_NOTE = ("Energy-based model: its likelihood is unnormalized (log Z unknown), and its samples are only as good "
               "as its Markov-chain sampler (ala2-ebm: independence Metropolis-Hastings from its flow base + MALA steps). "
               "`dgm mixing` runs independent chains from noise and computes, over the second "
               "half of each, ArviZ's rank-normalized split R-hat and bulk effective sample size of the learned energy "
               "and of the backbone torsions; R-hat above 1.01 means the chains have not mixed (they disagree).")


def _molecule_grid(samples_sdf: Path, n: int = 12) -> str | None:
    """Data URI of 2D depictions of the largest fragment (what EDM's validity judges) of the first
    ``n`` valid sampled molecules, bonds as perceived from 3D; None if there is none."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, Draw

    mols = []
    for mol in Chem.SDMolSupplier(str(samples_sdf), removeHs=False):
        if mol is not None and mol.HasProp("valid") and mol.GetProp("valid") == "1":
            largest = max(Chem.GetMolFrags(mol, asMols=True), key=lambda m: m.GetNumAtoms())
            largest = Chem.RemoveHs(largest)
            AllChem.Compute2DCoords(largest)
            mols.append(largest)
        if len(mols) == n:
            break
    if not mols:
        return None
    return png_data_uri(Draw.MolsToGridImage(mols, molsPerRow=6, subImgSize=(180, 150), returnPNG=True))


def _figures(run: dict) -> list[Figure]:
    label = f"{run['model']} (seed {run['seed']})"
    figures = []
    if (run["dir"] / "samples.sdf").is_file():
        figures.append(Figure(f"{label}: largest fragments of valid samples, hydrogens hidden",
                              _molecule_grid(run["dir"] / "samples.sdf"), "sampled molecules",
                              "No valid sampled molecule to draw."))
    for image in sorted(run["dir"].glob("*.png")):
        figures.append(Figure(f"{label}: {image.stem.replace('_', ' ')}", png_data_uri(image.read_bytes()), image.stem))
    return figures


@register("report", "structures")
def structures_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML for every 3D-structures run under ``results``; empty if there is none. Input
    ``structures/qm9-3d/data_row`` adds the QM9 data row (``structures/<dataset>/data_row`` a user
    conformer dataset's)."""
    runs = collect_runs(results, "structures")
    if not runs:
        return ""
    datasets = []
    names = [d for d in TITLES] + sorted({r["dataset"] for r in runs} - set(TITLES))
    for dataset in names:
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        layout = _layout(dataset, ds_runs) if ds_runs else None
        if layout is not None:
            title = TITLES.get(dataset) or USER_TITLES[layout].format(dataset=dataset)
            datasets.append({"title": title, "table": _dataset_table(dataset, ds_runs, inputs, layout),
                             "note": NOTES[layout],
                             "mixing": _mixing_table(ds_runs),
                             "figures": [figure for run in ds_runs for figure in _figures(run)]})
    return render(Path(__file__).with_name("report.html.j2"), datasets=datasets, mixing_note=MIXING_NOTE)
