"""Hybrid models p(x, y) = p(y | x) p(x) (Nalisnick et al. 2019, "Hybrid models with deep and
invertible features"): one network is both the density model of x and the feature extractor of
a predictor of y, trained on  -log p(y | x) - lambda log p(x).  The predictor knows when not to
trust itself: an input the density model gives a low log p(x) is off the training distribution.

``HybridModel`` wraps an autoregressive model (any network with ``hidden``, see
``AutoregressiveModel.token_log_probs_and_hidden``): the hidden states of the positions that
predict x_1 .. <eos> are mean-pooled into one feature vector, and a small MLP head maps it to a
heteroscedastic Gaussian p(y | x) = N(mu(x), diag sigma^2(x)) over the (standardised) targets.
``DiscriminativeRegressor`` is the same network and head trained on -log p(y | x) alone (the
baseline of the hybrid, and the member of a deep ensemble): it has no p(x) (``likelihood =
"none"``), and asking it for one is an error.

A target may instead be a 0/1 class (``classification``): its head output is the logit of
P(y = 1 | x), a Bernoulli trained by binary cross-entropy, and ``predict`` gives the probability p and
the Bernoulli variance p (1 - p) for it.

A batch is the autoregressive model's (``tokens``) plus ``y``: (B, K) float targets, NaN where a
target is missing (it contributes nothing).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.base import GenerativeModel
from dgm_science.families.autoregressive import AutoregressiveModel

MIN_VARIANCE = 1e-6
"""Floor of the predicted variance (standardised units): a head that drives sigma to 0 on a
training point would give an infinite likelihood."""


def gaussian_nll(y: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Elementwise -log N(y; mean, variance), nats; NaN where y is NaN."""
    return 0.5 * (math.log(2 * math.pi) + variance.log() + (y - mean) ** 2 / variance)


def bernoulli_nll(y: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """Elementwise -log Bernoulli(y; sigmoid(logit)) (binary cross-entropy, nats) for y in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logit, y, reduction="none")


class HybridModel(GenerativeModel):
    """p(x, y) = p(y | x) p(x) over token sequences.

    ``loss(batch)``: the mean NLL of the observed targets (Gaussian; Bernoulli for the targets
    ``classification`` marks, a list of K booleans) plus
    ``density_weight`` times the autoregressive NLL per token; ``log_prob(batch)``: log p(x) in
    nats (B,); ``predict(batch)``: (mean, variance) of y, (B, K) each, in the units the targets
    were given in (the caller standardises and de-standardises); ``sample``: x from p(x).
    """

    likelihood = "exact"
    family = "hybrid p(x, y)"

    def __init__(self, density: AutoregressiveModel, n_targets: int, *, density_weight: float = 1.0,
                 head_hidden: int = 128, dropout: float = 0.1, classification: list[bool] | None = None) -> None:
        super().__init__()
        if n_targets < 1:
            raise ValueError(f"a hybrid model needs at least one target, got {n_targets}")
        if not (density_weight > 0 or self.likelihood == "none" and density_weight == 0):
            raise ValueError(f"density_weight must be > 0 (the weight of -log p(x)), got {density_weight}")
        self.density = density
        self.n_targets = n_targets
        classification = [False] * n_targets if classification is None else list(classification)
        if len(classification) != n_targets:
            raise ValueError(f"classification: {len(classification)} flags for {n_targets} targets")
        self.register_buffer("classification", torch.tensor(classification, dtype=torch.bool), persistent=False)
        self.density_weight = float(density_weight)
        width = density.network.d_model
        self.head = nn.Sequential(nn.Linear(width, head_hidden), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(head_hidden, 2 * n_targets))
        self._last: dict[str, torch.Tensor] = {}

    def _forward(self, batch: dict[str, Any], density: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-position log p (B, L-1; zeros without ``density``: the language-model head is not
        run), predicted mean and variance (B, K)."""
        if density:
            log_p, hidden = self.density.token_log_probs_and_hidden(batch)
        else:
            hidden = self.density.network.hidden(batch["tokens"][:, :-1], batch.get("condition"))
            log_p = hidden.new_zeros(hidden.shape[:2])
        mask = (batch["tokens"][:, 1:] != self.density.pad_id).unsqueeze(-1).to(hidden.dtype)
        features = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out = self.head(features).float()
        mean, raw = out[:, : self.n_targets], out[:, self.n_targets:]
        return log_p, mean, F.softplus(raw) + MIN_VARIANCE

    def predict(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of p(y | x): (B, K) each; for a classification target P(y = 1 | x) and
        its Bernoulli variance p (1 - p)."""
        _, mean, variance = self._forward(batch, density=False)
        if bool(self.classification.any()):
            p = torch.sigmoid(mean)
            mean = torch.where(self.classification, p, mean)
            variance = torch.where(self.classification, p * (1 - p), variance)
        return mean, variance

    def log_prob(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.density.log_prob(batch)

    def _objective(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-example -log p(y | x) summed over observed targets, -log p(x), and the token count."""
        log_p, mean, variance = self._forward(batch, density=self.density_weight > 0)
        y = batch["y"].to(mean.dtype)
        observed = torch.isfinite(y)
        filled = torch.where(observed, y, mean)
        nll = gaussian_nll(filled, mean, variance)
        if bool(self.classification.any()):
            labels = torch.where(observed, y, torch.zeros_like(y)).clamp(0, 1)
            nll = torch.where(self.classification, bernoulli_nll(labels, mean), nll)
        nll_y = torch.where(observed, nll, torch.zeros_like(mean)).sum(1)
        tokens = (batch["tokens"][:, 1:] != self.density.pad_id).sum(1)
        return nll_y, -log_p.sum(1), tokens

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        nll_y, nll_x, tokens = self._objective(batch)
        observed = torch.isfinite(batch["y"]).sum().clamp(min=1)
        loss_y = nll_y.sum() / observed
        loss_x = nll_x.sum() / tokens.sum().clamp(min=1)
        self._last = {"nll_y": loss_y.detach()}
        if not self.density_weight:  # a regressor: no model of x
            return loss_y
        self._last["nll_x_per_token"] = loss_x.detach()
        return loss_y + self.density_weight * loss_x

    def validation_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per example: -log p(y | x) plus ``density_weight`` times -log p(x) per token (the training
        objective, per example), what the best weights are chosen by."""
        nll_y, nll_x, tokens = self._objective(batch)
        if not self.density_weight:
            return nll_y
        return nll_y + self.density_weight * nll_x / tokens.clamp(min=1)

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return dict(self._last)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float | None = None) -> torch.Tensor:
        return self.density.sample(n, generator=generator, condition=condition, temperature=temperature)


class DiscriminativeRegressor(HybridModel):
    """The hybrid's network and head trained on -log p(y | x) alone: a heteroscedastic regressor
    with no model of x (the baseline, and one member of a deep ensemble)."""

    likelihood = "none"
    family = "discriminative"

    def __init__(self, density: AutoregressiveModel, n_targets: int, *, head_hidden: int = 128,
                 dropout: float = 0.1, classification: list[bool] | None = None) -> None:
        super().__init__(density, n_targets, density_weight=0.0, head_hidden=head_hidden, dropout=dropout,
                         classification=classification)

    def log_prob(self, batch: dict[str, Any]) -> torch.Tensor:
        raise TypeError("a discriminative regressor has no p(x): train a hybrid model for log p(x)")

    def sample(self, n: int, **kwargs: Any) -> torch.Tensor:
        raise TypeError("a discriminative regressor has no p(x) to sample")
