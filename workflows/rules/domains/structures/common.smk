# The structures domain's helpers (for rules.smk beside this file) and its entry in the table of
# model rules (MODEL_RULES: train, sample and evaluate are models.smk's rules).


def qm9_3d_subset_flags(wildcards):
    subset = lookup(dpath="structures/qm9-3d/subset", within=config)
    return (
        f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
        f" --seed {subset['seed']}"
    )


def conformers_reference_flags(wildcards):
    """The data row's subset of a conformer dataset (qm9-3d's or a user's ``reference`` block)."""
    reference = config["structures"][wildcards.dataset].get("reference", {})
    return (
        f"{optional_flag('--max-molecules', reference.get('max_molecules'))}"
        f" --seed {reference.get('seed', 0)}"
    )


def conformer_datasets():
    """The conformer datasets of the config (qm9-3d and the user's): their data rows."""
    return [
        name
        for name in config.get("structures", {})
        if dataset_domain("structures", name) == "conformers"
    ]


def simulation_flags(wildcards):
    sim = lookup(dpath="structures/ala2/simulation", within=config)
    return (
        f"--nanoseconds {sim['nanoseconds']} --temperature {sim['temperature_kelvin']}"
        f" --timestep-fs {sim['timestep_fs']} --friction {sim['friction_per_ps']}"
        f" --save-every-ps {sim['save_every_ps']} --checkpoint-every-ps {sim['checkpoint_every_ps']}"
        f" --seed {sim['seed']} --platform {sim['platform']}"
    )


def ala2_split_flags(wildcards):
    split = lookup(dpath="structures/ala2/split", within=config)
    return f"--val-size {split['valid_frames']} --test-size {split['test_frames']}"


def mixing_flags(wildcards):
    """A user MD dataset's `mixing` block (chains, steps, every); dgm mixing's defaults otherwise."""
    mixing = config["structures"][wildcards.dataset].get("mixing", {})
    return " ".join(
        f"--{key} {mixing[key]}"
        for key in ("chains", "steps", "every")
        if key in mixing
    )


ALA2_DATA_FILES = (
    "train.dcd",
    "valid.dcd",
    "test.dcd",
    "topology.pdb",
    "alanine-dipeptide.prmtop",
    "prepare.json",
)
# a user trajectory (file kind `trajectory`): the frames, topology.pdb and molecule.json (Z-matrix,
# backbone torsions, the serialized OpenMM System or null) instead of the prmtop
USER_MD_DATA_FILES = [
    "train.dcd",
    "valid.dcd",
    "test.dcd",
    "topology.pdb",
    "molecule.json",
    "prepare.json",
]
# a built-in dataset's files, keyed by its registered domain (dataset_domain)
STRUCTURE_TRAIN_FILES = {
    "conformers": ("train.npz", "valid.npz"),
    "peptide-md": ALA2_DATA_FILES,
}
STRUCTURE_EVALUATE_FILES = {
    "conformers": ("test.npz", "train_smiles.txt"),
    "peptide-md": ALA2_DATA_FILES,
}
CONFORMER_DATA_FILES = [
    "train.npz",
    "valid.npz",
    "test.npz",
    "train_smiles.txt",
    "prepare.json",
]


def structures_data_files(wildcards, table):
    """The prepared files a dataset's jobs read: a built-in dataset's by its domain, a user dataset's
    from what its import rule writes (ModelRules.prepared)."""
    domain = dataset_domain("structures", wildcards.dataset)
    if "source" in config["structures"][wildcards.dataset]:
        return MODEL_RULES["structures"].prepared[domain]
    return table[domain]


def structures_train_inputs(wildcards):
    data = data_folder("structures", wildcards.dataset)
    return [
        f"{data}/{name}"
        for name in structures_data_files(wildcards, STRUCTURE_TRAIN_FILES)
    ]


def structures_evaluate_inputs(wildcards):
    data = data_folder("structures", wildcards.dataset)
    domain = dataset_domain("structures", wildcards.dataset)
    return {
        "reference": [
            f"{data}/{name}"
            for name in structures_data_files(wildcards, STRUCTURE_EVALUATE_FILES)
        ]
    }


MODEL_RULES["structures"] = ModelRules(
    train_inputs=structures_train_inputs,
    samples={
        # QM9 conformations: samples.sdf (perceived bonds, per-molecule tags) and samples.xyz
        "conformers_sample": {"samples": "samples.sdf", "xyz": "samples.xyz"},
        # MD conformations: samples.dcd, its topology and samples.csv (log q, energy, phi, psi)
        "md_sample": {
            "samples": "samples.dcd",
            "topology": "samples.pdb",
            "table": "samples.csv",
        },
    },
    evaluate_inputs=structures_evaluate_inputs,
    # a user dataset's prepared folder, written by dgm prepare --source (models.smk's <domain>_import);
    # conformers (dgm_science/domains/structures/conformer_sources.py): qm9-3d's prepared files;
    # a trajectory (md_sources.py): USER_MD_DATA_FILES
    prepared={"conformers": CONFORMER_DATA_FILES, "peptide-md": USER_MD_DATA_FILES},
    # each conformer dataset's data row (EDM's metrics on real molecules) beside the models, and the
    # mixing diagnostics of every model that samples by Langevin chains (an EBM)
    extras=[
        f"resources/structures/{dataset}/data/data_row.json"
        for dataset in conformer_datasets()
    ]
    + domain_targets(
        "structures", "mixing.json", where=lambda facts: facts["langevin"]
    ),
)
