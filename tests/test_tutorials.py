"""The "your own data" tutorials (docs/your-data/*.md) are kept true by running them: every fenced ```bash block
after a ``<!-- tutorial: FOLDER -->`` comment is run, line by line as a user would paste it, in a copy of FOLDER
(the tiny files the page's commands name, under tests/data/user/), the blocks of one page in order. A block marked
``<!-- tutorial: FOLDER dry-run -->`` holds Snakemake commands, run with ``-n`` (a dry run: the pipeline's plan on
the user's files, validated against the config schema) from a folder where ``workflows/`` is the repository's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "your-data").glob("*.md"))
MARKER = re.compile(r"<!-- tutorial: (?P<folder>\S+)(?P<dry> dry-run)? -->\s*\n```bash\n(?P<body>.*?)\n```", re.S)


def tutorial_blocks(page: Path) -> list[tuple[str, bool, str]]:
    """(folder, dry run, commands) of each tutorial block of ``page``."""
    return [(m["folder"], bool(m["dry"]), m["body"]) for m in MARKER.finditer(page.read_text(encoding="utf-8"))]


def test_every_tutorial_page_has_blocks_and_their_files():
    assert PAGES, "docs/your-data/ has no page"
    for page in PAGES:
        if page.name == "index.md":
            continue
        blocks = tutorial_blocks(page)
        assert blocks, f"{page.name}: no <!-- tutorial: ... --> block"
        for folder, _, _ in blocks:
            assert (ROOT / folder).is_dir(), f"{page.name}: {folder} does not exist"


def run_block(body: str, cwd: Path, dry: bool) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DGLBACKEND": "pytorch"}
    script = body
    if dry:
        script = re.sub(r"^snakemake\b(.*)$", rf"snakemake -s {ROOT}/Snakefile\1 -n --quiet", body, flags=re.M)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"tutorial block failed:\n{script}\n--- stdout\n{done.stdout[-3000:]}\n" \
                                 f"--- stderr\n{done.stderr[-5000:]}"


# What each page's commands must have written (beyond running without an error), by page.


def check_molecules(work: Path) -> None:
    stats = json.loads((work / "my-series" / "prepare.json").read_text())
    assert (stats["read"], stats["skipped"], stats["duplicates_removed"], stats["unique"]) == (60, 1, 2, 57)
    assert (stats["train"], stats["valid"], stats["test"]) == (45, 6, 6)  # the figures the page quotes
    metrics = json.loads((work / "runs" / "my-series-arm" / "metrics.json").read_text())
    assert metrics["n_generated"] == 500 and metrics["reference_test_size"] == 6
    # fine-tuned from the shipped prior: it records where it started, and its samples are chemistry
    import torch

    info = torch.load(work / "runs" / "my-series-ft" / "model.ckpt", weights_only=True)["info"]
    assert info["init_from"]["path"].endswith("moses-smiles-arm/model.ckpt") and len(info["init_from"]["sha256"]) == 64
    tuned = json.loads((work / "runs" / "my-series-ft" / "metrics.json").read_text())
    assert tuned["valid"] > 5 * max(metrics["valid"], 0.01)  # far more valid than the same data from scratch


def check_structures(work: Path) -> None:
    elements = ["H", "C", "N", "O", "F", "S", "Cl"]
    prepared = json.loads((work / "data/my-conformers/prepare.json").read_text())
    assert prepared["skipped"] == 4 and prepared["elements"] == elements
    metrics = json.loads((work / "runs/my-conformers/metrics.json").read_text())
    assert metrics["n_samples"] == 20 and {"atom_stability", "molecule_stability", "validity", "novelty"} <= set(metrics)
    # the samples are written in the data's elements (an untrained model's are not chemistry: any of the seven)
    sampled = {line.split()[0] for line in (work / "runs/my-conformers/samples.xyz").read_text().splitlines()
               if len(line.split()) == 4}
    assert sampled and sampled <= set(elements)
    row = json.loads((work / "data/my-conformers/data_row.json").read_text())
    assert row["validity"] == 1.0 and row["novelty"] == 1.0  # real held-out molecules, new to the training split

    prepared = json.loads((work / "data" / "prepare.json").read_text())
    assert prepared["frames"] == {"train": 210, "valid": 30, "test": 60} and prepared["energies"] is True
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["backbone_pairs"] == 2 and metrics["n_samples"] == 200
    for key in ("kl_ramachandran", "kl_ramachandran_pair2", "kl_torsions_mean", "energy_mean", "ess_fraction",
                "data_kl_ramachandran"):
        assert np.isfinite(metrics[key]), key
    assert (work / "run" / "ramachandran.png").stat().st_size > 1000
    rows = (work / "run" / "samples.csv").read_text().splitlines()
    assert rows[0] == "index,log_likelihood,reduced_energy,phi,psi" and len(rows) == 201


def check_trajectories(work: Path) -> None:
    run = work / "runs" / "my-pendulum-arm"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["samples"] == 16 and metrics["valid"] == 1.0 and metrics["env_installed"] == 1.0
    assert 0 <= metrics["in_range"] <= 1 and metrics["dynamic_error"] > 0 and metrics["data_dynamic_error"] > 0
    from dgm_science.domains.trajectories.minari_io import read_minari

    episodes = read_minari(run / "samples.minari")
    assert len(episodes) == 16 and episodes[0]["observations"].shape == (32, 3)
    assert episodes[0]["actions"].shape == (31, 1) and np.abs(episodes[0]["actions"]).max() <= 2.0
    rollout = json.loads((run / "rollout_env.json").read_text())
    assert rollout["env_id"] == "Pendulum-v1" and rollout["episodes"] == 3 and rollout["episode_steps"] == 40
    assert "random_return_mean" in rollout and rollout["data_return_mean"] < 0


def check_sequences(work: Path) -> None:
    prepared = json.loads((work / "my-amplicons/data/prepare.json").read_text())
    # what the page says about its file
    assert prepared["alphabet_read"] == "dna" and prepared["read"] == 83
    assert prepared["skipped"] == 1 and prepared["skipped_first"][0]["line"] == 194
    assert prepared["duplicates_removed"] == 10 and prepared["unique"] == 72
    assert prepared["u_as_t"] == 61 and prepared["ambiguity_codes_as_n"] == 2
    assert prepared["detected"] == ("dna: every letter is a nucleotide code and 100.0% of the residues are A, C, G, T, "
                                    "U or N (T present)")
    assert [prepared[s]["sequences"] for s in ("train", "valid", "test")] == [58, 7, 7]
    metrics = json.loads((work / "my-amplicons/seq-arm/metrics.json").read_text())
    assert metrics["n_samples"] == 16 and "kmer_js_k3" in metrics
    likelihood = json.loads((work / "my-amplicons/seq-arm/test_likelihood.json").read_text())
    assert likelihood["scored"] == 7 and 0 < likelihood["bits_per_residue"] < 3  # < log2(5): it learned something
    assert json.loads((work / "my-amplicons/seq-arm/compression.json").read_text())["records"] == 7
    assert (work / "my-amplicons/test.restored.fasta").read_bytes() == \
        (work / "my-amplicons/data/test.fasta").read_bytes()


CHECKS = {"molecules": check_molecules, "sequences": check_sequences, "structures": check_structures, "trajectories": check_trajectories}


def test_every_page_has_its_checks():
    assert {p.stem for p in PAGES if p.name != "index.md"} == set(CHECKS)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "index.md"], ids=lambda p: p.stem)
def test_tutorial_runs_as_written(page, tmp_path):
    work = tmp_path / "work"
    for folder in dict.fromkeys(folder for folder, _, _ in tutorial_blocks(page)):
        shutil.copytree(ROOT / folder, work, dirs_exist_ok=True)
    (work / "workflows").symlink_to(ROOT / "workflows")
    if "data/models/" in page.read_text():  # the shipped models a page starts from (a copy: pages write data/)
        shutil.copytree(ROOT / "data" / "models", work / "data" / "models", dirs_exist_ok=True)
    for _, dry, body in tutorial_blocks(page):
        run_block(body, work, dry)
    CHECKS[page.stem](work)
