"""Shared network backbones: a transformer over token ids (or continuous vectors), causal with a KV
cache (autoregressive models, VAE decoders) or bidirectional (masked-diffusion denoisers), used by
every family that models sequences (SMILES, SELFIES, DNA, proteins, trajectories); and Diffuser's
temporal U-Net over (B, H, D) windows (Janner et al. 2022)."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

PACKED_GROUP_ROWS = 64
"""Rows per attention group of ``CausalTransformer.hidden_packed`` (rows sorted by length, each group padded to its
own longest)."""


@dataclasses.dataclass(frozen=True)
class PackedGroup:
    """One attention group of packed states: positions ``start:end`` of the packed tensor are the first positions of
    ``rows`` consecutive rows; ``index`` (end - start,) is where they sit in the group's (rows, width) grid."""

    start: int
    end: int
    rows: int
    width: int
    index: torch.Tensor


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

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                              dropout_p=self.dropout if self.training else 0.0)

    def _self_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # Under CPU bf16 autocast the matmuls gain (AMX) but the fused CPU attention's bf16 backward
            # is ~6x slower than its fp32 one: attention runs in fp32 there.
            with torch.autocast("cpu", enabled=False):
                return self._attention(q.float(), k.float(), v.float()).to(q.dtype)
        return self._attention(q, k, v)

    def forward_packed(self, x: torch.Tensor, groups: "list[PackedGroup]") -> torch.Tensor:
        """The block on packed states x (N, D): the positions of rows laid out by ``groups`` (see
        ``CausalTransformer.hidden_packed``). The linear layers (most of the work) touch the N positions only;
        attention runs per group on its (rows, longest) grid, where absent positions have zero query, key and
        value: causal attention over a prefix of each row is exactly the padded batch's."""
        qkv = self.qkv(self.ln1(x))
        parts = []
        for group in groups:
            full = qkv.new_zeros(group.rows * group.width, qkv.shape[-1])
            full = full.index_copy(0, group.index, qkv[group.start:group.end]).view(group.rows, group.width, -1)
            q, k, v = (self._split(t) for t in full.chunk(3, dim=-1))
            attn = self._self_attention(q, k, v).transpose(1, 2).reshape(group.rows * group.width, -1)
            parts.append(attn.index_select(0, group.index))
        attn = torch.cat(parts) if parts else x.new_zeros(0, x.shape[-1])
        x = x + F.dropout(self.proj(attn), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))

    def forward(self, h: torch.Tensor, cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        """h: (B, T, D). Without a cache: causal self-attention over the T positions. With a
        cache (preallocated keys/values (B, H, L_max, D/H) and ``cache.length`` positions filled):
        T = 1 new position attends to every earlier one; its key/value are written in place."""
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is None:
            attn = self._self_attention(q, k, v)
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
    denoiser of masked diffusion); such a network has no ``step``. ``input_dim`` / ``output_dim``
    make it a network over continuous vectors (B, L, input_dim) -> (B, L, output_dim) (a linear
    embedding and an untied head; ``vocab_size`` is then unused).
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
        input_dim: int | None = None,
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.causal = causal
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.max_length = max_length
        self.d_model = d_model
        self.token_embedding = nn.Embedding(vocab_size, d_model) if input_dim is None else nn.Linear(input_dim, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.condition = nn.Linear(condition_dim, d_model) if condition_dim else None
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout, causal) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        if input_dim is None:
            self.head = nn.Linear(d_model, vocab_size, bias=False)
            self.head.weight = self.token_embedding.weight  # weight tying (Press & Wolf 2017)
        else:
            self.head = nn.Linear(d_model, output_dim or input_dim)
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

    def hidden(self, tokens: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B, L) (continuous: (B, L, input_dim)) -> the last block's normalised states
        (B, L, d_model), the features ``head`` maps to logits."""
        if tokens.shape[1] > self.max_length:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_length {self.max_length}")
        h = self._embed(tokens, 0, condition)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h)

    def hidden_packed(self, tokens: torch.Tensor, lengths: torch.Tensor, condition: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """The normalised states of only the first ``lengths`` (B,) positions of each row of ``tokens`` (B, L):
        (sum(lengths), d_model), row by row, equal to ``hidden``'s at those positions (causal attention never
        looks past them), at the cost of those positions alone in every linear layer; attention runs on rows
        sorted by length in groups of ``PACKED_GROUP_ROWS``, each padded to its own longest row. The padding's
        work is saved: on 228 randomized SMILES, 23 % of the padded batch padding, forward + backward took 25 %
        less time (``bench/bench_design.py``'s update section)."""
        if not self.causal:
            raise TypeError("packed states need causal attention (a position must not see the padding after it)")
        if tokens.shape[1] > self.max_length:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_length {self.max_length}")
        length = tokens.shape[1]
        lengths = lengths.to(tokens.device)
        order = torch.argsort(lengths, descending=True, stable=True)
        ordered = lengths[order]
        active = torch.arange(length, device=tokens.device) < ordered[:, None]
        h = self._embed(tokens[order], 0, condition[order] if condition is not None else None)
        x = h[active]
        groups, start = [], 0
        sizes = ordered.tolist()
        for first in range(0, len(sizes), PACKED_GROUP_ROWS):
            rows = sizes[first:first + PACKED_GROUP_ROWS]
            if not rows[0]:
                break  # sorted: every later row is empty too
            index = (torch.arange(rows[0], device=tokens.device) < ordered[first:first + len(rows), None])
            groups.append(PackedGroup(start, start + sum(rows), len(rows), rows[0], index.reshape(-1).nonzero()[:, 0]))
            start += sum(rows)
        for block in self.blocks:
            x = block.forward_packed(x, groups)
        # back to the callers' row order: sort the positions by their place in the (B, L) batch
        place = (order[:, None] * length + torch.arange(length, device=tokens.device))[active]
        return self.ln_f(x)[torch.argsort(place)]

    def forward(self, tokens: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B, L) -> logits (B, L, V); continuous: (B, L, input_dim) -> (B, L, output_dim)."""
        return self.head(self.hidden(tokens, condition))

    def new_cache(self, batch: int, like: torch.Tensor) -> KVCache:
        """An empty key/value cache for ``batch`` sequences of up to ``max_length`` positions."""
        block = self.blocks[0]
        return KVCache(len(self.blocks), batch, block.n_heads, self.max_length, self.d_model // block.n_heads, like)

    def step(self, tokens: torch.Tensor, cache: KVCache, condition: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B,) (continuous: (B, input_dim)) the next position after ``cache.length`` cached
        ones -> logits (B, V) (continuous: (B, output_dim)). Advances the cache by one position."""
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


# ----------------------------------------------------------------------------- temporal U-Net


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t: (B,) -> (B, dim) sinusoidal features (Vaswani et al. 2017), as Diffuser embeds the step."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class _Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, groups: int = 8) -> None:
        super().__init__(nn.Conv1d(channels_in, channels_out, kernel, padding=kernel // 2),
                         nn.GroupNorm(math.gcd(groups, channels_out), channels_out), nn.Mish())


class _ResidualTemporalBlock(nn.Module):
    """Two conv blocks with the time embedding added between them, and a residual connection."""

    def __init__(self, channels_in: int, channels_out: int, embed_dim: int, kernel: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Conv1dBlock(channels_in, channels_out, kernel),
                                     _Conv1dBlock(channels_out, channels_out, kernel)])
        self.time = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, channels_out))
        self.residual = nn.Conv1d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.blocks[0](x) + self.time(t)[..., None]
        return self.blocks[1](h) + self.residual(x)


