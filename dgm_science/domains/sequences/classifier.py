"""An independent k-mer classifier of phylum, trained on real 16S sequences: the RDP naive Bayesian
classifier (Wang, Garrity, Tiedje & Cole 2007, Appl. Environ. Microbiol. 73:5261).

Words are the distinct 8-mers of a sequence (presence, not counts; k-mers with N skipped). With N
training sequences of which n(w) contain word w, the word prior is P_w = (n(w) + 0.5) / (N + 1);
for a class G of M training sequences of which m(w) contain w, P(w|G) = (m(w) + P_w) / (M + 1).
A query is assigned the class maximizing the sum of log P(w|G) over its distinct words (uniform
class prior, as in the paper): one sparse (queries x 4^8) by dense (4^8 x classes) product. The
paper's bootstrap confidence (100 draws of 1/8 of the query's words) is ``predict_confidence``.
The paper classifies genera; here the classes are phyla (``PHYLUM_CLASSES``), used to score
whether a conditional model generates sequences of the requested phylum (``label_accuracy``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from dgm_science.domains.sequences.clusters import DNA_LETTERS, kmer_profiles

PHYLUM_CLASSES = ("Proteobacteria", "Firmicutes", "Actinobacteria", "Bacteroidetes", "other")
"""The four largest phyla of the committed 16S data, and every other phylum."""


def phylum_class(phylum: str | None) -> str | None:
    """The class of a phylum: itself if among the four largest, "other" for any other phylum, None
    for an unknown one (None, empty or "NA")."""
    if phylum is None or not phylum.strip() or phylum == "NA":
        return None
    return phylum if phylum in PHYLUM_CLASSES[:-1] else "other"


class KmerNaiveBayes:
    """The RDP naive Bayesian classifier (module docstring) over k-mer presence."""

    def __init__(self, k: int = 8, alphabet: str = DNA_LETTERS) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.alphabet = alphabet
        self.classes: tuple[str, ...] = ()
        self.n_sequences = 0
        self.class_sizes = np.zeros(0, dtype=np.int64)
        self.word_counts: sp.csr_matrix | None = None
        """m(w) per class, shape (classes, |alphabet|^k); n(w) is its column sum."""
        self._log_prob: np.ndarray | None = None

    def fit(self, sequences: Sequence[str], labels: Sequence[str]) -> "KmerNaiveBayes":
        """Count word occurrences per class over ``sequences`` with their ``labels``; returns self."""
        if len(sequences) != len(labels):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        if len(sequences) == 0:
            raise ValueError("KmerNaiveBayes.fit needs at least one labelled sequence")
        if any(label is None for label in labels):
            raise ValueError("KmerNaiveBayes.fit got a None label: drop unlabelled sequences first")
        classes = tuple(sorted(set(labels)))
        index = {c: i for i, c in enumerate(classes)}
        rows = np.array([index[label] for label in labels], dtype=np.int64)
        membership = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))),
                                   shape=(len(classes), len(rows)))
        counts = (membership @ kmer_profiles(sequences, self.k, self.alphabet)).tocsr()
        counts.data = np.rint(counts.data)
        self._set(classes, np.bincount(rows, minlength=len(classes)), counts)
        return self

    def _set(self, classes: tuple[str, ...], class_sizes: np.ndarray, counts: sp.csr_matrix) -> None:
        self.classes = classes
        self.class_sizes = np.asarray(class_sizes, dtype=np.int64)
        self.n_sequences = int(self.class_sizes.sum())
        self.word_counts = counts
        dense = counts.toarray().astype(np.float64)  # (classes, words)
        prior = (dense.sum(axis=0) + 0.5) / (self.n_sequences + 1)  # P_w
        self._log_prob = np.log((dense + prior) / (self.class_sizes[:, None] + 1.0)).T.copy()  # (words, classes)

    def _check_fitted(self) -> np.ndarray:
        if self._log_prob is None:
            raise ValueError("KmerNaiveBayes is not fitted: call fit() or from_state() first")
        return self._log_prob

    def decision_function(self, sequences: Sequence[str]) -> np.ndarray:
        """Sum of log P(w|G) over each query's distinct words, shape (len(sequences), classes)."""
        log_prob = self._check_fitted()
        if len(sequences) == 0:
            return np.zeros((0, len(self.classes)))
        return np.asarray(kmer_profiles(sequences, self.k, self.alphabet).astype(np.float64) @ log_prob)

    def predict_log_proba(self, sequences: Sequence[str]) -> np.ndarray:
        """Log posterior under a uniform class prior (``decision_function`` normalized by
        log-sum-exp), shape (len(sequences), classes)."""
        scores = self.decision_function(sequences)
        if scores.size == 0:
            return scores
        top = scores.max(axis=1, keepdims=True)
        return scores - (top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True)))

    def predict(self, sequences: Sequence[str]) -> list[str]:
        """The best class of each sequence (ties, e.g. a sequence without a valid k-mer, where all
        classes score 0: the first class in sorted order)."""
        scores = self.decision_function(sequences)
        return [self.classes[i] for i in np.argmax(scores, axis=1)]

    def predict_confidence(self, sequences: Sequence[str], n_bootstrap: int = 100, seed: int = 0) -> np.ndarray:
        """The paper's bootstrap confidence: the fraction of ``n_bootstrap`` draws of 1/8 of each
        query's words (with replacement) whose best class is the full-word prediction, shape
        (len(sequences),); NaN for a query without words."""
        log_prob = self._check_fitted()
        profiles = kmer_profiles(sequences, self.k, self.alphabet)
        full = np.argmax(np.asarray(profiles.astype(np.float64) @ log_prob), axis=1)
        rng = np.random.default_rng(seed)
        out = np.full(len(sequences), np.nan)
        for i in range(len(sequences)):
            words = profiles.indices[profiles.indptr[i]:profiles.indptr[i + 1]]
            if len(words) == 0:
                continue
            draws = words[rng.integers(0, len(words), size=(n_bootstrap, max(1, len(words) // 8)))]
            out[i] = float(np.mean(np.argmax(log_prob[draws].sum(axis=1), axis=1) == full[i]))
        return out

    def to_state(self) -> dict[str, Any]:
        """A JSON-able dict (lists) of the fitted counts; ``from_state`` restores the classifier."""
        self._check_fitted()
        counts = self.word_counts.tocsr()  # type: ignore[union-attr]
        return {"k": self.k, "alphabet": self.alphabet, "classes": list(self.classes),
                "class_sizes": self.class_sizes.tolist(), "indptr": counts.indptr.tolist(),
                "indices": counts.indices.tolist(), "counts": counts.data.astype(np.int64).tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "KmerNaiveBayes":
        """The classifier of a ``to_state`` dict; ValueError naming the missing key."""
        missing = [key for key in ("k", "alphabet", "classes", "class_sizes", "indptr", "indices", "counts")
                   if key not in state]
        if missing:
            raise ValueError(f"KmerNaiveBayes state lacks {', '.join(missing)}")
        model = cls(int(state["k"]), str(state["alphabet"]))
        shape = (len(state["classes"]), len(model.alphabet) ** model.k)
        counts = sp.csr_matrix((np.asarray(state["counts"], dtype=np.float64), np.asarray(state["indices"]),
                                np.asarray(state["indptr"])), shape=shape)
        model._set(tuple(state["classes"]), np.asarray(state["class_sizes"]), counts)
        return model


def label_accuracy(classifier: KmerNaiveBayes, sequences: Sequence[str | None], requested_labels: Sequence[str]) -> float:
    """Fraction of the non-None ``sequences`` whose predicted class equals the requested label (the
    conditional-generation score); NaN when all are None."""
    if len(sequences) != len(requested_labels):
        raise ValueError(f"{len(sequences)} sequences but {len(requested_labels)} requested labels")
    keep = [i for i, s in enumerate(sequences) if s is not None]
    if not keep:
        return float("nan")
    predicted = classifier.predict([sequences[i] for i in keep])  # type: ignore[misc]
    return float(np.mean([p == requested_labels[i] for p, i in zip(predicted, keep)]))
