# Genetic sequences: committed FASTA -> prepare (identity-cluster split); lossless compression of
# the test set with seq-arm. Train -> sample -> evaluate and the test-set bits per residue of every
# model (exact for seq-arm, the ELBO for seq-diffusion and seq-vae) are models.smk's rules over this
# file's MODEL_RULES entry.
# Helpers: common.smk beside this file.


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
    wildcard_constraints:
        dataset=BUILT_IN,
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        subset=sequence_subset_flags,
        raw=input_folder(0),
        out=output_folder("stats"),
    shell:
        "dgm prepare {wildcards.dataset} --raw {params.raw} --out {params.out} {params.subset} 2> {log}"


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
        "../../../envs/conda.yaml"
    threads: 8
    shell:
        "dgm compress --checkpoint {input.checkpoint} --input {input.test} --out {output.compressed} --verify"
        " --stats {output.stats} --threads {threads} 2> {log}"
