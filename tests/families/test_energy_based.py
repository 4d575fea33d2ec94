"""The energy-based family: Langevin chains that sample exp(-E), persistent contrastive divergence,
an unnormalized log p, and the chains' mixing diagnostics; the flow-based EBM (NCE against its flow
base, independence Metropolis-Hastings + MALA)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dgm_science.families.energy_based import EnergyBasedModel, FlowEnergyBasedModel, mixing_diagnostics
from dgm_science.families.flows import Flow, Transform
from dgm_science.families.vae import StandardNormal


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


# -- the flow-based EBM: E(x) = -log q(x) - g(x), NCE against the base, independence MH + MALA ------------------

class FixedAffine(Transform):
    """z = x / s (a fixed scale): with a standard-normal base, q = N(0, s^2)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return x / self.scale, torch.full((x.shape[0],), -x.shape[1] * math.log(self.scale))

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return z * self.scale


class GaussianBase(nn.Module):
    """The base protocol (``flow``, ``to_flow``, ``from_flow``) with q = N(0, scale^2 I) and identity maps."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.flow = Flow(StandardNormal(dim), [FixedAffine(scale)])

    def to_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x.new_zeros(x.shape[0])

    def from_flow(self, y: torch.Tensor) -> torch.Tensor:
        return y


class DoubleWell(nn.Module):
    """raw g(x) = -(x^2 - 9)^2 / 8 of 1-D x: wells at +-3, a barrier of 10 nats at 0 (before the bound)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x[:, 0] ** 2 - 9) ** 2) / 8


class Linear1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slope * x[:, 0]


def _two_mode_model(**kwargs) -> FlowEnergyBasedModel:
    """p(x) ∝ N(x; 0, 3^2) exp(8 tanh(raw g / 8)): two modes at x = +-3, 6 nats apart from the saddle."""
    return FlowEnergyBasedModel(GaussianBase(1, 3.0), DoubleWell(), "x", 1, bound=8.0,
                                noise_init=lambda n, generator, device: torch.full((n, 1), 3.0), **kwargs)


class _EnergyOf(nn.Module):
    """The flow EBM's E(x) as a module (the Langevin EBM's energy)."""

    def __init__(self, model: FlowEnergyBasedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.energy(x)


def _grid_mass_right(model: FlowEnergyBasedModel) -> float:
    grid = torch.linspace(-12, 12, 20001)[:, None]
    density = torch.exp(model.log_prob({"x": grid}))
    return float(density[grid[:, 0] > 0].sum() / density.sum())


def test_rhat_catches_a_langevin_sampler_stuck_in_the_modes_of_a_two_mode_density_and_passes_the_flow_ebm():
    """Issue 36 item 5: the same two-mode density, sampled by unadjusted Langevin chains from noise
    (each chain falls into one well and stays: R-hat >> 1.1) and by the flow EBM's independence MH +
    MALA sampler from chains all started in the right-hand well (they visit both: R-hat <= 1.1, and
    the fraction on each side matches the density's, integrated on a grid)."""
    model = _two_mode_model(sweeps=10, mala_steps=2, mala_step=0.05)
    langevin = EnergyBasedModel(_EnergyOf(model), torch.zeros(1), torch.ones(1), "x", step_size=0.005,
                                noise=math.sqrt(2 * 0.005))
    stuck = langevin.chains(32, 600, every=5, generator=torch.Generator().manual_seed(0))[60:, :, 0]
    assert mixing_diagnostics(stuck.numpy())["rhat"] > 1.5
    assert 0 < (stuck[-1] > 0).float().mean() < 1, "the Langevin chains sit in both wells, apart"

    trace = model.chains(32, 600, every=5, generator=torch.Generator().manual_seed(0))[60:, :, 0]
    assert mixing_diagnostics(trace.numpy())["rhat"] <= 1.1
    assert mixing_diagnostics(np.sign(trace.numpy()))["rhat"] <= 1.1
    assert abs((trace > 0).float().mean().item() - _grid_mass_right(model)) < 0.05
    assert 0.05 < model.acceptance["independence"] < 0.9


def test_the_independence_proposal_accepts_everything_when_the_correction_is_constant():
    """exp(g(x') - g(x)) = 1: the sampler then draws the base exactly (here N(0, 2^2))."""
    model = FlowEnergyBasedModel(GaussianBase(2, 2.0), _Constant(), "x", 2, sweeps=3, mala_steps=0)
    x = model.sample(4000, generator=torch.Generator().manual_seed(0))
    assert model.acceptance["independence"] == 1.0
    assert torch.allclose(x.std(0), torch.full((2,), 2.0), atol=0.1)


class _Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), 0.7)


def test_the_mala_steps_are_metropolis_corrected():
    """A MALA step of h = 1.5 on N(0, 1): unadjusted Langevin (u' = -0.5 u + sqrt(3) xi) would have
    stationary variance 4; with the Metropolis correction the chains keep variance 1."""
    model = FlowEnergyBasedModel(GaussianBase(1, 1.0), _Constant(), "x", 1, mala_steps=1, mala_step=1.5,
                                 independent_proposals=False)
    u, _ = model.run_chains(torch.randn(4000, 1, generator=torch.Generator().manual_seed(1)), 30,
                            generator=torch.Generator().manual_seed(0))
    assert abs(u.var().item() - 1.0) < 0.1
    assert 0.05 < model.acceptance["mala"] < 0.95 and model.acceptance["independence"] == 0.0


def test_nce_against_the_base_learns_the_log_density_ratio():
    """Base N(0, 1), data N(1, 1): the NCE optimum is g(x) + c = log N(x; 1, 1) - log N(x; 0, 1) = x - 0.5."""
    torch.manual_seed(0)
    model = FlowEnergyBasedModel(GaussianBase(1, 1.0), Linear1(), "x", 1, bound=50.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    data = 1.0 + torch.randn(4096, 1, generator=torch.Generator().manual_seed(1))
    for step in range(300):
        optimizer.zero_grad()
        model.loss({"x": data[torch.randint(0, 4096, (256,))]}).backward()
        optimizer.step()
    assert abs(model.correction.slope.item() - 1.0) < 0.15
    assert abs(model.log_normalizer.item() + 0.5) < 0.15
    assert {"nll_base", "nce", "nce_accuracy", "log_normalizer"} <= set(model.metrics_to_log())
    x = torch.tensor([[0.0], [2.0]])
    assert torch.allclose(model.log_prob({"x": x}), model.base_log_prob(x) + model.g(x))
    assert model.likelihood == "unnormalized"


def test_the_correction_is_bounded():
    model = FlowEnergyBasedModel(GaussianBase(1, 3.0), DoubleWell(), "x", 1, bound=2.0)
    g = model.g(torch.linspace(-20, 20, 101)[:, None])
    assert g.abs().max() <= 2.0 and g.min() < -1.9
    with pytest.raises(ValueError, match="bound"):
        FlowEnergyBasedModel(GaussianBase(1, 3.0), DoubleWell(), "x", 1, bound=0.0)
