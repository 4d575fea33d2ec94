"""Autoregressive family: p(x) = prod_t p(x_t | x_<t[, c]) over token sequences."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dgm_science.backbones import CausalTransformer
from dgm_science.base import GenerativeModel


class AutoregressiveModel(GenerativeModel):
    """Exact-likelihood sequence model.

    A batch is a dict with ``tokens``: (B, L) long, laid out ``<bos> x_1 .. x_T <eos> <pad>..``, and
    optionally ``condition``: (B, C). ``log_prob`` sums log p over x_1..<eos> (nats, shape (B,)).
    ``sample`` returns (n, L) token ids starting with <bos>, padded with <pad> after <eos>.
    """

    likelihood = "exact"

    def __init__(
        self,
        network: CausalTransformer,
        *,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.temperature = temperature

    def _token_log_probs(self, batch: dict[str, Any], condition: torch.Tensor | None) -> torch.Tensor:
        """Per-position log p(x_t | x_<t): (B, L-1), zero at padding."""
        tokens = batch["tokens"]
        if condition is None:
            condition = batch.get("condition")
        logits = self.network(tokens[:, :-1], condition)
        targets = tokens[:, 1:]
        log_p = -F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
        return log_p * (targets != self.pad_id)

    def log_prob(self, batch: dict[str, Any], condition: torch.Tensor | None = None) -> torch.Tensor:
        return self._token_log_probs(batch, condition).sum(dim=1)

    def loss(self, batch: dict[str, Any], condition: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood per token (nats)."""
        log_p = self._token_log_probs(batch, condition)
        return -log_p.sum() / (batch["tokens"][:, 1:] != self.pad_id).sum().clamp(min=1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        temperature: float | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling with a key/value cache; stops when every row has emitted <eos>."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        temperature = self.temperature if temperature is None else temperature
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        max_length = max_length or self.network.max_length
        device = self.network.head.weight.device
        tokens = torch.full((n, max_length), self.pad_id, dtype=torch.long, device=device)
        tokens[:, 0] = self.bos_id
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        cache = self.network.new_cache(n, self.network.head.weight)
        for t in range(1, max_length):
            logits = self.network.step(tokens[:, t - 1], cache, condition)
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad_id), nxt)
            tokens[:, t] = nxt
            finished |= nxt == self.eos_id
            if bool(finished.all()):
                return tokens[:, : t + 1]
        return tokens
