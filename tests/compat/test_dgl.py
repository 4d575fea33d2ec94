"""Tests for the DGL 2.1.0 compatibility shim under torch 2.13."""

from __future__ import annotations

import math
import os
import sys

import torch

from dgm_science.compat.dgl import import_dgl


def test_import_is_idempotent_and_stubs_graphbolt() -> None:
    dgl = import_dgl()
    assert import_dgl() is dgl
    assert dgl.__version__.startswith("2.1")
    assert os.environ["DGLBACKEND"] == "pytorch"
    assert not hasattr(sys.modules["dgl.graphbolt"], "__path__")  # the empty stand-in


def test_message_passing_sums_source_features() -> None:
    dgl = import_dgl()
    from dgl import function as fn

    # edges 0->1, 0->2, 1->2, 2->0
    graph = dgl.graph((torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 2, 0])), num_nodes=3)
    graph.ndata["h"] = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "total"))
    expected = torch.tensor([[4.0, 40.0], [1.0, 10.0], [3.0, 30.0]])
    assert torch.equal(graph.ndata["total"], expected)
    assert graph.in_degrees().tolist() == [1, 1, 2]


def _rotation(angle_xy: float, angle_yz: float) -> torch.Tensor:
    c, s = math.cos(angle_xy), math.sin(angle_xy)
    rotate_xy = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    c, s = math.cos(angle_yz), math.sin(angle_yz)
    rotate_yz = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return rotate_xy @ rotate_yz


def test_egnn_conv_is_e3_equivariant() -> None:
    dgl = import_dgl()
    from dgl.nn import EGNNConv

    generator = torch.Generator().manual_seed(0)
    num_nodes = 8
    source = torch.randint(0, num_nodes, (24,), generator=generator)
    target = torch.randint(0, num_nodes, (24,), generator=generator)
    graph = dgl.graph((source, target), num_nodes=num_nodes)
    torch.manual_seed(0)
    layer = EGNNConv(in_size=5, hidden_size=16, out_size=6, edge_feat_size=2)
    features = torch.randn(num_nodes, 5, generator=generator)
    coordinates = torch.randn(num_nodes, 3, generator=generator)
    edge_features = torch.randn(24, 2, generator=generator)

    rotation = _rotation(0.7, -1.3)
    translation = torch.tensor([1.5, -2.0, 0.25])
    h, x = layer(graph, features, coordinates, edge_features)
    h_moved, x_moved = layer(graph, features, coordinates @ rotation.T + translation, edge_features)

    assert not torch.allclose(x, coordinates)  # the layer does move coordinates
    torch.testing.assert_close(h_moved, h, atol=1e-4, rtol=0)
    torch.testing.assert_close(x_moved, x @ rotation.T + translation, atol=1e-4, rtol=0)


def test_the_registry_loads_without_importing_dgl_until_an_egnn_is_built() -> None:
    """DGL's import (1.3-1.9 s here, with pandas) is paid by the commands that build qm9-edm, not by every
    ``dgm`` command."""
    import subprocess

    code = (
        "import sys\n"
        "from dgm_science import registry\n"
        "spec = registry.get('model', 'qm9-edm')\n"
        "assert 'dgl' not in sys.modules, 'the registry imported dgl'\n"
        "from dgm_science.domains.structures.edm import EGNNDenoiser\n"
        "EGNNDenoiser(4, 8, 1)\n"
        "assert 'dgl' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
