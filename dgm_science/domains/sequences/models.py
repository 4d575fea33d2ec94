"""Sequence models: the autoregressive, masked-diffusion and VAE families over nucleotides or
amino acids, registered by name. All three share the transformer backbone of ``backbones.py``."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from dgm_science.config import bounded
from dgm_science.backbones import CausalTransformer
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.domains.sequences.tokens import BOS, EOS, MASK, PAD, Vocabulary
from dgm_science.families.autoregressive import AutoregressiveModel
from dgm_science.families.discrete_diffusion import MaskedDiffusion
from dgm_science.families.hierarchical_vae import HierarchicalVAE
from dgm_science.families.vae import VAE, StandardNormal
from dgm_science.resources import TrainResources
from dgm_science.registry import register


@dataclasses.dataclass(frozen=True)
class SeqARMConfig:
    """Autoregressive transformer over residues; ``conditional``: on the phylum label (16S).
    ``max_length`` counts <bos> and <eos>."""

    d_model: int = bounded(256, minimum=1)
    n_layers: int = bounded(4, minimum=1)
    n_heads: int = bounded(8, minimum=1)
    dropout: float = bounded(0.1, minimum=0, maximum=1)
    max_length: int = bounded(400, minimum=3)
    conditional: bool = False


@dataclasses.dataclass(frozen=True)
class SeqDiffusionConfig(SeqARMConfig):
    """Masked (absorbing) diffusion with a bidirectional transformer of the same shape; the canvas
    has ``max_length - 1`` positions (residues, <eos>, padding), the number of residues drawn from
    the training histogram. ``sampling_steps`` ancestral steps; ``elbo_samples`` times per
    sequence in the likelihood bound."""

    sampling_steps: int = bounded(128, minimum=1)
    elbo_samples: int = bounded(8, minimum=1)


@dataclasses.dataclass(frozen=True)
class SeqVAEConfig(SeqARMConfig):
    """VAE: a 1D convolutional encoder q(z|x) and the autoregressive transformer decoder p(x|z)
    (SeqARMConfig's settings; unconditional). ``posterior_bn`` > 0: BN-VAE's batch-normalised
    posterior mean with that fixed scale gamma (Zhu et al. 2020; 0: off)."""

    latent_dim: int = bounded(32, minimum=1)
    encoder_channels: int = bounded(128, minimum=1)
    encoder_layers: int = bounded(4, minimum=1)
    kl_weight: float = bounded(1.0, minimum=0)
    kl_anneal_steps: int = bounded(1000, minimum=0)
    free_bits: float = bounded(0.0, minimum=0)
    posterior_bn: float = bounded(0.0, minimum=0)


@dataclasses.dataclass(frozen=True)
class SeqHVAEConfig(SeqVAEConfig):
    """Hierarchical (top-down) VAE: ``latent_layers`` layers of ``latent_dim`` units each; the
    convolutional encoder's ``encoder_layers`` split evenly into as many bottom-up stages (one
    feature vector per latent layer, shallow for z_1, deep for z_L); a top-down path of width
    ``state_dim`` whose last state and/or (``skip_latents``) the z's condition the transformer
    decoder. ``free_bits``: per layer.
    Against posterior collapse (``HierarchicalVAE``): ``kl_balancing`` (NVAE's per-layer KL
    coefficients during the warm-up), ``residual_posterior`` (NVAE's q = N(mu_p + dmu, sigma_p *
    dsigma)), ``skip_latents`` (every layer's z joins the decoder's condition, Dieng et al. 2019);
    ``decoder_state`` off: the decoder reads the z's alone, not the top-down path's last state.
    ``top_latent_dim``: the top layer's units (0: ``latent_dim``); ``linear_posterior``: linear posterior
    heads, as seq-vae's; ``decoder_layers`` = k > 0: the decoder reads z_1 .. z_k only (1: z_1, whose prior
    the layers above are); ``deep_features``: every layer's posterior reads the last convolution's pooled
    features (as seq-vae's latent), not the ladder's stage of its depth."""

    latent_layers: int = bounded(3, minimum=2)
    top_latent_dim: int = bounded(0, minimum=0)
    linear_posterior: bool = False
    decoder_layers: int = bounded(0, minimum=0)
    deep_features: bool = False
    state_dim: int = bounded(128, minimum=1)
    kl_balancing: bool = False
    residual_posterior: bool = False
    skip_latents: bool = False
    decoder_state: bool = True


def _network(cfg: SeqARMConfig, state: dict[str, Any], *, causal: bool = True, extra_condition: int = 0
             ) -> CausalTransformer:
    return CausalTransformer(
        len(Vocabulary(state["alphabet"])), d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
        max_length=cfg.max_length, dropout=cfg.dropout, condition_dim=len(state["labels"]) + extra_condition,
        causal=causal,
    )


@register("model", "seq-arm")
class SeqARM(ModelSpec):
    """Autoregressive transformer over DNA / protein residues (exact likelihood, lossless compression)."""

    domain: ClassVar[str] = "sequences"
    Config = SeqARMConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.15, mem_mb=16000)  # estimate: batch 32 of ~1,700 tokens (16S)
    canvas: ClassVar[bool] = False

    @staticmethod
    def build(cfg: SeqARMConfig, state: dict[str, Any]) -> GenerativeModel:
        return AutoregressiveModel(_network(cfg, state), pad_id=PAD, bos_id=BOS, eos_id=EOS)


@register("model", "seq-diffusion")
class SeqDiffusion(ModelSpec):
    """Masked (absorbing-state) discrete diffusion over residues, MDLM's continuous-time ELBO; the
    length from the training histogram."""

    domain: ClassVar[str] = "sequences"
    Config = SeqDiffusionConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.2, mem_mb=16000)  # estimate: batch 32 of ~1,700 tokens (16S): 200 k steps ~11 h
    canvas: ClassVar[bool] = True

    @staticmethod
    def build(cfg: SeqDiffusionConfig, state: dict[str, Any]) -> GenerativeModel:
        return MaskedDiffusion(_network(cfg, state, causal=False), mask_id=MASK, length=cfg.max_length - 1,
                               sampling_steps=cfg.sampling_steps, elbo_samples=cfg.elbo_samples,
                               length_distribution=state["length_counts"], eos_id=EOS, pad_id=PAD,
                               never_generated=(BOS,))


def _residues_per_batch(batch: dict[str, Any]) -> torch.Tensor:
    """What a VAE's loss is divided by: the residues (and <eos>) the decoder predicts in the batch."""
    return (batch["tokens"][:, 1:] != PAD).sum().clamp(min=1)


class ConvStack(nn.Module):
    """Token rows ``tokens: (B, L)`` through an embedding and ``layers`` residual 1D convolutions
    (kernel 5, dilations 1, 2, 4, ..); ``pooled(batch, after)``: the masked mean over residues
    after each of the given numbers of convolutions, (B, channels) each."""

    def __init__(self, vocab_size: int, channels: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, channels, padding_idx=PAD)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, 5, padding=2 * 2 ** (i % 4), dilation=2 ** (i % 4)) for i in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(layers))

    def pooled(self, batch: dict[str, torch.Tensor], after: Sequence[int]) -> list[torch.Tensor]:
        tokens = batch["tokens"]
        residues = (tokens > MASK).unsqueeze(1).float()  # (B, 1, L)
        count = residues.sum(-1).clamp(min=1)
        h = self.embedding(tokens).transpose(1, 2) * residues
        out = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = h + torch.nn.functional.gelu(norm(conv(h))) * residues
            if i + 1 in after:
                out.append(h.sum(-1) / count)
        return out