class TemporalUNet(nn.Module):
    """Diffuser's temporal U-Net (Janner et al. 2022): 1D convolutions over the horizon of a
    (B, H, D) trajectory window, the diffusion time in [0, 1] embedded and added in every residual
    block, ``len(dim_mults) - 1`` halvings of the horizon (H must be divisible by 2 to that power),
    skip connections. ``forward(x (B, H, D), t (B,)) -> (B, H, D)``."""

    def __init__(self, transition_dim: int, dim: int = 32, dim_mults: tuple[int, ...] = (1, 2, 4),
                 kernel: int = 5) -> None:
        super().__init__()
        dims = [transition_dim, *(dim * m for m in dim_mults)]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downsamplings = len(pairs) - 1
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim))
        self.dim = dim
        self.downs = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.downs.append(nn.ModuleList([
                _ResidualTemporalBlock(c_in, c_out, dim, kernel), _ResidualTemporalBlock(c_out, c_out, dim, kernel),
                nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)]))
        mid = dims[-1]
        self.mid = nn.ModuleList([_ResidualTemporalBlock(mid, mid, dim, kernel),
                                  _ResidualTemporalBlock(mid, mid, dim, kernel)])
        self.ups = nn.ModuleList()
        for c_in, c_out in reversed(pairs[1:]):
            self.ups.append(nn.ModuleList([
                _ResidualTemporalBlock(c_out * 2, c_in, dim, kernel), _ResidualTemporalBlock(c_in, c_in, dim, kernel),
                nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1)]))
        self.final = nn.Sequential(_Conv1dBlock(dims[1], dims[1], kernel), nn.Conv1d(dims[1], transition_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        horizon = x.shape[1]
        if horizon % (2 ** self.downsamplings):
            raise ValueError(f"horizon {horizon} must be divisible by {2 ** self.downsamplings} "
                             f"({self.downsamplings} downsamplings)")
        h = x.transpose(1, 2)
        emb = self.time_mlp(sinusoidal_embedding(t * 1000, self.dim))
        skips = []
        for block1, block2, down in self.downs:
            h = block2(block1(h, emb), emb)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for block1, block2, up in self.ups:
            h = block2(block1(torch.cat([h, skips.pop()], dim=1), emb), emb)
            h = up(h)
        return self.final(h).transpose(1, 2)
