"""Evaluation metrics of generated sequences against real ones.

- k-mer spectrum divergence: Jensen-Shannon divergence (bits, in [0, 1]) between the normalized
  k-mer frequency vectors of the samples and of the test set, k = 1..6 for DNA, 1..3 for proteins
  (20^k columns grow fast); k-mers containing N or any symbol outside the alphabet are skipped.
- GC content and length: Wasserstein-1 distance between the per-sequence distributions
  (``scipy.stats.wasserstein_distance``); GC content is the fraction of G+C among non-N bases.
- Novelty: the global identity of each sample to its nearest training sequence (EMBOSS-needle
  identity with Biopython's pairwise aligner behind a k-mer prefilter, :mod:`clusters`); a sample
  is novel below ``NOVELTY_THRESHOLD``, the identity the split clusters at (97 % for DNA, the OTU
  level; 40 % for proteins), so every held-out sequence is novel by construction (up to the
  prefilter); exact copies of training sequences are counted by set lookup.
- V4 primer retention: the fraction of samples with both 515F and 806R sites
  (:func:`primers.has_v4_primer_sites`).

Invalid samples are ``None``: they count in ``n_samples`` and lower ``valid_fraction``; every other
metric is computed on the valid ones (NaN when there are none). The data row of a results table
is ``sequence_metrics`` with real held-out sequences in place of samples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

from dgm_science.domains.sequences.clusters import (
    DNA_LETTERS, KINDS, PROTEIN_LETTERS, SPLIT_DATASETS, kmer_indices, letters_for, nearest_identity,
)
from dgm_science.domains.sequences.primers import has_v4_primer_sites

NOVELTY_THRESHOLD = {"dna": SPLIT_DATASETS["rrna16s_v4"][1], "protein": SPLIT_DATASETS["swissprot"][1]}
"""A sample whose nearest training identity is below this is novel: the split's clustering
threshold (0.97 for DNA, 0.4 for proteins)."""
KMER_KS = {"dna": (1, 2, 3, 4, 5, 6), "protein": (1, 2, 3)}

__all__ = ["DNA_LETTERS", "PROTEIN_LETTERS", "NOVELTY_THRESHOLD", "KMER_KS", "kmer_spectrum", "js_divergence",
           "kmer_js", "gc_content", "wasserstein_1", "primer_retention", "sequence_metrics"]


def kmer_spectrum(sequences: Sequence[str], k: int, alphabet: str = DNA_LETTERS) -> np.ndarray:
    """Normalized frequency of every k-mer over ``alphabet`` (index in base |alphabet|, first letter
    most significant) pooled over ``sequences``, shape (|alphabet|^k,), summing to 1; k-mers with
    a symbol outside ``alphabet`` are skipped (pass "ACGT" for DNA so that N is); all zeros when
    there is no valid k-mer. Vectorized (:func:`clusters.kmer_indices` + ``np.bincount``)."""
    _, index = kmer_indices(sequences, k, alphabet)
    counts = np.bincount(index, minlength=len(alphabet) ** k).astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (log base 2, in [0, 1]) of two distributions of the same
    shape (normalized here); NaN if either is all zeros."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in shape: {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0))


def kmer_js(samples: Sequence[str], reference: Sequence[str], ks: Sequence[int] = KMER_KS["dna"],
            alphabet: str = DNA_LETTERS) -> dict[str, float]:
    """``kmer_js_k{k}``: Jensen-Shannon divergence (bits) between the k-mer spectra of ``samples``
    and ``reference`` for each k in ``ks``."""
    return {f"kmer_js_k{k}": js_divergence(kmer_spectrum(samples, k, alphabet), kmer_spectrum(reference, k, alphabet))
            for k in ks}


def gc_content(sequences: Sequence[str]) -> np.ndarray:
    """Fraction of G+C among the non-N bases of each sequence, shape (len(sequences),); NaN for a
    sequence without non-N bases."""
    out = np.full(len(sequences), np.nan)
    for i, s in enumerate(sequences):
        upper = s.upper()
        bases = len(upper) - upper.count("N")
        if bases:
            out[i] = (upper.count("G") + upper.count("C")) / bases
    return out


def wasserstein_1(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Wasserstein-1 (earth mover's) distance between two 1-D samples (NaNs dropped); NaN if
    either is empty."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def length_w1(samples: Sequence[str], reference: Sequence[str]) -> float:
    """Wasserstein-1 between the length distributions (residues or bases)."""
    return wasserstein_1([len(s) for s in samples], [len(s) for s in reference])


def gc_w1(samples: Sequence[str], reference: Sequence[str]) -> float:
    """Wasserstein-1 between the GC-content distributions."""
    return wasserstein_1(gc_content(samples), gc_content(reference))


def primer_retention(sequences: Sequence[str]) -> float:
    """Fraction of sequences with both V4 primer sites (515F at the start, 806R at the end, up to 2
    IUPAC mismatches each); NaN for no sequences."""
    if len(sequences) == 0:
        return float("nan")
    return float(np.mean([has_v4_primer_sites(s) for s in sequences]))


def sequence_metrics(samples: Sequence[str | None], reference_test: Sequence[str], train: Sequence[str], *,
                     kind: str = "dna", alphabet: str | None = None, v4: bool = False,
                     n_jobs: int = 1) -> dict[str, float]:
    """All metrics of ``samples`` (None = invalid) against the test set (k-mer JS, GC and length
    W1) and the training set (novelty, exact copies); ``alphabet`` (default: ``letters_for(kind)``)
    gives the k-mer letters, N dropped for DNA. Keys: n_samples, valid_fraction, unique_fraction,
    exact_copy_fraction, novelty_identity_mean, novel_fraction, kmer_js_k{k} (``KMER_KS[kind]``),
    length_w1, mean_length, and gc_w1 for DNA, primer_retention when ``v4``. Metrics of the valid
    samples are NaN when there are none."""
    if kind not in KINDS:
        raise ValueError(f"unknown sequence kind {kind!r} (expected one of {', '.join(KINDS)})")
    if v4 and kind != "dna":
        raise ValueError("v4=True needs kind='dna'")
    if len(reference_test) == 0 or len(train) == 0:
        raise ValueError("sequence_metrics needs non-empty test and training sets")
    alphabet = letters_for(kind) if alphabet is None else alphabet
    if kind == "dna":  # N (an unknown base) is never a letter of the DNA spectra, even in "ACGTN"
        alphabet = alphabet.replace("N", "").replace("n", "")
    valid = [s for s in samples if s is not None]
    nan = float("nan")
    out: dict[str, float] = {"n_samples": float(len(samples)),
                             "valid_fraction": len(valid) / len(samples) if len(samples) else nan}
    if valid:
        train_set = set(train)
        nearest = nearest_identity(valid, train, kind, n_jobs=n_jobs)
        out.update({
            "unique_fraction": len(set(valid)) / len(valid),
            "exact_copy_fraction": float(np.mean([s in train_set for s in valid])),
            "novelty_identity_mean": float(nearest.mean()),
            "novel_fraction": float(np.mean(nearest < NOVELTY_THRESHOLD[kind])),
        })
    else:
        out.update({key: nan for key in ("unique_fraction", "exact_copy_fraction", "novelty_identity_mean",
                                         "novel_fraction")})
    out.update({key: (value if valid else nan)
                for key, value in kmer_js(valid, reference_test, KMER_KS[kind], alphabet).items()})
    if kind == "dna":
        out["gc_w1"] = gc_w1(valid, reference_test)
    out["length_w1"] = length_w1(valid, reference_test)
    out["mean_length"] = float(np.mean([len(s) for s in valid])) if valid else nan
    if v4:
        out["primer_retention"] = primer_retention(valid)
    return out
