"""Molecule test data: the committed MOSES sample, the domain state fitted on it and the tiny
configs of the molecule models for the contract tests."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "data"
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "smiles-arm": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 80},
    "graph-vae": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 80,
                  "latent_dim": 8, "encoder_hidden": 32, "encoder_layers": 2, "kl_anneal_steps": 0},
    "graph-diffusion": {"hidden_dim": 32, "edge_dim": 16, "global_dim": 16, "n_layers": 2, "n_heads": 4,
                        "dropout": 0.0, "diffusion_steps": 20},
    "graph-flow": {"adjacency_hidden": 16, "adjacency_row_blocks": 4, "adjacency_cycles": 2, "node_hidden": 32,
                   "node_gnn_layers": 1, "node_row_blocks": 4, "node_cycles": 2},
    "hybrid-arm": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 80, "head_hidden": 16,
                   "targets": ["gap", "mu"]},
    "regressor-arm": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 80,
                      "head_hidden": 16, "targets": ["gap", "mu"]},
    "molgan": {"latent_dim": 8, "generator_hidden": [32, 32], "critic_gcn": [16, 16], "critic_aggregation": 16,
               "critic_hidden": [16], "critic_steps": 1},
    "latent-gan": {"max_length": 80, "embedding_dim": 16, "hidden_dim": 32, "code_dim": 8, "latent_dim": 8,
                   "generator_hidden": [16], "critic_hidden": [16], "autoencoder_steps": 40},
}
DENSITY = False
"""Models of discrete objects: log p < 0."""


def moses_smiles() -> list[str]:
    return DATA.joinpath("moses_sample.smi").read_text().split()


@functools.lru_cache(maxsize=1)
def molecule_state() -> dict[str, Any]:
    """Tokenizer and dense-graph vocabulary fitted on the MOSES sample."""
    from dgm_science.domains.molecules.dense import dense_state, fit_vocabulary, smiles_to_dense_batch
    from dgm_science.tokenizer import Tokenizer

    smiles = moses_smiles()
    atom_types, max_atoms = fit_vocabulary(smiles)
    batch, _ = smiles_to_dense_batch(smiles, atom_types, max_atoms)
    return {"tokenizer": Tokenizer.fit("smiles", smiles).state(), **dense_state(atom_types, batch["atoms"], batch["bonds"])}


def tiny_case(name: str, n: int = 16) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tiny config, domain state, batch of the first ``n`` MOSES-sample molecules) of ``name``."""
    from dgm_science import registry
    from dgm_science.config import from_dict

    spec = registry.get("model", name)
    state = molecule_state()
    smiles = moses_smiles()[:n]
    batch, keep = registry.get("domain", spec.domain).batch_of(smiles, spec,
                                                                 from_dict(spec.Config, TINY_CONFIGS[name], name), state)
    assert len(keep) == n
    if "y" in spec.batch_fields:  # two properties of the molecules (logP, MW), standardised, as targets
        import numpy as np
        import torch

        from dgm_science.domains.molecules.properties import properties_table

        values = np.array([[row["logp"], row["mw"]] for row in properties_table(smiles)])
        mean, std = values.mean(0), values.std(0)
        batch["y"] = torch.tensor((values - mean) / std, dtype=torch.float32)
        state = {**state, "targets": {"names": ["gap", "mu"], "units": ["Ha", "D"], "mean": mean.tolist(),
                                      "std": std.tolist()}}
    return TINY_CONFIGS[name], state, batch
