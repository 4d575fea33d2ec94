"""Gaussian diffusion family (DDPM, Ho et al. 2020, in the discrete-time variational form of
Kingma et al. 2021), domain-independent: noise schedules, the ELBO, ancestral sampling, an EMA of
the denoiser, and inpainting (Diffuser, Janner et al. 2022: known entries are imposed at every
denoising step).

The noise level of step t = 0..T is gamma_t = log(sigma_t^2 / alpha_t^2) with alpha_t^2 + sigma_t^2
= 1 (variance preserving), z_t = alpha_t x + sigma_t eps. One chain may diffuse several variables
jointly (one gamma), each on its own ``Space``: a mask of the entries that exist and optionally a
linear subspace of them (e.g. zero mean over the nodes of a graph, EDM eq. 5), whose dimension is
what the likelihood counts. EDM (``domains/structures/edm.py``: positions and atom features, the
polynomial schedule, its l2 objective, a discretised likelihood for the features) and Diffuser
(``domains/trajectories/models.py``: one window tensor, the cosine schedule, inpainting) both run on
``GaussianDiffusion``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Literal, Sequence

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
    if kind == "polynomial":
        alphas2 = polynomial_schedule(steps, precision, power)
    else:
        alphas2 = cosine_schedule(steps, precision)
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


@dataclasses.dataclass(frozen=True)
class Space:
    """Where one variable of a batch lives: ``mask`` (broadcastable to the variable (B, ...), 1 at
    the entries that are random, 0 at padding and known entries), ``dof: (B,)`` the dimension of
    its subspace per example (what the likelihood counts), and ``project``, the orthogonal
    projection onto that subspace (None: the entries of the mask; e.g. zero mean over a node
    mask, EDM eq. 5). Calling the space projects: noise drawn as ``space(randn)`` lies in it."""

    mask: torch.Tensor
    dof: torch.Tensor
    project: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def masked(cls, mask: torch.Tensor, shape: Sequence[int]) -> Space:
        """The entries of ``mask`` of a variable of ``shape`` (B, ...), no further constraint."""
        return cls(mask, mask.expand(*shape).sum(tuple(range(1, len(shape)))))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.mask if self.project is None else self.project(v)

    def entries(self, v: torch.Tensor) -> torch.Tensor:
        """The number of masked entries of ``v`` (B, ...) per example: (B,)."""
        return self.mask.expand(v.shape).sum(tuple(range(1, v.dim())))


@dataclasses.dataclass(frozen=True)
class Layout:
    """A batch of B examples as the chain sees it: per variable its ``shape`` (B, ...) and
    ``Space``; ``context``, extra denoiser inputs after t (e.g. a node mask); ``known``, per
    variable None or the inpainted entries (``known_entries``); ``log_prob_offset`` (B,), the
    log-density terms outside the chain that ``log_prob`` adds (a size prior, an encoding's
    log-Jacobian)."""

    shapes: tuple[tuple[int, ...], ...]
    spaces: tuple[Space, ...]
    context: tuple[Any, ...] = ()
    known: tuple[tuple[torch.Tensor, torch.Tensor] | None, ...] | None = None
    log_prob_offset: torch.Tensor | None = None

    def known_of(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self.known is None else self.known[i]


Likelihood = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Space], torch.Tensor]
"""A variable's own decoder term at t = 0: (x (B, ...), z_0 (B, ...), gamma_0 (), space) -> log p(x | z_0) (B,)."""


