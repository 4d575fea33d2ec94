"""Alanine-dipeptide test data: 300 real MD frames committed under tests/data/ala2 (OBC implicit
solvent, AMBER ff96, 300 K, one frame per ps; the openmmtools prmtop and the PDB `dgm fetch ala2`
writes), a tiny prepared data folder and the ``ala2-flow`` contract-test inputs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "data" / "ala2"
RAW = DATA
"""Holds ``alanine-dipeptide.prmtop`` and ``alanine-dipeptide.pdb`` as `dgm fetch ala2` writes them."""
FRAMES = DATA / "frames.dcd"
TINY_CONFIG: dict[str, Any] = {"hidden": 32, "hidden_layers": 1, "blocks": 2}
"""A tiny ``ala2-flow`` Config for contract tests."""
TINY_EBM_CONFIG: dict[str, Any] = {"base_hidden": 16, "base_hidden_layers": 1, "base_blocks": 2, "hidden": 32,
                                   "hidden_layers": 1, "sweeps": 3}
"""A tiny ``ala2-ebm`` Config for contract tests."""
SPLIT = {"train": (0, 200), "valid": (200, 240), "test": (240, 300)}


def frames() -> np.ndarray:
    """The committed MD frames (300, 22, 3) float32 nm."""
    from dgm_science.domains.structures.md import load_frames

    return load_frames(FRAMES, DATA / "alanine-dipeptide.pdb")


def prmtop_text() -> str:
    return (DATA / "alanine-dipeptide.prmtop").read_text()


def write_prepared(out_dir: Path) -> Path:
    """A prepared folder as `dgm prepare ala2` writes it (train 200 / valid 40 / test 60 frames)."""
    import mdtraj

    from dgm_science.domains.structures.md import PRMTOP, TOPOLOGY

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xyz = frames()
    topology = mdtraj.load_topology(str(DATA / "alanine-dipeptide.pdb"))
    for split, (lo, hi) in SPLIT.items():
        mdtraj.Trajectory(xyz[lo:hi], topology).save_dcd(str(out_dir / f"{split}.dcd"))
    (out_dir / TOPOLOGY).write_bytes((DATA / "alanine-dipeptide.pdb").read_bytes())
    (out_dir / PRMTOP).write_text(prmtop_text())
    (out_dir / "prepare.json").write_text(json.dumps({"temperature_kelvin": 300.0, "save_every_ps": 1.0}))
    return out_dir


def tiny_state_and_batch(n: int = 16) -> tuple[dict[str, Any], dict[str, Any]]:
    """(peptide-md domain state fitted on the tiny prepared folder, a batch of ``n`` training frames)."""
    from dgm_science import registry

    domain = registry.get("domain", "peptide-md")
    spec = registry.get("model", "ala2-flow")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = write_prepared(Path(tmp))
        state = domain.fit_state(data_dir, spec, None)
        train, _ = domain.datasets(data_dir, spec, None, state)
    return state, train.collate([train[i] for i in range(n)])
