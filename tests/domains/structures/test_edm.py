"""EDM on QM9-3D: the EGNN denoiser's symmetries, the schedule and forward process, the bound,
sampling on the zero centre-of-gravity subspace, and that the loss falls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgm_science.domains.structures import edm
from dgm_science.families.diffusion import gamma_table, polynomial_schedule

from tests.domains.structures import fixtures_qm9 as fixtures

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny graphs gain nothing from more threads


def _model(**overrides) -> edm.EquivariantDiffusion:
    state, _ = fixtures.tiny_state_and_batch()
    cfg = edm.EDMConfig(**{**fixtures.TINY_CONFIG, **overrides})
    torch.manual_seed(0)
    return edm.EquivariantDiffusion(cfg, state["charges"], state["n_atoms_histogram"])


def _random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def _denoiser_inputs(dtype=torch.float64):
    _, batch = fixtures.tiny_state_and_batch(8)
    n = batch["positions"].shape[1]
    node_mask = torch.arange(n)[None, :] < batch["n_atoms"][:, None]
    g = torch.Generator().manual_seed(1)
    x = edm.remove_mean(batch["positions"].to(dtype), node_mask[..., None].to(dtype))
    h = torch.randn(8, n, 6, generator=g, dtype=dtype) * node_mask[..., None]
    t = torch.rand(8, generator=g, dtype=dtype)
    return x, h, t, node_mask


def test_denoiser_is_e3_equivariant_and_translation_invariant():
    torch.manual_seed(0)
    net = edm.EGNNDenoiser(6, 32, 3).double()
    for layer in net.layers:  # make the coordinate updates large enough to matter
        torch.nn.init.normal_(layer.coord_mlp[-1].weight, std=0.3)
    x, h, t, node_mask = _denoiser_inputs()
    rot = _random_rotation(torch.Generator().manual_seed(2))
    shift = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    eps_x, eps_h = net(x, h, t, node_mask)
    moved = (x @ rot.T + shift) * node_mask[..., None]
    eps_x2, eps_h2 = net(moved, h, t, node_mask)
    assert eps_x.abs().max() > 1e-2  # not trivially zero
    assert torch.allclose(eps_x2, eps_x @ rot.T, atol=1e-9)
    assert torch.allclose(eps_h2, eps_h, atol=1e-9)
    mean = eps_x.sum(1) / node_mask.sum(1, keepdim=True)
    assert mean.abs().max() < 1e-12
    assert (eps_x[~node_mask] == 0).all() and (eps_h[~node_mask] == 0).all()


def test_denoiser_is_permutation_equivariant():
    torch.manual_seed(0)
    net = edm.EGNNDenoiser(6, 32, 2).double()
    x, h, t, node_mask = _denoiser_inputs()
    perm = torch.arange(x.shape[1])
    n0 = int(node_mask[0].sum())
    perm[:n0] = torch.randperm(n0, generator=torch.Generator().manual_seed(3))
    eps_x, eps_h = net(x, h, t, node_mask)
    x2, h2 = x.clone(), h.clone()
    x2[0], h2[0] = x[0, perm], h[0, perm]
    eps_x2, eps_h2 = net(x2, h2, t, node_mask)
    assert torch.allclose(eps_x2[0], eps_x[0, perm], atol=1e-10)
    assert torch.allclose(eps_h2[0], eps_h[0, perm], atol=1e-10)
    assert torch.allclose(eps_x2[1:], eps_x[1:], atol=1e-12)  # molecules do not interact


def test_fast_layer_equals_dgl_egnnconv():
    torch.manual_seed(0)
    layer = edm.EGNNLayer(8, 16, 8, edge_feat_size=1)
    node_mask = torch.tensor([[True] * 5 + [False], [True] * 6])
    graph = edm.FullyConnectedGraphs.build(node_mask)
    assert graph.num_nodes() == 11 and graph.num_edges() == 5 * 4 + 6 * 5
    h, x = torch.randn(11, 8), torch.randn(11, 3)
    a = torch.randn(graph.num_edges(), 1)
    ours = layer(graph, h, x, a)
    reference = edm.EGNNConv.forward(layer, graph.to_dgl(), h, x, a)
    assert torch.allclose(layer(graph.to_dgl(), h, x, a)[1], reference[1], atol=1e-5)
    assert torch.allclose(ours[0], reference[0], atol=1e-5) and torch.allclose(ours[1], reference[1], atol=1e-5)
    src, dst = graph.edges()
    assert (src // 5 == dst // 5)[:20].all() and (src[20:] >= 5).all() and (src != dst).all()


def test_schedule_matches_edm_polynomial_2_and_precision():
    alphas2 = polynomial_schedule(1000, 1e-5)
    gamma = gamma_table(1000, 1e-5).double()
    assert torch.allclose(torch.sigmoid(-gamma), torch.from_numpy(alphas2), rtol=1e-5)
    assert abs(alphas2[0] - (1 - 1e-5)) < 1e-9 and alphas2[-1] < 1e-4
    assert np.all(np.diff(alphas2) < 0)
    # a clipped schedule: no step keeps less than 0.1 % of alpha^2
    raw = (1 - np.linspace(0, 1001, 1001) / 1001) ** 2
    assert np.all(alphas2 >= 1e-5) and raw[-1] < 1e-5


def test_forward_noising_matches_closed_form():
    model = _model(diffusion_steps=50)
    state, batch = fixtures.tiny_state_and_batch(4)
    (x, h), layout = model.encode(batch)
    t = torch.tensor([0, 10, 25, 50])
    g = torch.Generator().manual_seed(0)
    eps_x, eps_h = model.noise(layout, g)
    z_x, z_h = model.q_sample((x, h), t, (eps_x, eps_h))
    alpha2 = torch.from_numpy(polynomial_schedule(50, 1e-5))[t].view(-1, 1, 1)
    expected_x = alpha2.sqrt() * x.double() + (1 - alpha2).sqrt() * eps_x.double()
    expected_h = alpha2.sqrt() * h.double() + (1 - alpha2).sqrt() * eps_h.double()
    assert torch.allclose(z_x.double(), expected_x, atol=2e-5)
    assert torch.allclose(z_h.double(), expected_h, atol=2e-5)
    # one-step transitions of the sampler compose to the marginal: alpha_t = alpha_t|s alpha_s,
    # sigma_t^2 = sigma_t|s^2 + alpha_t|s^2 sigma_s^2
    gamma = model.gamma.double()
    gs, gt = gamma[:-1], gamma[1:]
    sigma2_ts = -torch.expm1(torch.nn.functional.softplus(gs) - torch.nn.functional.softplus(gt))
    alpha_ts = torch.exp(0.5 * (torch.nn.functional.logsigmoid(-gt) - torch.nn.functional.logsigmoid(-gs)))
    assert torch.allclose(alpha_ts * torch.sigmoid(-gs).sqrt(), torch.sigmoid(-gt).sqrt(), rtol=1e-9)
    assert torch.allclose(sigma2_ts + alpha_ts ** 2 * torch.sigmoid(gs), torch.sigmoid(gt), atol=1e-9)
    # x noise lives on the zero-CoM subspace: (n - 1) * 3 degrees of freedom of unit variance
    big = torch.ones(4000, 5, 1)
    noise = edm.zero_com_space(big)(torch.randn((4000, 5, 3), generator=torch.Generator().manual_seed(1)))
    assert noise.sum(1).abs().max() < 1e-5
    assert abs(noise.square().sum((1, 2)).mean().item() / 12 - 1) < 0.03


def test_log_prob_is_the_edm_bound():
    model = _model().eval()
    _, batch = fixtures.tiny_state_and_batch(16)
    a = model.log_prob(batch, generator=torch.Generator().manual_seed(0))
    b = model.log_prob(batch, generator=torch.Generator().manual_seed(0))
    assert a.shape == (16,) and torch.isfinite(a).all() and torch.equal(a, b)
    # invariant to rigid motions of the input (same noise after the canonical centring)
    rot = _random_rotation(torch.Generator().manual_seed(5)).float()
    moved = dict(batch, positions=batch["positions"] @ rot.T + torch.tensor([3.0, 1.0, -2.0]))
    n = batch["positions"].shape[1]
    mask = (torch.arange(n)[None, :] < batch["n_atoms"][:, None])[..., None]
    moved["positions"] = moved["positions"] * mask
    c = model.log_prob(moved, generator=torch.Generator().manual_seed(0))
    # the noise is not rotated with the input, so only the distribution of the estimate is invariant;
    # the prior and constant terms are exactly invariant: compare the means loosely
    assert abs(c.mean() - a.mean()) < 0.25 * a.abs().mean()
    # log p(N) enters: molecules of a size never seen in training are impossible
    assert torch.allclose(model.log_p_n.exp().sum(), torch.tensor(1.0))
    assert model.log_p_n[3].item() == -math.inf


def test_log_prob_decomposes_into_edm_terms():
    model = _model(diffusion_steps=10).eval()
    _, batch = fixtures.tiny_state_and_batch(4)
    (x, h), layout = model.encode(batch)
    n = batch["n_atoms"].float()
    # the Gaussian constant of p(x | z_0) on the (n - 1) * 3 dimensional subspace
    gamma_0 = model.gamma[0]
    const = (n - 1) * 3 * (-0.5 * gamma_0 - 0.5 * math.log(2 * math.pi))
    # the prior KL is tiny but positive for data of unit scale
    kl = model.kl_prior((x, h), layout)
    assert (kl > 0).all() and (kl < 1).all()
    # with a perfect eps predictor for h, log p(h | z_0) ~ 0 (the bins are wide vs sigma_0)
    log_ph = model._log_p_h_given_z0(h, h * torch.sigmoid(-gamma_0).sqrt(), gamma_0, layout.spaces[1])
    assert (log_ph.abs() < 1e-3).all()
    assert (const > 0).all()  # sigma_0 << 1: the density constant is large and positive


def test_samples_are_centred_typed_and_reproducible():
    model = _model().eval()
    state, _ = fixtures.tiny_state_and_batch()
    g = torch.Generator().manual_seed(3)
    out = model.sample(12, generator=g)
    assert isinstance(out, edm.Conformers)
    b, n, _ = out.positions.shape
    assert b == 12 and n == int(out.n_atoms.max())
    mask = torch.arange(n)[None, :] < out.n_atoms[:, None]
    assert ((out.atom_types >= 0) & (out.atom_types < 5))[mask].all() and (out.atom_types[~mask] == -1).all()
    assert (out.positions[~mask] == 0).all()
    centre = out.positions.double().sum(1) / out.n_atoms[:, None]
    assert centre.abs().max() < 1e-5
    seen = {i for i, c in enumerate(state["n_atoms_histogram"]) if c > 0}
    assert set(out.n_atoms.tolist()) <= seen
    again = model.sample(12, generator=torch.Generator().manual_seed(3))
    other = model.sample(12, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(out, again))
    assert not torch.equal(out.n_atoms, other.n_atoms)
    with pytest.raises(ValueError):
        model.sample(0)


def test_loss_falls_on_a_tiny_batch_and_survives_bf16_autocast():
    model = _model(hidden_dim=32)
    _, batch = fixtures.tiny_state_and_batch(16)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model.loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = model.loss(batch)
        lp = model.eval().log_prob(batch)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert torch.isfinite(lp).all() and lp.dtype == torch.float32


def test_norm_values_too_large_for_sigma_0_are_refused():
    with pytest.raises(ValueError, match="too large"):
        _model(noise_precision=1e-2)


def test_sampling_steps_take_a_coarser_grid_of_the_same_chain():
    model = _model(diffusion_steps=20, sampling_steps=5).eval()
    calls = []
    forward = model.denoiser.forward
    model.denoiser.forward = lambda x, h, t, *a: calls.append(round(float(t[0]) * 20)) or forward(x, h, t, *a)
    out = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert calls == [20, 16, 12, 8, 4, 0]
    assert out.positions.double().sum(1).abs().max() < 1e-4


def test_ema_follows_the_weights_and_serves_eval_mode():
    model = _model(ema_decay=0.5)
    _, batch = fixtures.tiny_state_and_batch(8)
    assert not any(p.requires_grad for p in model.ema_denoiser.parameters())
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = [p.clone() for p in model.ema_denoiser.parameters()]
    model.set_training_step(0)
    model.loss(batch).backward()
    opt.step()
    model.set_training_step(100)  # decay 0.5: halfway from the old EMA to the new weights
    for old, ema, new in zip(before, model.ema_denoiser.parameters(), model.denoiser.parameters()):
        assert torch.allclose(ema, 0.5 * old + 0.5 * new, atol=1e-6)
    model.eval()
    calls = []
    model.ema_denoiser.register_forward_hook(lambda *args: calls.append(1))
    model.sample(2, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 21  # T = 20 reverse steps + p(x | z_0), all with the EMA weights
    assert "ema_denoiser.embed.weight" in model.state_dict()
