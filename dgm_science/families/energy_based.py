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
Unadjusted Langevin chains from noise do not cross the barriers of a multi-modal energy in any
affordable number of steps (ala2: split R-hat 1.9-2.35 over 32 chains of 2,000 steps).

``FlowEnergyBasedModel`` is the flow-based EBM E(x) = -log q(x) - g(x): a normalizing-flow base q
trained by maximum likelihood and a bounded correction g trained by noise-contrastive estimation
against it, sampled by independence Metropolis-Hastings from the base plus MALA in the flow's
latent space, which mixes across every mode the base covers (``ala2-ebm``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dgm_science.base import GenerativeModel


def chain_starts(noise_init: Any, dim: int, n: int, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """Where n chains start: ``noise_init(n, generator, device)`` where the domain gives one, else
    N(0, I) of shape (n, dim)."""
    if noise_init is not None:
        return noise_init(n, generator, device)
    return torch.randn(n, dim, generator=generator, device=device)


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
        return chain_starts(self.noise_init, self.dim, n, generator, device)

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

    def sampler_info(self) -> dict[str, Any]:
        """The sampler's settings and cost per sample in energy evaluations (gradients of E)."""
        return {"sampler": "Langevin (SGLD, no Metropolis correction)", "step_size": self.step_size,
                "noise": self.noise, "energy_evaluations_per_sample": self.sample_steps}


def mixing_diagnostics(trace: np.ndarray) -> dict[str, float]:
    """Split R-hat (rank-normalized, Vehtari et al. 2021) and bulk effective sample size of a
    scalar statistic's trace (draws, chains), by ArviZ; R-hat near 1 (< 1.01 is the usual bar)
    means the chains agree, i.e. they have mixed."""
    from arviz_stats.base import array_stats

    chains_first = np.ascontiguousarray(np.asarray(trace, dtype=float).T)  # (chains, draws)
    rhat = float(array_stats.rhat(chains_first, chain_axis=0, draw_axis=1))
    ess = float(array_stats.ess(chains_first, chain_axis=0, draw_axis=1))
    return {"rhat": rhat, "ess_bulk": ess, "chains": int(chains_first.shape[0]), "draws": int(chains_first.shape[1])}


class FlowEnergyBasedModel(GenerativeModel):
    """FlowEnergyBasedModel(base, correction, key, ...): a flow-based EBM p(x) ∝ q(x) exp(g(x)), i.e.
    the energy E(x) = -log q(x) - g(x), with a normalizing-flow base q trained inside the model.

    ``base``: a module with ``flow`` (``families.flows.Flow`` over y, standard-normal base),
    ``to_flow(x) -> (y, log|det dy/dx|)`` and ``from_flow(y) -> x`` (x: batches' (B, dim) under
    ``key``; e.g. the structures domain's ``FlowOnInternalCoordinates``, whose y unrolls periodic
    torsions at a cut, so no chain ever crosses a wrap-around); ``correction``: (B, dim) -> (B,), the
    raw g, squashed to ``bound`` * tanh(raw / ``bound``) so that |g| <= bound.

    Training (per step, ``loss``): the base by maximum likelihood on the batch, and g with a scalar c
    by noise-contrastive estimation against the base (Gutmann & Hyvärinen 2010; with a flow as the
    noise, as flow contrastive estimation does, Gao et al. 2020, CVPR): logistic regression of data
    (label 1) against as many base samples (label 0, no gradient into the base) on the logit
    g(x) + c, whose optimum is q(x) exp(g(x) + c) = p_data(x). ``-log_prob`` = E(x) is exact up to
    log Z (``likelihood = "unnormalized"``); -c estimates log Z (``validation_loss``).

    Sampling: Metropolis-Hastings in the flow's latent space u (x = from_flow(flow.inverse(u))),
    whose target is pi(u) ∝ N(u; 0, I) exp(g(x(u))). Each sweep is one independence proposal
    u' ~ N(0, I) (the base itself; acceptance min(1, exp(g(x') - g(x))) >= exp(-2 bound), so the
    chain is uniformly ergodic and jumps between modes the base covers) and ``mala_steps`` MALA
    steps of size ``mala_step`` (Roberts & Tweedie 1996: u' = u + h grad log pi + sqrt(2h) xi,
    Metropolis-corrected). Chains start from ``noise_init`` (x-space, over-dispersed; default
    N(0, I)) mapped into u; ``sample`` returns each chain's state after ``sweeps`` sweeps.
    Cost per sample: ``sweeps`` x (1 + ``mala_steps``) evaluations of E (``sampler_info``).
    ``independent_proposals=False`` leaves MALA alone (for tests and ablations).
    """

    likelihood = "unnormalized"
    family = "energy-based"

    def __init__(self, base: nn.Module, correction: nn.Module, key: str, dim: int, *, bound: float = 2.0,
                 nce_weight: float = 1.0, sweeps: int = 20, mala_steps: int = 2, mala_step: float = 0.05,
                 independent_proposals: bool = True,
                 noise_init: Callable[..., torch.Tensor] | None = None) -> None:
        super().__init__()
        if bound <= 0:
            raise ValueError(f"bound must be positive, got {bound}")
        self.base, self.correction, self.key, self.dim = base, correction, key, dim
        self.log_normalizer = nn.Parameter(torch.zeros(()))  # c of the NCE logit g(x) + c
        self.bound, self.nce_weight = bound, nce_weight
        self.sweeps, self.mala_steps, self.mala_step = sweeps, mala_steps, mala_step
        self.independent_proposals = independent_proposals
        self.noise_init = noise_init
        self._last: dict[str, torch.Tensor] = {}
        self.acceptance: dict[str, float] = {}

    # -- the energy ------------------------------------------------------------------------------
    def g(self, x: torch.Tensor) -> torch.Tensor:
        """The bounded correction g(x) (B,): bound * tanh(raw / bound)."""
        return self.bound * torch.tanh(self.correction(x) / self.bound)

    def base_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q(x) of the flow base (B,), nats."""
        y, log_det = self.base.to_flow(x)
        return self.base.flow.log_prob(y) + log_det

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) = -log q(x) - g(x) (B,): the model's energy, up to the unknown log Z."""
        return -self.base_log_prob(x) - self.g(x)

    def log_prob(self, batch: dict[str, Any]) -> torch.Tensor:
        """-E(x): the log-density up to log Z (B,)."""
        return -self.energy(batch[self.key].float())

    # -- training --------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Base NLL per coordinate + ``nce_weight`` x the NCE logistic loss of g (data vs base samples)."""
        x = batch[self.key].float()
        nll = -self.base_log_prob(x).mean() / self.dim
        with torch.no_grad():
            negative = self.base.from_flow(self.base.flow.sample(len(x), device=x.device))
        logit_pos = self.g(x) + self.log_normalizer
        logit_neg = self.g(negative) + self.log_normalizer
        nce = nn.functional.softplus(-logit_pos).mean() + nn.functional.softplus(logit_neg).mean()
        self._last = {"nll_base": nll.detach(), "nce": nce.detach(),
                      "nce_accuracy": 0.5 * ((logit_pos > 0).float().mean() + (logit_neg < 0).float().mean()).detach(),
                      "log_normalizer": self.log_normalizer.detach()}
        return nll + self.nce_weight * nce

    def validation_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """-(log q(x) + g(x) + c) (B,): the NLL with log Z estimated by NCE's -c (nats)."""
        return self.energy(batch[self.key].float()) - self.log_normalizer

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return self._last

    # -- the sampler -----------------------------------------------------------------------------
    def _decode(self, u: torch.Tensor) -> torch.Tensor:
        return self.base.from_flow(self.base.flow.inverse(u))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.flow(self.base.to_flow(x)[0])[0]

    def _log_target(self, u: torch.Tensor, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log pi(u) = -|u|^2 / 2 + g(x(u)) (B,) and, with ``grad``, its gradient (B, dim)."""
        if not grad:
            return -0.5 * u.pow(2).sum(-1) + self.g(self._decode(u)), None
        u = u.detach().requires_grad_(True)
        with torch.enable_grad():
            value = -0.5 * u.pow(2).sum(-1) + self.g(self._decode(u))
            gradient, = torch.autograd.grad(value.sum(), u)
        return value.detach(), gradient

    def _init(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        return chain_starts(self.noise_init, self.dim, n, generator, device)

    def run_chains(self, u: torch.Tensor, sweeps: int, *, generator: torch.Generator | None = None,
                   record: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``sweeps`` sweeps (independence MH + ``mala_steps`` MALA) of the chains at latent u (B, dim);
        the final u and, with ``record`` > 0, x every ``record`` sweeps: (sweeps // record, B, dim).
        Sets ``acceptance`` (mean acceptance rate of each move)."""
        requires = [p.requires_grad for p in self.parameters()]
        for p in self.parameters():
            p.requires_grad_(False)
        trace, accepted = [], {"independence": 0.0, "mala": 0.0}
        h = self.mala_step
        try:
            u = u.detach()
            log_pi, gradient = self._log_target(u, grad=self.mala_steps > 0)
            log_pi = torch.where(torch.isfinite(log_pi), log_pi, torch.full_like(log_pi, -math.inf))
            for sweep in range(sweeps):
                if self.independent_proposals:
                    proposal = torch.randn(u.shape, generator=generator, device=u.device)
                    log_pi_new, gradient_new = self._log_target(proposal, grad=self.mala_steps > 0)
                    # Independence MH: pi(u') N(u) / (pi(u) N(u')) = exp(g(x') - g(x)).
                    log_ratio = (log_pi_new + 0.5 * proposal.pow(2).sum(-1)) - (log_pi + 0.5 * u.pow(2).sum(-1))
                    accept = torch.log(torch.rand(len(u), generator=generator, device=u.device)) < log_ratio
                    accepted["independence"] += accept.float().mean().item() / sweeps
                    u = torch.where(accept[:, None], proposal, u)
                    log_pi = torch.where(accept, log_pi_new, log_pi)
                    if gradient is not None:
                        gradient = torch.where(accept[:, None], gradient_new, gradient)
                for _ in range(self.mala_steps):
                    noise = torch.randn(u.shape, generator=generator, device=u.device)
                    proposal = u + h * gradient + math.sqrt(2 * h) * noise
                    log_pi_new, gradient_new = self._log_target(proposal, grad=True)
                    forward = -(proposal - u - h * gradient).pow(2).sum(-1) / (4 * h)
                    backward = -(u - proposal - h * gradient_new).pow(2).sum(-1) / (4 * h)
                    log_ratio = log_pi_new - log_pi + backward - forward
                    log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
                    accept = torch.log(torch.rand(len(u), generator=generator, device=u.device)) < log_ratio
                    accepted["mala"] += accept.float().mean().item() / (sweeps * self.mala_steps)
                    u = torch.where(accept[:, None], proposal, u)
                    log_pi = torch.where(accept, log_pi_new, log_pi)
                    gradient = torch.where(accept[:, None], gradient_new, gradient)
                if record and (sweep + 1) % record == 0:
                    with torch.no_grad():
                        trace.append(self._decode(u))
        finally:
            for p, r in zip(self.parameters(), requires):
                p.requires_grad_(r)
        self.acceptance = accepted
        return u, (torch.stack(trace) if trace else None)

    def _start(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """Latent starts (n, dim) of chains from ``noise_init`` (over-dispersed, in x-space)."""
        device = self.log_normalizer.device
        with torch.no_grad():
            u = self._encode(self._init(n, generator, device))
        # A start the flow maps to a non-finite latent is replaced by the origin (the base's mode).
        return torch.where(torch.isfinite(u).all(-1, keepdim=True), u, torch.zeros_like(u))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float | None = None, sweeps: int | None = None, **kwargs: Any) -> torch.Tensor:
        """n chains from ``noise_init``, each after ``sweeps`` (default ``self.sweeps``) MH sweeps: x (n, dim);
        ``temperature`` is accepted, as every family's, and ignored."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        u, _ = self.run_chains(self._start(n, generator), self.sweeps if sweeps is None else sweeps,
                               generator=generator)
        return self._decode(u)

    @torch.no_grad()
    def chains(self, n: int, steps: int, *, every: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
        """The states of n chains from ``noise_init``, every ``every`` of ``steps`` sweeps, in data space:
        (steps // every, n, dim) (for mixing diagnostics)."""
        _, trace = self.run_chains(self._start(n, generator), steps, generator=generator, record=every)
        if trace is None:
            raise ValueError(f"steps ({steps}) must be at least every ({every})")
        return trace

    def sampler_info(self) -> dict[str, Any]:
        """The sampler's settings, cost per sample in energy evaluations, and last acceptance rates."""
        sampler = ("independence MH (flow base) + MALA" if self.independent_proposals else "MALA") + " in the flow's latent space"
        return {"sampler": sampler, "sweeps": self.sweeps,
                "mala_steps": self.mala_steps, "mala_step": self.mala_step,
                "independent_proposals": self.independent_proposals,
                "energy_evaluations_per_sample": self.sweeps * (int(self.independent_proposals) + self.mala_steps),
                **{f"acceptance_{k}": v for k, v in self.acceptance.items()}}
