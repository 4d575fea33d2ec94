"""Tiny real QM9-3D data for model tests: 48 test-split molecules (``tests/data/qm9_3d_sample.npz``,
centred, float32 Angstrom) and a tiny ``qm9-edm`` config
(``from tests.domains.structures import fixtures_qm9``; pytest runs from the repository root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "qm9_3d_sample.npz"
TINY_CONFIG: dict[str, Any] = {"hidden_dim": 16, "n_layers": 2, "diffusion_steps": 20, "ema_decay": 0.0}
"""A ``qm9-edm`` Config dict small enough for contract tests (fractions of a second per call)."""
TINY_GRAPH_CONFORMER_CONFIG: dict[str, Any] = {
    "tokenizer": "selfies", "d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 40, "hidden_dim": 16, "egnn_layers": 2,
    "diffusion_steps": 20, "sampling_steps": 10, "ema_decay": 0.0}
"""A ``qm9-graph-conformer`` Config dict for contract tests (SELFIES: an untrained model's strings are molecules too,
so that its samples are not all empty)."""


def sample_arrays() -> dict[str, np.ndarray]:
    """The 48 molecules: n_atoms (48,), atom_types (48, 29) (-1 padding), positions (48, 29, 3), index, smiles."""
    with np.load(SAMPLE) as data:
        return {key: data[key] for key in data.files}


def tiny_state_and_batch(n: int = 16) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(conformers-domain state fitted on the 48 molecules, a training batch of the first ``n``)."""
    from dgm_science.domains.structures.data import ATOMIC_NUMBERS, ELEMENTS, MAX_ATOMS

    data = sample_arrays()
    counts = np.bincount(data["n_atoms"].astype(np.int64), minlength=MAX_ATOMS + 1)
    state = {"elements": list(ELEMENTS), "charges": [ATOMIC_NUMBERS[e] for e in ELEMENTS],
             "n_atoms_histogram": [float(c) for c in counts], "max_atoms": MAX_ATOMS}
    n_atoms = torch.from_numpy(data["n_atoms"][:n].astype(np.int64))
    width = int(n_atoms.max())
    batch = {"positions": torch.from_numpy(data["positions"][:n, :width].astype(np.float32)),
             "atom_types": torch.from_numpy(data["atom_types"][:n, :width].astype(np.int64)).clamp(min=0),
             "n_atoms": n_atoms}
    return state, batch


def tiny_graph_conformer_state_and_batch(n: int = 16) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``tiny_state_and_batch`` with what ``qm9-graph-conformer`` adds: the state's SMILES vocabulary (the 48
    molecules' SMILES) and mean bond lengths, the batch's perceived bond orders and its molecules' token rows."""
    from dgm_science.tokenizer import Tokenizer
    from dgm_science.domains.structures import graph_conformers, metrics

    state, batch = tiny_state_and_batch(n)
    data = sample_arrays()
    tokenizer = Tokenizer.fit(TINY_GRAPH_CONFORMER_CONFIG["tokenizer"], [s for s in graph_conformers.heavy_atom_smiles([str(s) for s in data["smiles"]])
                                         if s])
    table = graph_conformers.bond_length_table(data["positions"], np.clip(data["atom_types"], 0, None),
                                               data["n_atoms"], len(state["elements"]))
    state = {**state, "tokenizer": tokenizer.state(), "bond_lengths": table.tolist()}
    positions, types, n_atoms = (batch[k].numpy() for k in ("positions", "atom_types", "n_atoms"))
    orders, tokens, ok = graph_conformers.perceived_graphs(positions, types, n_atoms, state["tokenizer"],
                                                           TINY_GRAPH_CONFORMER_CONFIG["max_length"])
    assert ok.all(), "every molecule of the sample perceives as a molecule"
    return state, {**batch, "bonds": torch.from_numpy(orders.astype(np.int64)), "tokens": tokens}
