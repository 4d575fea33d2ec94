"""The token layout every sequence model shares: the vocabulary of an alphabet, token rows and
the one-hot label condition.

Ids 0..3 are ``<pad> <bos> <eos> <mask>``, then the alphabet's letters. A causal model reads
``<bos> x_1 .. x_T <eos> <pad> ..``; a masked-diffusion model reads the fixed-length canvas
``x_1 .. x_T <eos> <pad> ..`` of ``max_length - 1`` positions, so both model the length. A row
that is not ``residues+ <eos> <pad>*`` (no end, an empty sequence, a special token inside)
decodes to None: invalid samples are counted, never repaired.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

SPECIALS = ("<pad>", "<bos>", "<eos>", "<mask>")
PAD, BOS, EOS, MASK = range(4)
UNKNOWN_LABEL = "unknown"


class Vocabulary:
    """Token ids of an alphabet: the four specials, then one id per letter."""

    def __init__(self, alphabet: str) -> None:
        self.alphabet = alphabet
        self.tokens = list(SPECIALS) + list(alphabet)
        self._lookup = np.full(256, -1, dtype=np.int64)
        for i, letter in enumerate(alphabet):
            self._lookup[ord(letter)] = len(SPECIALS) + i
        self._letters = np.frombuffer(("\0" * len(SPECIALS) + alphabet).encode("ascii"), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, sequence: str) -> np.ndarray:
        """Residue ids (T,) of ``sequence``; ValueError naming the first letter outside the alphabet."""
        ids = self._lookup[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]
        if (ids < 0).any():
            bad = sequence[int(np.argmax(ids < 0))]
            raise ValueError(f"letter {bad!r} is not in the alphabet {self.alphabet}")
        return ids

    def decode_row(self, ids: np.ndarray, canvas: bool = False) -> str | None:
        """The sequence of a row laid out ``<bos> residues+ <eos> <pad>*`` (``canvas``: without the
        <bos>), or None."""
        if not canvas:
            if not len(ids) or ids[0] != BOS:
                return None
            ids = ids[1:]
        ends = np.flatnonzero(ids == EOS)
        if not len(ends) or ends[0] == 0:
            return None
        end = int(ends[0])
        body, tail = ids[:end], ids[end + 1:]
        if (body < len(SPECIALS)).any() or (tail != PAD).any():
            return None
        return self._letters[body].tobytes().decode("ascii")


def token_rows(rows: Sequence[np.ndarray], length: int | None, canvas: bool) -> torch.Tensor:
    """(B, L) long: ``<bos> ids <eos> <pad>..`` (causal; L = longest + 2) or ``ids <eos> <pad>..``
    (canvas; L = ``length``)."""
    start = 0 if canvas else 1
    width = length if length is not None else max(len(r) for r in rows) + 2
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    if not canvas:
        out[:, 0] = BOS
    for i, ids in enumerate(rows):
        out[i, start:start + len(ids)] = ids
        out[i, start + len(ids)] = EOS
    return torch.from_numpy(out)


class Layout(NamedTuple):
    """A model's token layout: ``canvas`` (no <bos>, fixed width ``width``) or causal (width per
    batch, ``width`` None); ``max_residues`` is the longest sequence that fits."""

    canvas: bool
    width: int | None
    max_residues: int

    @classmethod
    def of(cls, state: dict[str, Any]) -> "Layout":
        max_length = int(state["max_length"])
        if state["layout"] == "canvas":
            return cls(True, max_length - 1, max_length - 2)
        return cls(False, None, max_length - 2)

    def tokens(self, rows: Sequence[np.ndarray]) -> torch.Tensor:
        return token_rows(rows, self.width, self.canvas)



def condition_matrix(state: dict[str, Any], labels: Sequence[str | None]) -> torch.Tensor | None:
    """One-hot (B, C) over ``state["labels"]`` (the last is ``unknown``, for unlabelled
    sequences); None for an unconditional model. An unknown label name is a ValueError."""
    classes = state.get("labels") or []
    if not classes:
        return None
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for label in labels:
        name = UNKNOWN_LABEL if label is None else label
        if name not in index:
            raise ValueError(f"label {label!r} is not one of this model's labels: {', '.join(classes)}")
        rows.append(index[name])
    return torch.nn.functional.one_hot(torch.tensor(rows, dtype=torch.long), len(classes)).float()
