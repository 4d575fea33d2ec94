# dgm-science pipeline: `snakemake --profile workflows/profiles/default` (see README).
from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default unless a config is given (--configfile replaces it rather than being
# deep-merged into it, so no default leaks into another config).
if not config:

    configfile: "workflows/config/default.yaml"



validate(config, "workflows/schemas/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/molecules.smk"
include: "workflows/rules/structures.smk"
include: "workflows/rules/sequences.smk"
include: "workflows/rules/trajectories.smk"
include: "workflows/rules/report.smk"


rule all:
    input:
        "results/report.html",
    default_target: True
