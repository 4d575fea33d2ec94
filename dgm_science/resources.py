"""What one training job of a model asks of a cluster: declared by each model (``ModelSpec.train_resources``),
read by the workflow's train rules (through :mod:`dgm_science.catalog`) as the job's Slurm ``runtime``,
``mem_mb`` and ``gpu``, so that a cluster sizes qm9-edm's days and ala2-flow's hours apart."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

MARGIN = 1.25
"""Factor on the estimated training time: validation, checkpoints, a slower GPU."""
OVERHEAD_MINUTES = 30
"""Added to every training job: start-up, data loading, the final checkpoint and samples of validation."""


@dataclasses.dataclass(frozen=True)
class TrainResources:
    """A model's training needs on one GPU of the A100 / H100 class. ``seconds_per_step`` is an estimate of one
    optimisation step at the paper config's batch size (say where it comes from in the model's docstring);
    ``mem_mb`` the job's host memory (data, workers); ``gpus`` the GPUs of one training job."""

    seconds_per_step: float
    mem_mb: int = 16000
    gpus: int = 1

    def __post_init__(self) -> None:
        if not self.seconds_per_step > 0 or self.mem_mb < 1 or self.gpus < 0:
            raise ValueError(f"{self}: seconds_per_step > 0, mem_mb >= 1 and gpus >= 0 are required")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def runtime_minutes(resources: dict[str, Any], train: dict[str, Any]) -> int:
    """A training job's Slurm runtime in minutes: ``max_steps`` x the model's ``seconds_per_step`` (capped by
    the config's ``max_time_minutes``) x :data:`MARGIN`, plus :data:`OVERHEAD_MINUTES`. ``resources`` is
    :meth:`TrainResources.as_dict`, ``train`` the job's validated ``train`` block."""
    minutes = train["max_steps"] * resources["seconds_per_step"] / 60
    if train.get("max_time_minutes") is not None:
        minutes = min(minutes, train["max_time_minutes"])
    return math.ceil(minutes * MARGIN + OVERHEAD_MINUTES)
