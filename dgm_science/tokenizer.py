"""SMILES / SELFIES tokenizers with a vocabulary built from the training set.

SMILES are split with the regular expression of Schwaller et al. (2019, Molecular Transformer);
SELFIES with ``selfies.split_selfies`` (Krenn et al. 2020).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

SMILES_REGEX = re.compile(
    r"(\[[^\[\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)
"""A bracket atom holds no '[' (``[^\[\]]``, not ``[^\]]``): otherwise a run of '[' without a
closing ']' is matched in time quadratic in its length (a 1 MB line: minutes)."""
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
MAX_SMILES_LENGTH = 10_000
"""Longest molecule string (characters) the tokenizers take: far beyond any molecule the token
models here can hold (``max_length`` is ~100 tokens), short enough that SELFIES encoding and RDKit
stay fast; a longer line (e.g. a corrupted file with no line breaks) is refused at once."""


def _short(smiles: str, limit: int = 60) -> str:
    """``smiles`` for an error message: its start only when long."""
    return repr(smiles) if len(smiles) <= limit else f"{smiles[:limit]!r}... ({len(smiles)} characters)"


def _check_length(smiles: str) -> None:
    if not isinstance(smiles, str):
        raise ValueError(f"a SMILES must be a string, got {type(smiles).__name__}")
    if len(smiles) > MAX_SMILES_LENGTH:
        raise ValueError(f"SMILES {_short(smiles)} is longer than {MAX_SMILES_LENGTH} characters")


def split_smiles(smiles: str) -> list[str]:
    """Regex tokens of a SMILES string; raises ValueError if the tokens don't cover the string or
    it is longer than ``MAX_SMILES_LENGTH``."""
    _check_length(smiles)
    tokens = SMILES_REGEX.findall(smiles)
    if "".join(tokens) != smiles:
        raise ValueError(f"SMILES {_short(smiles)} has characters the tokenizer does not cover")
    return tokens


def split_selfies(smiles: str) -> list[str]:
    """SELFIES tokens of a SMILES string; ValueError if selfies cannot encode it or it is longer
    than ``MAX_SMILES_LENGTH``."""
    import selfies

    _check_length(smiles)
    try:
        encoded = selfies.encoder(smiles)
    except (selfies.EncoderError, ValueError):  # selfies >= 2 raises (EncoderError is no ValueError)
        encoded = None
    if encoded is None:
        raise ValueError(f"SMILES {_short(smiles)} cannot be encoded as SELFIES")
    return list(selfies.split_selfies(encoded))


def _join_selfies(tokens: Sequence[str]) -> str | None:
    import selfies

    try:
        return selfies.decoder("".join(tokens))
    except selfies.DecoderError:
        return None


SPLITTERS = {"smiles": split_smiles, "selfies": split_selfies}


@dataclass
class Tokenizer:
    """Maps molecules (SMILES strings) to token ids and back; ``kind`` is "smiles" or "selfies"."""

    kind: str
    tokens: list[str] = field(default_factory=lambda: list(SPECIALS))

    def __post_init__(self) -> None:
        if self.kind not in SPLITTERS:
            raise ValueError(f"unknown tokenizer {self.kind!r}; known: {', '.join(SPLITTERS)}")
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def fit(cls, kind: str, smiles: Iterable[str]) -> "Tokenizer":
        """Vocabulary of every token in ``smiles``, most frequent first (ties alphabetical)."""
        counts: Counter[str] = Counter()
        split = SPLITTERS[kind]
        for s in smiles:
            counts.update(split(s))
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        return cls(kind, list(SPECIALS) + ordered)

    def split(self, smiles: str) -> list[str]:
        return SPLITTERS[self.kind](smiles)

    def encode(self, smiles: str) -> list[int]:
        """``<bos> tokens <eos>`` ids; tokens outside the vocabulary map to <unk>."""
        return [self.bos_id] + [self.index.get(t, self.unk_id) for t in self.split(smiles)] + [self.eos_id]

    def encode_batch(self, smiles: Sequence[str], max_length: int) -> tuple[torch.Tensor, int]:
        """(B, L) padded ids and the number of molecules longer than ``max_length`` (truncated rows
        keep no <eos>, so the caller can drop them)."""
        ids = [self.encode(s) for s in smiles]
        length = min(max_length, max(len(x) for x in ids))
        out = torch.full((len(ids), length), self.pad_id, dtype=torch.long)
        too_long = 0
        for i, x in enumerate(ids):
            too_long += len(x) > max_length
            x = x[:length]
            out[i, : len(x)] = torch.tensor(x)
        return out, too_long

    def decode(self, ids: Sequence[int]) -> str | None:
        """Molecule string of ids (after <bos>, up to <eos>); None if there is no <eos> or an <unk>."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.bos_id or i == self.pad_id:
                continue
            if i == self.eos_id:
                if self.kind == "selfies":
                    return _join_selfies(out) or None
                return "".join(out)
            if i == self.unk_id or not 0 <= i < len(self.tokens):
                return None
            out.append(self.tokens[i])
        return None

    def __len__(self) -> int:
        return len(self.tokens)

    def state(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        return cls(state["kind"], list(state["tokens"]))
