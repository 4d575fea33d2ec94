"""Shared network backbones: a causal transformer with a KV cache, used by every family that
models token sequences (SMILES, SELFIES, DNA, proteins)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class _Block(nn.Module):
    """Pre-LayerNorm transformer block (Vaswani et al. 2017; GPT-2 ordering)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
        )
        self.dropout = dropout

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, length, d = t.shape
        return t.view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(
        self, h: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None, causal: bool = True
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """h: (B, L, D); cache: keys/values (B, H, L_past, D/H) of earlier positions."""
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        # With a cache the new queries are the last positions, so every key is visible.
        attn = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal and cache is None, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, length, _ = attn.shape
        h = h + F.dropout(self.proj(attn.transpose(1, 2).reshape(b, length, -1)), self.dropout, self.training)
        h = h + self.mlp(self.ln2(h))
        return h, (k, v)


class CausalTransformer(nn.Module):
    """Decoder-only transformer over token ids, optionally conditioned on a vector.

    ``forward(tokens (B, L), condition (B, C) | None) -> logits (B, L, V)``; the condition is
    projected and added to every position's embedding (as in conditional language models / CVAEs).
    ``step`` advances one position with a key/value cache for O(L) sampling.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        n_layers: int = 4,
        n_heads: int = 8,
        max_length: int = 128,
        dropout: float = 0.1,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.max_length = max_length
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.condition = nn.Linear(condition_dim, d_model) if condition_dim else None
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2 scaled init of residual projections
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _embed(self, tokens: torch.Tensor, start: int, condition: torch.Tensor | None) -> torch.Tensor:
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        h = self.token_embedding(tokens) + self.position_embedding(positions)
        if self.condition is not None:
            if condition is None:
                raise ValueError("this network is conditional: pass condition (B, C)")
            h = h + self.condition(condition).unsqueeze(1)
        return h

    def forward(self, tokens: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B, L) -> logits (B, L, V)."""
        if tokens.shape[1] > self.max_length:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_length {self.max_length}")
        h = self._embed(tokens, 0, condition)
        for block in self.blocks:
            h, _ = block(h)
        return self.head(self.ln_f(h))

    def step(
        self, tokens: torch.Tensor, cache: KVCache | None, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """tokens: (B, T) new positions after the cached ones -> logits of the last (B, V), new cache."""
        start = 0 if cache is None else cache[0][0].shape[2]
        if cache is not None and tokens.shape[1] != 1:
            raise ValueError("with a cache, step takes one new position at a time")
        if start + tokens.shape[1] > self.max_length:
            raise ValueError(f"position {start + tokens.shape[1]} exceeds max_length {self.max_length}")
        h = self._embed(tokens, start, condition)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, None if cache is None else cache[i], causal=True)
            new_cache.append(kv)
        return self.head(self.ln_f(h[:, -1])), new_cache
