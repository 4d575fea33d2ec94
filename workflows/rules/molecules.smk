# Molecules (2D): MOSES fetch -> prepare -> featurize / reference -> train -> sample -> evaluate.

MOSES = "resources/molecules/moses"
MOSES_CFG = config["molecules"]["moses"]


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
        MOSES + "/raw/train.csv.gz",
    output:
        train=MOSES + "/data/train.smi",
        valid=MOSES + "/data/valid.smi",
        train_all=MOSES + "/data/train_all.smi",
        stats=MOSES + "/data/prepare.json",
    params:
        train_size=optional_flag("--train-size", MOSES_CFG["subset"]["train_size"]),
        val_size=MOSES_CFG["subset"]["val_size"],
        seed=MOSES_CFG["subset"]["seed"],
    threads: workflow.cores
    log:
        "logs/molecules/moses/prepare.log",
    benchmark:
        "benchmarks/molecules/moses/prepare.tsv"
    shell:
        "{DGM} prepare moses --raw {MOSES}/raw --out {MOSES}/data {params.train_size}"
        " --val-size {params.val_size} --seed {params.seed} --jobs {threads} 2> {log}"


def graph_limit(wildcards):
    graphs = config["molecules"][wildcards.dataset].get("graphs") or {}
    return optional_flag("--max-molecules", graphs.get("max_molecules"))


rule molecules_featurize:
    input:
        "resources/molecules/{dataset}/data/{split}.smi",
    output:
        "resources/molecules/{dataset}/data/graphs_{split}.pt",
    params:
        max_molecules=graph_limit,
    threads: workflow.cores
    wildcard_constraints:
        split="train|valid",
    log:
        "logs/molecules/{dataset}/featurize_{split}.log",
    benchmark:
        "benchmarks/molecules/{dataset}/featurize_{split}.tsv"
    shell:
        "{DGM} featurize --smiles {input} --out {output} {params.max_molecules} --jobs {threads} 2> {log}"


rule moses_reference:
    input:
        MOSES + "/raw/{split}.csv.gz",
    output:
        MOSES + "/data/ref_{split}.npz",
    params:
        max_molecules=optional_flag("--max-molecules", MOSES_CFG["reference"]["max_molecules"]),
        seed=MOSES_CFG["reference"]["seed"],
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
    data = f"resources/molecules/{wildcards.dataset}/data"
    inputs = {"train": f"{data}/train.smi", "valid": f"{data}/valid.smi"}
    if "graph" in batch_fields(wildcards.model):
        inputs["graphs_train"] = f"{data}/graphs_train.pt"
        inputs["graphs_valid"] = f"{data}/graphs_valid.pt"
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
        data="resources/molecules/{dataset}/data",
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
        train_all="resources/molecules/{dataset}/data/train_all.smi",
        ref_test="resources/molecules/{dataset}/data/ref_test.npz",
        ref_test_scaffolds="resources/molecules/{dataset}/data/ref_test_scaffolds.npz",
    output:
        "results/molecules/{dataset}/{model}/seed{seed}/metrics.json",
    threads: workflow.cores
    log:
        "logs/molecules/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/molecules/{dataset}/{model}/seed{seed}/evaluate.tsv"
    shell:
        "{DGM} evaluate --domain molecules --samples {input.samples} --reference resources/molecules/{wildcards.dataset}/data"
        " --out {output} --jobs {threads} 2> {log}"


rule molecules:
    input:
        domain_targets("molecules", "metrics.json"),
