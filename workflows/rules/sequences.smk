# Genetic sequences: committed FASTA -> prepare (identity-cluster split) -> train -> sample ->
# evaluate, plus test-set bits per residue for every model and lossless compression (seq-arm).

SEQUENCE_SOURCE = "data/sequences"


def sequences_config(dataset):
    return config["sequences"][dataset]


def sequence_data(dataset):
    return f"resources/sequences/{dataset}/data"


def sequence_source_files(wildcards):
    from dgm_science.domains.sequences.domain import DATASETS

    spec = DATASETS[wildcards.dataset]
    return [f"{SEQUENCE_SOURCE}/{spec.fasta}", f"{SEQUENCE_SOURCE}/{spec.split}"]


def sequences_data_dir(wildcards):
    return sequence_data(wildcards.dataset)


def sequence_subset_flags(wildcards):
    subset = sequences_config(wildcards.dataset)["subset"]
    return (f"{optional_flag('--train-size', subset['train_size'])}"
            f" {optional_flag('--max-residues', subset['max_residues'])} --seed {subset['seed']}")


rule sequences_prepare:
    input:
        sequence_source_files,
    output:
        expand("resources/sequences/{{dataset}}/data/{split}.fasta", split=["train", "valid", "test"]),
        stats="resources/sequences/{dataset}/data/prepare.json",
    params:
        subset=sequence_subset_flags,
        out=sequences_data_dir,
    log:
        "logs/sequences/{dataset}/prepare.log",
    benchmark:
        "benchmarks/sequences/{dataset}/prepare.tsv"
    shell:
        "{DGM} prepare {wildcards.dataset} --raw {SEQUENCE_SOURCE} --out {params.out} {params.subset} 2> {log}"


def sequences_data_files(wildcards):
    data = sequence_data(wildcards.dataset)
    return [f"{data}/{name}" for name in ("train.fasta", "valid.fasta", "test.fasta", "prepare.json")]


def sequences_model_config(wildcards):
    return model_config_json("sequences", wildcards.dataset, wildcards.model)


rule sequences_train:
    input:
        sequences_data_files,
    output:
        "results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
    params:
        config=sequences_model_config,
        data=sequences_data_dir,
    threads: workflow.cores
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/train.tsv"
    shell:
        "{DGM} train --model {wildcards.model} --data {params.data} --config '{params.config}'"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


def sequences_sample_n(wildcards):
    return sequences_config(wildcards.dataset)["models"][wildcards.model].get("sample", {}).get("n", 10000)


rule sequences_sample:
    """samples.fasta (valid samples, label and log-likelihood in the header) and samples.csv (every draw)."""
    input:
        "results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        samples="results/sequences/{dataset}/{model}/seed{seed}/samples.fasta",
        table="results/sequences/{dataset}/{model}/seed{seed}/samples.csv",
    params:
        n=sequences_sample_n,
    threads: workflow.cores
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/sample.tsv"
    shell:
        "{DGM} sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} --out {output.samples}"
        " --threads {threads} 2> {log}"


rule sequences_likelihood:
    """Test-set bits per residue: exact for seq-arm, the ELBO for seq-diffusion and seq-vae."""
    input:
        checkpoint="results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
        test="resources/sequences/{dataset}/data/test.fasta",
    output:
        "results/sequences/{dataset}/{model}/seed{seed}/test_likelihood.json",
    threads: workflow.cores
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/likelihood.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/likelihood.tsv"
    shell:
        "{DGM} likelihood --checkpoint {input.checkpoint} --fasta {input.test} --out {output}"
        " --seed {wildcards.seed} --threads {threads} 2> {log}"


rule sequences_compress:
    """Lossless compression of the test FASTA with seq-arm, decompressed and compared byte for byte."""
    input:
        checkpoint="results/sequences/{dataset}/seq-arm/seed{seed}/model.ckpt",
        test="resources/sequences/{dataset}/data/test.fasta",
    output:
        compressed="results/sequences/{dataset}/seq-arm/seed{seed}/test.fasta.dgmz",
        stats="results/sequences/{dataset}/seq-arm/seed{seed}/compression.json",
    threads: workflow.cores
    log:
        "logs/sequences/{dataset}/seq-arm/seed{seed}/compress.log",
    benchmark:
        "benchmarks/sequences/{dataset}/seq-arm/seed{seed}/compress.tsv"
    shell:
        "{DGM} compress --checkpoint {input.checkpoint} --input {input.test} --out {output.compressed} --verify"
        " --stats {output.stats} --threads {threads} 2> {log}"


rule sequences_evaluate:
    input:
        samples="results/sequences/{dataset}/{model}/seed{seed}/samples.fasta",
        table="results/sequences/{dataset}/{model}/seed{seed}/samples.csv",
        data=sequences_data_files,
    output:
        "results/sequences/{dataset}/{model}/seed{seed}/metrics.json",
    params:
        data=sequences_data_dir,
    threads: workflow.cores
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/evaluate.tsv"
    shell:
        "{DGM} evaluate --domain sequences --samples {input.samples} --reference {params.data}"
        " --out {output} --jobs {threads} 2> {log}"


# Beside each run's metrics: its test-set bits per residue, and seq-arm's compression figures.
SEQUENCE_EXTRAS = domain_targets("sequences", "test_likelihood.json") + [
    f"{run_dir('sequences', dataset, 'seq-arm', seed)}/compression.json"
    for dataset, ds_cfg in config.get("sequences", {}).items()
    if "seq-arm" in ds_cfg["models"] and ds_cfg["compression"]
    for seed in SEEDS
]


rule sequences:
    input:
        domain_targets("sequences", "metrics.json"),
        SEQUENCE_EXTRAS,
