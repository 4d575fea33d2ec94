"""Molecule models: family + network combinations registered by name."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from dgm_science.config import bounded
from dgm_science.backbones import CausalTransformer
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.domains.molecules.targets import TASKS, classification_mask
from dgm_science.tokenizer import Tokenizer
from dgm_science.families.autoregressive import AutoregressiveModel
from dgm_science.families.hybrid import DiscriminativeRegressor, HybridModel
from dgm_science.families.vae import VAE, StandardNormal
from dgm_science.resources import TrainResources
from dgm_science.registry import register


@dataclasses.dataclass(frozen=True)
class SmilesARMConfig:
    """Autoregressive transformer over SMILES/SELFIES tokens."""

    tokenizer: str = bounded("smiles", choices=("smiles", "selfies"))
    d_model: int = bounded(256, minimum=8)
    n_layers: int = bounded(4, minimum=1)
    n_heads: int = bounded(8, minimum=1)
    dropout: float = bounded(0.1, minimum=0, maximum=1)
    max_length: int = bounded(100, minimum=4)


@dataclasses.dataclass(frozen=True)
class GraphVAEConfig(SmilesARMConfig):
    """Graph VAE: PyG GNN encoder q(z|G), autoregressive SMILES/SELFIES decoder p(x|z) (the
    decoder's settings are SmilesARMConfig's)."""

    latent_dim: int = bounded(64, minimum=1)
    encoder_hidden: int = bounded(128, minimum=8)
    encoder_layers: int = bounded(4, minimum=1)
    kl_weight: float = bounded(1.0, minimum=0)
    kl_anneal_steps: int = bounded(1000, minimum=0)
    free_bits: float = bounded(0.0, minimum=0)


def _decoder(cfg: Any, tokenizer: Tokenizer, condition_dim: int = 0) -> AutoregressiveModel:
    network = CausalTransformer(
        len(tokenizer), d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
        max_length=cfg.max_length, dropout=cfg.dropout, condition_dim=condition_dim,
    )
    return AutoregressiveModel(network, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)


@register("model", "smiles-arm")
class SmilesARM(ModelSpec):
    """Registry entry: builds an AutoregressiveModel over molecule tokens."""

    domain: ClassVar[str] = "molecules"
    Config = SmilesARMConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.08, mem_mb=16000)  # estimate: 4-layer transformer, batch 512 of 100 tokens

    @staticmethod
    def build(cfg: SmilesARMConfig, state: dict[str, Any]) -> GenerativeModel:
        return _decoder(cfg, Tokenizer.from_state(state["tokenizer"]))


class _GraphOf(nn.Module):
    """Adapts a graph encoder to the VAE's ``encoder(batch)`` by reading ``batch["graph"]``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(batch["graph"])


@register("model", "graph-vae")
class GraphVAE(ModelSpec):
    """Registry entry: VAE(PyG graph encoder, conditional autoregressive decoder, N(0, I))."""

    domain: ClassVar[str] = "molecules"
    Config = GraphVAEConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens", "graph")
    train_resources = TrainResources(seconds_per_step=0.15, mem_mb=32000)  # estimate: GNN encoder and transformer decoder, MOSES graphs memory-mapped

    @staticmethod
    def build(cfg: GraphVAEConfig, state: dict[str, Any]) -> GenerativeModel:
        from dgm_science.domains.molecules.networks import GraphEncoder

        tokenizer = Tokenizer.from_state(state["tokenizer"])
        encoder = _GraphOf(GraphEncoder(cfg.latent_dim, hidden_dim=cfg.encoder_hidden, num_layers=cfg.encoder_layers))
        pad = tokenizer.pad_id

        def tokens_per_batch(batch: dict[str, Any]) -> torch.Tensor:
            return (batch["tokens"][:, 1:] != pad).sum().clamp(min=1)

        return VAE(
            encoder, _decoder(cfg, tokenizer, condition_dim=cfg.latent_dim), StandardNormal(cfg.latent_dim),
            kl_weight=cfg.kl_weight, kl_anneal_steps=cfg.kl_anneal_steps, free_bits=cfg.free_bits,
            loss_scale=tokens_per_batch,
        )


@dataclasses.dataclass(frozen=True)
class PropertyARMConfig(SmilesARMConfig):
    """A SMILES transformer whose pooled hidden states feed a head over property columns of the
    prepared data: QM9's (``QM9_PROPERTIES``) or those of a user's file (``source.properties``). A
    regression target gets a Gaussian (standardised on the training split), a 0/1 classification
    target a Bernoulli (its logit). ``exclude_elements``: molecules holding any of these elements are
    left out of training (and validation), so that they can be used as a shifted test set."""

    targets: list[str] = bounded(["gap", "mu"])
    """property columns predicted: QM9's names, or columns of your file (source.properties)"""
    tasks: list[str] = bounded([], choices=TASKS)
    """one per target: auto (classification where every training value is 0 or 1, else regression),
    regression or classification; [] = auto for every target"""
    units: list[str] = bounded([])
    """one per target, the unit its values are in (shown in the report); [] = QM9's units on QM9, none
    on your own file"""
    head_hidden: int = bounded(128, minimum=1)
    exclude_elements: list[str] = bounded([])


@dataclasses.dataclass(frozen=True)
class HybridARMConfig(PropertyARMConfig):
    """``PropertyARMConfig`` trained on -log p(y | x) - density_weight log p(x) (per token)."""

    density_weight: float = bounded(1.0, exclusive_minimum=0)


def _classification(cfg: PropertyARMConfig, state: dict[str, Any]) -> list[bool] | None:
    """Which targets have a Bernoulli head (the tasks the checkpoint resolved; none before it did)."""
    return classification_mask(state["targets"]) if "targets" in state else None


class _PropertyARM(ModelSpec):
    domain: ClassVar[str] = "molecules"
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens", "y")
    train_resources = TrainResources(seconds_per_step=0.08, mem_mb=16000)  # estimate: the SMILES transformer and a property head, batch 256
    predicts: ClassVar[bool] = True
    """A property predictor: configured in the ``prediction`` block, not among a dataset's models."""


@register("model", "hybrid-arm")
class HybridARM(_PropertyARM):
    """Registry entry: HybridModel(SMILES transformer): p(x, y) = p(y | x) p(x) (Nalisnick et al. 2019)."""

    Config = HybridARMConfig

    @staticmethod
    def build(cfg: HybridARMConfig, state: dict[str, Any]) -> GenerativeModel:
        return HybridModel(_decoder(cfg, Tokenizer.from_state(state["tokenizer"])), len(cfg.targets),
                           density_weight=cfg.density_weight, head_hidden=cfg.head_hidden, dropout=cfg.dropout,
                           classification=_classification(cfg, state))


@register("model", "regressor-arm")
class RegressorARM(_PropertyARM):
    """Registry entry: the hybrid's network and head trained on -log p(y | x) alone (one member of
    a deep ensemble: train it with several seeds)."""

    Config = PropertyARMConfig

    @staticmethod
    def build(cfg: PropertyARMConfig, state: dict[str, Any]) -> GenerativeModel:
        return DiscriminativeRegressor(_decoder(cfg, Tokenizer.from_state(state["tokenizer"])), len(cfg.targets),
                                       head_hidden=cfg.head_hidden, dropout=cfg.dropout,
                                       classification=_classification(cfg, state))
