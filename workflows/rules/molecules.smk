# Molecules (2D): MOSES / QM9 fetch -> prepare -> featurize (PyG graphs, dense graphs) / reference
# -> train -> sample -> evaluate. Helpers in common.smk; threads and resources: see common.smk.


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
        "../envs/conda.yaml"
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
        "../envs/conda.yaml"
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
    priority: PRIORITY.data
    conda:
        "../envs/conda.yaml"
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
        "../envs/conda.yaml"
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
        "../envs/conda.yaml"
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
        "../envs/conda.yaml"
    threads: 8
    params:
        flags=reference_flags,
    shell:
        "dgm reference --domain molecules --data {input} --out {output} {params.flags}"
        " --jobs {threads} 2> {log}"


rule molecules_train:
    input:
        unpack(molecules_train_inputs),
    output:
        "results/molecules/{dataset}/{model}/seed{seed}/model.ckpt",
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/train.tsv"
    priority: PRIORITY.train
    conda:
        "../envs/conda.yaml"
    threads: 8
    params:
        config=model_config("molecules"),
        data=input_folder("train"),
        launcher=train_launcher,
    shell:
        "{params.launcher} dgm train --model {wildcards.model} --data {params.data} --config '{params.config}'"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


rule molecules_sample:
    input:
        "results/molecules/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        samples="results/molecules/{dataset}/{model}/seed{seed}/samples.csv",
        timing="results/molecules/{dataset}/{model}/seed{seed}/sampling.json",
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/sample.tsv"
    priority: PRIORITY.sample
    conda:
        "../envs/conda.yaml"
    threads: 8
    params:
        n=sample_count("molecules"),
    shell:
        "dgm sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} --out {output.samples}"
        " --timing {output.timing}"
        " --threads {threads} 2> {log}"


rule molecules_evaluate:
    input:
        unpack(molecules_evaluate_inputs),
    output:
        "results/molecules/{dataset}/{model}/seed{seed}/metrics.json",
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/evaluate.tsv"
    conda:
        "../envs/conda.yaml"
    threads: 8
    params:
        reference=input_folder("ref_test"),
    shell:
        "dgm evaluate --domain molecules --samples {input.samples}"
        " --checkpoint {input.checkpoint} --reference {params.reference}"
        " --out {output} --jobs {threads} 2> {log}"


rule molecules:
    input:
        domain_targets("molecules", "metrics.json"),
