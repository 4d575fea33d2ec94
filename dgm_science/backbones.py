"""Shared network backbones: a transformer over token ids, causal with a KV cache (autoregressive
models, VAE decoders) or bidirectional (masked-diffusion denoisers), used by every family that
models token sequences (SMILES, SELFIES, DNA, proteins)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

class _Block(nn.Module):
    """Pre-LayerNorm transformer block (Vaswani et al. 2017; GPT-2 ordering)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, causal: bool = True) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.causal = causal
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

    def forward(self, h: torch.Tensor, cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        """h: (B, T, D). Without a cache: causal self-attention over the T positions. With a
        cache (preallocated keys/values (B, H, L_max, D/H) and ``cache.length`` positions filled):
        T = 1 new position attends to every earlier one; its key/value are written in place."""
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is None:
            attn = F.scaled_dot_product_attention(
                q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            keys, values = cache.store(layer, k, v)
            # One query per sequence: two batched matmuls beat the fused kernel's overhead here.
            scores = (q @ keys.transpose(-2, -1)) * q.shape[-1] ** -0.5
            attn = torch.softmax(scores.float(), dim=-1).to(values.dtype) @ values
        b, _, length, _ = attn.shape
        h = h + F.dropout(self.proj(attn.transpose(1, 2).reshape(b, length, -1)), self.dropout, self.training)
        return h + self.mlp(self.ln2(h))


class KVCache:
    """Preallocated per-layer keys/values for incremental decoding: writing position t costs O(1)
    instead of re-concatenating the whole history each step."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_length: int, head_dim: int,
                 like: torch.Tensor) -> None:
        shape = (n_layers, batch, n_heads, max_length, head_dim)
        self.keys, self.values = like.new_zeros(shape), like.new_zeros(shape)
        self.length = 0

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write position ``length``'s k, v: (B, H, 1, D/H) of ``layer``; return all filled positions."""
        i, t = layer, self.length
        self.keys[i, :, :, t : t + 1] = k
        self.values[i, :, :, t : t + 1] = v
        return self.keys[i, :, :, : t + 1], self.values[i, :, :, : t + 1]


class CausalTransformer(nn.Module):
    """Decoder-only transformer over token ids, optionally conditioned on a vector.

    ``forward(tokens (B, L), condition (B, C) | None) -> logits (B, L, V)``; the condition is
    projected and added to every position's embedding (as in conditional language models / CVAEs).
    ``step`` advances one position with a preallocated key/value cache (``new_cache``).
    ``causal=False`` makes every position attend to every other (a bidirectional encoder, e.g. the
    denoiser of masked diffusion); such a network has no ``step``.
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
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.causal = causal
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.max_length = max_length
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.condition = nn.Linear(condition_dim, d_model) if condition_dim else None
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout, causal) for _ in range(n_layers))
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
            h = block(h)
        return self.head(self.ln_f(h))

    def new_cache(self, batch: int, like: torch.Tensor) -> KVCache:
        """An empty key/value cache for ``batch`` sequences of up to ``max_length`` positions."""
        block = self.blocks[0]
        d_model = self.token_embedding.embedding_dim
        return KVCache(len(self.blocks), batch, block.n_heads, self.max_length, d_model // block.n_heads, like)

    def step(self, tokens: torch.Tensor, cache: KVCache, condition: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B,) the next position after ``cache.length`` cached ones -> logits (B, V).
        Advances the cache by one position."""
        if not self.causal:
            raise TypeError("a bidirectional network has no incremental step")
        start = cache.length
        if start >= self.max_length:
            raise ValueError(f"position {start + 1} exceeds max_length {self.max_length}")
        h = self._embed(tokens.unsqueeze(1), start, condition)
        for layer, block in enumerate(self.blocks):
            h = block(h, cache, layer)
        cache.length += 1
        return self.head(self.ln_f(h[:, -1]))