class ConvEncoder(ConvStack):
    """q(z|x) = N(mu, diag exp(log_var)): ``ConvStack``'s masked mean after its last convolution,
    linear."""

    def __init__(self, vocab_size: int, latent_dim: int, channels: int, layers: int) -> None:
        super().__init__(vocab_size, channels, layers)
        self.out = nn.Linear(channels, 2 * latent_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        (pooled,) = self.pooled(batch, [len(self.convs)])
        mu, log_var = self.out(pooled).chunk(2, dim=-1)
        return mu, log_var.clamp(-10, 10)


@register("model", "seq-vae")
class SeqVAE(ModelSpec):
    """VAE over residues: convolutional encoder, autoregressive transformer decoder, N(0, I) prior."""

    domain: ClassVar[str] = "sequences"
    Config = SeqVAEConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.15, mem_mb=16000)  # estimate: batch 32 of ~1,700 tokens (16S)
    canvas: ClassVar[bool] = False

    @staticmethod
    def build(cfg: SeqVAEConfig, state: dict[str, Any]) -> GenerativeModel:
        if state["labels"]:
            raise ValueError("seq-vae is unconditional: set model.conditional: false")
        encoder = ConvEncoder(len(Vocabulary(state["alphabet"])), cfg.latent_dim, cfg.encoder_channels,
                              cfg.encoder_layers)
        decoder = AutoregressiveModel(_network(cfg, state, extra_condition=cfg.latent_dim), pad_id=PAD,
                                      bos_id=BOS, eos_id=EOS)

        return VAE(encoder, decoder, StandardNormal(cfg.latent_dim), kl_weight=cfg.kl_weight,
                   kl_anneal_steps=cfg.kl_anneal_steps, free_bits=cfg.free_bits, loss_scale=_residues_per_batch,
                   posterior_bn=cfg.posterior_bn)


