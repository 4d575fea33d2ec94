"""The energy-based family: Langevin chains that sample exp(-E), persistent contrastive divergence,
an unnormalized log p, and the chains' mixing diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dgm_science.families.energy_based import EnergyBasedModel, mixing_diagnostics


class Quadratic(nn.Module):
    """E(z) = 0.5 |z - c|^2 / s^2: exp(-E) is N(c, s^2 I)."""

    def __init__(self, centre: float = 0.0, spread: float = 1.0) -> None:
        super().__init__()
        self.centre = nn.Parameter(torch.tensor(centre))
        self.spread = spread

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - self.centre) ** 2).sum(-1) / self.spread ** 2


def _ebm(energy: nn.Module, dim: int = 2, step: float = 0.01, **kwargs) -> EnergyBasedModel:
    return EnergyBasedModel(energy, torch.zeros(dim), torch.ones(dim), "x", step_size=step,
                            noise=math.sqrt(2 * step), **kwargs)


def test_langevin_chains_sample_the_boltzmann_density_of_the_energy():
    model = _ebm(Quadratic(centre=1.5, spread=0.5), step=0.01, sample_steps=800)
    x = model.sample(4000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2)
    assert torch.allclose(x.mean(0), torch.full((2,), 1.5), atol=0.05)
    assert torch.allclose(x.std(0), torch.full((2,), 0.5), atol=0.05)
    assert model.energy.centre.grad is None


def test_log_prob_is_minus_the_energy_of_the_standardised_data():
    energy = Quadratic()
    model = EnergyBasedModel(energy, torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.5]), "x")
    x = torch.tensor([[3.0, -1.0], [1.0, 0.0]])
    z = (x - torch.tensor([1.0, -1.0])) / torch.tensor([2.0, 0.5])
    assert model.likelihood == "unnormalized"
    assert torch.allclose(model.log_prob({"x": x}), -energy(z))
    assert torch.allclose(model.standardize(x), z)


def test_contrastive_divergence_moves_the_energy_minimum_to_the_data_and_keeps_the_chains():
    torch.manual_seed(0)
    model = _ebm(Quadratic(centre=0.0, spread=1.0), dim=1, step=0.05, buffer_size=256, sgld_steps=10,
                 reinit=0.05, alpha=0.0)
    start = model.buffer.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = {"x": 2.0 + torch.randn(512, 1, generator=torch.Generator().manual_seed(1))}
    for _ in range(150):
        optimizer.zero_grad()
        loss = model.loss({"x": data["x"][torch.randint(0, 512, (64,))]})
        loss.backward()
        optimizer.step()
    assert abs(model.energy.centre.item() - 2.0) < 0.3
    assert not torch.equal(model.buffer, start), "the persistent chains moved"
    assert abs(model.buffer.mean().item() - 2.0) < 0.5, "the chains follow the energy to the data"
    assert set(model.metrics_to_log()) == {"energy_data", "energy_chains", "contrastive_divergence"}


def test_the_langevin_steps_give_the_parameters_no_gradient_and_restore_requires_grad():
    model = _ebm(Quadratic(), buffer_size=16, sgld_steps=3)
    model.energy.centre.requires_grad_(True)
    x, trace = model.langevin(torch.zeros(5, 2), 6, record=2)
    assert model.energy.centre.grad is None and model.energy.centre.requires_grad
    assert trace.shape == (3, 5, 2) and torch.equal(trace[-1], x)


def test_the_buffer_is_seeded_and_saved_with_the_weights():
    a, b = _ebm(Quadratic(), buffer_size=32), _ebm(Quadratic(), buffer_size=32)
    assert torch.equal(a.buffer, b.buffer)
    a.buffer.add_(1.0)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.buffer, b.buffer)


def test_a_projection_keeps_every_chain_state_in_its_domain():
    model = _ebm(Quadratic(centre=3.0), dim=1, step=0.1, sample_steps=50,
                 project=lambda z: torch.remainder(z + math.pi, 2 * math.pi) - math.pi)
    x = model.sample(200, generator=torch.Generator().manual_seed(0))
    assert bool((x >= -math.pi).all() and (x < math.pi).all())
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)


def test_mixing_diagnostics_tell_chains_that_agree_from_chains_stuck_apart():
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(500, 8))  # (draws, chains)
    stuck = mixed + np.arange(8) * 2.0
    good, bad = mixing_diagnostics(mixed), mixing_diagnostics(stuck)
    assert good["rhat"] < 1.01 and good["ess_bulk"] > 2000
    assert bad["rhat"] > 1.5 and bad["ess_bulk"] < 100
    assert good["chains"] == 8 and good["draws"] == 500
