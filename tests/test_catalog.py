"""The workflow's parse reads the catalog (dgm_science/catalog.py) instead of importing the registry: a dry run
imports no torch and no domain; the catalog says what the live registry says; it is computed once per change of
the package and read from its cache afterwards; each model's training resources reach the Slurm jobs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dgm_science import catalog, registry, schema
from dgm_science.resources import MARGIN, OVERHEAD_MINUTES, TrainResources, runtime_minutes

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "workflows/schemas/config.schema.yaml"


def snakemake(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_dry_run_imports_no_torch_and_no_domain():
    warm = snakemake("-m", "snakemake", "-n", "--quiet", "all", "--configfile", "tests/data/tiny.yaml")
    assert warm.returncode == 0, warm.stderr[-3000:]  # (computes the catalog if the package changed)
    done = snakemake("-X", "importtime", "-m", "snakemake", "-n", "--configfile", "tests/data/tiny.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in modules and "dgm_science.catalog" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "lightning", "rdkit", "dgl", "torch_geometric")
                   or m.startswith(("dgm_science.domains", "dgm_science.registry", "dgm_science.schema")))
    assert not heavy, heavy


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> catalog.Catalog:
    return catalog.load(BASE, cache=tmp_path_factory.mktemp("catalog"))


def test_the_catalog_says_what_the_registry_says(loaded):
    assert sorted(loaded.models) == registry.names("model")
    assert sorted(loaded.datasets) == registry.names("dataset")
    assert {facts["config_key"] for facts in loaded.applications.values()} == {"design", "prediction"}
    for name, facts in loaded.models.items():
        spec = registry.get("model", name)
        assert facts["domain"] == spec.domain
        assert facts["batch_fields"] == list(spec.batch_fields)
        assert facts["samples_file"] == registry.get("domain", spec.domain).samples_file
        assert (facts["predicts"], facts["langevin"]) == (spec.predicts, spec.langevin)
        assert facts["train_resources"] == spec.train_resources.as_dict()
    assert loaded.model("ala2-ebm")["langevin"] and not loaded.model("ala2-flow")["langevin"]
    assert loaded.dataset("16s-v4")["sources"] == ["data/sequences/rrna16s_v4.fasta.gz",
                                                   "data/sequences/rrna16s_v4.split.tsv"]
    assert json.loads(Path(loaded.schema_path).read_text()) == json.loads(json.dumps(schema.pipeline_schema(BASE)))
    with pytest.raises(KeyError, match="unknown model 'nope'; known: .*smiles-arm"):
        loaded.model("nope")


def test_the_catalog_is_computed_once_per_change(tmp_path, monkeypatch):
    first = catalog.load(BASE, cache=tmp_path)
    stale = tmp_path / "0123456789abcdef0123"
    stale.mkdir()
    # read from the cache: no child process
    monkeypatch.setattr(catalog.subprocess, "run", lambda *a, **k: pytest.fail("computed again"))
    assert catalog.load(BASE, cache=tmp_path) == first
    monkeypatch.undo()
    # another base schema is another key: computed again, and the older catalogs removed
    base = tmp_path / "base.schema.yaml"
    base.write_text(BASE.read_text() + "\n# an edit\n")
    second = catalog.load(base, cache=tmp_path)
    assert Path(second.schema_path).parent != Path(first.schema_path).parent
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [Path(second.schema_path).parent.name]
    assert catalog.fingerprint(base) != catalog.fingerprint(BASE)


def test_a_failing_description_says_why(tmp_path):
    # a base schema that names a domain no model is registered for: the description fails in the child
    base = tmp_path / "broken.schema.yaml"
    base.write_text("type: object\nproperties:\n  x:\n    properties:\n      models: {x-models-of-domain: nowhere}\n")
    with pytest.raises(RuntimeError, match="(?s)describing the registered models failed.*nowhere"):
        catalog.load(base, cache=tmp_path / "cache")


def test_the_runtime_of_a_training_job_follows_its_steps_and_time_cap():
    edm = TrainResources(seconds_per_step=0.05).as_dict()
    steps = runtime_minutes(edm, {"max_steps": 4_700_000, "max_time_minutes": None})
    assert steps == pytest.approx(4_700_000 * 0.05 / 60 * MARGIN + OVERHEAD_MINUTES, abs=1)
    assert runtime_minutes(edm, {"max_steps": 4_700_000, "max_time_minutes": 600}) == 600 * MARGIN + OVERHEAD_MINUTES
    with pytest.raises(ValueError):
        TrainResources(seconds_per_step=0)


def test_every_model_declares_its_training_resources_and_slurm_gets_them():
    for name in registry.names("model"):
        declared = registry.get("model", name).train_resources
        assert isinstance(declared, TrainResources), name
        assert declared.gpus >= 1 and declared.mem_mb >= 4000, name
    # the paper config under the Slurm profile: each train job asks for its model's runtime and GPUs
    done = snakemake("-m", "snakemake", "-n", "--profile", "workflows/profiles/slurm", "--configfile",
                     "workflows/config/paper.yaml", "--cores", "64")
    assert done.returncode == 0, done.stderr[-3000:]
    runtime = {}
    for rule, block in re.findall(r"^rule (\w+_train):\n(.*?)(?=^\[|\Z)", done.stdout, flags=re.M | re.S):
        model = re.search(r"model=([\w-]+)", block).group(1)
        resources = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block).group(1)))
        assert int(resources["gpu"]) == registry.get("model", model).train_resources.gpus, (rule, model)
        assert resources["slurm_partition"] == "gpu", (rule, model)
        runtime[model] = int(resources["runtime"])
    assert {"qm9-edm", "ala2-flow", "graph-diffusion", "maze-diffuser"} <= set(runtime)
    assert runtime["qm9-edm"] > 60 * 60 and runtime["ala2-flow"] < 4 * 60  # days and hours, one rule
    assert runtime["maze-diffuser"] <= 600 * MARGIN + OVERHEAD_MINUTES  # max_time_minutes caps it
