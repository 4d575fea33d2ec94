"""PCR primer sites with IUPAC codes and mismatches, and the 16S rRNA V4 region between them.

V4 is amplified by the Earth Microbiome Project's 515F (Parada et al. 2016) and 806R (Apprill et
al. 2015) primers; the region is what lies between the 3' end of 515F and the start of the
reverse complement of 806R on the forward strand. Matching is IUPAC-aware: a primer position
matches a base when their IUPAC sets intersect; up to ``max_mismatches`` positions may differ.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

PRIMER_515F = "GTGYCAGCMGCCGCGGTAA"
PRIMER_806R = "GGACTACNVGGGTWTCTAAT"

_IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T", "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT",
    "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
}
_BIT = {"A": 1, "C": 2, "G": 4, "T": 8}
_MASK = np.zeros(256, dtype=np.uint8)
for _code, _bases in _IUPAC.items():
    _MASK[ord(_code)] = sum(_BIT[b] for b in _bases)
_COMPLEMENT = str.maketrans("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an IUPAC DNA string (upper case)."""
    return sequence.upper().translate(_COMPLEMENT)[::-1]


def _masks(sequence: str) -> np.ndarray:
    return _MASK[np.frombuffer(sequence.upper().encode("ascii"), dtype=np.uint8)]


class PrimerSite(NamedTuple):
    start: int
    end: int
    mismatches: int


def find_primer(sequence: str, primer: str, max_mismatches: int = 2) -> PrimerSite | None:
    """The leftmost site of ``primer`` on ``sequence`` (forward strand) with the fewest mismatches,
    if that is at most ``max_mismatches``; None otherwise. Vectorized over all positions."""
    if len(sequence) < len(primer):
        return None
    windows = np.lib.stride_tricks.sliding_window_view(_masks(sequence), len(primer))
    mismatches = ((windows & _masks(primer)) == 0).sum(axis=1)
    best = int(np.argmin(mismatches))
    if mismatches[best] > max_mismatches:
        return None
    return PrimerSite(best, best + len(primer), int(mismatches[best]))


def extract_v4(sequence: str, max_mismatches: int = 2) -> str | None:
    """The V4 region of a 16S rRNA gene (between 515F and 806R, primers excluded), or None when
    either site is missing or they are out of order."""
    forward = find_primer(sequence, PRIMER_515F, max_mismatches)
    reverse = find_primer(sequence, reverse_complement(PRIMER_806R), max_mismatches)
    if forward is None or reverse is None or reverse.start <= forward.end:
        return None
    return sequence[forward.end:reverse.start]
