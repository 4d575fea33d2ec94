"""3D-structures section of the report: EDM's metrics on QM9 beside the data row (ours and
published) and EDM's published row; alanine-dipeptide KLs, energies and ESS beside the MD data
row, with Ramachandran plots."""

from __future__ import annotations

import json
from pathlib import Path

from dgm_science.domains.molecules.report import _fmt
from dgm_science.registry import register
from dgm_science.report import collect_runs, png_data_uri, run_scale, table_html

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

ALA2_COLUMNS = [
    ("kl_ramachandran", "KL Ramachandran ↓"), ("kl_phi", "KL φ ↓"), ("kl_psi", "KL ψ ↓"),
    ("kl_torsions_mean", "KL torsions mean ↓"), ("kl_torsions_max", "KL torsions max ↓"),
    ("energy_mean", "mean u (kT)"), ("energy_test_mean", "MD test mean u (kT)"), ("energy_w1", "energy W1 (kT) ↓"),
    ("energy_above_data_max", "u above MD max ↓"), ("ess_fraction", "ESS / N ↑"),
    ("bond_length_deviation_mean", "bond dev. (nm) ↓"), ("n_samples", "Samples"),
]

NOTES = {
    "qm9": ("EDM's definitions: an atom is stable when the bond orders perceived from its distances (EDM's "
            "bond-length tables and margins) sum to its allowed valency; a molecule is stable when all its atoms "
            "are. Valid: RDKit sanitizes the molecule built from the perceived bonds; unique: distinct canonical "
            "SMILES among the valid ones. The data row (ours) is the same code on real test molecules."),
    "ala2": ("Against the held-out last block of the MD trajectory. KL(MD test ‖ samples) of the 2D (φ, ψ) "
             "histogram and of each torsion's 1D histogram; u = OpenMM potential energy / kT; ESS: Kish effective "
             "sample size of the importance weights exp(−u(x) − log q(x)), as a fraction of the samples. The MD "
             "data row compares the training frames with the test frames: the floor finite data allows."),
}


UNITS = {"qm9": "molecules", "ala2": "MD frames"}


def _cell(key: str, values: list[float | None]) -> str:
    if key.startswith("n_") and values and values[0] is not None:
        return f"{int(values[0]):,}"
    return _fmt(values)


def _data_row_qm9(results: Path) -> dict[str, float] | None:
    path = results.parent / "resources" / "structures" / "qm9" / "data" / "data_row.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _dataset_table(dataset: str, runs: list[dict], columns: list[tuple[str, str]], results: Path) -> str:
    header = ["model", "scale"] + [label for _, label in columns]
    rows: list[tuple[str, list[str]]] = []
    for model in sorted({r["model"] for r in runs}):
        mruns = [r for r in runs if r["model"] == model]
        cells = [f"<b>{model}</b> (ours, {len(mruns)} seed{'s' if len(mruns) > 1 else ''})",
                 run_scale(mruns[0]["dir"], UNITS[dataset])]
        cells += [_cell(key, [r["metrics"].get(key) for r in mruns]) for key, _ in columns]
        rows.append(("ours", cells))
    if dataset == "qm9":
        data_row = _data_row_qm9(results)
        if data_row is not None:
            cells = ["Data (QM9 test, ours)", f"{int(data_row.get('n_samples', 0)):,} molecules"]
            rows.append(("ours", cells + [_cell(key, [data_row.get(key)]) for key, _ in columns]))
        for name, (scale, values) in PUBLISHED_QM9_3D.items():
            cells = [f"{name} (published)", scale]
            rows.append(("published", cells + [f"{values[key]:.3f}" if key in values else "–" for key, _ in columns]))
    if dataset == "ala2":
        first = runs[0]["metrics"]
        data = {key[len("data_"):]: value for key, value in first.items() if key.startswith("data_")}
        if data:
            cells = ["MD data: train frames vs test frames", "same simulation"]
            rows.append(("published", cells + [_cell(key, [data.get(key)]) for key, _ in columns]))
    return table_html(header, rows)


def _molecule_grid(samples_sdf: Path, n: int = 12) -> str:
    """2D depictions of the largest fragment (what EDM's validity judges) of the first ``n`` valid
    sampled molecules, bonds as perceived from 3D."""
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
        return '<p class="note">No valid sampled molecule to draw.</p>'
    image = Draw.MolsToGridImage(mols, molsPerRow=6, subImgSize=(180, 150), returnPNG=True)
    return f'<img alt="sampled molecules" src="{png_data_uri(image)}">'


@register("report", "structures")
def structures_section(results: Path) -> str:
    """HTML for every 3D-structures run under ``results``; empty if there is none."""
    runs = collect_runs(results, "structures")
    if not runs:
        return ""
    parts = ["<h2>3D structures</h2>"]
    for dataset, title, columns in (("qm9", "QM9 conformations (with hydrogens)", QM9_COLUMNS),
                                    ("ala2", "Alanine dipeptide (implicit-solvent MD)", ALA2_COLUMNS)):
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        if not ds_runs:
            continue
        parts.append(f"<h3>{title}</h3>")
        parts.append(_dataset_table(dataset, ds_runs, columns, results))
        parts.append(f'<p class="note">{NOTES[dataset]}</p>')
        for run in ds_runs:
            if (run["dir"] / "samples.sdf").is_file():
                parts.append(f"<h4>{run['model']} (seed {run['seed']}): largest fragments of valid samples, hydrogens hidden</h4>")
                parts.append(_molecule_grid(run["dir"] / "samples.sdf"))
            for image in sorted(run["dir"].glob("*.png")):
                parts.append(f"<h4>{run['model']} (seed {run['seed']}): {image.stem.replace('_', ' ')}</h4>")
                parts.append(f'<img alt="{image.stem}" src="{png_data_uri(image.read_bytes())}">')
    return "\n".join(parts)
