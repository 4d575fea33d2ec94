# 3D structures: QM9 conformations (fetch -> prepare -> data row / train -> sample -> evaluate) and
# alanine dipeptide (fetch -> simulate (OpenMM, resumable) -> prepare -> train -> sample -> evaluate).

QM9_3D = "resources/structures/qm9"
ALA2 = "resources/structures/ala2"


def structures_config(dataset):
    return config["structures"][dataset]


rule qm9_3d_fetch:
    output:
        QM9_3D + "/raw/qm9_3d.npz",
    log:
        "logs/structures/qm9/fetch.log",
    benchmark:
        "benchmarks/structures/qm9/fetch.tsv"
    shell:
        "{DGM} fetch qm9-3d --out {QM9_3D}/raw 2> {log}"


def qm9_3d_subset_flags(wildcards):
    subset = structures_config("qm9")["subset"]
    return (f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
            f" --seed {subset['seed']}")


rule qm9_3d_prepare:
    input:
        QM9_3D + "/raw/qm9_3d.npz",
    output:
        expand(QM9_3D + "/data/{split}.npz", split=["train", "valid", "test"]),
        smiles=QM9_3D + "/data/train_smiles.txt",
        stats=QM9_3D + "/data/prepare.json",
    params:
        subset=qm9_3d_subset_flags,
    threads: workflow.cores
    log:
        "logs/structures/qm9/prepare.log",
    benchmark:
        "benchmarks/structures/qm9/prepare.tsv"
    shell:
        "{DGM} prepare qm9-3d --raw {QM9_3D}/raw --out {QM9_3D}/data {params.subset} --jobs {threads} 2> {log}"


def qm9_3d_reference_flags(wildcards):
    reference = structures_config("qm9")["reference"]
    return f"{optional_flag('--max-molecules', reference['max_molecules'])} --seed {reference['seed']}"


rule qm9_3d_data_row:
    """EDM's metrics on real test molecules: the data row of the table."""
    input:
        test=QM9_3D + "/data/test.npz",
        smiles=QM9_3D + "/data/train_smiles.txt",
    output:
        QM9_3D + "/data/data_row.json",
    params:
        flags=qm9_3d_reference_flags,
    threads: workflow.cores
    log:
        "logs/structures/qm9/data_row.log",
    benchmark:
        "benchmarks/structures/qm9/data_row.tsv"
    shell:
        "{DGM} reference --domain conformers --data {input.test} --out {output} {params.flags} --jobs {threads}"
        " 2> {log}"


rule ala2_fetch:
    output:
        ALA2 + "/raw/alanine-dipeptide.prmtop",
        ALA2 + "/raw/alanine-dipeptide.pdb",
    log:
        "logs/structures/ala2/fetch.log",
    benchmark:
        "benchmarks/structures/ala2/fetch.tsv"
    shell:
        "{DGM} fetch ala2 --out {ALA2}/raw 2> {log}"


def simulation_flags(wildcards):
    sim = structures_config("ala2")["simulation"]
    return (f"--nanoseconds {sim['nanoseconds']} --temperature {sim['temperature_kelvin']}"
            f" --timestep-fs {sim['timestep_fs']} --friction {sim['friction_per_ps']}"
            f" --save-every-ps {sim['save_every_ps']} --checkpoint-every-ps {sim['checkpoint_every_ps']}"
            f" --seed {sim['seed']} --platform {sim['platform']}")


rule ala2_simulate:
    """Langevin MD in implicit solvent on OpenMM's CPU platform; a killed run resumes from its
    last checkpoint (the work folder is kept: shadow-free, not deleted on failure)."""
    input:
        ALA2 + "/raw/alanine-dipeptide.prmtop",
        ALA2 + "/raw/alanine-dipeptide.pdb",
    output:
        trajectory=ALA2 + "/md/trajectory.dcd",
        topology=ALA2 + "/md/topology.pdb",
        prmtop=ALA2 + "/md/alanine-dipeptide.prmtop",
        stats=ALA2 + "/md/simulate.json",
    params:
        flags=simulation_flags,
    # one thread: for 22 atoms OpenMM's CPU platform runs faster on one thread than on two
    threads: 1
    resources:
        runtime=1440,
    log:
        "logs/structures/ala2/simulate.log",
    benchmark:
        "benchmarks/structures/ala2/simulate.tsv"
    shell:
        "{DGM} simulate --raw {ALA2}/raw --out {ALA2}/md {params.flags} --threads {threads} 2> {log}"


def ala2_split_flags(wildcards):
    split = structures_config("ala2")["split"]
    return f"--val-size {split['valid_frames']} --test-size {split['test_frames']}"


