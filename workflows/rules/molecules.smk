# Molecules (2D): MOSES / QM9 fetch -> prepare -> featurize (PyG graphs, dense graphs) / reference
# -> train -> sample -> evaluate.

MOSES = "resources/molecules/moses"
QM9 = "resources/molecules/qm9"


def dataset_config(dataset):
    return config["molecules"][dataset]


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


rule qm9_fetch:
    output:
        QM9 + "/raw/qm9.csv.gz",
    log:
        "logs/molecules/qm9/fetch.log",
    benchmark:
        "benchmarks/molecules/qm9/fetch.tsv"
    shell:
        "{DGM} fetch qm9 --out {QM9}/raw 2> {log}"


def raw_training_file(wildcards):
    return {"moses": MOSES + "/raw/train.csv.gz", "qm9": QM9 + "/raw/qm9.csv.gz"}[wildcards.dataset]


def subset_flags(wildcards):
    subset = dataset_config(wildcards.dataset)["subset"]
    return (f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
            f" --seed {subset['seed']}")


rule molecules_prepare:
    input:
        raw_training_file,
    output:
        train="resources/molecules/{dataset}/data/train.smi",
        valid="resources/molecules/{dataset}/data/valid.smi",
        train_all="resources/molecules/{dataset}/data/train_all.smi",
        test="resources/molecules/{dataset}/data/test.smi",
        stats="resources/molecules/{dataset}/data/prepare.json",
    params:
        subset=subset_flags,
        raw="resources/molecules/{dataset}/raw",
        out="resources/molecules/{dataset}/data",
    threads: workflow.cores
    log:
        "logs/molecules/{dataset}/prepare.log",
    benchmark:
        "benchmarks/molecules/{dataset}/prepare.tsv"
    shell:
        "{DGM} prepare {wildcards.dataset} --raw {params.raw} --out {params.out} {params.subset}"
        " --jobs {threads} 2> {log}"


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


rule molecules_dense:
    input:
        train="resources/molecules/{dataset}/data/train.smi",
        valid="resources/molecules/{dataset}/data/valid.smi",
    output:
        "resources/molecules/{dataset}/data/dense.npz",
    params:
        max_molecules=graph_limit,
        data="resources/molecules/{dataset}/data",
    threads: workflow.cores
    log:
        "logs/molecules/{dataset}/dense.log",
    benchmark:
        "benchmarks/molecules/{dataset}/dense.tsv"
    shell:
        "{DGM} dense --data {params.data} --out {output} {params.max_molecules} --jobs {threads} 2> {log}"


def reference_source(wildcards):
    """MOSES ships Test and TestSF; QM9's test split is the held-out 10%."""
    if wildcards.dataset == "moses":
        return f"{MOSES}/raw/{wildcards.split}.csv.gz"
    return f"{QM9}/data/{wildcards.split}.smi"


def reference_flags(wildcards):
    reference = dataset_config(wildcards.dataset)["reference"]
    return f"{optional_flag('--max-molecules', reference['max_molecules'])} --seed {reference['seed']}"


rule molecules_reference:
    input:
        reference_source,
    output:
        "resources/molecules/{dataset}/data/ref_{split}.npz",
    params:
        flags=reference_flags,
    threads: workflow.cores
    wildcard_constraints:
        split="test|test_scaffolds",
    log:
        "logs/molecules/{dataset}/reference_{split}.log",
    benchmark:
        "benchmarks/molecules/{dataset}/reference_{split}.tsv"
    shell:
        "{DGM} reference --data {input} --out {output} {params.flags} --jobs {threads} 2> {log}"


def molecules_train_inputs(wildcards):
    data = f"resources/molecules/{wildcards.dataset}/data"
    inputs = {"train": f"{data}/train.smi", "valid": f"{data}/valid.smi"}
    if "graph" in batch_fields(wildcards.model):
        inputs["graphs_train"] = f"{data}/graphs_train.pt"
        inputs["graphs_valid"] = f"{data}/graphs_valid.pt"
    if "dense" in batch_fields(wildcards.model):
        inputs["dense"] = f"{data}/dense.npz"
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


def molecules_evaluate_inputs(wildcards):
    data = f"resources/molecules/{wildcards.dataset}/data"
    run = run_dir("molecules", wildcards.dataset, wildcards.model, wildcards.seed)
    inputs = {"samples": f"{run}/samples.csv", "train_all": f"{data}/train_all.smi",
              "ref_test": f"{data}/ref_test.npz"}
    if wildcards.dataset == "moses":  # the scaffold split exists for MOSES only
        inputs["ref_test_scaffolds"] = f"{data}/ref_test_scaffolds.npz"
    return inputs


rule molecules_evaluate:
    input:
        unpack(molecules_evaluate_inputs),
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