class GaussianDiffusion(GenerativeModel):
    """Diffusion over one or several real tensors, e.g. (H, D) trajectory windows, or positions and
    features of graphs.

    ``denoiser(*z_t, t, *context)`` with t in [0, 1] predicts x (``prediction="sample"``, Diffuser's
    choice for Maze2D) or the noise (``"epsilon"``): one tensor per variable (a tensor for one
    variable, else a tuple). The domain's batch becomes the variables and their ``Layout`` in
    ``encode``; ``sample_layout`` draws the layout of n samples and ``decode`` turns the sampled
    variables into the domain's output. The defaults take ``{"x": (B, *shape), "condition": (B,
    *shape) with NaN at free entries}`` (condition optional): the known entries are imposed on z_t
    during training and sampling, so the model is p(free entries | known ones) and samples keep the
    known entries exactly.

    ``objective``: ``"simple"``, the mean squared error of the prediction over the batch's free
    entries, t ~ U{1..T} (Ho et al. 2020's L_simple); ``"l2"``, EDM's: the bound with unit weights,
    per example, t ~ U{0..T} (Hoogeboom et al. 2022). ``log_prob``: the ELBO (nats) over each
    variable's subspace. ``likelihoods``: per variable None (the Gaussian decoder p(x | z_0)) or its
    own term (``Likelihood``, e.g. a discretised one); such a variable is sampled as z_0, for the
    caller to round. ``clip``: sampling clamps the predicted x to [-clip, clip] (data normalised to
    [-1, 1]); ``sampling_steps`` < T strides; ``decoder_draw``: the last step draws x ~ p(x | z_0)
    (EDM) instead of taking its mean (Diffuser); ``ema_decay``: evaluation and sampling use an
    exponential moving average of the weights.
    """

    likelihood = "bound"
    family = "diffusion"

    def __init__(self, denoiser: nn.Module, shape: tuple[int, ...] | None = None, *, steps: int = 64,
                 schedule: str = "cosine", precision: float = 1e-5, power: float = 2.0,
                 prediction: Literal["sample", "epsilon"] = "sample", objective: Literal["simple", "l2"] = "simple",
                 sampling_steps: int | None = None, clip: float | None = 1.0, ema_decay: float | None = None,
                 likelihoods: Sequence[Likelihood | None] = (), decoder_draw: bool = False) -> None:
        super().__init__()
        if prediction not in ("sample", "epsilon"):
            raise ValueError(f"prediction must be 'sample' or 'epsilon', got {prediction!r}")
        if objective not in ("simple", "l2") or (objective == "l2" and prediction != "epsilon"):
            raise ValueError(f"objective must be 'simple' or 'l2' (with epsilon prediction), got {objective!r}")
        self.denoiser = denoiser
        self.shape = None if shape is None else tuple(shape)
        self.T = steps
        self.prediction = prediction
        self.objective = objective
        self.sampling_steps = sampling_steps
        self.clip = clip
        self.likelihoods = tuple(likelihoods)
        self.decoder_draw = decoder_draw
        self.register_buffer("gamma", gamma_table(steps, precision, power, kind=schedule))
        self.ema_decay = ema_decay
        self.ema_denoiser = None
        if ema_decay:  # None or 0: no moving average
            self.ema_denoiser = copy.deepcopy(denoiser).requires_grad_(False)

    # --- the domain's side: batch -> variables and layout, layout of n samples, samples -> output
    def encode(self, batch: Any) -> tuple[tuple[torch.Tensor, ...], Layout]:
        """``{"x": (B, *shape), "condition": optional}`` -> ((x,), its layout: the free entries)."""
        x = batch["x"].float()
        known = known_entries(batch.get("condition"), x.shape)
        return (x,), self._inpainting_layout(x.shape, known)

    def sample_layout(self, n: int, generator: torch.Generator | None, condition: Any) -> Layout:
        """The layout of n samples of ``shape``, ``condition`` (n, *shape; NaN = free) imposed."""
        if self.shape is None:
            raise NotImplementedError("a GaussianDiffusion without a fixed shape needs its own sample_layout")
        shape = torch.Size((n, *self.shape))
        known = known_entries(condition.to(self.gamma.device) if condition is not None else None, shape)
        return self._inpainting_layout(shape, known)

    def decode(self, values: tuple[torch.Tensor, ...], layout: Layout) -> Any:
        """The sampled variables -> the model's output: the one tensor (n, *shape)."""
        return values[0]

    def _inpainting_layout(self, shape: torch.Size, known: tuple[torch.Tensor, torch.Tensor] | None) -> Layout:
        free = torch.ones(shape, device=self.gamma.device) if known is None else (~known[0]).float()
        return Layout((tuple(shape),), (Space.masked(free, shape),), known=None if known is None else (known,))

    # --- the chain
    def _network(self) -> nn.Module:
        """The training network in train mode; its exponential moving average (when kept) in eval mode."""
        return self.ema_denoiser if self.ema_denoiser is not None and not self.training else self.denoiser

    @torch.no_grad()
    def set_training_step(self, step: int) -> None:
        """EMA update with the weights of the previous optimisation step (Diffuser: decay 0.995, EDM 0.9999),
        warmed up as min(decay, (1 + step) / (10 + step))."""
        if self.ema_denoiser is None:
            return
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        for ema, param in zip(self.ema_denoiser.parameters(), self.denoiser.parameters()):
            ema.lerp_(param.detach(), 1 - decay)

    def _ab(self, t_int: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """t_int (B,) long -> gamma_t, alpha_t, sigma_t, each (B, 1, ...) for a variable of ``dim`` axes."""
        gamma = self.gamma[t_int].view((-1,) + (1,) * (dim - 1))
        return gamma, torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()

    def _has_likelihood(self, i: int) -> bool:
        return i < len(self.likelihoods) and self.likelihoods[i] is not None

    def noise(self, layout: Layout, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Standard Gaussian noise on each variable's space, drawn in variable order: ``space(randn)``."""
        return tuple(space(torch.randn(shape, generator=generator, device=self.gamma.device, dtype=torch.float32))
                     for shape, space in zip(layout.shapes, layout.spaces))

    def q_sample(self, values: Sequence[torch.Tensor], t_int: torch.Tensor,
                 noise: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """z_t = alpha_t x + sigma_t eps per variable (Kingma et al. 2021, eq. 1; EDM eq. 4)."""
        out = []
        for x, eps in zip(values, noise):
            _, alpha, sigma = self._ab(t_int, x.dim())
            out.append(alpha * x + sigma * eps)
        return tuple(out)

    def _predict(self, z: Sequence[torch.Tensor], t_int: torch.Tensor, layout: Layout,
                 network: nn.Module) -> tuple[torch.Tensor, ...]:
        """The network's raw predictions at z_t (known entries imposed on its input), fp32."""
        z = tuple(impose(v, layout.known_of(i)) for i, v in enumerate(z))
        out = network(*z, t_int.float() / self.T, *layout.context)
        return tuple(o.float() for o in ((out,) if isinstance(out, torch.Tensor) else out))

    def _predict_x(self, z: torch.Tensor, out: torch.Tensor, t_int: torch.Tensor,
                   known: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """x_hat from the network's output at z_t, known entries imposed."""
        if self.prediction == "epsilon":
            _, alpha, sigma = self._ab(t_int, z.dim())
            out = (z - sigma * out) / alpha
        return impose(out, known)

    def _squared_errors(self, values: Sequence[torch.Tensor], noise: Sequence[torch.Tensor],
                        out: Sequence[torch.Tensor], z: Sequence[torch.Tensor], t_int: torch.Tensor,
                        layout: Layout) -> list[torch.Tensor]:
        """||x - x_hat||^2 (sample prediction) or ||eps - eps_hat||^2 (epsilon) per variable over
        its space: [(B,)]."""
        errors = []
        for i, (x, eps, o, space) in enumerate(zip(values, noise, out, layout.spaces)):
            dims = tuple(range(1, x.dim()))
            if self.prediction == "sample":
                x_hat = self._predict_x(z[i], o, t_int, layout.known_of(i))
                errors.append(((x - x_hat).square() * space.mask).sum(dims))
            else:
                errors.append(((eps - o).square() * space.mask).sum(dims))
        return errors

    def kl_prior(self, values: Sequence[torch.Tensor], layout: Layout) -> torch.Tensor:
        """KL(q(z_T | x) || N(0, I)) over each variable's subspace, summed: (B,). Per masked entry
        -log sigma_T + (sigma_T^2 + alpha_T^2 x^2 - 1) / 2; on a projected space the same with the
        entry count replaced by its dimension ``dof``."""
        total = 0
        for x, space in zip(values, layout.spaces):
            dims = tuple(range(1, x.dim()))
            t_max = torch.full((x.shape[0],), self.T, device=x.device, dtype=torch.long)
            _, alpha, sigma = self._ab(t_max, x.dim())
            if space.project is None:
                kl = ((-torch.log(sigma) + 0.5 * (sigma ** 2 + (alpha * x) ** 2) - 0.5) * space.mask).sum(dims)
            else:
                sigma_b, dof = sigma.view(-1), space.dof
                norm2 = ((alpha * x).square() * space.mask).sum(dims)
                kl = dof * -torch.log(sigma_b) + 0.5 * (dof * sigma_b ** 2 + norm2) - 0.5 * dof
            total = total + kl
        return total

    # --- GenerativeModel
    def loss(self, batch: Any) -> torch.Tensor:
        """The training objective (scalar) of the training network; noise and errors in fp32, the
        network under the caller's autocast. ``"simple"``: mean squared error of x (or eps) over
        the batch's free entries, t ~ U{1..T}. ``"l2"`` (EDM): per example, t ~ U{0..T}, 0.5
        ||eps - eps_hat||^2 / (its number of entries) for t > 0, at t = 0 the L_0 term (the
        Gaussian variables' errors scaled alike, minus the other variables' log p(x | z_0)), plus
        the prior KL; the batch mean."""
        with torch.autocast(device_type=self.gamma.device.type, enabled=False):
            values, layout = self.encode(batch)
            t_int = self.training_times(values[0].shape[0], values[0].device)
            eps = self.noise(layout)
            z = tuple(impose(v, layout.known_of(i)) for i, v in enumerate(self.q_sample(values, t_int, eps)))
        out = self._predict(z, t_int, layout, self.denoiser)
        with torch.autocast(device_type=self.gamma.device.type, enabled=False):
            if self.objective == "simple":
                targets = values if self.prediction == "sample" else eps
                total = sum(((o - y).square() * s.mask).sum() for o, y, s in zip(out, targets, layout.spaces))
                count = sum(s.entries(v).sum() for v, s in zip(values, layout.spaces))
                error = total / count.clamp(min=1)
                self._last = {"mse": error.detach()}
                return error
            denom = sum(s.entries(v) for v, s in zip(values, layout.spaces))
            errors = [e / denom for e in self._squared_errors(values, eps, out, z, t_int, layout)]
            error = sum(errors)
            l0 = 0
            for i, (x, zv, space) in enumerate(zip(values, z, layout.spaces)):
                if self._has_likelihood(i):
                    l0 = l0 - self.likelihoods[i](x, zv, self.gamma[0], space)
                else:
                    l0 = l0 + 0.5 * errors[i]
            per_example = torch.where(t_int == 0, l0, 0.5 * error) + self.kl_prior(values, layout)
            self._last = {"error": error.mean().detach()}
            return per_example.mean()

    def training_times(self, b: int, device: torch.device) -> torch.Tensor:
        """The training step's t per example (B,) long: uniform over {0..T} (``"l2"``) or {1..T} (``"simple"``)."""
        return torch.randint(0 if self.objective == "l2" else 1, self.T + 1, (b,), device=device)

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self, "_last", {}))

    def log_prob(self, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO of log p(free entries | known entries) in nats, (B,), one t ~ U{1..T} per example,
        in fp32 (Kingma et al. 2021, eq. 11-13; EDM eq. 9 with t0_always): -(KL(q(z_T|x) || N(0, I))
        + T/2 (SNR(t-1) - SNR(t)) ||x - x_hat||^2 - log p(x | z_0)) + the layout's offset, summed over
        the variables. The error term is taken in the prediction's space, (SNR(t-1) - SNR(t)) ||x -
        x_hat||^2 = (SNR(t-1) / SNR(t) - 1) ||eps - eps_hat||^2; p(x | z_0) is the variable's own
        likelihood, or N(x_hat(z_0), sigma_0^2 / alpha_0^2) on its ``dof``-dimensional space."""
        with torch.autocast(device_type=self.gamma.device.type, enabled=False):
            values, layout = self.encode(batch)
            b, device = values[0].shape[0], values[0].device
            network = self._network()
            t_int = torch.randint(1, self.T + 1, (b,), device=device, generator=generator)
            eps = self.noise(layout, generator)
            z = self.q_sample(values, t_int, eps)
            error = sum(self._squared_errors(values, eps, self._predict(z, t_int, layout, network), z, t_int, layout))
            if self.prediction == "sample":
                weight = torch.exp(-self.gamma[t_int - 1]) - torch.exp(-self.gamma[t_int])
            else:
                weight = torch.expm1(self.gamma[t_int] - self.gamma[t_int - 1])
            loss_t = self.T * 0.5 * weight * error
            zeros = torch.zeros_like(t_int)
            eps0 = self.noise(layout, generator)
            z0 = self.q_sample(values, zeros, eps0)
            errors0 = self._squared_errors(values, eps0, self._predict(z0, zeros, layout, network), z0, zeros, layout)
            gamma_0 = self.gamma[0]
            loss_0 = 0
            for i, (x, space) in enumerate(zip(values, layout.spaces)):
                if self._has_likelihood(i):
                    loss_0 = loss_0 - self.likelihoods[i](x, z0[i], gamma_0, space)
                    continue
                scale = 0.5 * torch.exp(-gamma_0) if self.prediction == "sample" else 0.5
                loss_0 = loss_0 + (scale * errors0[i] + space.dof * (0.5 * gamma_0 + 0.5 * math.log(2 * math.pi)))
            log_p = -(self.kl_prior(values, layout) + loss_t + loss_0)
            return log_p if layout.log_prob_offset is None else log_p + layout.log_prob_offset

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: Any = None,
               temperature: float = 1.0) -> Any:
        """Ancestral sampling (DDPM; EDM Algorithm 2) from z_T ~ N(0, I) on each variable's space
        (``temperature`` scales every draw): z_s ~ p(z_s | z_t) on the grid of ``sampling_steps``,
        then x = x_hat(z_0) (or a draw from p(x | z_0), ``decoder_draw``), the known entries of the
        layout imposed at every step; ``decode`` of the variables."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        layout = self.sample_layout(n, generator, condition)
        device = self.gamma.device
        network = self._network()
        z = tuple(temperature * e for e in self.noise(layout, generator))
        steps = self.T if self.sampling_steps is None else max(1, min(self.sampling_steps, self.T))
        grid = np.unique(np.round(np.linspace(0, self.T, steps + 1)).astype(np.int64))[::-1].tolist()
        for t, s in zip(grid[:-1], grid[1:]):
            t_int = torch.full((n,), t, device=device, dtype=torch.long)
            eps_hat = self._sampling_epsilon(z, t_int, layout, network)
            alpha_ts, sigma2_ts, std = ancestral_coefficients(self.gamma[s], self.gamma[t])
            sigma_t = torch.sigmoid(self.gamma[t]).sqrt()
            noise = self.noise(layout, generator)
            z = tuple(space(v / alpha_ts - sigma2_ts / (alpha_ts * sigma_t) * e + temperature * std * w)
                      for v, e, w, space in zip(z, eps_hat, noise, layout.spaces))
        zeros = torch.zeros((n,), device=device, dtype=torch.long)
        out = self._predict(z, zeros, layout, network)
        noise = self.noise(layout, generator) if self.decoder_draw else None
        std_0 = temperature * torch.exp(0.5 * self.gamma[0])
        values = []
        for i, (v, o, space) in enumerate(zip(z, out, layout.spaces)):
            if self._has_likelihood(i):
                values.append(v)
                continue
            known = layout.known_of(i)
            x = self._predict_x(v, o, zeros, known)
            if self.clip is not None:
                x = x.clamp(-self.clip, self.clip)
            if noise is not None:
                x = x + std_0 * noise[i]
            values.append(impose(space(x), known))
        return self.decode(tuple(values), layout)

    def _sampling_epsilon(self, z: Sequence[torch.Tensor], t_int: torch.Tensor, layout: Layout,
                          network: nn.Module) -> list[torch.Tensor]:
        """eps_hat at z_t per variable; through x_hat when x is predicted, clipped or has known entries."""
        out = self._predict(z, t_int, layout, network)
        eps = []
        for i, (v, o) in enumerate(zip(z, out)):
            known = layout.known_of(i)
            if self.prediction == "epsilon" and self.clip is None and known is None:
                eps.append(o)
                continue
            x = self._predict_x(v, o, t_int, known)
            if self.clip is not None:
                x = x.clamp(-self.clip, self.clip)
            _, alpha_t, sigma_t = self._ab(t_int, v.dim())
            eps.append((v - alpha_t * x) / sigma_t)
        return eps
