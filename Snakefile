# dgm-science pipeline: `snakemake --profile workflows/profiles/default` (see README.md and docs/).
import os

from snakemake.utils import min_version, validate

from dgm_science.schema import schema_file

min_version("9.0")


# The embedded default unless a config is given (--configfile replaces it rather than being
# deep-merged into it, so no default leaks into another config).
if not config:

    configfile: "workflows/config/default.yaml"


# The schema: workflows/schemas/config.schema.yaml with every model's block generated from its
# config dataclass (dgm_science/schema.py); validating fills in the defaults.
validate(
    config, schema_file(f"{workflow.basedir}/workflows/schemas/config.schema.yaml")
)

# `--sdm conda`: workflows/envs/conda.post-deploy.sh installs the project from here into the env.
os.environ.setdefault("DGM_SCIENCE_SOURCE", workflow.basedir)


include: "workflows/rules/common.smk"
include: "workflows/rules/molecules.smk"
include: "workflows/rules/structures.smk"
include: "workflows/rules/sequences.smk"
include: "workflows/rules/trajectories.smk"
include: "workflows/rules/design.smk"
include: "workflows/rules/prediction.smk"
include: "workflows/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
