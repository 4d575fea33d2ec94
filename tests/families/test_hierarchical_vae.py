"""The hierarchical (top-down) VAE family: per-layer KLs between the top-down posterior and prior,
free bits per layer, the ELBO, ancestral sampling and the active-unit count."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from dgm_science.backbones import CausalTransformer
from dgm_science.families.autoregressive import AutoregressiveModel
from dgm_science.families.hierarchical_vae import HierarchicalVAE, active_units, gaussian_kl

PAD, BOS, EOS, VOCAB = 0, 1, 2, 7
FEATURES = 12


class _Encoder(nn.Module):
    """Bag-of-tokens features, one vector per layer (a deeper layer sees a further linear map)."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, FEATURES, padding_idx=PAD)
        self.maps = nn.ModuleList(nn.Linear(FEATURES, FEATURES) for _ in range(layers - 1))

    def forward(self, batch):
        h = self.embedding(batch["tokens"]).mean(1)
        out = [h]
        for layer in self.maps:
            h = torch.tanh(layer(h))
            out.append(h)
        return out


def _model(latent_dims=(3, 4, 2), free_bits: float = 0.0, seed: int = 0, **options) -> HierarchicalVAE:
    torch.manual_seed(seed)
    state = 10
    condition = HierarchicalVAE.condition_dim(state, latent_dims, options.get("skip_latents", False),
                                              options.get("decoder_state", True), options.get("decoder_layers", 0))
    network = CausalTransformer(VOCAB, d_model=16, n_layers=1, n_heads=2, max_length=12, dropout=0.0,
                                condition_dim=condition)
    decoder = AutoregressiveModel(network, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    return HierarchicalVAE(_Encoder(len(latent_dims)), decoder, FEATURES, list(latent_dims), state_dim=state,
                           hidden=16, free_bits=free_bits, **options)


def _batch(rows):
    width = max(len(r) for r in rows) + 2
    tokens = torch.full((len(rows), width), PAD)
    for i, row in enumerate(rows):
        tokens[i, : len(row) + 2] = torch.tensor([BOS, *row, EOS])
    return {"tokens": tokens}


BATCH = [[3, 4, 5], [6, 3], [4, 4, 4, 5], [5]]


def test_gaussian_kl_is_the_closed_form_of_two_diagonal_gaussians():
    torch.manual_seed(1)
    mu_q, mu_p, lv_q, lv_p = (torch.randn(5, 3) for _ in range(4))
    expected = kl_divergence(Normal(mu_q, (0.5 * lv_q).exp()), Normal(mu_p, (0.5 * lv_p).exp())).sum(-1)
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_p, lv_p), expected, atol=1e-5)
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_q, lv_q), torch.zeros(5), atol=1e-6)


def test_the_elbo_is_the_reconstruction_minus_every_layers_kl_and_each_kl_is_nonnegative():
    model = _model().eval()
    batch = _batch(BATCH)
    torch.manual_seed(3)
    condition, kls, _ = model._infer(batch)
    assert condition.shape == (4, 10) and len(kls) == 3
    assert all(kl.shape == (4,) and bool((kl >= -1e-6).all()) for kl in kls)
    reconstruction = model.decoder.log_prob(batch, condition=condition)
    torch.manual_seed(3)
    assert torch.allclose(model.log_prob(batch), reconstruction - sum(kls), atol=1e-5)
    assert model.layer_kls(batch).shape == (4, 3)


def test_the_top_layer_kl_is_against_the_standard_normal_and_lower_layers_against_their_top_down_prior():
    model = _model().eval()
    batch = _batch(BATCH)
    features = model.encoder(batch)
    mu, log_var = model.top_posterior(features[-1])
    torch.manual_seed(0)
    _, kls, means = model._infer(batch, use_mean=True)
    assert torch.allclose(kls[-1], 0.5 * (mu ** 2 + log_var.exp() - 1 - log_var).sum(-1), atol=1e-6)
    assert torch.equal(means[-1], mu)
    # Layer 2's prior is a function of z_3 only: changing the input changes its posterior, not the
    # prior at a fixed z_3.
    d = model.steps[1](model.start.expand(4, -1), mu)
    mu_p, log_var_p = model.priors[1](d)
    mu_q, log_var_q = model.posteriors[1](torch.cat([d, features[1]], dim=-1))
    assert torch.allclose(kls[1], gaussian_kl(mu_q, log_var_q, mu_p, log_var_p), atol=1e-6)


