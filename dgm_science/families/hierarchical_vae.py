"""Hierarchical (top-down) VAE: bottom-up inference, a top-down prior and posterior per layer, a
KL per layer and free bits per layer (Ladder VAE, Sønderby et al. 2016; NVAE, Vahdat & Kautz
2020; VDVAE, Child 2021).

Generative model, top down: z_L ~ N(0, I); for l = L-1 .. 1 a deterministic state
d_l = f_l(d_{l+1}, z_{l+1}) gives the prior p(z_l | z_{>l}) = N(mu_p(d_l), sigma_p(d_l)); the
decoder p(x | z) reads the last state d_0 = f_0(d_1, z_1), a function of every layer.
Inference shares the top-down path: a bottom-up encoder gives one feature vector per layer, h_1
(shallow) .. h_L (deep), and the posterior q(z_l | x, z_{>l}) = N(mu_q([d_l, h_l]), sigma_q(..))
(Sønderby et al.'s "ladder": the posterior and prior of each layer are both conditioned on the
layers above, so each layer's KL is between two Gaussians, in closed form).

ELBO = E_q log p(x | z) - sum_l E_q KL(q(z_l | x, z_{>l}) || p(z_l | z_{>l})), one posterior sample.

Against posterior collapse (every option changes the training loss or the parameterisation, never
what ``log_prob`` means: it is always the plain ELBO):

- KL warm-up (Bowman et al. 2016; NVAE): beta rises from 0 to ``kl_weight`` over ``kl_anneal_steps``.
- KL balancing per group (NVAE, Vahdat & Kautz 2020, Sec. 3.2 / their code's ``kl_balancer``):
  while beta < ``kl_weight`` each layer's KL is weighted by gamma_l proportional to its batch-mean
  KL per unit (+ 0.01), normalised to mean 1 over the layers, so a layer that carries little
  information is pushed towards its prior less than one that carries much.
- Free bits per group (Kingma et al. 2016): the loss counts max(lambda, the batch mean of layer l's
  KL), so no layer is pushed below lambda nats.
- Residual posterior (NVAE Eq. 2): below the top, q(z_l | ..) = N(mu_p + dmu, sigma_p * dsigma): the
  posterior network predicts the shift and scale relative to the layer's own prior.
- Batch-normalised posterior means (BN-VAE, Zhu et al. 2020): ``posterior_bn`` = gamma > 0 puts
  the top layer's posterior mean and every lower layer's posterior mean (with ``residual_posterior``:
  its shift dmu from the prior) through ``BatchNormMean``: a batch normalisation with the fixed scale
  gamma. Below the top that mean (shift) is a function of the layer's bottom-up feature alone (its
  variance then comes from x, not from the samples of the layers above; the log-variance still reads
  [d_l, h_l]), so each layer's E_q[z_l | x] varies over the data and, with the residual posterior,
  every layer's KL is at least E[dmu^2 / (2 sigma_p^2)] > 0.
- Latent skip connections to the decoder (Dieng et al. 2019, "Avoiding latent variable collapse
  with generative skip models"): the decoder's condition is [d_0, z_1, .., z_L], every layer's z
  reaching the decoder directly, not only through the top-down path's nonlinear, normalised state.
  With ``decoder_state`` off the condition is [z_1, .., z_L] alone: the decoder reads the latents as
  a single-level VAE's decoder reads its z, and the top-down path only parameterises the priors and
  posteriors (d_0, a deterministic function of the z's, adds no information, and as a LayerNorm'd
  128-d input it slowed the decoder's training: docs/results/families/hvae_decoder_input.json).
- The decoder reads the bottom layer alone (``decoder_layers`` = 1; Sønderby et al.'s p(x | z_1)): the
  layers above are z_1's learned prior p(z_1 | z_>1) = E_{p(z_>1)} ..., a single-level VAE's latent with a
  hierarchical prior in place of N(0, I). A unit the data do not need can then follow its prior at no KL
  cost while the decoder sees no more inputs than the VAE's does (a reading of
  docs/results/families/hvae_design_arms.json: extra z's in the decoder's condition loosened the bound).
- Linear posterior heads (``linear_posterior``): each layer's mean and log-variance a linear map of
  its features, as a single-level VAE's encoder head (a two-layer MLP otherwise).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from dgm_science.base import GenerativeModel
from dgm_science.families.vae import BatchNormMean, KLAnnealing

ACTIVE_UNIT_THRESHOLD = 0.01
"""A latent unit is active when Var_x E_q[z_u | x] exceeds this (Burda et al. 2016)."""


def gaussian_kl(mu_q: torch.Tensor, log_var_q: torch.Tensor, mu_p: torch.Tensor, log_var_p: torch.Tensor
                ) -> torch.Tensor:
    """KL(N(mu_q, diag exp(log_var_q)) || N(mu_p, diag exp(log_var_p))), summed over the last axis: (B,)."""
    return 0.5 * (log_var_p - log_var_q + (log_var_q.exp() + (mu_q - mu_p) ** 2) / log_var_p.exp() - 1.0).sum(-1)


class _Gaussian(nn.Module):
    """Mean and log-variance of a diagonal Gaussian from a vector (a two-layer MLP; log-variance
    clamped to [-10, 10])."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, linear: bool = False) -> None:
        super().__init__()
        self.net = (nn.Linear(in_dim, 2 * out_dim) if linear else
                    nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * out_dim)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.net(x).chunk(2, dim=-1)
        return mu, log_var.clamp(-10, 10)


