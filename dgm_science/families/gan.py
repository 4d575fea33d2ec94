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


class ImplicitModel(GenerativeModel):
    """What the GANs of this family share: no likelihood (they sample, they do not score), steps
    that update only part of the model, and the losses of the last step as the logged metrics."""

    likelihood = "none"
    family = "implicit (GAN)"
    partial_updates = True
    """A step updates the critic or the generator, not both (DDP must find unused parameters)."""
    _last: dict[str, torch.Tensor]

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    def log_prob(self, batch: Any) -> torch.Tensor:
        raise TypeError("a GAN has no p(x): it is an implicit model (it samples, it does not score)")


class WGANGP(ImplicitModel):
    """WGANGP(generator, critic, real, ...).

    ``real(batch) -> tensors``: the batch as the critic reads real points (a tuple of tensors of
    the shapes the generator's relaxed output has); ``critic(*tensors) -> (B,)``.
    """

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

    def update_round(self) -> list[int]:
        """A critic cycle: ``critic_steps`` critic steps, then the generator's."""
        return list(range(self.critic_steps + 1))

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


# ----------------------------------------------------------------------------- a GAN in an autoencoder's code space


class LatentCodec(nn.Module):
    """The autoencoder a ``LatentGAN`` works in: ``encode(batch) -> (B, D)`` deterministic codes,
    bounded in [-1, 1]; ``reconstruction_loss(batch) -> (B,)`` its training loss per example (any
    noise it puts on the codes included); ``decode(codes, generator) -> sample``, the raw output the
    domain decodes (deterministic where the codec decodes greedily)."""

    code_dim: int

    def encode(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def reconstruction_loss(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError


def mlp(sizes: list[int], activation: type[nn.Module] = nn.LeakyReLU) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class CodeGenerator(Generator):
    """z (B, latent_dim) -> MLP -> tanh -> a code (B, D) in the codec's [-1, 1]^D (what the critic
    reads); ``generate``: the codec's decoding of that code."""

    def __init__(self, codec: LatentCodec, latent_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp([latent_dim, *hidden, codec.code_dim])
        self._codec = [codec]  # a reference, not a submodule: the codec's weights belong to the LatentGAN

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))

    def generate(self, z: torch.Tensor, generator: torch.Generator | None = None) -> Any:
        return self._codec[0].decode(self(z), generator=generator)


class CodeCritic(nn.Module):
    """An MLP critic of codes: (B, D) -> (B,) scores."""

    def __init__(self, code_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = mlp([code_dim, *hidden, 1])

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes).squeeze(-1)


class LatentGAN(ImplicitModel):
    """LatentGAN (Prykhodko et al. 2019, "A de novo molecular generation method using latent vector
    based generative adversarial network"): an autoencoder, then a WGAN-GP on its codes, sampled as
    z -> generator -> code -> decoder.

    Both stages are one run of the project's trainer: optimisation steps ``[0, autoencoder_steps)``
    train the codec alone on its reconstruction loss (the GAN gets no gradient); from then on the
    codec is frozen (codes of the real batch are computed without gradient) and the steps are those
    of ``WGANGP`` over the codes (``critic_steps`` critic updates per generator update), counted from
    the stage's first step. Still implicit: no p(x), ``log_prob`` raises.

    ``code_bank`` > 0: the frozen encoder runs once per critic cycle (``critic_steps + 1`` steps),
    not at every step; its codes go into a first-in-first-out bank of that many codes, and every
    GAN step draws its real batch from the bank. The encoder is most of a GAN step's cost (the
    critic and generator are small MLPs), so the stage takes about that many times more steps in
    the same time. The bank is not saved: a resumed run refills it.
    """

    def __init__(self, codec: LatentCodec, *, latent_dim: int = 64, generator_hidden: list[int] | None = None,
                 critic_hidden: list[int] | None = None, autoencoder_steps: int = 1000, critic_steps: int = 5,
                 gradient_penalty: float = 10.0, code_bank: int = 0) -> None:
        super().__init__()
        if autoencoder_steps < 0 or code_bank < 0:
            raise ValueError(f"autoencoder_steps and code_bank must be >= 0, got {autoencoder_steps}, {code_bank}")
        self.codec = codec
        self.autoencoder_steps, self.code_bank = autoencoder_steps, code_bank
        self.register_buffer("_bank", torch.zeros(0, codec.code_dim), persistent=False)
        self._bank_next = self._bank_batch = 0
        generator = CodeGenerator(codec, latent_dim, list(generator_hidden or [256, 256]))
        critic = CodeCritic(codec.code_dim, list(critic_hidden or [256, 256]))
        self.gan = WGANGP(generator, critic, self._real_codes, critic_steps=critic_steps,
                          gradient_penalty=gradient_penalty)
        self._step = 0
        self._last: dict[str, torch.Tensor] = {}

    def _real_codes(self, batch: Any) -> tuple[torch.Tensor]:
        """The frozen codec's codes of a real batch (no gradient reaches the codec); with a code
        bank, a batch of as many codes drawn from the bank, which the batch's codes join at the first
        step of each critic cycle (or while the bank is empty)."""
        gan_step = self._step - self.autoencoder_steps
        if not self.code_bank:
            with torch.no_grad():
                return (self.codec.encode(batch),)
        if len(self._bank) == 0 or gan_step % (self.gan.critic_steps + 1) == 0:
            with torch.no_grad():
                codes = self.codec.encode(batch)
            self._push(codes)
            self._bank_batch = len(codes)
        index = torch.randint(0, len(self._bank), (self._bank_batch,), device=self._bank.device)
        return (self._bank[index],)

    def _push(self, codes: torch.Tensor) -> None:
        """Add codes (B, D) to the first-in-first-out bank of ``code_bank`` codes."""
        codes = codes.detach()[-self.code_bank:]
        if len(self._bank) < self.code_bank:
            self._bank = torch.cat([self._bank.to(codes), codes])[-self.code_bank:]
            self._bank_next = len(self._bank) % self.code_bank
            return
        index = (self._bank_next + torch.arange(len(codes), device=codes.device)) % self.code_bank
        self._bank[index] = codes
        self._bank_next = int(index[-1] + 1) % self.code_bank

    @property
    def autoencoder_stage(self) -> bool:
        """Whether this optimisation step trains the codec (else the GAN)."""
        return self._step < self.autoencoder_steps

    def set_training_step(self, step: int) -> None:
        self._step = step
        self.gan.set_training_step(max(0, step - self.autoencoder_steps))

    def update_round(self) -> list[int]:
        """An autoencoder step, then a critic cycle of the GAN stage."""
        return [0, *(self.autoencoder_steps + s for s in self.gan.update_round())]

    def loss(self, batch: Any) -> torch.Tensor:
        if self.autoencoder_stage:
            loss = self.codec.reconstruction_loss(batch).mean()
            self._last = {"reconstruction": loss.detach()}
            return loss
        loss = self.gan.loss(batch)
        self._last = self.gan.metrics_to_log()
        return loss

    def validation_loss(self, batch: Any) -> torch.Tensor:
        """Per held-out example: the codec's reconstruction loss during the autoencoder stage, the
        WGAN's critic estimate (``WGANGP.validation_loss``) after it (neither is a likelihood)."""
        if self.autoencoder_stage:
            return self.codec.reconstruction_loss(batch)
        return self.gan.validation_loss(batch)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float | None = None, **kwargs: Any) -> Any:
        """decode(G(z)) for z ~ N(0, I); ``temperature`` is accepted and ignored (a GAN has none)."""
        return self.gan.sample(n, generator=generator)
