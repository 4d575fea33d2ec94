"""Normalizing flows (coupling + permutation): Glow's building blocks (Kingma & Dhariwal 2018).

Every transform maps data to noise, ``forward(x, context) -> (z, logabsdet: (B,))``, and back,
``inverse(z, context) -> x``; ``Flow(base, transforms)`` composes them with a base density, so
``log p(x) = log p_base(z) + sum_k log|det dz_k/dz_{k-1}|`` (change of variables) exactly.
Transforms work on any event shape ``(B, *event)``; ``context`` (a conditioning tensor or None)
goes to every transform, for conditional flows such as MoFlow's node flow given the bonds.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from dgm_science.families.vae import StandardNormal


class Transform(nn.Module):
    """An invertible map with a tractable log-determinant."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - interface

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class ActNorm(Transform):
    """Per-channel affine z = (x + b) * exp(log_s) with data-dependent initialisation (Glow §3.1):
    the first training batch gets zero mean and unit variance per channel.

    ``channel_dim`` is the event dimension holding channels (1 for (B, C, ...), -1 for (B, ..., C)).
    """

    def __init__(self, channels: int, channel_dim: int = 1) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _shape(self, x: torch.Tensor) -> list[int]:
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return shape

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        """Mean and standard deviation per channel of the first batch; under torch.distributed of
        the ranks' batches together, so that every rank starts from the same weights (DDP does not
        synchronise weights after it wraps the model) and 2 ranks with B/2 match one process with B."""
        channels = x.movedim(self.channel_dim, -1).reshape(-1, x.shape[self.channel_dim]).double()
        moments = torch.stack([channels.new_full(channels.shape[1:], channels.shape[0]), channels.sum(0),
                               channels.square().sum(0)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(moments)
        count, total, squares = moments
        mean = total / count
        std = ((squares - count * mean.square()).clamp(min=0) / (count - 1).clamp(min=1)).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp(min=1e-3)))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        shape = self._shape(x)
        z = (x + self.bias.view(shape)) * self.log_scale.exp().view(shape)
        positions = x[0].numel() // x.shape[self.channel_dim]
        return z, (self.log_scale.sum() * positions).expand(x.shape[0])

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        shape = self._shape(z)
        return z * (-self.log_scale).exp().view(shape) - self.bias.view(shape)


class InvertibleLinear(Transform):
    """Glow's invertible 1x1 convolution over the channel dimension, LU-parametrised:
    W = P L (U + diag(sign(s) exp(log|s|))), log|det| = sum log|s| per position. A learned
    generalisation of a channel permutation (P is a fixed random permutation)."""

    def __init__(self, channels: int, channel_dim: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        weight = torch.linalg.qr(torch.randn(channels, channels, generator=generator))[0]
        permutation, lower, upper = torch.linalg.lu(weight)
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign_s", torch.sign(diagonal))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(diagonal.abs()))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.permutation @ lower @ upper

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = (x.movedim(self.channel_dim, -1) @ self.weight().T).movedim(-1, self.channel_dim)
        positions = x[0].numel() // x.shape[self.channel_dim]
        return z, (self.log_s.sum() * positions).expand(x.shape[0])

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # In float32 outside autocast: CUDA has no bf16 matrix inverse, and W^-1 in bf16 would not
        # undo W to better than ~1e-2 anyway.
        dtype = torch.promote_types(self.log_s.dtype, torch.float32)
        with torch.autocast(device_type=z.device.type, enabled=False):
            inverse = torch.linalg.inv(self.weight().to(dtype))
            return (z.to(dtype).movedim(self.channel_dim, -1) @ inverse.T).movedim(-1, self.channel_dim)


Conditioner = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


class AffineCoupling(Transform):
    """Masked affine coupling (RealNVP, Dinh et al. 2017; Glow's sigmoid scale): entries where
    ``mask`` is True pass through and condition the rest,
    z = m * x + (1 - m) * (x * s + t), s = sigmoid(h + 2), (h, t) = conditioner(m * x, context).

    ``mask``: bool, broadcastable to the event shape; ``conditioner(x_masked, context)`` returns
    (h, t) of the event shape. log|det| = sum over transformed entries of log s.
    """

    def __init__(self, mask: torch.Tensor, conditioner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.conditioner = conditioner

    def _scale_shift(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h, t = self.conditioner(x * self.mask, context)
        keep = 1.0 - self.mask
        return torch.sigmoid(h + 2.0), t * keep

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self._scale_shift(x, context)
        keep = 1.0 - self.mask
        z = self.mask * x + keep * (x * scale + shift)
        return z, (keep * torch.log(scale)).flatten(1).sum(-1)

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        scale, shift = self._scale_shift(z, context)
        keep = 1.0 - self.mask
        return self.mask * z + keep * ((z - shift) / scale)


class Flow(nn.Module):
    """Flow(base, transforms): exact ``log_prob(x: (B, *event), context) -> (B,)`` by change of
    variables, and ``sample`` by inverting the transforms on base noise (scaled by a temperature,
    as in Glow's reduced-temperature sampling)."""

    def __init__(self, base: StandardNormal, transforms: list[Transform]) -> None:
        super().__init__()
        self.base = base
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (z, sum of log|det|: (B,))."""
        logabsdet = x.new_zeros(x.shape[0])
        for transform in self.transforms:
            x, ld = transform(x, context)
            logabsdet = logabsdet + ld
        return x, logabsdet

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for transform in reversed(self.transforms):
            z = transform.inverse(z, context)
        return z

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        z, logabsdet = self(x, context)
        return self.base.log_prob(z) + logabsdet

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0,
        context: torch.Tensor | None = None, device: torch.device | None = None,
    ) -> torch.Tensor:
        z = self.base.sample(n, generator=generator, device=device) * temperature
        return self.inverse(z, context)
