# The HTML report over every run's metrics and samples, each domain's extras (MODEL_RULES) and each
# application's results (APPLICATION_TARGETS). Each file under resources/ that it shows (a data row,
# a baseline's rollout, test-set statistics) is passed as `--input NAME=PATH`, NAME being
# resources/<domain>/<dataset>/[...]/<stem>.<ext> -> <domain>/<dataset>/<stem>.


from dgm_science.catalog import input_name


rule report:
    input:
        metrics=[t for group in DOMAINS for t in domain_targets(group, "metrics.json")],
        samples=[t for group in DOMAINS for t in domain_targets(group)],
        extras=[t for table in MODEL_RULES.values() for t in table.extras],
        applications=[t for targets in APPLICATION_TARGETS.values() for t in targets],
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
