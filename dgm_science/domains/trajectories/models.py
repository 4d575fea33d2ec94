"""Trajectory models over (state, action) windows, registered by name: Diffuser's temporal U-Net
diffusion (``maze-diffuser``) and an autoregressive transformer with Gaussian-mixture steps
(``traj-arm``). Both take the start and goal by inpainting (``domain.inpainting_condition``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from dgm_science.backbones import CausalTransformer, TemporalUNet
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.config import ConfigError, bounded
from dgm_science.domains.trajectories.data import transition_dim
from dgm_science.families.autoregressive import MixtureAutoregressive
from dgm_science.families.diffusion import GaussianDiffusion
from dgm_science.resources import TrainResources
from dgm_science.registry import register


@dataclasses.dataclass(frozen=True)
class MazeDiffuserConfig:
    """Diffuser (Janner et al. 2022) for Maze2D: ``horizon`` (None: the maze's, 128 / 256 / 384),
    U-Net width ``dim`` and ``dim_mults``, ``diffusion_steps`` with the cosine schedule, predicting
    x (``prediction: sample``) as Diffuser's Maze2D configs do; ``sampling_steps`` < T strides;
    samples from an exponential moving average of the weights (``ema_decay``, Diffuser's 0.995)."""

    horizon: int | None = bounded(None, minimum=2)
    dim: int = bounded(32, minimum=1)
    dim_mults: list[int] = bounded([1, 4, 8], minimum=1)
    diffusion_steps: int = bounded(64, minimum=1)
    sampling_steps: int | None = bounded(None, minimum=1)
    prediction: str = bounded("sample", choices=("sample", "epsilon"))
    ema_decay: float = bounded(0.995, minimum=0, maximum=1)


@dataclasses.dataclass(frozen=True)
class TrajARMConfig:
    """Causal transformer over the H steps of a window, each step a mixture of ``components``
    diagonal Gaussians over (x, y, vx, vy, ax, ay), its means offsets from the previous step
    (``residual``)."""

    horizon: int | None = bounded(None, minimum=2)
    d_model: int = bounded(128, minimum=1)
    n_layers: int = bounded(4, minimum=1)
    n_heads: int = bounded(4, minimum=1)
    dropout: float = bounded(0.0, minimum=0, maximum=1)
    components: int = bounded(5, minimum=1)
    residual: bool = False


@register("model", "maze-diffuser")
class MazeDiffuser(ModelSpec):
    """Diffuser: Gaussian diffusion of (state, action) windows with a temporal U-Net; start and goal
    imposed by inpainting."""

    domain: ClassVar[str] = "trajectories"
    Config = MazeDiffuserConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("x", "condition")
    train_resources = TrainResources(seconds_per_step=0.05, mem_mb=16000)  # estimate: the temporal U-Net; paper.yaml caps it at 600 min

    @staticmethod
    def build(cfg: MazeDiffuserConfig, state: dict[str, Any]) -> GenerativeModel:
        horizon, dim = state["horizon"], transition_dim(state)
        factor = 2 ** (len(cfg.dim_mults) - 1)
        if horizon % factor:
            raise ConfigError(f"model.horizon {horizon} must be divisible by {factor} for dim_mults {cfg.dim_mults}")
        network = TemporalUNet(dim, dim=cfg.dim, dim_mults=tuple(cfg.dim_mults))
        return GaussianDiffusion(network, (horizon, dim), steps=cfg.diffusion_steps, schedule="cosine",
                                 prediction=cfg.prediction, sampling_steps=cfg.sampling_steps, clip=1.0,
                                 ema_decay=cfg.ema_decay)


@register("model", "traj-arm")
class TrajARM(ModelSpec):
    """Autoregressive trajectory transformer with Gaussian-mixture outputs; start and goal given."""

    domain: ClassVar[str] = "trajectories"
    Config = TrajARMConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("x", "condition")
    train_resources = TrainResources(seconds_per_step=0.03, mem_mb=16000)  # estimate: paper.yaml caps it at 600 min

    @staticmethod
    def build(cfg: TrajARMConfig, state: dict[str, Any]) -> GenerativeModel:
        horizon, dim = state["horizon"], transition_dim(state)
        network = CausalTransformer(0, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                    max_length=horizon, dropout=cfg.dropout, condition_dim=4 * dim,
                                    input_dim=dim, output_dim=cfg.components * (2 * dim + 1))
        return MixtureAutoregressive(network, dim, horizon, components=cfg.components,
                                     residual=cfg.residual)
