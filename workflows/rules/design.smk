# Goal-directed design: `dgm optimize` per (objective, method, seed) of the config's `design` block,
# on the shipped MOSES prior (data/models/README.md).


wildcard_constraints:
    objective=r"[a-z0-9_]+",
    method=r"[a-z-]+",


rule design_optimize:
    input:
        prior=lambda wildcards: design_config()["prior"],
        objective=design_objective_file,
    output:
        summary="results/design/{objective}/{method}/seed{seed}/summary.json",
    log:
        "logs/design/{objective}/{method}/seed{seed}/optimize.log",
    benchmark:
        "benchmarks/design/{objective}/{method}/seed{seed}/optimize.tsv"
    conda:
        "../envs/conda.yaml"
    threads: 2
    params:
        out=output_folder("summary"),
        objective=design_objective,
        settings=design_settings,
        budget=lambda wildcards: design_config()["budget"],
        top=lambda wildcards: design_config()["top"],
    shell:
        "dgm optimize --prior {input.prior} --objective {params.objective} --method {wildcards.method}"
        " --config '{params.settings}' --budget {params.budget} --top {params.top} --seed {wildcards.seed}"
        " --out {params.out} --jobs {threads} --threads {threads} 2> {log}"


rule design:
    input:
        design_targets(),
