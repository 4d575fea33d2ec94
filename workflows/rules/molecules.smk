# Molecules (2D): MOSES fetch -> prepare -> subset / featurize / reference -> train -> sample -> evaluate.

MOSES = "resources/molecules/moses"


wildcard_constraints:
    seed=r"\d+",
    model=r"[a-z0-9-]+",


rule moses_fetch:
    output:
        expand(MOSES + "/raw/{split}.csv.gz", split=["train", "test", "test_scaffolds"]),
    log:
        "logs/molecules/moses/fetch.log",
    benchmark:
        "benchmarks/molecules/moses/fetch.tsv"
    shell:
        "{DGM} fetch moses --out {MOSES}/raw 2> {log}"


rule moses_prepare:
    input:
        rules.moses_fetch.output,
    output:
        train_all=MOSES + "/canonical/train_all.smi",
        test=MOSES + "/canonical/test.smi",
        test_scaffolds=MOSES + "/canonical/test_scaffolds.smi",
        stats=MOSES + "/canonical/prepare.json",
    threads: workflow.cores
    log:
        "logs/molecules/moses/prepare.log",
    benchmark:
        "benchmarks/molecules/moses/prepare.tsv"
    shell:
        "{DGM} prepare moses --raw {MOSES}/raw --out {MOSES}/canonical --jobs {threads} 2> {log}"


rule moses_subset:
    input:
        MOSES + "/canonical/train_all.smi",
    output:
        train=MOSES + "/subset/train.smi",
        valid=MOSES + "/subset/valid.smi",
    params:
        train_size=optional_flag("--train-size", config["molecules"]["moses"]["subset"]["train_size"]),
        val_size=config["molecules"]["moses"]["subset"]["val_size"],
        seed=config["molecules"]["moses"]["subset"]["seed"],
    log:
        "logs/molecules/moses/subset.log",
    shell:
        "{DGM} subset --source {input} --out {MOSES}/subset {params.train_size}"
        " --val-size {params.val_size} --seed {params.seed} 2> {log}"


rule moses_featurize:
    input:
        MOSES + "/subset/{split}.smi",
    output:
        MOSES + "/subset/graphs_{split}.pt",
    threads: workflow.cores
    log:
        "logs/molecules/moses/featurize_{split}.log",
    benchmark:
        "benchmarks/molecules/moses/featurize_{split}.tsv"
    shell:
        "{DGM} featurize --smiles {input} --out {output} --jobs {threads} 2> {log}"


rule moses_reference:
    input:
        MOSES + "/canonical/{split}.smi",
    output:
        MOSES + "/canonical/ref_{split}.npz",
    params:
        max_molecules=optional_flag("--max-molecules", config["molecules"]["moses"]["reference"]["max_molecules"]),
        seed=config["molecules"]["moses"]["reference"]["seed"],
    threads: workflow.cores
    wildcard_constraints:
        split="test|test_scaffolds",
    log:
        "logs/molecules/moses/reference_{split}.log",
    benchmark:
        "benchmarks/molecules/moses/reference_{split}.tsv"
    shell:
        "{DGM} reference --data {input} --out {output} {params.max_molecules}"
        " --seed {params.seed} --jobs {threads} 2> {log}"


def molecules_train_inputs(wildcards):
    subset = f"resources/molecules/{wildcards.dataset}/subset"
    inputs = {"train": f"{subset}/train.smi", "valid": f"{subset}/valid.smi"}
    if "graph" in batch_fields(wildcards.model):
        inputs["graphs_train"] = f"{subset}/graphs_train.pt"
        inputs["graphs_valid"] = f"{subset}/graphs_valid.pt"
    return inputs


def molecules_model_config(wildcards):
    return model_config_json("molecules", wildcards.dataset, wildcards.model)


rule molecules_train:
    input:
        unpack(molecules_train_inputs),
    output:
        "results/molecules/{dataset}/{model}/seed{seed}/model.ckpt",
    params:
        config=molecules_model_config,
        data="resources/molecules/{dataset}/subset",
    threads: workflow.cores
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/train.tsv"
    shell:
        "{DGM} train --model {wildcards.model} --data {params.data} --config '{params.config}'"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


def molecules_sample_n(wildcards):
    return config["molecules"][wildcards.dataset]["models"][wildcards.model].get("sample", {}).get("n", 10000)


rule molecules_sample:
    input:
        "results/molecules/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        "results/molecules/{dataset}/{model}/seed{seed}/samples.csv",
    params:
        n=molecules_sample_n,
    threads: workflow.cores
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/sample.tsv"
    shell:
        "{DGM} sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} --out {output}"
        " --threads {threads} 2> {log}"


rule molecules_evaluate:
    input:
        samples="results/molecules/{dataset}/{model}/seed{seed}/samples.csv",
        train_all="resources/molecules/{dataset}/canonical/train_all.smi",
        ref_test="resources/molecules/{dataset}/canonical/ref_test.npz",
        ref_test_scaffolds="resources/molecules/{dataset}/canonical/ref_test_scaffolds.npz",
    output:
        "results/molecules/{dataset}/{model}/seed{seed}/metrics.json",
    threads: workflow.cores
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/evaluate.tsv"
    shell:
        "{DGM} evaluate --domain molecules --samples {input.samples} --reference resources/molecules/{wildcards.dataset}/canonical"
        " --out {output} --jobs {threads} 2> {log}"


rule molecules:
    input:
        domain_targets("molecules", "metrics.json"),
