"""The implicit family: WGAN-GP's alternating critic / generator updates in one optimiser, its
gradient penalty, and MolGAN's generator and relational critic on dense molecular graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm_science.families.gan import WGANGP, Generator, LatentCodec, LatentGAN


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


# ------------------------------------------------------------- LatentGAN: a WGAN-GP on an autoencoder's codes


class PointCodec(LatentCodec):
    """A toy codec of 2D points: code = tanh(W x) (W starts as the identity), decode = W^-1
    atanh(code); its loss (the squared error of decode(encode(x)), zero, plus a pull of W toward
    2 I) gives the codec a gradient to take in its own stage."""

    code_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.eye(2))

    def encode(self, batch):
        return torch.tanh(batch["x"] @ self.w.T)

    def reconstruction_loss(self, batch):
        back = torch.atanh(self.encode(batch).clamp(-0.999, 0.999)) @ torch.linalg.inv(self.w).T
        return (back - batch["x"]).pow(2).sum(1) + (self.w - 2 * torch.eye(2)).pow(2).sum()

    def decode(self, codes, generator=None):
        return torch.atanh(codes.clamp(-0.999, 0.999)) @ torch.linalg.inv(self.w).T


def _ring(n: int, seed: int = 0, modes: int = 8, radius: float = 0.7) -> torch.Tensor:
    """n points of a ring of ``modes`` tight Gaussians (sd 0.03)."""
    g = torch.Generator().manual_seed(seed)
    angle = 2 * torch.pi * torch.randint(0, modes, (n,), generator=g) / modes
    return radius * torch.stack([angle.cos(), angle.sin()], 1) + 0.03 * torch.randn(n, 2, generator=g)


def _latent_gan(gradient_penalty: float = 10.0, autoencoder_steps: int = 3) -> LatentGAN:
    torch.manual_seed(0)
    return LatentGAN(PointCodec(), latent_dim=4, generator_hidden=[64, 64], critic_hidden=[64, 64],
                     autoencoder_steps=autoencoder_steps, critic_steps=2, gradient_penalty=gradient_penalty)


def test_latent_gan_trains_the_autoencoder_first_then_only_the_gan_on_frozen_codes():
    model = _latent_gan(autoencoder_steps=3)
    batch = {"x": _ring(32)}
    codec = list(model.codec.parameters())
    gan = list(model.gan.parameters())
    assert not {id(p) for p in codec} & {id(p) for p in gan}  # the generator holds no copy of the codec
    for step, stage in ((0, "autoencoder"), (2, "autoencoder"), (3, "critic"), (4, "critic"), (5, "generator")):
        model.set_training_step(step)
        model.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        codec_grad = [p.grad is not None for p in codec]
        critic_grad = [p.grad is not None for p in model.gan.critic.parameters()]
        generator_grad = [p.grad is not None for p in model.gan.generator.parameters()]
        assert model.autoencoder_stage == (stage == "autoencoder")
        assert all(codec_grad) == (stage == "autoencoder") and any(codec_grad) == (stage == "autoencoder")
        assert all(critic_grad) == (stage == "critic") and any(critic_grad) == (stage == "critic")
        assert all(generator_grad) == (stage == "generator") and any(generator_grad) == (stage == "generator")
    assert set(model.metrics_to_log()) == {"generator_loss"}


def test_the_latent_critics_loss_holds_the_gradient_penalty():
    """The critic step's loss is -W + lambda * E(|grad D| - 1)^2 on the codes: with lambda = 0 the
    same step's loss is lower by exactly lambda times the logged penalty."""
    batch = {"x": _ring(64)}
    losses, penalties = [], []
    for weight in (10.0, 0.0):
        model = _latent_gan(gradient_penalty=weight, autoencoder_steps=0)
        model.set_training_step(0)
        torch.manual_seed(1)
        losses.append(model.loss(batch).item())
        penalties.append(model.metrics_to_log()["gradient_penalty"].item())
    assert penalties[0] == pytest.approx(penalties[1]) and penalties[0] > 0
    assert losses[0] - losses[1] == pytest.approx(10.0 * penalties[0], rel=1e-4)


def _modes_hit(samples: torch.Tensor, modes: int = 8, radius: float = 0.7) -> tuple[int, float]:
    """(modes with >= 2 % of the samples within 0.15 of their centre, fraction of samples near a mode)."""
    angle = 2 * torch.pi * torch.arange(modes) / modes
    centres = radius * torch.stack([angle.cos(), angle.sin()], 1)
    distance, nearest = torch.cdist(samples, centres).min(1)
    near = distance < 0.15
    counts = torch.bincount(nearest[near], minlength=modes)
    return int((counts >= 0.02 * len(samples)).sum()), float(near.float().mean())


def test_a_latent_wgan_gp_covers_the_modes_of_the_codes():
    """A ring of 8 tight modes, codes tanh(x): after 2,400 GAN steps (400 generator updates) the
    decoded samples sit on most modes (a collapsed generator covers one or two). The penalty weight
    is 1 here: the ring's Wasserstein distances are small (modes 0.5 apart), and at the usual 10 the
    penalty dominates the critic's loss and the generator moves too slowly for a test's budget."""
    torch.manual_seed(0)
    data = _ring(4096, seed=1)
    model = LatentGAN(PointCodec(), latent_dim=4, generator_hidden=[64, 64], critic_hidden=[64, 64],
                      autoencoder_steps=0, critic_steps=5, gradient_penalty=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for step in range(2400):
        model.set_training_step(step)
        optimizer.zero_grad(set_to_none=True)
        model.loss({"x": data[torch.randint(0, len(data), (128,))]}).backward()
        optimizer.step()
    modes, near = _modes_hit(model.sample(2000, generator=torch.Generator().manual_seed(0)))
    assert modes >= 6 and near > 0.3, (modes, near)


def test_a_code_bank_encodes_once_per_critic_cycle_and_keeps_the_latest_codes():
    model = LatentGAN(PointCodec(), latent_dim=4, generator_hidden=[8], critic_hidden=[8], autoencoder_steps=2,
                      critic_steps=2, code_bank=40)
    calls = []
    encode = model.codec.encode
    model.codec.encode = lambda batch: calls.append(len(batch["x"])) or encode(batch)
    for step in range(2, 14):  # 12 GAN steps: cycles of 3 start at GAN steps 0, 3, 6, 9
        model.set_training_step(step)
        batch = {"x": torch.full((16, 2), float(step)) / 100}
        codes = model._real_codes(batch)[0]
        assert codes.shape == (16, 2)
        assert torch.isin(codes, model._bank).all()
    assert calls == [16, 16, 16, 16]
    # 64 codes pushed into a bank of 40: those of the last three batches (steps 5, 8, 11), the oldest of them cut
    kept = sorted({round(v * 100) for v in torch.atanh(model._bank[:, 0]).tolist()})
    assert len(model._bank) == 40 and kept == [5, 8, 11]
    unbanked = _latent_gan(autoencoder_steps=0)
    unbanked.set_training_step(1)
    assert torch.equal(unbanked._real_codes({"x": torch.ones(3, 2)})[0], torch.tanh(torch.ones(3, 2)))
