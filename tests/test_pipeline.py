"""End-to-end: the real Snakefile on a tiny config, from raw files (MOSES, QM9, QM9-3D, the
alanine-dipeptide topology, 120 V4 amplicons) to the report.

The raw files are made from the committed MOSES sample so that no download happens in tests;
every rule after fetch runs for real, then a second run must have nothing to do and a change of
one model's config must re-run only that model's chain.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.domains.sequences.fixtures import write_raw

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e
QM9_MODELS = ("graph-flow", "graph-diffusion")


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, moses_smiles):
    work = tmp_path_factory.mktemp("pipeline")
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflows", work / "workflows")
    shutil.copy(ROOT / "tests/data/tiny.yaml", work / "tiny.yaml")
    raw = work / "resources/molecules/moses/raw"
    raw.mkdir(parents=True)
    splits = {"train": moses_smiles[:260] + ["C1CC(", "not_a_smiles"], "test": moses_smiles[260:],
              "test_scaffolds": moses_smiles[200:]}
    for name, smiles in splits.items():
        with gzip.open(raw / f"{name}.csv.gz", "wt") as fh:
            fh.write("SMILES\n" + "\n".join(smiles) + "\n")
    qm9_raw = work / "resources/molecules/qm9/raw"
    qm9_raw.mkdir(parents=True)
    qm9 = (ROOT / "tests/data/qm9_sample.smi").read_text().split()
    with gzip.open(qm9_raw / "qm9.csv.gz", "wt") as fh:
        fh.write("index,SMILES\n" + "".join(f"{i + 1},{s}\n" for i, s in enumerate(qm9)))
    qm9_3d_raw = work / "resources/structures/qm9/raw"
    qm9_3d_raw.mkdir(parents=True)
    shutil.copy(ROOT / "tests/data/qm9_3d_sample.npz", qm9_3d_raw / "qm9_3d.npz")
    ala2_raw = work / "resources/structures/ala2/raw"
    ala2_raw.mkdir(parents=True)
    for name in ("alanine-dipeptide.prmtop", "alanine-dipeptide.pdb"):
        shutil.copy(ROOT / "tests/data/ala2" / name, ala2_raw / name)
    write_raw(work / "data/sequences", "16s-v4", n=120)  # 120 V4 amplicons with an index split
    return work


def test_pipeline_runs_end_to_end(workdir):
    result = _snakemake(workdir)
    assert result.returncode == 0, result.stderr[-6000:]
    report = (workdir / "results/report.html").read_text()
    assert "smiles-arm" in report and "graph-vae" in report and "CharRNN (published)" in report
    prepared = json.loads((workdir / "resources/molecules/moses/data/prepare.json").read_text())
    assert prepared["unparseable"] == 2 and prepared["unparseable_lines"] == [262, 263]
    assert prepared["train"] + prepared["valid"] == 260
    for model in ("smiles-arm", "graph-vae"):
        run = workdir / f"results/molecules/moses/{model}/seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0.0 <= metrics["valid"] <= 1.0 and "FCD/Test" in metrics and "novelty" in metrics
        assert len((run / "samples.csv").read_text().splitlines()) == 61
        assert (run / "train/logs/metrics.csv").is_file()
        assert (workdir / f"logs/molecules/moses/{model}/seed0/train.log").is_file()
        assert (workdir / f"benchmarks/molecules/moses/{model}/seed0/train.tsv").is_file()
    assert "QM9" in report and "MoFlow (published)" in report
    for model in QM9_MODELS:
        run = workdir / f"results/molecules/qm9/{model}/seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0.0 <= metrics["validity_without_correction"] <= metrics["valid"] <= 1.0
        assert "FCD/Test" in metrics and "FCD/TestSF" not in metrics
        header = (run / "samples.csv").read_text().splitlines()[0]
        assert "valid_without_correction" in header
    assert "3D structures" in report and "EDM (published)" in report
    run = workdir / "results/structures/qm9/qm9-edm/seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["molecule_stability"] <= metrics["atom_stability"] <= 1.0
    assert metrics["n_samples"] == 20
    assert (run / "samples.sdf").read_text().count("$$$$") == 20
    assert (run / "samples.xyz").is_file()
    data_row = json.loads((workdir / "resources/structures/qm9/data/data_row.json").read_text())
    assert data_row["atom_stability"] > 0.9
    md = json.loads((workdir / "resources/structures/ala2/md/simulate.json").read_text())
    assert md["frames"] == 100
    run = workdir / "results/structures/ala2/ala2-flow/seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kl_ramachandran"] >= 0 and 0 < metrics["ess_fraction"] <= 1
    assert {"samples.dcd", "samples.pdb", "samples.csv", "ramachandran.png"} <= {p.name for p in run.iterdir()}
    assert "Genetic sequences" in report and "xz -9" in report
    for model in ("seq-arm", "seq-diffusion", "seq-vae"):
        run = workdir / f"results/sequences/16s-v4/{model}/seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["n_samples"] == 12 and 0 <= metrics["valid_fraction"] <= 1
        assert metrics["data_primer_retention"] == 1.0 and "data_kmer_js_k6" in metrics
        assert len((run / "samples.csv").read_text().splitlines()) == 13
        assert json.loads((run / "test_likelihood.json").read_text())["scored"] == 12
    compressed = json.loads((workdir / "results/sequences/16s-v4/seq-arm/seed0/compression.json").read_text())
    assert compressed["round_trip"] == "bit-exact" and compressed["records"] == 12


def test_rerun_does_nothing_and_one_model_change_reruns_its_chain_only(workdir):
    dry = _snakemake(workdir, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["molecules"]["moses"]["models"]["smiles-arm"]["train"]["max_steps"] = 7
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    dry = _snakemake(workdir, "--dry-run", "--quiet", "rules")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "molecules_train" in out and "molecules_sample" in out and "report" in out
    assert "molecules_prepare" not in out and "molecules_featurize" not in out
    assert "molecules_reference" not in out and "molecules_dense" not in out
    plan = _snakemake(workdir, "--dry-run", "--printshellcmds")
    assert "--model smiles-arm" in plan.stdout and "--model graph-vae" not in plan.stdout
