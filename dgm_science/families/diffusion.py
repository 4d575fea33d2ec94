"""Gaussian diffusion family (DDPM, Ho et al. 2020, in the discrete-time variational form of
Kingma et al. 2021), domain-independent: noise schedules, the ELBO, ancestral sampling, and
inpainting (Diffuser, Janner et al. 2022: known entries are imposed at every denoising step).

The noise level of step t = 0..T is gamma_t = log(sigma_t^2 / alpha_t^2) with alpha_t^2 + sigma_t^2
= 1 (variance preserving), z_t = alpha_t x + sigma_t eps. EDM (``domains/structures/edm.py``) uses
the polynomial schedule from here; Diffuser uses the cosine schedule.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.base import GenerativeModel


def _clip_ratios(alphas2: np.ndarray, precision: float) -> np.ndarray:
    ratios = np.clip(alphas2 / np.concatenate([[1.0], alphas2[:-1]]), 0.001, 1.0)
    return (1 - 2 * precision) * np.cumprod(ratios) + precision


def polynomial_schedule(steps: int, precision: float = 1e-5, power: float = 2.0) -> np.ndarray:
    """EDM's ``polynomial_schedule``: alpha_t^2 for t = 0..T (float64, (T + 1,)).

    alpha^2 = (1 - (t / (T + 1))^power)^2 on T + 1 evenly spaced points, each step's ratio
    alpha_t^2 / alpha_{t-1}^2 clipped to >= 0.001, then rescaled to (1 - 2 s) alpha^2 + s.
    """
    points = steps + 1
    x = np.linspace(0, points, points)
    return _clip_ratios((1 - np.power(x / points, power)) ** 2, precision)


def cosine_schedule(steps: int, precision: float = 1e-5, offset: float = 0.008) -> np.ndarray:
    """The cosine schedule (Nichol & Dhariwal 2021, Diffuser's default) of a T-step DDPM:
    alpha_t^2 = cos^2(pi/2 (u + s) / (1 + s)) / cos^2(pi/2 s / (1 + s)) at u = (t + 1) / (T + 1),
    t = 0..T, so that level 0 is the chain's first noisy step (the ELBO's decoder p(x | z_0) has
    DDPM's variance instead of a tiny one, which would make the first diffusion term dominate the
    bound); the same step clipping and rescaling as ``polynomial_schedule`` (float64, (T + 1,))."""
    x = np.linspace(0, 1, steps + 2)[1:]  # level 0 is DDPM's first noisy step, not the data
    f = np.cos((x + offset) / (1 + offset) * math.pi / 2) ** 2
    start = math.cos(offset / (1 + offset) * math.pi / 2) ** 2
    return _clip_ratios(f / start, precision)


SCHEDULES = {"polynomial": polynomial_schedule, "cosine": cosine_schedule}


def gamma_table(steps: int, precision: float, power: float = 2.0, kind: str = "polynomial") -> torch.Tensor:
    """gamma_t = -log(alpha_t^2 / sigma_t^2) for t = 0..T: (T + 1,) float32 (EDM's
    ``PredefinedNoiseSchedule``)."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {kind!r}; known: {', '.join(SCHEDULES)}")
    alphas2 = polynomial_schedule(steps, precision, power) if kind == "polynomial" else cosine_schedule(steps, precision)
    return torch.from_numpy(np.log(1 - alphas2) - np.log(alphas2)).float()


