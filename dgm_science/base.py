"""The one interface every generative model implements, whatever its family or domain."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn


class GenerativeModel(nn.Module):
    """A model of p(x).

    ``loss(batch)`` is the training objective (a scalar to minimise); ``log_prob(batch)`` is the
    per-example log-likelihood in nats, shape ``(B,)`` (a lower bound where ``likelihood ==
    "bound"``); ``sample(n, generator=, condition=)`` returns the family's raw output, which the
    domain decodes.
    """

    likelihood: ClassVar[Literal["exact", "bound"]] = "exact"

    def loss(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def log_prob(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
    ) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def set_training_step(self, step: int) -> None:
        """Hook the trainer calls before each optimisation step (schedules such as KL annealing)."""

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        """Extra scalars of the last ``loss`` call that the trainer logs (e.g. reconstruction, KL)."""
        return {}
