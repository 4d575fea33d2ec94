# The structures domain's helpers (for rules.smk beside this file) and its entry in the table of
# model rules (MODEL_RULES: train, sample and evaluate are models.smk's rules).


def qm9_3d_subset_flags(wildcards):
    subset = lookup(dpath="structures/qm9-3d/subset", within=config)
    return (
        f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
        f" --seed {subset['seed']}"
    )


def qm9_3d_reference_flags(wildcards):
    reference = lookup(dpath="structures/qm9-3d/reference", within=config)
    return f"{optional_flag('--max-molecules', reference['max_molecules'])} --seed {reference['seed']}"


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


ALA2_DATA_FILES = (
    "train.dcd",
    "valid.dcd",
    "test.dcd",
    "topology.pdb",
    "alanine-dipeptide.prmtop",
    "prepare.json",
)
STRUCTURE_TRAIN_FILES = {"qm9-3d": ("train.npz", "valid.npz"), "ala2": ALA2_DATA_FILES}
STRUCTURE_EVALUATE_FILES = {
    "qm9-3d": ("test.npz", "train_smiles.txt"),
    "ala2": ALA2_DATA_FILES,
}


def structures_train_inputs(wildcards):
    data = data_folder("structures", wildcards.dataset)
    return [f"{data}/{name}" for name in STRUCTURE_TRAIN_FILES[wildcards.dataset]]


def structures_evaluate_inputs(wildcards):
    data = data_folder("structures", wildcards.dataset)
    return {
        "reference": [
            f"{data}/{name}" for name in STRUCTURE_EVALUATE_FILES[wildcards.dataset]
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
    # the QM9 data row (EDM's metrics on real molecules) beside the models, and the mixing
    # diagnostics of every model that samples by Langevin chains (an EBM)
    extras=(
        ["resources/structures/qm9-3d/data/data_row.json"]
        if "qm9-3d" in config.get("structures", {})
        else []
    )
    + domain_targets(
        "structures", "mixing.json", where=lambda facts: facts["langevin"]
    ),
)
