# dgm-science pipeline: `snakemake --profile workflows/profiles/default` (see README).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflows/config/default.yaml"


validate(config, "workflows/schemas/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/molecules.smk"
include: "workflows/rules/report.smk"


rule all:
    input:
        "results/report.html",
    default_target: True
