# The HTML report over every run's metrics and samples. Each file under resources/ that it shows
# (a data row, a baseline's rollout, test-set statistics) is passed as `--input NAME=PATH`, NAME
# being resources/<domain>/<dataset>/[...]/<stem>.<ext> -> <domain>/<dataset>/<stem>.
from dgm_science.report import input_name


rule report:
    input:
        metrics=[
            t for domain in DOMAINS for t in domain_targets(domain, "metrics.json")
        ],
        samples=[t for domain in DOMAINS for t in domain_targets(domain)],
        data_rows=STRUCTURE_DATA_ROWS,
        references=[
            f"resources/molecules/{dataset}/data/ref_test.npz"
            for dataset in config.get("molecules", {})
        ],
        sequences=SEQUENCE_EXTRAS,
        trajectories=TRAJECTORY_EXTRAS,
        design=design_targets(),
        prediction=prediction_targets(),
        mixing=langevin_targets(),
    output:
        report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/conda.yaml"
    params:
        inputs=lambda wildcards, input: " ".join(
            f"--input {input_name(path)}={path}"
            for path in input
            if path.startswith("resources/")
        ),
    shell:
        "dgm report --results results --out {output} {params.inputs} 2> {log}"