rule ala2_prepare:
    input:
        trajectory=ALA2 + "/md/trajectory.dcd",
        topology=ALA2 + "/md/topology.pdb",
        prmtop=ALA2 + "/md/alanine-dipeptide.prmtop",
        stats=ALA2 + "/md/simulate.json",
    output:
        expand(ALA2 + "/data/{split}.dcd", split=["train", "valid", "test"]),
        topology=ALA2 + "/data/topology.pdb",
        prmtop=ALA2 + "/data/alanine-dipeptide.prmtop",
        stats=ALA2 + "/data/prepare.json",
    params:
        split=ala2_split_flags,
    log:
        "logs/structures/ala2/prepare.log",
    benchmark:
        "benchmarks/structures/ala2/prepare.tsv"
    shell:
        "{DGM} prepare ala2 --raw {ALA2}/md --out {ALA2}/data {params.split} 2> {log}"


STRUCTURE_DATA = {"qm9": QM9_3D + "/data", "ala2": ALA2 + "/data"}
ALA2_DATA = [ALA2 + "/data/" + name for name in ("train.dcd", "valid.dcd", "test.dcd", "topology.pdb",
                                                  "alanine-dipeptide.prmtop", "prepare.json")]
STRUCTURE_TRAIN_INPUTS = {
    "qm9": [QM9_3D + "/data/train.npz", QM9_3D + "/data/valid.npz"],
    "ala2": ALA2_DATA,
}
STRUCTURE_EVALUATE_INPUTS = {
    "qm9": [QM9_3D + "/data/test.npz", QM9_3D + "/data/train_smiles.txt"],
    "ala2": ALA2_DATA,
}


def structures_train_inputs(wildcards):
    return STRUCTURE_TRAIN_INPUTS[wildcards.dataset]


def structures_data_dir(wildcards):
    return STRUCTURE_DATA[wildcards.dataset]


def structures_model_config(wildcards):
    return model_config_json("structures", wildcards.dataset, wildcards.model)


rule structures_train:
    input:
        structures_train_inputs,
    output:
        "results/structures/{dataset}/{model}/seed{seed}/model.ckpt",
    params:
        config=structures_model_config,
        data=structures_data_dir,
    threads: workflow.cores
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    log:
        "logs/structures/{dataset}/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/structures/{dataset}/{model}/seed{seed}/train.tsv"
    shell:
        "{DGM} train --model {wildcards.model} --data {params.data} --config '{params.config}'"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


def structures_sample_n(wildcards):
    return structures_config(wildcards.dataset)["models"][wildcards.model].get("sample", {}).get("n", 10000)


SAMPLE_SHELL = ("{DGM} sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} --out {output.samples}"
                " --threads {threads} 2> {log}")


rule conformers_sample:
    """QM9 conformations: samples.sdf (perceived bonds, per-molecule tags) and samples.xyz."""
    input:
        "results/structures/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        samples="results/structures/{dataset}/{model}/seed{seed}/samples.sdf",
        xyz="results/structures/{dataset}/{model}/seed{seed}/samples.xyz",
    params:
        n=structures_sample_n,
    threads: workflow.cores
    log:
        "logs/structures/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/structures/{dataset}/{model}/seed{seed}/sample.tsv"
    shell:
        SAMPLE_SHELL


rule md_sample:
    """MD conformations: samples.dcd with its samples.pdb topology and samples.csv (log q, energy, phi, psi)."""
    input:
        "results/structures/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        samples="results/structures/{dataset}/{model}/seed{seed}/samples.dcd",
        topology="results/structures/{dataset}/{model}/seed{seed}/samples.pdb",
        table="results/structures/{dataset}/{model}/seed{seed}/samples.csv",
    params:
        n=structures_sample_n,
    threads: workflow.cores
    log:
        "logs/structures/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/structures/{dataset}/{model}/seed{seed}/sample.tsv"
    shell:
        SAMPLE_SHELL


def structures_evaluate_inputs(wildcards):
    run = run_dir("structures", wildcards.dataset, wildcards.model, wildcards.seed)
    return {"samples": f"{run}/{samples_file(wildcards.model)}",
            "reference": STRUCTURE_EVALUATE_INPUTS[wildcards.dataset]}


def model_domain(wildcards):
    return registry.get("model", wildcards.model).domain


rule structures_evaluate:
    input:
        unpack(structures_evaluate_inputs),
    output:
        "results/structures/{dataset}/{model}/seed{seed}/metrics.json",
    params:
        domain=model_domain,
        data=structures_data_dir,
    threads: workflow.cores
    log:
        "logs/structures/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/structures/{dataset}/{model}/seed{seed}/evaluate.tsv"
    shell:
        "{DGM} evaluate --domain {params.domain} --samples {input.samples} --reference {params.data}"
        " --out {output} --jobs {threads} 2> {log}"


# The QM9 data row (EDM's metrics on real molecules) goes into the report beside the models.
STRUCTURE_DATA_ROWS = [QM9_3D + "/data/data_row.json"] if "qm9" in config.get("structures", {}) else []


rule structures:
    input:
        domain_targets("structures", "metrics.json"),
        STRUCTURE_DATA_ROWS,
