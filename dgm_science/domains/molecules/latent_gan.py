"""LatentGAN (Prykhodko et al. 2019): a WGAN-GP in the code space of a SMILES autoencoder, the two
trained one after the other inside one ``dgm train`` job (``dgm_science.families.gan.LatentGAN``).

Autoencoder (``SmilesAutoencoder``): a GRU encoder reads ``<bos> tokens <eos>`` and its last hidden
state gives the code c = tanh(W h) in [-1, 1]^D; a GRU decoder, its state started from c and c fed
beside every input token, predicts the tokens (teacher forcing, cross-entropy). During training
Gaussian noise of sd ``code_noise`` is added to c (a denoising bottleneck, as the paper's
heteroencoder has): the decoder learns to decode the neighbourhood of each code, which is where a
generator's codes land. Samples are decoded greedily (argmax at every step), so every bit of
diversity in the samples is the generator's, and SMILES, not SELFIES, by default: validity is not
given by the decoding (there is no valency correction to apply).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.config import bounded
from dgm_science.tokenizer import Tokenizer
from dgm_science.families.gan import LatentCodec, LatentGAN
from dgm_science.registry import register
from dgm_science.resources import TrainResources


@dataclasses.dataclass(frozen=True)
class LatentGANConfig:
    """SMILES autoencoder (``embedding_dim``, GRU ``hidden_dim`` of ``layers`` layers, code of
    ``code_dim`` with training noise ``code_noise``) and the WGAN-GP on its codes (noise z of
    ``latent_dim``, MLP ``generator_hidden`` / ``critic_hidden``); the first ``autoencoder_steps``
    optimisation steps train the autoencoder, the rest (to ``train.max_steps``) the GAN."""

    tokenizer: str = bounded("smiles", choices=("smiles", "selfies"))
    max_length: int = bounded(100, minimum=4)
    embedding_dim: int = bounded(64, minimum=1)
    hidden_dim: int = bounded(256, minimum=1)
    layers: int = bounded(1, minimum=1)
    code_dim: int = bounded(64, minimum=1)
    code_noise: float = bounded(0.1, minimum=0)
    """sd of the Gaussian noise added to the codes while the autoencoder trains"""
    dropout: float = bounded(0.0, minimum=0, maximum=1)
    latent_dim: int = bounded(64, minimum=1)
    generator_hidden: list[int] = bounded([256, 256], minimum=1)
    critic_hidden: list[int] = bounded([256, 256], minimum=1)
    autoencoder_steps: int = bounded(1000, minimum=0)
    critic_steps: int = bounded(5, minimum=1)
    gradient_penalty: float = bounded(10.0, minimum=0)
    code_bank: int = bounded(0, minimum=0)
    """GAN stage: encode a real batch once per critic cycle into a bank of this many codes and draw
    every step's real codes from it (0: encode every step's batch)"""


class SmilesAutoencoder(LatentCodec):
    """GRU encoder -> code in [-1, 1]^D -> GRU decoder over token ids (B, L) ``<bos> ... <eos> <pad>*``.

    ``encode(batch) -> (B, D)``; ``reconstruction_loss(batch) -> (B,)`` the mean token cross-entropy
    (nats per token) of the decoder given the noisy code; ``decode(codes) -> (B, max_length)`` greedy
    token ids starting with ``<bos>``, ``<pad>`` after the first ``<eos>``."""

    def __init__(self, vocab: int, *, pad_id: int, bos_id: int, eos_id: int, embedding_dim: int, hidden_dim: int,
                 layers: int, code_dim: int, code_noise: float, dropout: float, max_length: int) -> None:
        super().__init__()
        self.code_dim, self.code_noise, self.max_length = code_dim, code_noise, max_length
        self.pad_id, self.bos_id, self.eos_id, self.layers = pad_id, bos_id, eos_id, layers
        self.embedding = nn.Embedding(vocab, embedding_dim, padding_idx=pad_id)
        inner = dropout if layers > 1 else 0.0
        self.encoder = nn.GRU(embedding_dim, hidden_dim, layers, batch_first=True, dropout=inner)
        self.to_code = nn.Linear(hidden_dim * layers, code_dim)
        self.from_code = nn.Linear(code_dim, hidden_dim * layers)
        self.decoder = nn.GRU(embedding_dim + code_dim, hidden_dim, layers, batch_first=True, dropout=inner)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = batch["tokens"]
        lengths = (tokens != self.pad_id).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(tokens), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, h = self.encoder(packed)  # (layers, B, H): the state after each sequence's last token
        return torch.tanh(self.to_code(h.transpose(0, 1).flatten(1)))

    def _initial_state(self, codes: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.from_code(codes))
        return h.view(codes.shape[0], self.layers, -1).transpose(0, 1).contiguous()

    def reconstruction_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = batch["tokens"]
        codes = self.encode(batch)
        if self.training and self.code_noise > 0:
            codes = codes + self.code_noise * torch.randn_like(codes)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        x = torch.cat([self.dropout(self.embedding(inputs)), codes.unsqueeze(1).expand(-1, inputs.shape[1], -1)], -1)
        h, _ = self.decoder(x, self._initial_state(codes))
        nll = F.cross_entropy(self.out(self.dropout(h)).transpose(1, 2), targets, ignore_index=self.pad_id,
                              reduction="none")
        mask = targets != self.pad_id
        return nll.sum(1) / mask.sum(1).clamp(min=1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Greedy decoding of each code (no randomness: ``generator`` is unused)."""
        n = codes.shape[0]
        out = torch.full((n, self.max_length), self.pad_id, dtype=torch.long, device=codes.device)
        out[:, 0] = self.bos_id
        h = self._initial_state(codes)
        token = out[:, 0]
        done = torch.zeros(n, dtype=torch.bool, device=codes.device)
        for t in range(1, self.max_length):
            x = torch.cat([self.embedding(token), codes], -1).unsqueeze(1)
            y, h = self.decoder(x, h)
            token = self.out(y[:, 0]).argmax(-1)
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            out[:, t] = token
            done |= token == self.eos_id
            if bool(done.all()):
                break
        return out


