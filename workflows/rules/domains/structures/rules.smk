# 3D structures: QM9 conformations (fetch -> prepare; every conformer dataset's data row) and alanine dipeptide (fetch ->
# simulate (OpenMM, resumable) -> prepare), an energy-based model's mixing diagnostics; train ->
# sample -> evaluate are models.smk's rules over this domain's MODEL_RULES entry.
# Helpers: common.smk beside this file.


rule qm9_3d_fetch:
    output:
        conformations="resources/structures/qm9-3d/raw/qm9_3d.npz",
    log:
        "logs/structures/qm9-3d/fetch.log",
    benchmark:
        "benchmarks/structures/qm9-3d/fetch.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        out=output_folder("conformations"),
    shell:
        "dgm fetch qm9-3d --out {params.out} 2> {log}"


rule qm9_3d_prepare:
    input:
        "resources/structures/qm9-3d/raw/qm9_3d.npz",
    output:
        expand(
            "resources/structures/qm9-3d/data/{split}.npz",
            split=["train", "valid", "test"],
        ),
        smiles="resources/structures/qm9-3d/data/train_smiles.txt",
        stats="resources/structures/qm9-3d/data/prepare.json",
    log:
        "logs/structures/qm9-3d/prepare.log",
    benchmark:
        "benchmarks/structures/qm9-3d/prepare.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        subset=qm9_3d_subset_flags,
        raw=input_folder(0),
        out=output_folder("stats"),
    shell:
        "dgm prepare qm9-3d --raw {params.raw} --out {params.out} {params.subset} --jobs {threads} 2> {log}"


rule conformers_data_row:
    """EDM's metrics on real test molecules of a conformer dataset (qm9-3d or a user's): the data row."""
    input:
        test="resources/structures/{dataset}/data/test.npz",
        smiles="resources/structures/{dataset}/data/train_smiles.txt",
    output:
        "resources/structures/{dataset}/data/data_row.json",
    log:
        "logs/structures/{dataset}/data_row.log",
    benchmark:
        "benchmarks/structures/{dataset}/data_row.tsv"
    wildcard_constraints:
        dataset=one_of(conformer_datasets()),
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        flags=conformers_reference_flags,
    shell:
        "dgm reference --domain conformers --data {input.test} --out {output} {params.flags}"
        " --jobs {threads} 2> {log}"


rule ala2_fetch:
    output:
        prmtop="resources/structures/ala2/raw/alanine-dipeptide.prmtop",
        pdb="resources/structures/ala2/raw/alanine-dipeptide.pdb",
    log:
        "logs/structures/ala2/fetch.log",
    benchmark:
        "benchmarks/structures/ala2/fetch.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        out=output_folder("prmtop"),
    shell:
        "dgm fetch ala2 --out {params.out} 2> {log}"


rule ala2_simulate:
    """Langevin MD in implicit solvent on OpenMM's CPU platform; a killed run resumes from its
    last checkpoint (the work folder is kept: shadow-free, not deleted on failure)."""
    input:
        prmtop="resources/structures/ala2/raw/alanine-dipeptide.prmtop",
        pdb="resources/structures/ala2/raw/alanine-dipeptide.pdb",
    output:
        trajectory="resources/structures/ala2/md/trajectory.dcd",
        topology="resources/structures/ala2/md/topology.pdb",
        prmtop="resources/structures/ala2/md/alanine-dipeptide.prmtop",
        stats="resources/structures/ala2/md/simulate.json",
    log:
        "logs/structures/ala2/simulate.log",
    benchmark:
        "benchmarks/structures/ala2/simulate.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    # one thread: for 22 atoms OpenMM's CPU platform runs faster on one thread than on two
    threads: 1
    params:
        flags=simulation_flags,
        raw=input_folder("prmtop"),
        out=output_folder("stats"),
    shell:
        "dgm simulate --raw {params.raw} --out {params.out} {params.flags} --threads {threads} 2> {log}"


rule ala2_prepare:
    input:
        trajectory="resources/structures/ala2/md/trajectory.dcd",
        topology="resources/structures/ala2/md/topology.pdb",
        prmtop="resources/structures/ala2/md/alanine-dipeptide.prmtop",
        stats="resources/structures/ala2/md/simulate.json",
    output:
        expand(
            "resources/structures/ala2/data/{split}.dcd",
            split=["train", "valid", "test"],
        ),
        topology="resources/structures/ala2/data/topology.pdb",
        prmtop="resources/structures/ala2/data/alanine-dipeptide.prmtop",
        stats="resources/structures/ala2/data/prepare.json",
    log:
        "logs/structures/ala2/prepare.log",
    benchmark:
        "benchmarks/structures/ala2/prepare.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        split=ala2_split_flags,
        md=input_folder("stats"),
        out=output_folder("stats"),
    shell:
        "dgm prepare ala2 --raw {params.md} --out {params.out} {params.split} 2> {log}"


rule md_mixing:
    """Mixing diagnostics of an energy-based model's Langevin sampler: split R-hat and ESS over chains."""
    input:
        "results/structures/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        "results/structures/{dataset}/{model}/seed{seed}/mixing.json",
    log:
        "logs/structures/{dataset}/{model}/seed{seed}/mixing.log",
    benchmark:
        "benchmarks/structures/{dataset}/{model}/seed{seed}/mixing.tsv"
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        flags=mixing_flags,
    shell:
        "dgm mixing --checkpoint {input} --seed {wildcards.seed} --out {output} {params.flags}"
        " --threads {threads} 2> {log}"
