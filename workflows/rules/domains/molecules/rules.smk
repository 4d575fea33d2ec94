# Molecules (2D): MOSES / QM9 fetch -> prepare -> featurize (PyG graphs, dense graphs) / reference;
# train -> sample -> evaluate are models.smk's rules over this domain's MODEL_RULES entry.
# Helpers: common.smk beside this file.


rule moses_fetch:
    output:
        train="resources/molecules/moses/raw/train.csv.gz",
        test="resources/molecules/moses/raw/test.csv.gz",
        test_scaffolds="resources/molecules/moses/raw/test_scaffolds.csv.gz",
    log:
        "logs/molecules/moses/fetch.log",
    benchmark:
        "benchmarks/molecules/moses/fetch.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        out=output_folder("train"),
    shell:
        "dgm fetch moses --out {params.out} 2> {log}"


rule qm9_fetch:
    output:
        smiles="resources/molecules/qm9/raw/qm9.csv.gz",
    log:
        "logs/molecules/qm9/fetch.log",
    benchmark:
        "benchmarks/molecules/qm9/fetch.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        out=output_folder("smiles"),
    shell:
        "dgm fetch qm9 --out {params.out} 2> {log}"


rule molecules_prepare:
    input:
        raw_training_file,
    output:
        train="resources/molecules/{dataset}/data/train.smi",
        valid="resources/molecules/{dataset}/data/valid.smi",
        train_all="resources/molecules/{dataset}/data/train_all.smi",
        test="resources/molecules/{dataset}/data/test.smi",
        stats="resources/molecules/{dataset}/data/prepare.json",
    log:
        "logs/molecules/{dataset}/prepare.log",
    benchmark:
        "benchmarks/molecules/{dataset}/prepare.tsv"
    wildcard_constraints:
        dataset=BUILT_IN,
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        subset=subset_flags,
        raw=input_folder(0),
        out=output_folder("stats"),
    shell:
        "dgm prepare {wildcards.dataset} --raw {params.raw} --out {params.out} {params.subset}"
        " --jobs {threads} 2> {log}"


rule molecules_featurize:
    input:
        "resources/molecules/{dataset}/data/{split}.smi",
    output:
        "resources/molecules/{dataset}/data/graphs_{split}.npz",
    log:
        "logs/molecules/{dataset}/featurize_{split}.log",
    benchmark:
        "benchmarks/molecules/{dataset}/featurize_{split}.tsv"
    wildcard_constraints:
        split="train|valid",
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        max_molecules=graph_limit,
    shell:
        "dgm featurize --smiles {input} --out {output} {params.max_molecules} --jobs {threads} 2> {log}"


rule molecules_dense:
    input:
        train="resources/molecules/{dataset}/data/train.smi",
        valid="resources/molecules/{dataset}/data/valid.smi",
    output:
        "resources/molecules/{dataset}/data/dense.npz",
    log:
        "logs/molecules/{dataset}/dense.log",
    benchmark:
        "benchmarks/molecules/{dataset}/dense.tsv"
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        max_molecules=graph_limit,
        data=input_folder("train"),
    shell:
        "dgm dense --data {params.data} --out {output} {params.max_molecules} --jobs {threads} 2> {log}"


rule molecules_reference:
    input:
        reference_source,
    output:
        "resources/molecules/{dataset}/data/ref_{split}.npz",
    log:
        "logs/molecules/{dataset}/reference_{split}.log",
    benchmark:
        "benchmarks/molecules/{dataset}/reference_{split}.tsv"
    wildcard_constraints:
        split="test|test_scaffolds",
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        flags=reference_flags,
    shell:
        "dgm reference --domain molecules --data {input} --out {output} {params.flags}"
        " --jobs {threads} 2> {log}"
