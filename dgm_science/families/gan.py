"""Implicit models: a generator trained against a critic, Wasserstein GAN with gradient penalty
(Goodfellow et al. 2014; Arjovsky et al. 2017; Gulrajani et al. 2017, WGAN-GP).

The critic D is trained to maximise E_data D(x) - E_z D(G(z)) - lambda_gp E_xhat (|grad D(xhat)| - 1)^2
(xhat on lines between real and generated points); the generator to maximise E_z D(G(z)). The
two alternate inside the project's single optimiser: of every ``critic_steps + 1`` optimisation
steps the first ``critic_steps`` compute only the critic's loss (generated points detached: the
generator gets no gradient, so the optimiser leaves it as it is) and the last only the
generator's (the critic's weights frozen while its graph is built: the critic gets no gradient).

A GAN has no density: ``likelihood = "none"`` and ``log_prob`` raises; it samples. Its training
is judged by the samples, and its instability by the spread over seeds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dgm_science.base import GenerativeModel


class Generator(nn.Module):
    """The interface a GAN's generator has: ``forward(z) -> relaxed`` (a differentiable point the
    critic reads, possibly noisy), ``generate(z, generator) -> sample`` (the model's output for z,
    any randomness drawn from ``generator``), ``latent_dim``."""

    latent_dim: int

    def generate(self, z: torch.Tensor, generator: torch.Generator | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError


class WGANGP(GenerativeModel):
    """WGANGP(generator, critic, real, ...).

    ``real(batch) -> tensors``: the batch as the critic reads real points (a tuple of tensors of
    the shapes the generator's relaxed output has); ``critic(*tensors) -> (B,)``.
    """

    likelihood = "none"
    family = "implicit (GAN)"
    partial_updates = True
    """A step updates the critic or the generator, not both (DDP must find unused parameters)."""

    def __init__(self, generator: Generator, critic: nn.Module, real: Any, *, critic_steps: int = 5,
                 gradient_penalty: float = 10.0) -> None:
        super().__init__()
        if critic_steps < 1:
            raise ValueError(f"critic_steps must be at least 1, got {critic_steps}")
        self.generator, self.critic, self.real = generator, critic, real
        self.critic_steps, self.gradient_penalty = critic_steps, gradient_penalty
        self._step = 0
        self._last: dict[str, torch.Tensor] = {}

    def set_training_step(self, step: int) -> None:
        self._step = step

    @property
    def generator_turn(self) -> bool:
        """Whether this optimisation step updates the generator (else the critic)."""
        return self._step % (self.critic_steps + 1) == self.critic_steps

    def _fake(self, n: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        z = torch.randn(n, self.generator.latent_dim, device=device)
        out = self.generator(z)
        return out if isinstance(out, tuple) else (out,)

    def _penalty(self, real: tuple[torch.Tensor, ...], fake: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """E (|grad_xhat D(xhat)| - 1)^2 over random interpolates xhat, the gradient norm taken
        over every tensor of the point together."""
        n = real[0].shape[0]
        eps = torch.rand(n, device=real[0].device)
        mixed = []
        for r, f in zip(real, fake):
            e = eps.view(-1, *([1] * (r.dim() - 1)))
            mixed.append((e * r + (1 - e) * f.detach()).requires_grad_(True))
        score = self.critic(*mixed)
        grads = torch.autograd.grad(score.sum(), mixed, create_graph=True)
        norm = torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads) + 1e-12)
        return ((norm - 1) ** 2).mean()

    def loss(self, batch: Any) -> torch.Tensor:
        real = self.real(batch)
        n, device = real[0].shape[0], real[0].device
        if self.generator_turn:
            frozen = [p.requires_grad for p in self.critic.parameters()]
            for p in self.critic.parameters():
                p.requires_grad_(False)
            try:
                fake = self._fake(n, device)
                loss = -self.critic(*fake).mean()
            finally:
                for p, r in zip(self.critic.parameters(), frozen):
                    p.requires_grad_(r)
            self._last = {"generator_loss": loss.detach()}
            return loss
        with torch.no_grad():
            fake = self._fake(n, device)
        wasserstein = self.critic(*real).mean() - self.critic(*fake).mean()
        penalty = self._penalty(real, fake)
        self._last = {"wasserstein": wasserstein.detach(), "gradient_penalty": penalty.detach()}
        return -wasserstein + self.gradient_penalty * penalty

    def validation_loss(self, batch: Any) -> torch.Tensor:
        """Per held-out example: the mean critic score of as many generated points minus its score
        of the example (an estimate of the critic's Wasserstein distance, negated per example; it
        measures the critic as much as the generator, so it is logged, not a likelihood)."""
        real = self.real(batch)
        fake = self._fake(real[0].shape[0], real[0].device)
        return self.critic(*fake).mean() - self.critic(*real)

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    def log_prob(self, batch: Any) -> torch.Tensor:
        raise TypeError("a GAN has no p(x): it is an implicit model (it samples, it does not score)")

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float | None = None, **kwargs: Any) -> Any:
        """G(z) for z ~ N(0, I): the generator's raw output for n samples; a GAN has no temperature
        (``temperature`` is accepted, as every family's, and ignored)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = next(self.parameters()).device
        z = torch.randn(n, self.generator.latent_dim, generator=generator, device=device)
        return self.generator.generate(z, generator=generator)
