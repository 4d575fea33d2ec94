#!/usr/bin/env bash
# Snakemake runs this inside the new environment of conda.yaml (`--sdm conda`): install the
# project itself, the `dgm` command every rule calls, from the folder of the Snakefile, which the
# Snakefile passes in DGM_SCIENCE_SOURCE.
set -euo pipefail
source_dir=${DGM_SCIENCE_SOURCE:?"not set: run this through the workflow's Snakefile"}
test -f "$source_dir/pyproject.toml" || { echo "no pyproject.toml in $source_dir" >&2; exit 1; }
# guacamol (envs/requirements-nodeps.txt) goes in without its declared dependencies: its wheel pins
# rdkit-pypi, a second RDKit beside the env's rdkit; what it needs is in conda.yaml already.
python -m pip install --no-deps -r "$source_dir/envs/requirements-nodeps.txt"
python -m pip install --no-deps "$source_dir"