def test_free_bits_floor_each_layers_batch_mean_kl_in_the_loss_only():
    batch = _batch(BATCH)
    plain, floored = _model(free_bits=0.0), _model(free_bits=50.0)
    torch.manual_seed(5)
    loss_plain = plain.loss(batch)
    per_layer = torch.stack([plain.metrics_to_log()[f"kl_layer{i}"] for i in (1, 2, 3)])
    torch.manual_seed(5)
    loss_floored = floored.loss(batch)
    assert bool((per_layer < 50).all()), "an untrained layer's KL is below the floor"
    # No loss_scale: loss = -sum log p(x | z) + beta * B * sum_l max(free_bits, mean KL_l), B = 4.
    assert torch.allclose(loss_floored - loss_plain, (4 * (50.0 - per_layer)).sum(), atol=1e-3)
    elbo = []
    for model in (plain, floored):  # the ELBO has no floor
        torch.manual_seed(5)
        elbo.append(model.log_prob(batch))
    assert torch.allclose(elbo[0], elbo[1], atol=1e-5)


def test_training_lowers_the_negative_elbo_and_samples_come_from_the_top_down_prior():
    model = _model()
    batch = _batch(BATCH * 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    torch.manual_seed(0)
    first = -model.log_prob(batch).mean().item()
    for _ in range(60):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    torch.manual_seed(0)
    assert -model.log_prob(batch).mean().item() < first - 1.0
    tokens = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert tokens.shape[0] == 6
    again = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tokens, again)
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)


def test_active_units_count_the_dimensions_whose_posterior_mean_varies_across_inputs():
    varying = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    collapsed = torch.full((200, 2), 0.3) + 1e-3 * torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    mixed = torch.cat([varying[:, :1], collapsed], dim=1)
    assert active_units([varying, collapsed, mixed]) == [3, 0, 1]


def test_fewer_than_two_layers_or_a_mismatched_encoder_is_refused():
    with pytest.raises(ValueError, match="at least two"):
        _model(latent_dims=(4,))
    model = _model(latent_dims=(3, 4, 2))
    model.encoder = _Encoder(2)
    with pytest.raises(ValueError, match="2 feature vectors for 3"):
        model.log_prob(_batch(BATCH))


def test_kl_balancing_weights_each_layer_by_its_kl_per_unit_during_the_warm_up_only():
    """NVAE's kl_balancer: gamma_l = (KL_l + 0.01) / D_l, mean 1 over the layers, while beta < kl_weight."""
    model = _model(latent_dims=(2, 4, 2), kl_balancing=True)
    model.kl_anneal_steps, model.kl_weight = 100, 1.0
    per_layer = torch.tensor([0.0, 3.99, 1.99])
    model.set_training_step(10)  # beta = 0.1: warming up
    raw = torch.tensor([0.01 / 2, 4.0 / 4, 2.0 / 2])
    assert torch.allclose(model.balance(per_layer), raw / raw.mean())
    # the layer with no KL is penalised ~200 times less than the others: no push to collapse it further
    assert model.balance(per_layer)[0] < model.balance(per_layer)[1] / 100
    model.set_training_step(100)  # warm-up over: the plain KL
    assert torch.equal(model.balance(per_layer), torch.ones(3))
    model.set_training_step(10)
    model.kl_balancing = False
    assert torch.equal(model.balance(per_layer), torch.ones(3))


def test_kl_balancing_changes_the_loss_by_the_balanced_kl_and_not_the_elbo():
    batch = _batch(BATCH)
    plain, balanced = _model(), _model(kl_balancing=True)
    for m in (plain, balanced):
        m.kl_anneal_steps, m.kl_weight = 10, 1.0
        m.set_training_step(5)  # beta 0.5
    torch.manual_seed(5)
    loss_plain = plain.loss(batch)
    per_layer = torch.stack([plain.metrics_to_log()[f"kl_layer{i}"] for i in (1, 2, 3)])
    torch.manual_seed(5)
    loss_balanced = balanced.loss(batch)
    gamma = balanced.balance(per_layer)
    assert not torch.allclose(gamma, torch.ones(3)), "untrained layers have different KLs per unit"
    assert torch.allclose(loss_balanced - loss_plain, 0.5 * 4 * ((gamma - 1) * per_layer).sum(), atol=1e-3)
    elbo = []
    for model in (plain, balanced):
        torch.manual_seed(5)
        elbo.append(model.log_prob(batch))
    assert torch.allclose(elbo[0], elbo[1], atol=1e-5)


