# The HTML report over every run's metrics and samples.


rule report:
    input:
        metrics=[
            t for domain in DOMAINS for t in domain_targets(domain, "metrics.json")
        ],
        samples=[t for domain in DOMAINS for t in domain_targets(domain)],
        data_rows=STRUCTURE_DATA_ROWS,
        sequences=SEQUENCE_EXTRAS,
        trajectories=TRAJECTORY_EXTRAS,
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
    shell:
        "dgm report --results results --out {output} 2> {log}"
