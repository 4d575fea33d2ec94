# Goal-directed design (dgm_science/applications/design): `dgm optimize` per (objective, method,
# seed) of the config's `design` block, on the shipped MOSES prior (data/models/README.md).
# Helpers: common.smk beside this file.


wildcard_constraints:
    objective=r"[a-z0-9_]+",
    method=r"[a-z-]+",


rule design_optimize:
    input:
        prior=lookup(dpath="design/prior", within=config, default=[]),
        objective=design_objective_file,
    output:
        summary="results/design/{objective}/{method}/seed{seed}/summary.json",
    log:
        "logs/design/{objective}/{method}/seed{seed}/optimize.log",
    benchmark:
        "benchmarks/design/{objective}/{method}/seed{seed}/optimize.tsv"
    conda:
        "../../../envs/conda.yaml"
    threads: 2
    params:
        out=output_folder("summary"),
        objective=lookup(dpath="design/objectives/{objective}", within=config),
        settings=design_settings,
        budget=lookup(dpath="design/budget", within=config, default=None),
        top=lookup(dpath="design/top", within=config, default=None),
    shell:
        "dgm optimize --prior {input.prior} --objective {params.objective} --method {wildcards.method}"
        " --config '{params.settings}' --budget {params.budget} --top {params.top} --seed {wildcards.seed}"
        " --out {params.out} --jobs {threads} --threads {threads} 2> {log}"


rule design:
    input:
        design_targets(),