class _TopDown(nn.Module):
    """d_{l} = d_{l+1} + MLP([d_{l+1}, z_{l+1}]) (a residual step of the top-down path)."""

    def __init__(self, state: int, latent: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state + latent, hidden), nn.GELU(), nn.Linear(hidden, state))
        self.norm = nn.LayerNorm(state)

    def forward(self, d: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.norm(d + self.net(torch.cat([d, z], dim=-1)))


class HierarchicalVAE(KLAnnealing, GenerativeModel):
    """HierarchicalVAE(encoder, decoder, feature_dim, latent_dims, ...).

    ``encoder(batch) -> [h_1, .., h_L]``: one (B, feature_dim) vector per layer, shallow to deep;
    ``latent_dims``: the size of z_1 .. z_L (the same order); ``decoder``: a conditional
    GenerativeModel (``log_prob(batch, condition=c)``, ``sample(n, condition=c)``) whose condition
    is the last top-down state, (B, ``state_dim``; not with ``decoder_state`` off), followed by z_1 .. z_L
    where ``skip_latents`` (its width: ``condition_dim(state_dim, latent_dims, skip_latents, decoder_state)``). ``loss`` = [-sum log p(x | z)
    + beta * B * sum_l gamma_l max(free_bits, mean KL_l)] / ``loss_scale(batch)``, beta annealed from 0
    to ``kl_weight`` over ``kl_anneal_steps``, gamma_l the KL balancing coefficients (1 without
    ``kl_balancing`` or once beta = ``kl_weight``); ``residual_posterior``: NVAE's q = N(mu_p + dmu,
    sigma_p * dsigma) below the top layer; ``posterior_bn`` > 0: BN-VAE's batch-normalised posterior
    means (``BatchNormMean``; below the top the mean or shift from that layer's feature alone); ``linear_posterior``:
    linear posterior heads; ``decoder_layers`` = k > 0: the decoder reads z_1 .. z_k only (0: every layer).
    ``log_prob`` is the ELBO in nats (B,).
    """

    likelihood = "bound"
    family = "hierarchical VAE"
    representation = "yes: z_1..z_L ~ q(z_l | z_>l, x)"

    def __init__(self, encoder: nn.Module, decoder: GenerativeModel, feature_dim: int, latent_dims: Sequence[int], *,
                 state_dim: int = 128, hidden: int = 128, kl_weight: float = 1.0, kl_anneal_steps: int = 0,
                 free_bits: float = 0.0, kl_balancing: bool = False, residual_posterior: bool = False,
                 skip_latents: bool = False, decoder_state: bool = True, posterior_bn: float = 0.0,
                 linear_posterior: bool = False, decoder_layers: int = 0,
                 loss_scale: Callable[[Any], torch.Tensor] | None = None) -> None:
        super().__init__()
        if len(latent_dims) < 2:
            raise ValueError(f"a hierarchical VAE needs at least two latent layers, got {len(latent_dims)}")
        if not (skip_latents or decoder_state):
            raise ValueError("the decoder must read the top-down state (decoder_state) or the latents (skip_latents)")
        if decoder_layers and not skip_latents or not 0 <= decoder_layers <= len(latent_dims):
            raise ValueError(f"decoder_layers ({decoder_layers}) must be 0 (every layer) or 1 .. {len(latent_dims)}, "
                             "with skip_latents (the decoder reads the z's of the lowest layers)")
        self.encoder, self.decoder = encoder, decoder
        self.latent_dims = [int(d) for d in latent_dims]
        self.state_dim = state_dim
        self.kl_weight, self.kl_anneal_steps, self.free_bits = kl_weight, kl_anneal_steps, free_bits
        self.kl_balancing, self.residual_posterior, self.skip_latents = kl_balancing, residual_posterior, skip_latents
        self.decoder_layers = decoder_layers or len(self.latent_dims)
        self.loss_scale = loss_scale
        top = self.latent_dims[-1]
        # every posterior head a linear map of its features, as a single-level VAE's encoder head
        # (``linear_posterior``), or a two-layer MLP
        self.top_posterior = _Gaussian(feature_dim, hidden, top, linear=linear_posterior)
        self.start = nn.Parameter(torch.zeros(state_dim))  # d_L: the top-down path's constant input
        # Layer l < L: its top-down step (from layer l+1), prior and posterior; index l-1.
        self.steps = nn.ModuleList(_TopDown(state_dim, self.latent_dims[i + 1], hidden)
                                   for i in range(len(self.latent_dims) - 1))
        self.priors = nn.ModuleList(_Gaussian(state_dim, hidden, d) for d in self.latent_dims[:-1])
        self.posteriors = nn.ModuleList(_Gaussian(state_dim + feature_dim, hidden, d, linear=linear_posterior)
                                        for d in self.latent_dims[:-1])
        # d_0 from (d_1, z_1): the decoder's input where it reads the state
        self.output = _TopDown(state_dim, self.latent_dims[0], hidden) if decoder_state else None
        # BN-VAE: one batch normalisation of the posterior (network's) mean per layer, layers 1 .. L; below
        # the top that mean (or shift) comes from the layer's bottom-up feature alone, so that its variance
        # gamma^2 is over x, not over the samples of the layers above
        self.mean_norms = (nn.ModuleList(BatchNormMean(d, posterior_bn) for d in self.latent_dims)
                           if posterior_bn > 0 else None)
        self.mean_heads = (nn.ModuleList(nn.Linear(feature_dim, d) if linear_posterior else
                                         nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Linear(hidden, d))
                                         for d in self.latent_dims[:-1]) if posterior_bn > 0 else None)
        self._step = 0
        self._last: dict[str, torch.Tensor] = {}

    @property
    def layers(self) -> int:
        return len(self.latent_dims)

    @staticmethod
    def condition_dim(state_dim: int, latent_dims: Sequence[int], skip_latents: bool, decoder_state: bool = True,
                      decoder_layers: int = 0) -> int:
        """The width of the decoder's condition: the last top-down state (with ``decoder_state``)
        and every layer's z, or the lowest ``decoder_layers`` layers' (with ``skip_latents``)."""
        read = latent_dims[:decoder_layers] if decoder_layers else latent_dims
        return (state_dim if decoder_state else 0) + (sum(int(d) for d in read) if skip_latents else 0)

    def _condition(self, d: torch.Tensor, z: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
        """The decoder's condition: d_0 from the last top-down state d_1 and z_1 (with
        ``decoder_state``), then every layer's z, layers 1 .. L (with ``skip_latents``): (B, ``condition_dim``)."""
        parts = [self.output(d, z)] if self.output is not None else []
        return torch.cat(parts + (list(zs[:self.decoder_layers]) if self.skip_latents else []), dim=-1)

    def _posterior(self, i: int, d: torch.Tensor, feature: torch.Tensor, mu_p: torch.Tensor, log_var_p: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer i+1's posterior (mu, log_var) from the top-down state and its bottom-up feature; with
        ``residual_posterior`` the network's output is (dmu, log dsigma^2) relative to the prior
        (NVAE Eq. 2: mu_q = mu_p + dmu, sigma_q = sigma_p * dsigma)."""
        mu, log_var = self.posteriors[i](torch.cat([d, feature], dim=-1))
        if self.mean_norms is not None and self.mean_heads is not None:  # BN-VAE: the mean from x alone
            mu = self.mean_norms[i](self.mean_heads[i](feature))
        if self.residual_posterior:
            return mu_p + mu, (log_var_p + log_var).clamp(-10, 10)
        return mu, log_var

    def _infer(self, batch: Any, *, use_mean: bool = False
               ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """One pass down the posterior: the decoder's condition d_0 (B, state_dim), each layer's
        KL (B,) and each layer's posterior mean, layers 1 .. L. ``use_mean``: z_l = its posterior
        mean instead of a sample (what the active units are measured on)."""
        features = self.encoder(batch)
        if len(features) != self.layers:
            raise ValueError(f"the encoder gave {len(features)} feature vectors for {self.layers} latent layers")
        kls: list[torch.Tensor] = [torch.empty(0)] * self.layers
        means: list[torch.Tensor] = [torch.empty(0)] * self.layers
        mu, log_var = self.top_posterior(features[-1])
        if self.mean_norms is not None:
            mu = self.mean_norms[-1](mu)
        z = mu if use_mean else mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        kls[-1] = gaussian_kl(mu, log_var, torch.zeros_like(mu), torch.zeros_like(log_var))
        means[-1] = mu
        zs: list[torch.Tensor] = [torch.empty(0)] * self.layers
        zs[-1] = z
        d = self.start.expand(mu.shape[0], -1)
        for i in range(self.layers - 2, -1, -1):  # layer i+1 (0-based i), top down
            d = self.steps[i](d, z)
            mu_p, log_var_p = self.priors[i](d)
            mu, log_var = self._posterior(i, d, features[i], mu_p, log_var_p)
            z = mu if use_mean else mu + torch.randn_like(mu) * (0.5 * log_var).exp()
            kls[i] = gaussian_kl(mu, log_var, mu_p, log_var_p)
            means[i] = mu
            zs[i] = z
        return self._condition(d, z, zs), kls, means

    def _terms(self, batch: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        condition, kls, _ = self._infer(batch)
        return self.decoder.log_prob(batch, condition=condition), kls

    def loss(self, batch: Any) -> torch.Tensor:
        reconstruction, kls = self._terms(batch)
        n = reconstruction.shape[0]
        per_layer = torch.stack([kl.mean() for kl in kls])  # (L,)
        floored = per_layer.clamp(min=self.free_bits) if self.free_bits > 0 else per_layer
        gamma = self.balance(per_layer)
        scale = self.loss_scale(batch) if self.loss_scale is not None else 1.0
        self._last = {"reconstruction": -reconstruction.mean().detach(), "kl": per_layer.sum().detach(),
                      "beta": torch.tensor(self.beta),
                      **{f"kl_layer{i + 1}": v.detach() for i, v in enumerate(per_layer)},
                      **{f"kl_gamma{i + 1}": v.detach() for i, v in enumerate(gamma)}}
        return (-reconstruction.sum() + self.beta * n * (gamma * floored).sum()) / scale

    def balance(self, per_layer: torch.Tensor) -> torch.Tensor:
        """NVAE's KL balancing coefficients gamma_l (L,), no gradient: during the warm-up (beta <
        ``kl_weight``) proportional to (layer l's batch-mean KL + 0.01) / its number of units, mean 1
        over the layers; ones otherwise (and without ``kl_balancing``). ``per_layer``: (L,) nats."""
        if not self.kl_balancing or self.beta >= self.kl_weight:
            return torch.ones_like(per_layer)
        dims = torch.tensor(self.latent_dims, dtype=per_layer.dtype, device=per_layer.device)
        weight = (per_layer.detach().abs() + 0.01) / dims
        return weight / weight.mean()

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    def log_prob(self, batch: Any) -> torch.Tensor:
        reconstruction, kls = self._terms(batch)
        return reconstruction - torch.stack(kls).sum(0)

    def layer_kls(self, batch: Any) -> torch.Tensor:
        """Each layer's KL per example, nats: (B, L), layers 1 .. L."""
        _, kls, _ = self._infer(batch)
        return torch.stack(kls, dim=1)

    def posterior_means(self, batch: Any) -> list[torch.Tensor]:
        """E_q[z_l | x] of each layer along the posterior-mean path: (B, D_l) per layer 1 .. L."""
        _, _, means = self._infer(batch, use_mean=True)
        return means

    def latent_terms(self, batch: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``posterior_means`` and ``layer_kls`` (the interface ``VAE.latent_terms`` shares)."""
        return self.posterior_means(batch), self.layer_kls(batch)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0, **kwargs: Any) -> Any:
        """x from the top-down prior; ``temperature`` scales each layer's prior standard deviation
        (1: the model's own prior)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = self.start.device

        def draw(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(mu.shape, generator=generator, device=device)
            return mu + temperature * noise * (0.5 * log_var).exp()

        top = self.latent_dims[-1]
        z = draw(torch.zeros(n, top, device=device), torch.zeros(n, top, device=device))
        zs: list[torch.Tensor] = [torch.empty(0)] * self.layers
        zs[-1] = z
        d = self.start.expand(n, -1)
        for i in range(self.layers - 2, -1, -1):
            d = self.steps[i](d, z)
            z = draw(*self.priors[i](d))
            zs[i] = z
        return self.decoder.sample(n, generator=generator, condition=self._condition(d, z, zs), **kwargs)


def active_units(means: Sequence[torch.Tensor], threshold: float = ACTIVE_UNIT_THRESHOLD) -> list[int]:
    """Per layer, the number of latent units whose posterior mean varies across inputs: Var_x of
    E_q[z_u | x] above ``threshold`` (Burda et al. 2016); ``means``: (N, D_l) per layer over a
    held-out set. A layer with no active unit has collapsed to its prior."""
    return [int((m.double().var(0, unbiased=True) > threshold).sum()) if len(m) > 1 else 0 for m in means]

