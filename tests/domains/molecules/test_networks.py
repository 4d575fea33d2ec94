"""Tests for the molecular graph encoder."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch

from dgm_science.domains.molecules.featurize import smiles_to_graph
from dgm_science.domains.molecules.networks import GraphEncoder

SMILES = [
    "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1",
    "Clc1ccccc1-c1nc(-c2ccncc2)no1",
    "C",
    "CCOC(=O)c1ncn2c1CN(C)C(=O)c1cc(F)ccc1-2",
]


def _permuted(graph, permutation: torch.Tensor):
    """Relabel node i as inverse[i]; features and labels move with their node."""
    permuted = graph.clone()
    inverse = torch.empty_like(permutation)
    inverse[permutation] = torch.arange(len(permutation))
    permuted.x = graph.x[permutation]
    permuted.edge_index = inverse[graph.edge_index]
    return permuted


def test_output_shapes() -> None:
    torch.manual_seed(0)
    encoder = GraphEncoder(latent_dim=16, hidden_dim=32, num_layers=2)
    mu, log_var = encoder(Batch.from_data_list([smiles_to_graph(s) for s in SMILES]))
    assert mu.shape == (len(SMILES), 16) and log_var.shape == (len(SMILES), 16)
    assert torch.isfinite(mu).all() and torch.isfinite(log_var).all()
    assert not torch.allclose(mu[0], mu[1])  # different molecules, different codes


def test_permutation_invariance() -> None:
    torch.manual_seed(0)
    encoder = GraphEncoder(latent_dim=8, hidden_dim=32, num_layers=3).eval()
    graphs = [smiles_to_graph(s) for s in SMILES]
    generator = torch.Generator().manual_seed(1)
    permuted = [_permuted(g, torch.randperm(g.num_nodes, generator=generator)) for g in graphs]
    assert not torch.equal(permuted[0].x, graphs[0].x)
    mu, log_var = encoder(Batch.from_data_list(graphs))
    mu_permuted, log_var_permuted = encoder(Batch.from_data_list(permuted))
    torch.testing.assert_close(mu_permuted, mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(log_var_permuted, log_var, atol=1e-5, rtol=0)
    # and a batch order permutation permutes the outputs
    mu_reversed, _ = encoder(Batch.from_data_list(graphs[::-1]))
    torch.testing.assert_close(mu_reversed, mu.flip(0), atol=1e-5, rtol=0)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    encoder = GraphEncoder(latent_dim=8, hidden_dim=32, num_layers=2, dropout=0.1)
    mu, log_var = encoder(Batch.from_data_list([smiles_to_graph(s) for s in SMILES]))
    (mu.square().sum() + log_var.exp().sum()).backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
