"""The Gaussian diffusion family's hooks for several variables on their own spaces: noise projected
onto a subspace, the degrees of freedom the bound counts, a variable's own likelihood at t = 0,
EDM's l2 objective and sampling that stays on the spaces (no domain code: a toy graph batch)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dgm_science.families.diffusion import GaussianDiffusion, Layout, Space

N, F = 5, 2  # node slots, features per node


def zero_mean_space(mask: torch.Tensor) -> Space:
    """Vectors (B, N, 3) with zero mean over the nodes of ``mask`` (B, N, 1): (n - 1) 3 dimensions."""

    def project(v: torch.Tensor) -> torch.Tensor:
        mean = (v * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
        return (v - mean) * mask

    return Space(mask, (mask.sum((1, 2)) - 1) * 3, project)


class ToyGraphs(GaussianDiffusion):
    """Batches ``{"x": (B, N, 3), "h": (B, N, F), "n": (B,), "offset": (B,) optional}``: x on the
    zero-mean subspace of the first n nodes, h on those nodes."""

    def _layout(self, n: torch.Tensor, offset: torch.Tensor | None = None) -> Layout:
        node_mask = torch.arange(N)[None, :] < n[:, None]
        mask = node_mask.float()[..., None]
        b = n.shape[0]
        spaces = (zero_mean_space(mask), Space.masked(mask, (b, N, F)))
        return Layout(((b, N, 3), (b, N, F)), spaces, (node_mask,), log_prob_offset=offset)

    def encode(self, batch):
        layout = self._layout(batch["n"], batch.get("offset"))
        return (layout.spaces[0](batch["x"]), layout.spaces[1](batch["h"])), layout

    def sample_layout(self, n, generator, condition):
        return self._layout(torch.arange(n) % (N - 1) + 2)

    def decode(self, values, layout):
        return values


class Scaled(nn.Module):
    """A fixed, non-ideal denoiser: ``scale`` z_t (plus ``shift``, which leaves any subspace)."""

    def __init__(self, scale: float = 0.5, shift: float = 0.0) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, h, t, node_mask):
        return self.scale * x + self.shift, self.scale * h + self.shift


class Oracle(nn.Module):
    """Knows the data: predicts x (or eps = (z_t - alpha_t x) / sigma_t) exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.model, self.data = None, None
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, h, t, node_mask):
        gamma = self.model.gamma[(t * self.model.T).round().long()].view(-1, 1, 1)
        alpha, sigma = torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()
        if self.model.prediction == "sample":
            return self.data
        return tuple((z - alpha * d) / sigma for z, d in zip((x, h), self.data))


