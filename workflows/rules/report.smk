# The HTML report over every run's metrics and samples.


rule report:
    input:
        metrics=domain_targets("molecules", "metrics.json"),
        samples=domain_targets("molecules", "samples.csv"),
    output:
        report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    shell:
        "{DGM} report --results results --out {output} 2> {log}"
