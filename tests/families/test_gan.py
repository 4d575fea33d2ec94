"""The implicit family: WGAN-GP's alternating critic / generator updates in one optimiser, its
gradient penalty, and MolGAN's generator and relational critic on dense molecular graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_science.families.gan import WGANGP, Generator


class LineGenerator(Generator):
    """x = a z + b (1D); relaxed and discrete outputs are the same."""

    latent_dim = 1

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(0.5)), nn.Parameter(torch.tensor(0.0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.a * z + self.b

    def generate(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self(z)


def _gan(critic: nn.Module | None = None, critic_steps: int = 2) -> WGANGP:
    torch.manual_seed(0)
    critic = critic or nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))
    return WGANGP(LineGenerator(), critic, lambda batch: (batch["x"],), critic_steps=critic_steps)


def test_critic_steps_leave_the_generator_without_gradient_and_generator_steps_leave_the_critic():
    model = _gan(critic_steps=2)
    batch = {"x": torch.randn(32, 1) + 3}
    for step, generator_turn in ((0, False), (1, False), (2, True), (3, False), (5, True)):
        model.set_training_step(step)
        model.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        generator_grads = [p.grad for p in model.generator.parameters()]
        critic_grads = [p.grad for p in model.critic.parameters()]
        assert model.generator_turn == generator_turn
        if generator_turn:
            assert all(g is not None for g in generator_grads) and all(g is None for g in critic_grads)
            assert all(p.requires_grad for p in model.critic.parameters())
        else:
            assert all(g is None for g in generator_grads) and all(g is not None for g in critic_grads)


def test_the_gradient_penalty_is_the_squared_distance_of_the_critics_gradient_norm_from_one():
    critic = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Flatten(0))
    with torch.no_grad():
        critic[0].weight.fill_(3.0)  # |grad D| = 3 everywhere
    model = _gan(critic)
    penalty = model._penalty((torch.randn(8, 1),), (torch.randn(8, 1),))
    assert penalty.item() == pytest.approx(4.0)


def test_training_moves_the_generated_distribution_toward_the_data():
    torch.manual_seed(0)
    model = _gan(critic_steps=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.5, 0.9))
    data = 3.0 + 0.5 * torch.randn(4096, 1, generator=torch.Generator().manual_seed(1))
    for step in range(1500):  # 250 generator updates from x ~ N(0, 0.5^2)
        model.set_training_step(step)
        optimizer.zero_grad(set_to_none=True)
        model.loss({"x": data[torch.randint(0, 4096, (128,))]}).backward()
        optimizer.step()
    x = model.sample(4000, generator=torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - 3.0) < 1.0  # from 3.0 away (measured: 2.49 after these steps)
    assert set(model.metrics_to_log()) <= {"wasserstein", "gradient_penalty", "generator_loss"}


def test_a_gan_samples_reproducibly_but_has_no_likelihood():
    model = _gan()
    a = model.sample(5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, model.sample(5, generator=torch.Generator().manual_seed(2)))
    assert model.likelihood == "none"
    with pytest.raises(TypeError, match="no p\\(x\\)"):
        model.log_prob({"x": a})
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)


def _molgan():
    from dgm_science import registry
    from dgm_science.config import from_dict

    spec = registry.get("model", "molgan")
    cfg = from_dict(spec.Config, {"latent_dim": 8, "generator_hidden": [32], "critic_gcn": [16, 16],
                                  "critic_aggregation": 16, "critic_hidden": [16]}, "molgan")
    torch.manual_seed(0)
    return spec.build(cfg, {"atom_types": ["C", "N", "O", "F"], "max_atoms": 9})


def test_molgan_samples_symmetric_graphs_without_self_bonds():
    graphs = _molgan().sample(20, generator=torch.Generator().manual_seed(0))
    assert graphs.atoms.shape == (20, 9) and graphs.bonds.shape == (20, 9, 9)
    assert torch.equal(graphs.bonds, graphs.bonds.transpose(1, 2))
    assert int(torch.diagonal(graphs.bonds, dim1=1, dim2=2).abs().sum()) == 0
    assert int(graphs.atoms.max()) <= 4 and int(graphs.bonds.max()) <= 3
    atoms, bonds = _molgan().generator(torch.randn(3, 8))
    assert torch.allclose(atoms.sum(-1), torch.ones(3, 9)) and torch.allclose(bonds.sum(-1), torch.ones(3, 9, 9))
    assert torch.allclose(bonds, bonds.transpose(1, 2))


def test_molgans_critic_does_not_depend_on_the_order_of_the_atoms():
    model = _molgan().eval()
    atoms, bonds = model.generator(torch.randn(4, 8))
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    permuted = model.critic(atoms[:, order], bonds[:, order][:, :, order])
    assert torch.allclose(model.critic(atoms, bonds), permuted, atol=1e-5)