def _batch(b: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = torch.arange(b) % (N - 1) + 2  # 2..5 real nodes
    return {"x": torch.randn(b, N, 3, generator=g), "h": torch.randn(b, N, F, generator=g), "n": n}


def test_projected_noise_has_zero_mean_over_the_mask_and_unit_variance_per_dof():
    model = ToyGraphs(Scaled(), steps=8, prediction="epsilon")
    layout = model._layout(torch.arange(6000) % (N - 1) + 2)
    eps_x, eps_h = model.noise(layout, torch.Generator().manual_seed(1))
    mask = layout.spaces[0].mask
    assert (eps_x.sum(1).abs() < 1e-5).all()  # zero mean over the real nodes
    assert (eps_x * (1 - mask) == 0).all() and (eps_h * (1 - mask) == 0).all()
    dof_x, dof_h = layout.spaces[0].dof, layout.spaces[1].dof
    assert torch.equal(dof_x, (layout.context[0].sum(1) - 1).float() * 3)
    assert torch.equal(dof_h, layout.context[0].sum(1).float() * F)
    assert abs(eps_x.square().sum((1, 2)).sum() / dof_x.sum() - 1) < 0.02  # not n 3: the subspace's variance
    assert abs(eps_h.square().sum((1, 2)).sum() / dof_h.sum() - 1) < 0.02


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_bound_counts_each_space_s_degrees_of_freedom(prediction):
    """With a perfect prediction every diffusion error vanishes, so the bound is exactly
    -(KL_prior + the Gaussian decoder's normaliser), both over (n - 1) 3 + n F dimensions."""
    oracle = Oracle()
    model = ToyGraphs(oracle, steps=16, schedule="polynomial", prediction=prediction, clip=None).eval()
    oracle.model = model
    batch = _batch()
    values, layout = model.encode(batch)
    oracle.data = values
    log_p = model.log_prob(batch, generator=torch.Generator().manual_seed(2)).double()
    g = model.gamma.double()
    alpha2_T, sigma2_T = torch.sigmoid(-g[-1]), torch.sigmoid(g[-1])
    n = batch["n"].double()
    dof = (n - 1) * 3 + n * F
    norm2 = sum(v.double().square().sum((1, 2)) for v in values)
    kl = dof * (-0.5 * torch.log(sigma2_T) + 0.5 * sigma2_T - 0.5) + 0.5 * alpha2_T * norm2
    expected = -(kl + dof * (0.5 * g[0] + 0.5 * math.log(2 * math.pi)))
    assert torch.allclose(log_p, expected, rtol=1e-5, atol=1e-3)
    wrong = -(kl + n * (3 + F) * (0.5 * g[0] + 0.5 * math.log(2 * math.pi)))  # counting entries, not dof
    assert (log_p - wrong).abs().min() > 1


def test_prior_kl_is_over_each_space_s_subspace():
    """KL(N(alpha x, sigma^2 I_d) || N(0, I_d)) = d (-log sigma + sigma^2 / 2 - 1/2) + alpha^2 ||x||^2 / 2 with
    d = (n - 1) 3 for x and n F for h, at a last level where the d-term is not negligible."""
    model = ToyGraphs(Scaled(), steps=4, prediction="epsilon")
    model.gamma[-1] = 0.0  # alpha_T^2 = sigma_T^2 = 1/2
    batch = _batch()
    values, layout = model.encode(batch)
    n = batch["n"].double()
    dof = (n - 1) * 3 + n * F
    norm2 = sum(v.double().square().sum((1, 2)) for v in values)
    expected = dof * (-0.5 * math.log(0.5) + 0.25 - 0.5) + 0.25 * norm2
    assert torch.allclose(model.kl_prior(values, layout).double(), expected, rtol=1e-5)


def _h_likelihood(calls: list):
    def log_p(h, z_0, gamma_0, space):
        calls.append((h, z_0, gamma_0))
        return -((z_0 - h).square() * space.mask).sum((1, 2))
    return log_p


def test_two_variable_log_prob_is_the_sum_of_its_terms():
    calls: list = []
    model = ToyGraphs(Scaled(), steps=10, schedule="polynomial", prediction="epsilon", clip=None,
                      likelihoods=(None, _h_likelihood(calls))).eval()
    batch = dict(_batch(), offset=torch.linspace(-3, 3, 12))
    log_p = model.log_prob(batch, generator=torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)  # the same draws in the same order: t, eps, eps_0
    (x, h), layout = model.encode(batch)
    t = torch.randint(1, model.T + 1, (12,), generator=g)
    eps = model.noise(layout, g)
    z = model.q_sample((x, h), t, eps)
    error = sum((e - 0.5 * v).square().sum((1, 2)) for e, v in zip(eps, z))
    loss_t = model.T * 0.5 * torch.expm1(model.gamma[t] - model.gamma[t - 1]) * error
    eps0 = model.noise(layout, g)
    z0 = model.q_sample((x, h), torch.zeros_like(t), eps0)
    gamma_0 = model.gamma[0]
    loss_x0 = 0.5 * (eps0[0] - 0.5 * z0[0]).square().sum((1, 2)) \
        + layout.spaces[0].dof * (0.5 * gamma_0 + 0.5 * math.log(2 * math.pi))
    loss_h0 = ((z0[1] - h).square() * layout.spaces[1].mask).sum((1, 2))
    expected = -(model.kl_prior((x, h), layout) + loss_t + loss_x0 + loss_h0) + batch["offset"]
    assert torch.allclose(log_p, expected, rtol=1e-5, atol=1e-4)
    hook_h, hook_z0, hook_gamma = calls[-1]  # the hook scores h given z_0 of h, at gamma_0
    assert torch.equal(hook_h, h) and torch.allclose(hook_z0, z0[1]) and torch.equal(hook_gamma, gamma_0)
    shifted = ToyGraphs(Scaled(), steps=10, schedule="polynomial", prediction="epsilon", clip=None,
                        likelihoods=(None, lambda *args: _h_likelihood([])(*args) + 2.5)).eval()
    assert torch.allclose(shifted.log_prob(batch, generator=torch.Generator().manual_seed(3)), log_p + 2.5)


def test_l2_objective_normalises_per_example_and_scores_t0_with_the_decoders():
    model = ToyGraphs(Scaled(), steps=3, schedule="polynomial", prediction="epsilon", objective="l2", clip=None,
                      likelihoods=(None, _h_likelihood([])))
    batch = _batch(16)
    torch.manual_seed(4)
    loss = model.loss(batch)

    torch.manual_seed(4)
    (x, h), layout = model.encode(batch)
    t = torch.randint(0, model.T + 1, (16,))
    assert (t == 0).any() and (t > 0).any()
    eps = model.noise(layout)
    z = model.q_sample((x, h), t, eps)
    n = batch["n"].float()
    error_x, error_h = ((e - 0.5 * v).square().sum((1, 2)) / ((3 + F) * n) for e, v in zip(eps, z))
    l0 = 0.5 * error_x + ((z[1] - h).square() * layout.spaces[1].mask).sum((1, 2))
    expected = (torch.where(t == 0, l0, 0.5 * (error_x + error_h)) + model.kl_prior((x, h), layout)).mean()
    assert torch.allclose(loss, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="epsilon"):
        ToyGraphs(Scaled(), prediction="sample", objective="l2")


def test_samples_stay_on_their_spaces_even_with_a_denoiser_that_leaves_them():
    model = ToyGraphs(Scaled(0.3, shift=1.0), steps=6, schedule="polynomial", prediction="epsilon", clip=None,
                      likelihoods=(None, _h_likelihood([])), decoder_draw=True).eval()
    x, h = model.sample(9, generator=torch.Generator().manual_seed(5))
    layout = model.sample_layout(9, None, None)
    mask = layout.spaces[0].mask
    assert x.shape == (9, N, 3) and h.shape == (9, N, F)
    assert (x.sum(1).abs() < 1e-4).all() and x.abs().max() > 0.1
    assert (x * (1 - mask) == 0).all() and (h * (1 - mask) == 0).all()
    again = model.sample(9, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, again[0]) and torch.equal(h, again[1])
    plain = ToyGraphs(Scaled(0.3, shift=1.0), steps=6, schedule="polynomial", prediction="epsilon", clip=None,
                      likelihoods=(None, _h_likelihood([]))).eval()
    x_mean, h_mean = plain.sample(9, generator=torch.Generator().manual_seed(5))
    assert torch.equal(h_mean, h)  # a variable with its own likelihood is returned as z_0, never drawn
    assert not torch.allclose(x_mean, x)  # decoder_draw: x ~ p(x | z_0), not its mean
