"""PCR primer sites with IUPAC codes and mismatches, and the 16S rRNA V4 region between them.

V4 is amplified by the Earth Microbiome Project's 515F (Parada et al. 2016) and 806R (Apprill et
al. 2015) primers; the region is what lies between the 3' end of 515F and the start of the
reverse complement of 806R on the forward strand; the V4 *amplicon* is that region with both primer
sites (what a 515F/806R PCR copies), the unit this project models, so that a generated amplicon can
be checked for its primer sites. Matching is IUPAC-aware: a primer position
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


def extract_v4(sequence: str, max_mismatches: int = 2, *, with_primers: bool = False) -> str | None:
    """The V4 region of a 16S rRNA gene (between 515F and 806R, primers excluded; with
    ``with_primers`` the amplicon from the start of 515F to the end of 806R's site, the gene's own
    bases at the primer sites), or None when either site is missing or they are out of order."""
    forward = find_primer(sequence, PRIMER_515F, max_mismatches)
    reverse = find_primer(sequence, reverse_complement(PRIMER_806R), max_mismatches)
    if forward is None or reverse is None or reverse.start <= forward.end:
        return None
    if with_primers:
        return sequence[forward.start:reverse.end]
    return sequence[forward.end:reverse.start]


def has_v4_primer_sites(sequence: str, max_mismatches: int = 2) -> bool:
    """Whether an amplicon starts with a 515F site and ends with an 806R site (reverse
    complement), each with at most ``max_mismatches`` IUPAC mismatches."""
    n_f, n_r = len(PRIMER_515F), len(PRIMER_806R)
    if len(sequence) < n_f + n_r:
        return False
    return (find_primer(sequence[:n_f], PRIMER_515F, max_mismatches) is not None
            and find_primer(sequence[-n_r:], reverse_complement(PRIMER_806R), max_mismatches) is not None)