def test_the_residual_posterior_is_the_prior_shifted_and_scaled_by_the_posterior_network():
    """NVAE Eq. 2: q(z_l | ..) = N(mu_p + dmu, sigma_p * dsigma); the top layer's prior is N(0, I)."""
    model = _model(residual_posterior=True).eval()
    batch = _batch(BATCH)
    features = model.encoder(batch)
    _, kls, means = model._infer(batch, use_mean=True)
    top, _ = model.top_posterior(features[-1])
    d = model.steps[1](model.start.expand(4, -1), top)
    mu_p, log_var_p = model.priors[1](d)
    dmu, dlog_var = model.posteriors[1](torch.cat([d, features[1]], dim=-1))
    assert torch.allclose(means[1], mu_p + dmu, atol=1e-6)
    assert torch.allclose(kls[1], gaussian_kl(mu_p + dmu, log_var_p + dlog_var, mu_p, log_var_p), atol=1e-5)
    # its KL is that of the shift and scale alone: 0.5 sum(dmu^2 / sigma_p^2 + dsigma^2 - 1 - log dsigma^2)
    closed = 0.5 * (dmu ** 2 / log_var_p.exp() + dlog_var.exp() - 1 - dlog_var).sum(-1)
    assert torch.allclose(kls[1], closed, atol=1e-4)
    # without it the same network output is the posterior itself
    model.residual_posterior = False
    _, _, plain_means = model._infer(batch, use_mean=True)
    assert torch.allclose(plain_means[1], dmu, atol=1e-6) and not torch.allclose(plain_means[1], means[1])


def test_skip_latents_put_every_layers_z_into_the_decoders_condition():
    """Dieng et al. 2019: the decoder's condition is [d_0, z_1, .., z_L], not d_0 alone."""
    dims = (3, 4, 2)
    assert HierarchicalVAE.condition_dim(10, dims, True) == 19 and HierarchicalVAE.condition_dim(10, dims, False) == 10
    model = _model(latent_dims=dims, skip_latents=True).eval()
    batch = _batch(BATCH)
    condition, _, means = model._infer(batch, use_mean=True)
    assert condition.shape == (4, 19)
    assert torch.equal(condition[:, 10:], torch.cat(means, dim=-1))  # z_l = its posterior mean here
    tokens = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert tokens.shape[0] == 5
    # the decoder reads z_1 directly: changing z_1 alone changes log p(x | z)
    shifted = condition.clone()
    shifted[:, 10:13] += 3.0
    assert not torch.allclose(model.decoder.log_prob(batch, condition=condition),
                              model.decoder.log_prob(batch, condition=shifted))


def test_without_the_decoder_state_the_decoder_reads_the_latents_alone():
    """``decoder_state`` off: the condition is [z_1, .., z_L] (no d_0, no output step to train);
    the ELBO, the KLs and sampling work as before; the decoder must read something."""
    dims = (3, 4, 2)
    assert HierarchicalVAE.condition_dim(10, dims, True, False) == 9
    model = _model(latent_dims=dims, skip_latents=True, decoder_state=False).eval()
    assert model.output is None
    batch = _batch(BATCH)
    condition, kls, means = model._infer(batch, use_mean=True)
    assert torch.equal(condition, torch.cat(means, dim=-1))
    assert torch.isfinite(model.log_prob(batch)).all() and len(kls) == 3
    assert model.sample(5, generator=torch.Generator().manual_seed(0)).shape[0] == 5
    with pytest.raises(ValueError, match="decoder must read"):
        _model(latent_dims=dims, skip_latents=False, decoder_state=False)


def test_with_decoder_layers_1_the_decoder_reads_the_bottom_layer_alone_and_the_layers_above_are_its_prior():
    """The ladder VAE's p(x | z_1): the condition is z_1; z_2.. reach x only through p(z_1 | z_>1), so a
    change of the top layer's sample with z_1 fixed leaves log p(x | z) unchanged."""
    dims = (3, 4, 2)
    assert HierarchicalVAE.condition_dim(10, dims, True, False, 1) == 3
    model = _model(latent_dims=dims, skip_latents=True, decoder_state=False, decoder_layers=1).eval()
    batch = _batch(BATCH)
    condition, kls, means = model._infer(batch, use_mean=True)
    assert torch.equal(condition, means[0])
    zs = [m.clone() for m in means]
    moved = [zs[0], zs[1] + 5.0, zs[2] - 5.0]
    assert torch.equal(model._condition(None, zs[0], moved), condition)
    assert torch.isfinite(model.log_prob(batch)).all() and len(kls) == 3
    assert model.sample(5, generator=torch.Generator().manual_seed(0)).shape[0] == 5
    for bad in ({"decoder_layers": 4, "skip_latents": True}, {"decoder_layers": 1, "skip_latents": False}):
        with pytest.raises(ValueError, match="decoder_layers"):
            _model(latent_dims=dims, **bad)


