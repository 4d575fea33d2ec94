# Genetic sequences: committed FASTA -> prepare (identity-cluster split) -> train -> sample ->
# evaluate, plus test-set bits per residue for every model and lossless compression (seq-arm).


rule sequences_prepare:
    input:
        sequence_source_files,
    output:
        expand(
            "resources/sequences/{{dataset}}/data/{split}.fasta",
            split=["train", "valid", "test"],
        ),
        stats="resources/sequences/{dataset}/data/prepare.json",
    log:
        "logs/sequences/{dataset}/prepare.log",
    benchmark:
        "benchmarks/sequences/{dataset}/prepare.tsv"
    priority: PRIORITY.data
    conda:
        "../envs/conda.yaml"
    params:
        subset=sequence_subset_flags,
        raw=input_folder(0),
        out=output_folder("stats"),
    shell:
        "dgm prepare {wildcards.dataset} --raw {params.raw} --out {params.out} {params.subset} 2> {log}"


rule sequences_train:
    input:
        sequences_data_files,
    output:
        "results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/train.tsv"
    priority: PRIORITY.train
    conda:
        "../envs/conda.yaml"
    threads: 8
    params:
        config=model_config("sequences"),
        data=sequences_data_dir,
        launcher=train_launcher,
    shell:
        "{params.launcher} dgm train --model {wildcards.model} --data {params.data} --config '{params.config}'"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


rule sequences_sample:
    """samples.fasta (valid samples, label and log-likelihood in the header) and samples.csv (every draw)."""
    input:
        "results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        samples="results/sequences/{dataset}/{model}/seed{seed}/samples.fasta",
        table="results/sequences/{dataset}/{model}/seed{seed}/samples.csv",
        timing="results/sequences/{dataset}/{model}/seed{seed}/sampling.json",
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/sample.tsv"
    priority: PRIORITY.sample
    conda:
        "../envs/conda.yaml"
    threads: 8
    params:
        n=sample_count("sequences"),
    shell:
        "dgm sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} --out {output.samples}"
        " --timing {output.timing}"
        " --threads {threads} 2> {log}"


rule sequences_likelihood:
    """Test-set bits per residue: exact for seq-arm, the ELBO for seq-diffusion and seq-vae."""
    input:
        checkpoint="results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
        test="resources/sequences/{dataset}/data/test.fasta",
    output:
        "results/sequences/{dataset}/{model}/seed{seed}/test_likelihood.json",
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/likelihood.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/likelihood.tsv"
    conda:
        "../envs/conda.yaml"
    threads: 8
    shell:
        "dgm likelihood --checkpoint {input.checkpoint} --fasta {input.test} --out {output}"
        " --seed {wildcards.seed} --threads {threads} 2> {log}"


rule sequences_compress:
    """Lossless compression of the test FASTA with seq-arm, decompressed and compared byte for byte."""
    input:
        checkpoint="results/sequences/{dataset}/seq-arm/seed{seed}/model.ckpt",
        test="resources/sequences/{dataset}/data/test.fasta",
    output:
        compressed="results/sequences/{dataset}/seq-arm/seed{seed}/test.fasta.dgmz",
        stats="results/sequences/{dataset}/seq-arm/seed{seed}/compression.json",
    log:
        "logs/sequences/{dataset}/seq-arm/seed{seed}/compress.log",
    benchmark:
        "benchmarks/sequences/{dataset}/seq-arm/seed{seed}/compress.tsv"
    conda:
        "../envs/conda.yaml"
    threads: 8
    shell:
        "dgm compress --checkpoint {input.checkpoint} --input {input.test} --out {output.compressed} --verify"
        " --stats {output.stats} --threads {threads} 2> {log}"


rule sequences_evaluate:
    input:
        samples="results/sequences/{dataset}/{model}/seed{seed}/samples.fasta",
        checkpoint="results/sequences/{dataset}/{model}/seed{seed}/model.ckpt",
        table="results/sequences/{dataset}/{model}/seed{seed}/samples.csv",
        data=sequences_data_files,
    output:
        "results/sequences/{dataset}/{model}/seed{seed}/metrics.json",
    log:
        "logs/sequences/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/sequences/{dataset}/{model}/seed{seed}/evaluate.tsv"
    conda:
        "../envs/conda.yaml"
    threads: 8
    params:
        data=sequences_data_dir,
    shell:
        "dgm evaluate --domain sequences --samples {input.samples}"
        " --checkpoint {input.checkpoint} --reference {params.data}"
        " --out {output} --jobs {threads} 2> {log}"


rule sequences:
    input:
        domain_targets("sequences", "metrics.json"),
        SEQUENCE_EXTRAS,