@register("model", "latent-gan")
class LatentGANSpec(ModelSpec):
    """Registry entry: LatentGAN, a WGAN-GP on the codes of a SMILES GRU autoencoder trained in the
    same run (an implicit model: samples, no likelihood)."""

    domain: ClassVar[str] = "molecules"
    Config = LatentGANConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.03, mem_mb=16000)  # estimate: 1-layer GRUs and MLPs, batch 128
    implicit: ClassVar[bool] = True
    """No p(x): log-likelihood columns stay empty and no typical set is scored."""
    training_only_keys: ClassVar[tuple[str, ...]] = ("dropout", "code_noise", "autoencoder_steps", "critic_steps",
                                                     "gradient_penalty", "code_bank")

    @staticmethod
    def build(cfg: LatentGANConfig, state: dict[str, Any]) -> GenerativeModel:
        tokenizer = Tokenizer.from_state(state["tokenizer"])
        codec = SmilesAutoencoder(
            len(tokenizer), pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
            embedding_dim=cfg.embedding_dim, hidden_dim=cfg.hidden_dim, layers=cfg.layers, code_dim=cfg.code_dim,
            code_noise=cfg.code_noise, dropout=cfg.dropout, max_length=cfg.max_length,
        )
        return LatentGAN(codec, latent_dim=cfg.latent_dim, generator_hidden=list(cfg.generator_hidden),
                         critic_hidden=list(cfg.critic_hidden), autoencoder_steps=cfg.autoencoder_steps,
                         critic_steps=cfg.critic_steps, gradient_penalty=cfg.gradient_penalty, code_bank=cfg.code_bank)
