"""Graph flow (MoFlow-style): x -> z -> x, log-determinant of the whole stack against a brute-force
Jacobian on a tiny graph, the dequantization bound, and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from dgm_science.domains.molecules.dense import DenseGraphs
from dgm_science.domains.molecules.graph_flow import GraphFlowConfig, build_graph_flow

TINY = GraphFlowConfig(adjacency_hidden=8, adjacency_row_blocks=2, adjacency_cycles=2, node_hidden=8,
                       node_gnn_layers=2, node_row_blocks=3, node_cycles=2)


@pytest.fixture()
def tiny_flow():
    torch.manual_seed(0)
    model = build_graph_flow(TINY, atom_classes=3, max_atoms=3).double()
    with torch.no_grad():  # leave the identity initialisation so the test sees a non-trivial map
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    for module in model.modules():
        if hasattr(module, "initialized"):
            module.initialized.fill_(True)
    return model.eval()


def _batch():
    atoms = torch.tensor([[1, 2, 1], [2, 1, 0]])
    bonds = torch.zeros(2, 3, 3, dtype=torch.long)
    bonds[0, 0, 1] = bonds[0, 1, 0] = 2
    bonds[0, 1, 2] = bonds[0, 2, 1] = 1
    bonds[1, 0, 1] = bonds[1, 1, 0] = 3
    return {"atoms": atoms, "bonds": bonds}


def _jacobian_logdet(flow, x, context=None):
    out = []
    for row in range(x.shape[0]):
        def f(flat, row=row):
            ctx = None if context is None else context[row:row + 1]
            return flow(flat.view(1, *x.shape[1:]), ctx)[0].reshape(-1)
        out.append(torch.linalg.slogdet(torch.autograd.functional.jacobian(f, x[row].reshape(-1)))[1])
    return torch.stack(out)


def test_bond_and_atom_flows_invert_within_1e4_and_logdet_matches_jacobian(tiny_flow):
    pairs, atoms, context = tiny_flow.encode_inputs(_batch())
    pairs, atoms, context = pairs.double(), atoms.double(), context.double()
    z, logdet = tiny_flow.adjacency_flow(pairs)
    assert (tiny_flow.adjacency_flow.inverse(z) - pairs).abs().max() < 1e-4
    assert torch.allclose(logdet, _jacobian_logdet(tiny_flow.adjacency_flow, pairs), atol=1e-6)
    z, logdet = tiny_flow.atom_flow(atoms, context)
    assert (tiny_flow.atom_flow.inverse(z, context) - atoms).abs().max() < 1e-4
    assert torch.allclose(logdet, _jacobian_logdet(tiny_flow.atom_flow, atoms, context), atol=1e-6)
    assert logdet.abs().min() > 1e-3  # the map is not volume-preserving, so the check has teeth


def test_log_prob_is_the_dequantization_bound(tiny_flow):
    batch = _batch()
    torch.manual_seed(3)
    pairs, atoms, context = tiny_flow.encode_inputs(batch)
    expected = (tiny_flow.adjacency_flow.log_prob(pairs.double()) + tiny_flow.atom_flow.log_prob(atoms.double(), context.double())
                + tiny_flow.dims * math.log(0.9))
    torch.manual_seed(3)
    assert torch.allclose(tiny_flow.log_prob(batch), expected)
    assert tiny_flow.dims == 4 * 3 + 3 * 3


def test_samples_are_reproducible_symmetric_and_bond_free_on_empty_slots(tiny_flow):
    a = tiny_flow.sample(64, generator=torch.Generator().manual_seed(1), temperature=0.8)
    b = tiny_flow.sample(64, generator=torch.Generator().manual_seed(1), temperature=0.8)
    assert isinstance(a, DenseGraphs) and torch.equal(a.atoms, b.atoms) and torch.equal(a.bonds, b.bonds)
    assert torch.equal(a.bonds, a.bonds.transpose(1, 2))
    assert (a.bonds.diagonal(dim1=1, dim2=2) == 0).all()
    empty = a.atoms == 0
    assert (a.bonds[empty] == 0).all()
    with pytest.raises(ValueError, match="positive"):
        tiny_flow.sample(0)


def test_config_rejects_a_one_atom_graph():
    with pytest.raises(ValueError, match="max_atoms >= 2"):
        build_graph_flow(TINY, atom_classes=3, max_atoms=1)
