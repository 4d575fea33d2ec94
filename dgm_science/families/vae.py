"""Variational autoencoder family (Kingma & Welling 2014) with KL annealing (Bowman et al. 2016)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from dgm_science.base import GenerativeModel


class StandardNormal(nn.Module):
    """Isotropic Gaussian p(z) = N(0, I) over events of ``event_shape`` (an int D means (D,)):
    ``log_prob(z: (B, *event_shape)) -> (B,)``."""

    def __init__(self, event_shape: int | tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(n, *self.event_shape, generator=generator, device=device)


class KLAnnealing:
    """The KL weight beta of a VAE's loss, annealed linearly from 0 to ``kl_weight`` over
    ``kl_anneal_steps`` training steps (Bowman et al. 2016); the trainer sets the step."""

    kl_weight: float
    kl_anneal_steps: int
    _step: int = 0

    def set_training_step(self, step: int) -> None:
        self._step = step

    @property
    def beta(self) -> float:
        if self.kl_anneal_steps <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, self._step / self.kl_anneal_steps)


class BatchNormMean(nn.Module):
    """BN-VAE's posterior mean (Zhu et al. 2020, "A Batch Normalized Inference Network Keeps the KL
    Vanishing Away", Eq. 5-7): mu = gamma * (mu_raw - E_batch mu_raw) / sd_batch(mu_raw) + shift, a
    batch normalisation of each unit with a FIXED scale ``gamma`` and a learned shift. Over the data
    every unit's posterior mean then has variance gamma^2, so E_x KL(q(z | x) || N(0, I)) >= D gamma^2 / 2
    and Var_x E_q[z_u | x] = gamma^2 > 0: the posterior cannot collapse to an x-independent one
    whatever the decoder does. ``forward(mu_raw: (B, D)) -> (B, D)``; running statistics in eval mode
    (and for a training batch of one)."""

    def __init__(self, dim: int, gamma: float) -> None:
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"the batch-normalised posterior mean needs gamma > 0, got {gamma}")
        self.gamma = float(gamma)
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-7)  # an untrained encoder's means vary by ~1e-4
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        if self.training and mu.shape[0] < 2:  # one example has no batch variance: the running estimate
            normed = nn.functional.batch_norm(mu, self.norm.running_mean, self.norm.running_var, training=False,
                                              eps=self.norm.eps)
        else:
            normed = self.norm(mu)
        return self.gamma * normed + self.shift


class VAE(KLAnnealing, GenerativeModel):
    """VAE(encoder, decoder, prior).

    ``encoder(batch) -> (mu, log_var)`` each (B, D); ``decoder`` is a conditional GenerativeModel
    with ``log_prob(batch, condition=z) -> (B,)`` and ``sample(n, generator=, condition=z)``.
    ``loss`` = mean over the batch of [-E_q log p(x|z) + beta * max(KL, free_bits)] / ``loss_scale``,
    with beta annealed linearly from 0 to ``kl_weight`` over ``kl_anneal_steps``. ``posterior_bn``
    (gamma > 0): the encoder's mean goes through ``BatchNormMean(D, gamma)`` (BN-VAE; 0: off).
    ``log_prob`` is the ELBO (beta = 1), a lower bound on log p(x).
    """

    likelihood = "bound"
    family = "VAE"
    representation = "yes: z ~ q(z | x)"

    def __init__(
        self,
        encoder: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | nn.Module,
        decoder: GenerativeModel,
        prior: StandardNormal,
        *,
        kl_weight: float = 1.0,
        kl_anneal_steps: int = 0,
        free_bits: float = 0.0,
        loss_scale: Callable[[Any], torch.Tensor] | None = None,
        posterior_bn: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.mean_norm = BatchNormMean(prior.event_shape[0], posterior_bn) if posterior_bn > 0 else None
        self.kl_weight, self.kl_anneal_steps, self.free_bits = kl_weight, kl_anneal_steps, free_bits
        self.loss_scale = loss_scale
        self._step = 0
        self._last: dict[str, torch.Tensor] = {}

    def encode(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x) parameters (mu, log_var), each (B, D)."""
        mu, log_var = self.encoder(batch)
        return (self.mean_norm(mu) if self.mean_norm is not None else mu), log_var

    @staticmethod
    def kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, diag exp(log_var)) || N(0, I)) per example: (B,)."""
        return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)

    def latent_terms(self, batch: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per latent layer (one here) E_q[z | x], [(B, D)], and the KL per example, (B, 1) nats
        (as ``HierarchicalVAE.latent_terms``)."""
        mu, log_var = self.encode(batch)
        return [mu], self.kl(mu, log_var).unsqueeze(1)

    def _terms(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encode(batch)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        reconstruction = self.decoder.log_prob(batch, condition=z)
        return reconstruction, self.kl(mu, log_var)

    def loss(self, batch: Any) -> torch.Tensor:
        reconstruction, kl = self._terms(batch)
        kl_term = kl.clamp(min=self.free_bits) if self.free_bits > 0 else kl
        per_example = -reconstruction + self.beta * kl_term
        scale = self.loss_scale(batch) if self.loss_scale is not None else 1.0
        self._last = {"reconstruction": -reconstruction.mean().detach(), "kl": kl.mean().detach(),
                      "beta": torch.tensor(self.beta)}
        return per_example.sum() / scale

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    def log_prob(self, batch: Any) -> torch.Tensor:
        reconstruction, kl = self._terms(batch)
        return reconstruction - kl

    def decode(self, z: torch.Tensor, *, generator: torch.Generator | None = None, **kwargs: Any) -> Any:
        """Sample x ~ p(x|z) for latents z: (B, D)."""
        return self.decoder.sample(z.shape[0], generator=generator, condition=z, **kwargs)

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None, **kwargs: Any
    ) -> Any:
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = next(self.parameters()).device
        z = self.prior.sample(n, generator=generator, device=device)
        return self.decode(z, generator=generator, **kwargs)

    @staticmethod
    def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """Spherical linear interpolation between latents z0, z1: (D,) -> (steps, D) (White 2016)."""
        a, b = z0 / z0.norm(), z1 / z1.norm()
        omega = torch.arccos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
        t = torch.linspace(0, 1, steps, device=z0.device).unsqueeze(1)
        so = torch.sin(omega)
        return (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1
