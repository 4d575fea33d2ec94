# Quick start: `make run` (the default pipeline) and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= 2
# `make run` runs two jobs at a time, each on half the cores (snakemake --max-threads): a transformer's
# training step here ran 1.6x faster on 2 threads than on 1, not 2x, so two one-thread jobs side by side
# finish sooner than the same jobs one after the other on two threads (two trainings: 59.6 s against 78.8 s).
JOB_THREADS ?= $(shell echo $$(( $(CORES) > 1 ? $(CORES) / 2 : 1 )))
export DGLBACKEND := pytorch
export PYTHONHASHSEED := 0
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test test-slow test-fast test-cluster fuzz lint docs bench clean

setup: $(STAMP)

# CPU machines get the CPU build of torch first (a bare requirement would pull a multi-GB CUDA
# build); machines with an NVIDIA driver get the CUDA build.
# Either way, envs/requirements-nodeps.txt follows with --no-deps (guacamol: its wheel pins a second RDKit).
$(STAMP): pyproject.toml envs/requirements-cpu.txt envs/requirements-cuda.txt envs/requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install --quiet -r envs/requirements-cuda.txt \
	    && $(PY) -m pip install --quiet --no-deps -r envs/requirements-nodeps.txt; \
	else \
	  $(PY) -m pip install --quiet torch==2.13.0 && $(PY) -m pip install --quiet -r envs/requirements-cpu.txt \
	    && $(PY) -m pip install --quiet --no-deps -r envs/requirements-nodeps.txt; \
	fi
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --profile workflows/profiles/default --cores $(CORES) --max-threads $(JOB_THREADS)

# TEST_WORKERS=N runs the tests on N processes (pytest-xdist), each test file on one of them (--dist loadfile: a
# file's module fixtures, such as the end-to-end runs, are built once). The default, 0, runs them in this process: on
# 2 cores the end-to-end runs already keep both busy, and two of them side by side pushed the tiny pipeline past its
# 900 s limit once. pytest exits 5 when a marker selects no test: not a failure here.
TEST_WORKERS ?= 0
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: $(STAMP)
	$(PYTEST) -m "not cluster and not slow" || [ $$? -eq 5 ]

# The long end-to-end runs make test leaves out: the paper config at smoke size (every rule of the paper
# workflow, 169 jobs) and the tutorials run as their pages write them. Run before a release or a change to
# the workflow, configs or tutorials.
test-slow: $(STAMP)
	$(PYTEST) -m "slow and not cluster"

test-fast: $(STAMP)
	$(PYTEST) -m "not e2e and not cluster" || [ $$? -eq 5 ]

# The tiny pipeline through the SLURM profile on a single-node Slurm started on this machine
# (root; installs Debian's slurmctld, slurmd, munge and slurm-client if missing). Fails when no
# cluster test ran: none selected (pytest's exit 5 is a failure here), or one skipped (not root).
test-cluster: $(STAMP)
	DGM_CLUSTER_REQUIRED=1 $(PY) -m pytest -q -s -m cluster tests/cluster

# Hypothesis over the SMILES, FASTA, config and compressed-file readers: FUZZ_EXAMPLES random inputs
# per target (make test runs the same targets with fewer); each example has a hard deadline.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) timeout 900 $(PY) -m pytest -q -m fuzz tests/fuzz

# snakemake --lint and snakefmt --check (as tests/test_workflow.py does)
lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflows

# The documentation site (MkDocs Material) into site/: the generated pages first (CLI and config reference,
# results tables from docs/results/), then a strict build, so a broken link or a page outside the nav fails.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) envs/requirements-docs.txt
	$(PY) -m pip install --quiet -r envs/requirements-docs.txt
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m dgm_science.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) bench/bench_molecules.py
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_structures.py --dataset ala2
	$(PY) bench/bench_structures.py --dataset qm9 --sample 500
	$(PY) bench/bench_sequences.py --dataset 16s-v4
	$(PY) bench/bench_sequences.py --dataset swissprot
	$(PY) bench/bench_trajectories_data.py
	$(PY) bench/bench_design.py
	$(PY) bench/bench_trajectories.py --dataset pointmaze-umaze

clean:
	rm -rf results logs benchmarks .snakemake
