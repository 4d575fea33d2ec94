# dgm-science pipeline: `snakemake --profile workflows/profiles/default` (see README.md and docs/).
import glob
import os

from snakemake.utils import min_version, validate

from dgm_science import catalog
from dgm_science.config import check_unique_keys

min_version("9.0")


# The embedded default unless a config is given (--configfile replaces it rather than being
# deep-merged into it, so no default leaks into another config).
if not config:

    configfile: "workflows/config/default.yaml"


# What the rules ask of the package (models' domains, capabilities, resources; the config schema
# with every model's block generated from its dataclass), cached under .snakemake/dgm-science/ so
# that parsing the workflow (once per cluster job) imports no torch: dgm_science/catalog.py.
CATALOG = catalog.load(f"{workflow.basedir}/workflows/schemas/config.schema.yaml")
# YAML keeps the last of two equal keys silently: a dataset or model given twice is an error instead.
check_unique_keys(workflow.configfiles)
# Validating fills in the defaults.
validate(config, CATALOG.schema_path)

# `--sdm conda`: workflows/envs/conda.post-deploy.sh installs the project from here into the env.
os.environ.setdefault("DGM_SCIENCE_SOURCE", workflow.basedir)


# The rules files mirror the package: the common helpers; a folder per domain (its data rules and
# its entry in the table of model rules) and per application (workflows/rules/{domains,applications}/
# <name>/, as dgm_science/{domains,applications}/<name>/); the model rules, written once; the report.
include: "workflows/rules/common.smk"


# Each domain's and application's folder: its helpers (common.smk), then its rules (rules.smk).
for room in ("domains", "applications"):
    for folder in sorted(glob.glob(f"{workflow.basedir}/workflows/rules/{room}/*/")):

        include: f"{folder}common.smk"
        include: f"{folder}rules.smk"


include: "workflows/rules/models.smk"
include: "workflows/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
