"""A workdir for end-to-end Snakemake runs without any download: the workflow copied beside a
config, and the raw inputs every fetch rule would write, cut from the committed samples
(MOSES / QM9 SMILES, QM9 conformations, the alanine-dipeptide topology, the committed sequences)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.domains.sequences.fixtures import write_raw

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def copy_workflow(work: Path, *configs: Path) -> None:
    """The Snakefile, workflows/ (rules, configs, schema, report caption), the shipped models
    (data/models: the design rules' prior) and ``configs`` into ``work``."""
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflows", work / "workflows")
    shutil.copytree(ROOT / "data" / "models", work / "data" / "models")
    for config in configs:
        shutil.copy(config, work / Path(config).name)


def write_moses_raw(work: Path, splits: dict[str, list[str]]) -> None:
    """What ``moses_fetch`` writes: ``{train,test,test_scaffolds}.csv.gz`` with a SMILES column."""
    raw = work / "resources/molecules/moses/raw"
    raw.mkdir(parents=True)
    for name, smiles in splits.items():
        with gzip.open(raw / f"{name}.csv.gz", "wt") as fh:
            fh.write("SMILES\n" + "\n".join(smiles) + "\n")


def write_qm9_raw(work: Path) -> None:
    """What ``qm9_fetch`` writes: ``qm9.csv.gz`` (index, SMILES, the DFT properties) of the 300
    committed QM9 molecules (``tests/data/qm9_sample.csv``, rows of the wheel)."""
    raw = work / "resources/molecules/qm9/raw"
    raw.mkdir(parents=True)
    with gzip.open(raw / "qm9.csv.gz", "wt") as fh:
        fh.write((DATA / "qm9_sample.csv").read_text())


def write_structures_raw(work: Path) -> None:
    """What ``qm9_3d_fetch`` (48 committed conformations) and ``ala2_fetch`` (prmtop, PDB) write."""
    qm9_3d = work / "resources/structures/qm9-3d/raw"
    qm9_3d.mkdir(parents=True)
    shutil.copy(DATA / "qm9_3d_sample.npz", qm9_3d / "qm9_3d.npz")
    ala2 = work / "resources/structures/ala2/raw"
    ala2.mkdir(parents=True)
    for name in ("alanine-dipeptide.prmtop", "alanine-dipeptide.pdb"):
        shutil.copy(DATA / "ala2" / name, ala2 / name)


def write_raw_inputs(work: Path, moses_splits: dict[str, list[str]], sequences: dict[str, int]) -> None:
    """Every raw input of the pipeline: MOSES (``moses_splits``), QM9, QM9 3D, alanine dipeptide and
    ``data/sequences`` with the first n records of each sequence dataset (``{dataset: n}``) and an
    index split. The trajectories need nothing: ``trajectories_collect`` runs the simulator."""
    write_moses_raw(work, moses_splits)
    write_qm9_raw(work)
    write_structures_raw(work)
    for dataset, n in sequences.items():
        write_raw(work / "data/sequences", dataset, n=n)


def run_snakemake(work: Path, configfiles: list[str], *args: str, cores: int = 2,
                  timeout: float = 900) -> subprocess.CompletedProcess:
    """``snakemake --cores {cores} --configfile {configfiles} {args}`` in ``work``, with this
    interpreter's environment (its ``dgm``) first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", *configfiles, *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=timeout,
    )


def executed_jobs(out: str) -> list[str]:
    """The rule of each job in Snakemake's output (a run's log or a dry run's), in order."""
    return re.findall(r"^(?:local)?rule (\w+):$", out, flags=re.MULTILINE)