class LadderConvEncoder(ConvStack):
    """The bottom-up path of a hierarchical VAE: ``ConvStack``'s convolutions in ``stages`` groups,
    the masked mean over residues after each group a feature vector (B, channels), shallow to
    deep."""

    def __init__(self, vocab_size: int, channels: int, layers: int, stages: int, *, deep: bool = False) -> None:
        if layers < stages:
            raise ValueError(f"encoder_layers ({layers}) must be at least latent_layers ({stages}): one "
                             "convolution per stage")
        super().__init__(vocab_size, channels, layers)
        self.bounds = [layers if deep else round(layers * (i + 1) / stages) for i in range(stages)]

    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        stages = sorted(set(self.bounds))
        pooled = dict(zip(stages, self.pooled(batch, stages)))
        return [pooled[b] for b in self.bounds]


@register("model", "seq-hvae")
class SeqHVAE(ModelSpec):
    """Hierarchical (top-down, ladder) VAE over residues: bottom-up convolutional stages, a top-down
    prior and posterior per latent layer, the autoregressive transformer decoder."""

    domain: ClassVar[str] = "sequences"
    Config = SeqHVAEConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.2, mem_mb=16000)  # estimate: batch 32 of ~1,700 tokens (16S), a latent per group
    canvas: ClassVar[bool] = False

    @staticmethod
    def build(cfg: SeqHVAEConfig, state: dict[str, Any]) -> GenerativeModel:
        if state["labels"]:
            raise ValueError("seq-hvae is unconditional: set model.conditional: false")
        encoder = LadderConvEncoder(len(Vocabulary(state["alphabet"])), cfg.encoder_channels, cfg.encoder_layers,
                                    cfg.latent_layers, deep=cfg.deep_features)
        dims = [cfg.latent_dim] * (cfg.latent_layers - 1) + [cfg.top_latent_dim or cfg.latent_dim]
        condition = HierarchicalVAE.condition_dim(cfg.state_dim, dims, cfg.skip_latents, cfg.decoder_state,
                                                  cfg.decoder_layers)
        decoder = AutoregressiveModel(_network(cfg, state, extra_condition=condition), pad_id=PAD,
                                      bos_id=BOS, eos_id=EOS)
        return HierarchicalVAE(encoder, decoder, cfg.encoder_channels, dims,
                               state_dim=cfg.state_dim, hidden=cfg.state_dim, kl_weight=cfg.kl_weight,
                               kl_anneal_steps=cfg.kl_anneal_steps, free_bits=cfg.free_bits,
                               kl_balancing=cfg.kl_balancing, residual_posterior=cfg.residual_posterior,
                               skip_latents=cfg.skip_latents, decoder_state=cfg.decoder_state,
                               posterior_bn=cfg.posterior_bn, linear_posterior=cfg.linear_posterior,
                               decoder_layers=cfg.decoder_layers,
                               loss_scale=_residues_per_batch)