def test_linear_posterior_heads_are_single_linear_maps_of_the_features():
    """As a single-level VAE's encoder head: the top layer's (mean, log-variance) and, below it, the
    BN-VAE mean head and the log-variance head are linear in their inputs."""
    dims = (3, 2)
    model = _model(latent_dims=dims, skip_latents=True, posterior_bn=0.3, linear_posterior=True)
    assert isinstance(model.top_posterior.net, nn.Linear) and isinstance(model.mean_heads[0], nn.Linear)
    assert isinstance(model.posteriors[0].net, nn.Linear)
    mlp = _model(latent_dims=dims, skip_latents=True, posterior_bn=0.3)
    assert isinstance(mlp.top_posterior.net, nn.Sequential) and isinstance(mlp.mean_heads[0], nn.Sequential)
    h = torch.randn(5, FEATURES)
    a, b = model.top_posterior(h), model.top_posterior(2 * h)  # linear: f(2h) - f(h) = f(h) - f(0)
    zero = model.top_posterior(torch.zeros(1, FEATURES))
    assert torch.allclose(b[0] - a[0], a[0] - zero[0], atol=1e-5)


def _similar_rows(n: int = 64, seed: int = 0):
    """``n`` token rows that differ only in a few positions (like amplicons of one gene region): a
    mean-pooled encoder's features barely vary across them."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(3, VOCAB, (10,), generator=g)
    rows = []
    for _ in range(n):
        row = base.clone()
        row[torch.randint(0, 10, (1,), generator=g)] = torch.randint(3, VOCAB, (1,), generator=g)
        rows.append(row.tolist())
    return rows


def test_bn_posterior_means_vary_with_x_in_every_layer_at_init_where_the_plain_posterior_is_collapsed():
    """The collapse seen on 16S: at init the posterior means of near-identical inputs are nearly equal
    (0 active units); BN-VAE's batch-normalised means (gamma 0.3) have Var_x = gamma^2 in every unit
    of every layer (top layer: the mean itself; lower layers: the residual shift from the prior)."""
    batch = _batch(_similar_rows())
    plain = _model(latent_dims=(4, 4, 4), residual_posterior=True)
    normed = _model(latent_dims=(4, 4, 4), residual_posterior=True, posterior_bn=0.3)
    for model in (plain, normed):  # running statistics (a cumulative average) from training-mode passes, then eval
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.momentum = None
        for _ in range(5):
            model.layer_kls(batch)
        model.eval()
    with torch.no_grad():
        assert active_units(plain.posterior_means(batch)) == [0, 0, 0]
        means = normed.posterior_means(batch)
        assert active_units(means) == [4, 4, 4]
        top_var = means[-1].var(0, unbiased=False)
        assert torch.allclose(top_var, torch.full_like(top_var, 0.09), rtol=0.1)
        # the KL of every layer is bounded away from zero: >= D gamma^2 / 2 on average for the top layer
        kls = normed.layer_kls(batch).mean(0)
        assert float(kls[-1]) >= 4 * 0.09 / 2 * 0.95 and bool((kls > 0.05).all())


def test_bn_posterior_mean_has_the_fixed_scale_and_a_learned_shift_and_survives_a_batch_of_one():
    from dgm_science.families.vae import BatchNormMean

    torch.manual_seed(0)
    norm = BatchNormMean(3, 0.5)
    raw = 5.0 + 0.01 * torch.randn(200, 3)  # a large common part and a tiny x-dependent one
    out = norm(raw)
    assert torch.allclose(out.var(0, unbiased=False), torch.full((3,), 0.25), rtol=0.01)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-3)
    assert [n for n, _ in norm.named_parameters()] == ["shift"]  # gamma is fixed, not learned
    assert norm(raw[:1]).shape == (1, 3)  # a training batch of one uses the running statistics
    with pytest.raises(ValueError):
        BatchNormMean(3, 0.0)