def ancestral_coefficients(gamma_s: torch.Tensor, gamma_t: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a step t -> s < t: alpha_{t|s}, sigma^2_{t|s} and the std of p(z_s | z_t), so that
    z_s = z_t / alpha_{t|s} - sigma^2_{t|s} / (alpha_{t|s} sigma_t) eps_hat + std * noise."""
    sigma2_t_given_s = -torch.expm1(F.softplus(gamma_s) - F.softplus(gamma_t))
    alpha_t_given_s = torch.exp(0.5 * (F.logsigmoid(-gamma_t) - F.logsigmoid(-gamma_s)))
    sigma_s, sigma_t = torch.sigmoid(gamma_s).sqrt(), torch.sigmoid(gamma_t).sqrt()
    return alpha_t_given_s, sigma2_t_given_s, sigma2_t_given_s.sqrt() * sigma_s / sigma_t


def known_entries(condition: torch.Tensor | None, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor] | None:
    """An inpainting condition (B, *shape) with NaN where the entry is free -> (mask of known
    entries, their values with zeros elsewhere); None for no condition."""
    if condition is None:
        return None
    if condition.shape != shape:
        raise ValueError(f"condition has shape {tuple(condition.shape)}, expected {tuple(shape)} (NaN = free)")
    known = torch.isfinite(condition)
    return known, torch.where(known, condition, torch.zeros_like(condition))


def impose(x: torch.Tensor, known: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """x with its known entries replaced by their values (exactly)."""
    return x if known is None else torch.where(known[0], known[1].to(x.dtype), x)


class GaussianDiffusion(GenerativeModel):
    """Diffusion over real tensors of a fixed ``shape`` (e.g. (H, D) trajectory windows).

    ``denoiser(z_t, t)`` with t in [0, 1] predicts x (``prediction="sample"``, Diffuser's choice
    for Maze2D) or the noise (``"epsilon"``). A batch is ``{"x": (B, *shape), "condition": (B,
    *shape) with NaN at free entries}`` (condition optional): the known entries are imposed on z_t
    during training and sampling, so the model is p(free entries | known ones) and samples keep the
    known entries exactly. ``loss``: the mean squared error of the prediction over free entries;
    ``log_prob``: the ELBO of the free entries (nats); ``clip``: sampling clamps the predicted x to
    [-clip, clip] (data normalised to [-1, 1]); ``sampling_steps`` < T strides; ``ema_decay``:
    evaluation and sampling use an exponential moving average of the weights.
    """

    likelihood = "bound"

    def __init__(self, denoiser: nn.Module, shape: tuple[int, ...], *, steps: int = 64,
                 schedule: str = "cosine", precision: float = 1e-5,
                 prediction: Literal["sample", "epsilon"] = "sample", sampling_steps: int | None = None,
                 clip: float | None = 1.0, ema_decay: float | None = None) -> None:
        super().__init__()
        if prediction not in ("sample", "epsilon"):
            raise ValueError(f"prediction must be 'sample' or 'epsilon', got {prediction!r}")
        self.denoiser = denoiser
        self.shape = tuple(shape)
        self.T = steps
        self.prediction = prediction
        self.sampling_steps = sampling_steps
        self.clip = clip
        self.register_buffer("gamma", gamma_table(steps, precision, kind=schedule))
        self.ema_decay = ema_decay
        self.ema_denoiser = None
        if ema_decay:  # None or 0: no moving average
            self.ema_denoiser = copy.deepcopy(denoiser).requires_grad_(False)

    def _network(self) -> nn.Module:
        """The training network in train mode; its exponential moving average (when kept) in eval mode."""
        return self.ema_denoiser if self.ema_denoiser is not None and not self.training else self.denoiser

    @torch.no_grad()
    def set_training_step(self, step: int) -> None:
        """EMA update with the weights of the previous optimisation step (Diffuser: decay 0.995)."""
        if self.ema_denoiser is None:
            return
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        for ema, param in zip(self.ema_denoiser.parameters(), self.denoiser.parameters()):
            ema.lerp_(param.detach(), 1 - decay)

    def _ab(self, t_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        view = (-1,) + (1,) * len(self.shape)
        gamma = self.gamma[t_int].view(view)
        return gamma, torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()

    def _predict_x(self, z: torch.Tensor, t_int: torch.Tensor, known) -> torch.Tensor:
        """The network's x prediction at z_t (known entries imposed on input and output), fp32."""
        out = self._network()(impose(z, known), t_int.float() / self.T).float()
        if self.prediction == "epsilon":
            _, alpha, sigma = self._ab(t_int)
            out = (z - sigma * out) / alpha
        return impose(out, known)

    def _batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple | None, torch.Tensor]:
        x = batch["x"].float()
        known = known_entries(batch.get("condition"), x.shape)
        free = torch.ones_like(x) if known is None else (~known[0]).float()
        return x, known, free

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error of x (or eps) over the free entries, t ~ U{1..T}."""
        x, known, free = self._batch(batch)
        t_int = torch.randint(1, self.T + 1, (x.shape[0],), device=x.device)
        eps = torch.randn_like(x)
        _, alpha, sigma = self._ab(t_int)
        z = impose(alpha * x + sigma * eps, known)
        out = self.denoiser(z, t_int.float() / self.T).float()
        target = x if self.prediction == "sample" else eps
        error = ((out - target).square() * free).sum() / free.sum().clamp(min=1)
        self._last = {"mse": error.detach()}
        return error

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self, "_last", {}))

    def log_prob(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO of log p(free entries | known entries) in nats, (B,), one t ~ U{1..T} per example
        (Kingma et al. 2021, eq. 11-13): -(KL(q(z_T|x) || N(0, I)) + T/2 (SNR(t-1) - SNR(t))
        ||x - x_hat||^2 + -log p(x | z_0)), p(x | z_0) = N(x_hat(z_0), sigma_0^2 / alpha_0^2)."""
        x, known, free = self._batch(batch)
        b = x.shape[0]
        dims = tuple(range(1, x.dim()))
        n_free = free.sum(dims)
        t_int = torch.randint(1, self.T + 1, (b,), device=x.device, generator=generator)
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        _, alpha, sigma = self._ab(t_int)
        x_hat = self._predict_x(alpha * x + sigma * eps, t_int, known)
        snr_gap = torch.exp(-self.gamma[t_int - 1]) - torch.exp(-self.gamma[t_int])
        loss_t = self.T * 0.5 * snr_gap * ((x - x_hat).square() * free).sum(dims)
        zeros = torch.zeros_like(t_int)
        eps0 = torch.randn(x.shape, generator=generator, device=x.device)
        _, alpha0, sigma0 = self._ab(zeros)
        x_hat0 = self._predict_x(alpha0 * x + sigma0 * eps0, zeros, known)
        gamma0 = self.gamma[0]
        loss_0 = 0.5 * torch.exp(-gamma0) * ((x - x_hat0).square() * free).sum(dims) \
            + n_free * (0.5 * gamma0 + 0.5 * math.log(2 * math.pi))
        _, alpha_T, sigma_T = self._ab(torch.full_like(t_int, self.T))
        kl_prior = ((-torch.log(sigma_T) + 0.5 * (sigma_T ** 2 + (alpha_T * x) ** 2) - 0.5) * free).sum(dims)
        return -(kl_prior + loss_t + loss_0)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Ancestral sampling from z_T ~ N(0, I) (``temperature`` scales every draw), imposing the
        known entries of ``condition`` (n, *shape; NaN = free) at every step: (n, *shape)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = self.gamma.device
        shape = (n, *self.shape)
        known = known_entries(condition.to(device) if condition is not None else None, torch.Size(shape))
        z = temperature * torch.randn(shape, generator=generator, device=device)
        steps = self.T if self.sampling_steps is None else max(1, min(self.sampling_steps, self.T))
        grid = np.unique(np.round(np.linspace(0, self.T, steps + 1)).astype(np.int64))[::-1].tolist()
        for t, s in zip(grid[:-1], grid[1:]):
            t_int = torch.full((n,), t, device=device, dtype=torch.long)
            x_hat = self._predict_x(z, t_int, known)
            if self.clip is not None:
                x_hat = x_hat.clamp(-self.clip, self.clip)
            alpha_ts, sigma2_ts, std = ancestral_coefficients(self.gamma[s], self.gamma[t])
            _, alpha_t, sigma_t = self._ab(t_int)
            eps_hat = (z - alpha_t * x_hat) / sigma_t
            noise = torch.randn(shape, generator=generator, device=device)
            z = z / alpha_ts - sigma2_ts / (alpha_ts * sigma_t) * eps_hat + temperature * std * noise
        zeros = torch.zeros((n,), device=device, dtype=torch.long)
        x = self._predict_x(z, zeros, known)
        if self.clip is not None:
            x = x.clamp(-self.clip, self.clip)
        return impose(x, known)
