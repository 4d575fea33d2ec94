"""Flow transforms: exact inverses, log-determinants against brute-force Jacobians, and a
density that integrates to one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_science.families.flows import ActNorm, AffineCoupling, Flow, InvertibleLinear
from dgm_science.families.vae import StandardNormal


class _MLPConditioner(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 2 * dim))

    def forward(self, x, context=None):
        return self.net(x).chunk(2, dim=-1)


def _brute_force_logabsdet(transform, x, context=None):
    """log|det J| of x -> z, per example, from autograd's full Jacobian."""
    out = []
    for row in range(x.shape[0]):
        def f(flat, row=row):
            z, _ = transform(flat.view(1, *x.shape[1:]), None if context is None else context[row:row + 1])
            return z.reshape(-1)
        jac = torch.autograd.functional.jacobian(f, x[row].reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def _transforms():
    torch.manual_seed(0)
    act = ActNorm(3, channel_dim=1)
    with torch.no_grad():
        act.bias.normal_()
        act.log_scale.normal_()
    act.initialized.fill_(True)
    lin = InvertibleLinear(3, channel_dim=1)
    with torch.no_grad():
        lin.upper.normal_(0, 0.5)
        lin.log_s.normal_(0, 0.5)
    mask = torch.tensor([[True, False, True, False], [False, True, False, True], [True, True, False, False]])
    coupling = AffineCoupling(mask, _Shaped(_MLPConditioner(12), (3, 4)))
    with torch.no_grad():
        for p in coupling.parameters():
            p.normal_(0, 0.5)
    return {"actnorm": act, "invertible_linear": lin, "coupling": coupling}


class _Shaped(nn.Module):
    """Runs a flat conditioner on (B, *shape) events."""

    def __init__(self, inner, shape):
        super().__init__()
        self.inner, self.shape = inner, shape

    def forward(self, x, context=None):
        h, t = self.inner(x.flatten(1))
        return h.view(-1, *self.shape), t.view(-1, *self.shape)


@pytest.mark.parametrize("name", ["actnorm", "invertible_linear", "coupling"])
def test_transform_inverts_and_logdet_matches_jacobian(name):
    transform = _transforms()[name].double().eval()
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z, logabsdet = transform(x)
    assert torch.allclose(transform.inverse(z), x, atol=1e-10)
    assert torch.allclose(logabsdet, _brute_force_logabsdet(transform, x), atol=1e-8)


def test_invertible_linear_inverts_in_float32_under_bf16_autocast():
    """Under a GPU's bf16 mixed precision the inverse ran in bf16, which CUDA refuses (no bf16
    matrix inverse) and which would undo W only to ~1e-2: it must run in float32."""
    lin = _transforms()["invertible_linear"].eval()
    z = torch.randn(64, 3, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x = lin.inverse(z)
    assert x.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(lin(x)[0], z, atol=1e-5)


def test_actnorm_initialises_from_the_first_training_batch():
    act = ActNorm(3, channel_dim=-1).train()
    x = torch.randn(500, 7, 3) * torch.tensor([2.0, 0.5, 3.0]) + torch.tensor([1.0, -2.0, 0.0])
    z, _ = act(x)
    assert torch.allclose(z.mean((0, 1)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std((0, 1)), torch.ones(3), atol=1e-3)
    assert bool(act.initialized)


def test_two_dimensional_flow_density_integrates_to_one():
    torch.manual_seed(0)
    couplings = []
    for mask in ([True, False], [False, True], [True, False]):
        couplings.append(AffineCoupling(torch.tensor(mask), _MLPConditioner(2)))
    flow = Flow(StandardNormal(2), couplings).double().eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, 0.7)
    grid = torch.linspace(-9, 9, 601, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    with torch.no_grad():
        density = flow.log_prob(points).exp()
    cell = (grid[1] - grid[0]) ** 2
    assert abs(float(density.sum() * cell) - 1.0) < 1e-2
    samples = flow.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.0)
    z_zero = flow.inverse(torch.zeros(1, 2, dtype=torch.float64))
    assert torch.allclose(samples, z_zero.expand(3, 2))
