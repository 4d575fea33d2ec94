"""Energy-based models p(x) = exp(-E(x)) / Z over continuous data, trained by contrastive divergence
with persistent Langevin (SGLD) chains (Tieleman 2008; Du & Mordatch 2019; Nijkamp et al. 2020).

The gradient of the negative log-likelihood is E_data[grad E] - E_model[grad E]; the model
expectation is estimated on ``buffer`` chains that persist across training steps: each step draws
a batch of chains (a fraction ``reinit`` restarted from the noise distribution), runs
``sgld_steps`` Langevin steps x <- x - step_size * grad E(x) + noise * N(0, I) on them and writes
them back. The loss is E(x+) - E(x-) + alpha (E(x+)^2 + E(x-)^2) (the energy-magnitude penalty
of Du & Mordatch keeps E bounded). Z is never computed: ``log_prob`` is -E(x), an unnormalized
log-density (``likelihood = "unnormalized"``): differences between inputs mean something, absolute
values do not.

Sampling runs fresh chains from the noise distribution for ``sample_steps`` Langevin steps;
``chains`` returns the whole trajectory for mixing diagnostics (``mixing_diagnostics``: split
R-hat and effective sample size, ArviZ's definitions, of any scalar statistic of the chains).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dgm_science.base import GenerativeModel


class EnergyBasedModel(GenerativeModel):
    """EnergyBasedModel(energy, shift, scale, key, ...).

    Batches hold the data under ``key``: (B, dim). The chains move in the standardised space
    z = (x - shift) / scale (``shift``, ``scale``: (dim,)), where ``energy``: (B, dim) -> (B,) is
    defined; ``project``: applied to z after every Langevin step (e.g. wrapping angles to
    (-pi, pi]); ``noise_init(n, generator, device)``: where a chain starts in z (default N(0, I)).
    ``sample`` returns x (data space).
    """

    likelihood = "unnormalized"
    family = "energy-based"

    def __init__(self, energy: nn.Module, shift: torch.Tensor, scale: torch.Tensor, key: str, *,
                 buffer_size: int = 10000, reinit: float = 0.05, sgld_steps: int = 20, step_size: float = 0.01,
                 noise: float = 0.005, sample_steps: int = 500,
                 alpha: float = 0.1, project: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 noise_init: Callable[..., torch.Tensor] | None = None) -> None:
        super().__init__()
        if not 0 <= reinit <= 1:
            raise ValueError(f"reinit is a fraction of the chains, got {reinit}")
        self.energy, self.key = energy, key
        self.dim = int(shift.shape[0])
        self.register_buffer("shift", shift.float().clone())
        self.register_buffer("scale", scale.float().clone())
        self.reinit, self.sgld_steps, self.sample_steps = reinit, sgld_steps, sample_steps
        self.step_size, self.noise, self.alpha = step_size, noise, alpha
        self.project = project
        self.noise_init = noise_init
        # The persistent chains, started from the noise distribution (seeded: the same model
        # config gives the same initial buffer; training moves it, the checkpoint keeps it).
        start = self._init(buffer_size, torch.Generator().manual_seed(0), torch.device("cpu"))
        self.register_buffer("buffer", start)
        self._last: dict[str, torch.Tensor] = {}

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Data (B, dim) -> the chains' space z = (x - shift) / scale."""
        return (x.float() - self.shift) / self.scale

    def _init(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        if self.noise_init is not None:
            return self.noise_init(n, generator, device)
        return torch.randn(n, self.dim, generator=generator, device=device)

    def langevin(self, x: torch.Tensor, steps: int, *, generator: torch.Generator | None = None,
                 record: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``steps`` SGLD steps from x (B, dim); the model's parameters get no gradient. With
        ``record`` > 0 also the states every ``record`` steps: (steps // record, B, dim)."""
        requires = [p.requires_grad for p in self.parameters()]
        for p in self.parameters():
            p.requires_grad_(False)
        trace = []
        try:
            x = x.detach()
            for step in range(steps):
                x.requires_grad_(True)
                with torch.enable_grad():
                    grad, = torch.autograd.grad(self.energy(x).sum(), x)
                noise = torch.randn(x.shape, generator=generator, device=x.device)
                x = (x - self.step_size * grad + self.noise * noise).detach()
                if self.project is not None:
                    x = self.project(x)
                if record and (step + 1) % record == 0:
                    trace.append(x.clone())
        finally:
            for p, r in zip(self.parameters(), requires):
                p.requires_grad_(r)
        return x, (torch.stack(trace) if trace else None)

    def _negatives(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n persistent chains drawn from the buffer (a ``reinit`` fraction restarted from noise),
        advanced by ``sgld_steps``, and their buffer rows."""
        device = self.buffer.device
        rows = torch.randint(0, len(self.buffer), (n,), device=device)
        start = self.buffer[rows].clone()
        restart = torch.rand(n, device=device) < self.reinit
        if restart.any():
            start[restart] = self._init(int(restart.sum()), None, device)
        x, _ = self.langevin(start, self.sgld_steps)
        return x, rows

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        positive = self.standardize(batch[self.key])
        negative, rows = self._negatives(len(positive))
        e_pos, e_neg = self.energy(positive), self.energy(negative)
        self.buffer[rows] = negative
        contrast = e_pos.mean() - e_neg.mean()
        regularizer = self.alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        self._last = {"energy_data": e_pos.mean().detach(), "energy_chains": e_neg.mean().detach(),
                      "contrastive_divergence": contrast.detach()}
        return contrast + regularizer

    def validation_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The energy of held-out data minus the mean energy of the persistent chains (per example):
        a contrastive-divergence estimate, since -log p has no tractable value."""
        reference = self.energy(self.buffer[: len(batch[self.key])]).mean()
        return self.energy(self.standardize(batch[self.key])) - reference

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    def log_prob(self, batch: dict[str, Any]) -> torch.Tensor:
        """-E(x): the log-density up to the unknown log Z (B,)."""
        return -self.energy(self.standardize(batch[self.key]))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float | None = None, steps: int | None = None, **kwargs: Any) -> torch.Tensor:
        """n states after ``steps`` (default ``sample_steps``) Langevin steps from the noise
        distribution, in data space: (n, dim); ``temperature`` is accepted, as every family's, and
        ignored (the chains sample the model's own energy)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        device = next(self.parameters()).device
        x, _ = self.langevin(self._init(n, generator, device), self.sample_steps if steps is None else steps,
                             generator=generator)
        return x * self.scale + self.shift

    @torch.no_grad()
    def chains(self, n: int, steps: int, *, every: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
        """The states of n chains from the noise distribution, every ``every`` of ``steps`` Langevin
        steps, in data space: (steps // every, n, dim) (for mixing diagnostics)."""
        device = next(self.parameters()).device
        _, trace = self.langevin(self._init(n, generator, device), steps, generator=generator, record=every)
        if trace is None:
            raise ValueError(f"steps ({steps}) must be at least every ({every})")
        return trace * self.scale + self.shift


def mixing_diagnostics(trace: np.ndarray) -> dict[str, float]:
    """Split R-hat (rank-normalized, Vehtari et al. 2021) and bulk effective sample size of a
    scalar statistic's trace (draws, chains), by ArviZ; R-hat near 1 (< 1.01 is the usual bar)
    means the chains agree, i.e. they have mixed."""
    from arviz_stats.base import array_stats

    chains_first = np.ascontiguousarray(np.asarray(trace, dtype=float).T)  # (chains, draws)
    rhat = float(array_stats.rhat(chains_first, chain_axis=0, draw_axis=1))
    ess = float(array_stats.ess(chains_first, chain_axis=0, draw_axis=1))
    return {"rhat": rhat, "ess_bulk": ess, "chains": int(chains_first.shape[0]), "draws": int(chains_first.shape[1])}
