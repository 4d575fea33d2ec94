"""Global sequence identity, a k-mer prefilter, single-linkage identity clusters and a cluster split.

Identity is what EMBOSS ``needle`` reports: the number of identical aligned columns divided by the
alignment length (all columns, gaps and end gaps included) of a Needleman-Wunsch global alignment
with needle's defaults: EDNAFULL (``NUC.4.4``: match 5, mismatch -4, N against a base -2) for DNA,
BLOSUM62 for proteins, gap open 10 and extend 0.5 (``open_gap_score=-10``,
``extend_gap_score=-0.5``), end gaps free (needle's default ``-endweight false``; they still count
in the denominator, so a short sequence against a long one has a low identity). The aligner is
Biopython's ``Align.PairwiseAligner(mode="global")``, built once per kind.

All-against-all alignment is too slow (about 1 ms per V4 pair), so every search goes through a
k-mer prefilter (8-mers for DNA, 3-mers for proteins; k-mers with N or any other symbol skipped):
the references that share the most distinct k-mers with a query, relative to the larger of the
two k-mer sets (see ``top_candidates``), are aligned exactly. A pair the prefilter does not rank
among the top candidates is never aligned, so every identity found here is a lower bound of the
true nearest identity (measured recall in ``top_candidates``).

Splits (``python -m dgm_science.domains.sequences.clusters --data data/sequences --jobs 2``):
``rrna16s_v4.fasta.gz`` is clustered at 97 % identity (the classical OTU level) and
``swissprot.fasta.gz`` at 40 %, each by single linkage, so (up to the prefilter) no sequence in one
cluster is that identical to a sequence of another; whole clusters are then assigned to
train/valid/test (``cluster_split``), which makes the held-out sets novel at the cluster level.
Proteins use 40 % rather than 50 %: at 50 %, 14 % of the test proteins still had a training
homolog at 40-50 % identity; at 40 % none does, for 2,003 instead of 2,191 clusters (largest 17).
The files are ``<dataset>.split.tsv`` (header ``id<TAB>cluster<TAB>split``, one row per record in
file order); the counts go to the ``splits`` key of ``processing.json``. The full-length 16S
dataset (``rrna16s.fasta.gz``) reuses the V4 split by gene id (the V4 amplicons keep their gene's
id); genes without a V4 amplicon (both primer sites not found) go to train (``assign_by_id``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from dgm_science.errors import DataError
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

DNA_LETTERS = "ACGT"
"""Letters counted in DNA k-mers (N and anything else breaks a k-mer)."""
PROTEIN_LETTERS = "ACDEFGHIKLMNPQRSTVWY"
"""The 20 standard amino acids, the letters counted in protein k-mers."""
KINDS = ("dna", "protein")
DEFAULT_K = {"dna": 8, "protein": 3}
NEAREST_CANDIDATES = {"dna": 10, "protein": 5}
"""Candidates aligned per query by ``nearest_identity``; the cost grows linearly with them:
1,000 V4 queries against 3,900 training sequences took 8.7 s on 1 process, 4.8 s on 2, and
1,000 proteins against 2,200 took 8.0 s on 2 (2-core machine). Recall against exhaustive
alignment is in ``top_candidates``: 5 already suffice for DNA; for proteins more candidates only
help queries whose nearest identity is in the twilight zone (< 0.35)."""
CLUSTER_CANDIDATES = {"dna": 20, "protein": 20}
"""Candidates per sequence when building clusters (done once, so more than for novelty)."""
SPLIT_DATASETS = {"rrna16s_v4": ("dna", 0.97), "swissprot": ("protein", 0.4)}
"""Datasets split by ``main``: (kind, single-linkage identity threshold)."""
SPLIT_NAMES = ("train", "valid", "test")
MAX_HELDOUT_CLUSTER = 0.05
"""No cluster larger than this fraction of a held-out set's target size goes there."""
CHECK_CANDIDATES = 40
"""Candidates per test sequence in the split's test-to-train identity check (more than for novelty)."""
_MATRICES = {"dna": "NUC.4.4", "protein": "BLOSUM62"}
_ALIGNERS: dict[str, Any] = {}
_ALLOWED: dict[str, frozenset[str]] = {}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown sequence kind {kind!r} (expected one of {', '.join(KINDS)})")


def letters_for(kind: str) -> str:
    """The k-mer alphabet of a kind: 'ACGT' for DNA, the 20 amino acids for proteins."""
    _check_kind(kind)
    return DNA_LETTERS if kind == "dna" else PROTEIN_LETTERS


def aligner(kind: str) -> Any:
    """The module's cached ``PairwiseAligner`` for ``kind`` with EMBOSS needle's defaults."""
    _check_kind(kind)
    if kind not in _ALIGNERS:
        from Bio import Align
        from Bio.Align import substitution_matrices

        matrix = substitution_matrices.load(_MATRICES[kind])
        _ALIGNERS[kind] = Align.PairwiseAligner(
            mode="global", substitution_matrix=matrix, open_gap_score=-10.0, extend_gap_score=-0.5,
            end_gap_score=0.0)
        _ALLOWED[kind] = frozenset(matrix.alphabet)
    return _ALIGNERS[kind]


def global_identity(a: str, b: str, kind: str) -> float:
    """EMBOSS-needle identity of ``a`` and ``b``: identical columns / alignment length (gaps
    included) of one optimal global alignment (scores: module docstring). 1.0 for equal strings."""
    engine = aligner(kind)
    if not a or not b:
        raise ValueError("global_identity needs two non-empty sequences")
    if a == b:
        return 1.0
    allowed = _ALLOWED[kind]
    for sequence in (a, b):
        if not allowed.issuperset(sequence):
            bad = sorted(set(sequence) - allowed)
            raise ValueError(f"{kind} sequence has letters the {_MATRICES[kind]} matrix does not score: {''.join(bad)}")
    alignment = engine.align(a, b)[0]
    return alignment.counts().identities / alignment.length


def _codes(sequences: Sequence[str], alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """(letter codes of all sequences joined by a separator, -1 outside ``alphabet``;
    start offset of each sequence in that array)."""
    if len(set(alphabet)) != len(alphabet) or not alphabet:
        raise ValueError(f"alphabet {alphabet!r} must be non-empty letters without repeats")
    table = np.full(256, -1, dtype=np.int64)
    for code, letter in enumerate(alphabet):
        table[ord(letter.upper())] = code
        table[ord(letter.lower())] = code
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    joined = "\n".join(sequences).encode("ascii", errors="replace")
    return table[np.frombuffer(joined, dtype=np.uint8)], starts


def kmer_indices(sequences: Sequence[str], k: int, alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """Every k-mer occurrence made only of ``alphabet`` letters: (sequence number, k-mer index in
    base |alphabet|, first letter most significant), each of shape (occurrences,). Vectorized: the
    sequences are encoded once and the index rolls over the k letter offsets."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(alphabet) ** k >= 2 ** 62:
        raise ValueError(f"{len(alphabet)}^{k} k-mers do not fit a 64-bit index")
    if len(sequences) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    codes, starts = _codes(sequences, alphabet)
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    index = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    for offset in range(k):
        letter = codes[offset:offset + n]
        index = index * len(alphabet) + letter
        bad |= letter < 0
    positions = np.flatnonzero(~bad)
    rows = np.searchsorted(starts, positions, side="right") - 1
    return rows, index[positions]


def kmer_profiles(sequences: Sequence[str], k: int, alphabet: str) -> sp.csr_matrix:
    """Binary presence of every k-mer (columns: the |alphabet|^k k-mers, k-mers containing N or
    any other symbol skipped), shape (len(sequences), |alphabet|^k), dtype float32."""
    rows, index = kmer_indices(sequences, k, alphabet)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, index)),
                           shape=(len(sequences), len(alphabet) ** k))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _ranked(query_profiles: sp.csr_matrix, reference_profiles: sp.csr_matrix, n_candidates: int,
            exclude_diagonal: bool = False, chunk: int = 256) -> np.ndarray:
    """Top ``n_candidates`` reference indices per query by shared distinct k-mers / the larger
    k-mer set (ties: lower index first), shape (n_queries, min(n_candidates, n_references))."""
    n_queries, n_refs = query_profiles.shape[0], reference_profiles.shape[0]
    n = min(n_candidates, n_refs - 1 if exclude_diagonal else n_refs)
    out = np.zeros((n_queries, max(n, 0)), dtype=np.int64)
    if n <= 0 or n_queries == 0:
        return out
    query_sizes = np.asarray(query_profiles.sum(axis=1)).ravel()
    ref_sizes = np.asarray(reference_profiles.sum(axis=1)).ravel()
    transposed = reference_profiles.T.tocsr()
    for lo in range(0, n_queries, chunk):
        hi = min(lo + chunk, n_queries)
        shared = (query_profiles[lo:hi] @ transposed).toarray()
        score = shared / np.maximum(np.maximum.outer(query_sizes[lo:hi], ref_sizes), 1.0)
        if exclude_diagonal:
            score[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        out[lo:hi] = np.argsort(-score, axis=1, kind="stable")[:, :n]
    return out


def top_candidates(queries: Sequence[str], references: Sequence[str], k: int, n_candidates: int,
                   alphabet: str = DNA_LETTERS) -> np.ndarray:
    """For each query the indices of the ``n_candidates`` references that share the most distinct
    k-mers with it relative to the larger k-mer set (|Q ∩ R| / max(|Q|, |R|), a sparse matrix
    product; ties: lower index), best first, shape (len(queries), min(n_candidates, len(references))).

    Normalizing by the larger set favours references of similar length, as global identity does
    (its denominator is at least the longer length). Measured against exhaustive alignment on the
    committed data (distinct sequences; 30 V4 queries against the other 4,011, 20 proteins against
    the other 2,755): for V4 the best identity among the top 1 / 3 / 5 candidates is the
    exhaustive one for 87 / 93 / 100 % of queries (largest shortfall 0.013 at 1 and 3); for
    proteins every query whose nearest identity is >= 0.36 is found exactly within the top 3, and
    the misses (nearest 0.18-0.33, unrelated sequences) fall short by at most 0.09 with 5
    candidates, 0.04 with 10. Ranking by raw shared counts instead finds only 40 % of the protein
    nearest identities exactly (shortfall up to 0.47: long references share many k-mers by chance).
    """
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
    return _ranked(kmer_profiles(queries, k, alphabet), kmer_profiles(references, k, alphabet), n_candidates)



def _unique(sequences: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(distinct sequences in order of first appearance, index of each input among them)."""
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(s, len(first)) for s in sequences), dtype=np.int64, count=len(sequences))
    return list(first), inverse


def _max_identities(task: tuple[str, list[tuple[str, list[str]]]]) -> list[float]:
    """Worker: for each (query, candidates) the highest identity (0.0 without candidates)."""
    kind, items = task
    return [max((global_identity(query, ref, kind) for ref in refs), default=0.0) for query, refs in items]


def _pair_identities(task: tuple[str, list[tuple[str, str]]]) -> list[float]:
    """Worker: identity of each pair."""
    kind, pairs = task
    return [global_identity(a, b, kind) for a, b in pairs]


def _run_chunked(worker: Any, kind: str, items: list[Any], n_jobs: int) -> list[float]:
    """``worker`` over ``items`` in chunks, in ``n_jobs`` processes when n_jobs > 1. Forked where
    the platform can (no ``if __name__ == "__main__"`` guard needed in the caller's script; the
    workers only run Biopython's C aligner, so CUDA or thread pools started in the parent are not
    touched), spawned elsewhere."""
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    if not items:
        return []
    if n_jobs == 1 or len(items) < 8:
        return worker((kind, items))
    n_chunks = min(len(items), 8 * n_jobs)
    bounds = np.linspace(0, len(items), n_chunks + 1).astype(int)
    tasks = [(kind, items[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        return [value for chunk in pool.map(worker, tasks) for value in chunk]


def nearest_identity(queries: Sequence[str], references: Sequence[str], kind: str,
                     n_candidates: int | None = None, n_jobs: int = 1, k: int | None = None) -> np.ndarray:
    """For each query the highest global identity (module docstring) to any reference among its
    top ``n_candidates`` k-mer candidates (default ``NEAREST_CANDIDATES[kind]``), shape
    (len(queries),), float64. A query equal to a reference gets 1.0 without alignment; duplicate
    references are aligned once. A lower bound of the exhaustive nearest identity."""
    _check_kind(kind)
    if len(references) == 0:
        raise ValueError("nearest_identity needs at least one reference sequence")
    result = np.zeros(len(queries), dtype=np.float64)
    if len(queries) == 0:
        return result
    n_candidates = NEAREST_CANDIDATES[kind] if n_candidates is None else n_candidates
    k = DEFAULT_K[kind] if k is None else k
    unique_refs, _ = _unique(references)
    ref_set = set(unique_refs)
    todo = [i for i, q in enumerate(queries) if q not in ref_set]
    result[[i for i, q in enumerate(queries) if q in ref_set]] = 1.0
    if todo:
        todo_queries = [queries[i] for i in todo]
        candidates = top_candidates(todo_queries, unique_refs, k, n_candidates, letters_for(kind))
        items = [(q, [unique_refs[j] for j in row]) for q, row in zip(todo_queries, candidates)]
        result[todo] = _run_chunked(_max_identities, kind, items, n_jobs)
    return result


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def identity_clusters(sequences: Sequence[str], kind: str, threshold: float, n_candidates: int | None = None,
                      n_jobs: int = 1, k: int | None = None) -> np.ndarray:
    """Single-linkage clusters (union-find) of ``sequences`` over the pairs with global identity
    >= ``threshold``, where each distinct sequence is aligned to its top ``n_candidates`` k-mer
    candidates among the others (default ``CLUSTER_CANDIDATES[kind]``); equal sequences share a
    cluster without alignment. Returns cluster ids, shape (len(sequences),), int64, numbered
    0, 1, ... in order of first appearance. Single linkage: no two sequences in different clusters
    are >= threshold identical, up to the prefilter (a pair outside both top-candidate lists is
    never aligned)."""
    _check_kind(kind)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"identity threshold must be in (0, 1], got {threshold}")
    if len(sequences) == 0:
        return np.zeros(0, dtype=np.int64)
    n_candidates = CLUSTER_CANDIDATES[kind] if n_candidates is None else n_candidates
    k = DEFAULT_K[kind] if k is None else k
    unique, inverse = _unique(sequences)
    parent = np.arange(len(unique))
    if len(unique) > 1:
        profiles = kmer_profiles(unique, k, letters_for(kind))
        candidates = _ranked(profiles, profiles, n_candidates, exclude_diagonal=True)
        left = np.repeat(np.arange(len(unique)), candidates.shape[1])
        right = candidates.ravel()
        pairs = np.unique(np.stack([np.minimum(left, right), np.maximum(left, right)], axis=1), axis=0)
        identities = np.asarray(_run_chunked(_pair_identities, kind,
                                             [(unique[a], unique[b]) for a, b in pairs], n_jobs))
        for a, b in pairs[identities >= threshold]:
            ra, rb = _find(parent, int(a)), _find(parent, int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        log.info("identity_clusters: %d distinct sequences, %d pairs aligned, %d at >= %.2f",
                 len(unique), len(pairs), int((identities >= threshold).sum()), threshold)
    roots = np.array([_find(parent, i) for i in range(len(unique))], dtype=np.int64)[inverse]
    _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[labels].astype(np.int64)


def cluster_split(cluster_ids: Sequence[int] | np.ndarray, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0, max_cluster_fraction: float = MAX_HELDOUT_CLUSTER) -> list[str]:
    """"train"/"valid"/"test" per sequence, assigning whole clusters: the clusters are shuffled
    (numpy ``default_rng(seed)``, clusters in order of their id), then each in turn goes to valid
    if it still fits valid's target size (round(fraction x N)) and is at most
    ``max_cluster_fraction`` of that target (at least 1), else to test under the same two
    conditions, else to train. Giant clusters therefore always go to train, and no cluster makes
    up more than ``max_cluster_fraction`` of a held-out set (without that cap three V4 clusters
    of 75-167 sequences filled 70 % of the test set). The held-out sets are filled to at most
    their targets, usually exactly (small clusters fill the gaps). Shape: a list of
    len(cluster_ids)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers (train, valid, test) summing to 1, got {fractions}")
    if not 0.0 < max_cluster_fraction <= 1.0:
        raise ValueError(f"max_cluster_fraction must be in (0, 1], got {max_cluster_fraction}")
    ids = np.asarray(cluster_ids)
    if ids.ndim != 1:
        raise ValueError(f"cluster_ids must be one-dimensional, got shape {ids.shape}")
    if len(ids) == 0:
        return []
    clusters, inverse, sizes = np.unique(ids, return_inverse=True, return_counts=True)
    targets = [round(fractions[1] * len(ids)), round(fractions[2] * len(ids))]
    caps = [max(1.0, max_cluster_fraction * t) for t in targets]
    filled = [0, 0]
    assignment = np.zeros(len(clusters), dtype=np.int64)  # 0 train, 1 valid, 2 test
    for c in np.random.default_rng(seed).permutation(len(clusters)):
        for slot in (0, 1):
            if sizes[c] <= caps[slot] and filled[slot] + sizes[c] <= targets[slot]:
                filled[slot] += sizes[c]
                assignment[c] = slot + 1
                break
    return [SPLIT_NAMES[a] for a in assignment[inverse]]


def assign_by_id(ids: Iterable[str], splits: dict[str, str], missing: str = "train") -> list[str]:
    """The split of each id from ``splits`` (e.g. the V4 split for full-length 16S genes), ``missing``
    for ids it lacks (genes without a V4 amplicon go to train)."""
    if missing not in SPLIT_NAMES:
        raise ValueError(f"missing must be one of {SPLIT_NAMES}, got {missing!r}")
    return [splits.get(i, missing) for i in ids]


def write_split(path: str | Path, ids: Sequence[str], cluster_ids: Sequence[int], splits: Sequence[str]) -> None:
    """Write ``id<TAB>cluster<TAB>split`` rows (with that header) atomically, in the given order."""
    if not len(ids) == len(cluster_ids) == len(splits):
        raise ValueError(f"ids, cluster ids and splits differ in length: {len(ids)}, {len(cluster_ids)}, {len(splits)}")
    lines = ["id\tcluster\tsplit\n"] + [f"{i}\t{int(c)}\t{s}\n" for i, c, s in zip(ids, cluster_ids, splits)]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def read_split_table(path: str | Path) -> list[tuple[str, int, str]]:
    """(id, cluster, split) rows of a split file; ``DataError`` (a ValueError) naming the file and
    line for a missing file, a wrong header, a malformed row, an unknown split or a repeated id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    rows: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.rstrip("\n").split("\t")
            if number == 1:
                if fields != ["id", "cluster", "split"]:
                    raise DataError(f"{path}:1: expected the header 'id<TAB>cluster<TAB>split', got {line.rstrip()!r}")
                continue
            if len(fields) != 3 or not fields[0]:
                raise DataError(f"{path}:{number}: expected 3 tab-separated fields (id, cluster, split), "
                                f"got {line.rstrip()!r}")
            ident, cluster, split = fields
            if split not in SPLIT_NAMES:
                raise DataError(f"{path}:{number}: unknown split {split!r} (expected one of {', '.join(SPLIT_NAMES)})")
            try:
                cluster_id = int(cluster)
            except ValueError:
                raise DataError(f"{path}:{number}: cluster {cluster!r} is not an integer") from None
            if ident in seen:
                raise DataError(f"{path}:{number}: id {ident!r} appears twice")
            seen.add(ident)
            rows.append((ident, cluster_id, split))
    if not rows and not seen:
        raise DataError(f"{path}: split file has no rows")
    return rows


def read_split(path: str | Path) -> dict[str, str]:
    """id -> "train"/"valid"/"test" of a split file (errors: ``read_split_table``)."""
    return {ident: split for ident, _, split in read_split_table(path)}


def split_summary(cluster_ids: np.ndarray, splits: Sequence[str]) -> dict[str, Any]:
    """Sequences and clusters per split, cluster count and largest cluster size."""
    ids = np.asarray(cluster_ids)
    labels = np.asarray(splits)
    sizes = np.bincount(ids) if len(ids) else np.zeros(0, dtype=np.int64)
    return {
        "sequences": {s: int((labels == s).sum()) for s in SPLIT_NAMES},
        "clusters": {s: int(len(np.unique(ids[labels == s]))) for s in SPLIT_NAMES},
        "n_clusters": int(len(np.unique(ids))),
        "singletons": int((sizes == 1).sum()),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
    }


def build_splits(data_dir: Path, n_jobs: int = 1, seed: int = 0, check: int = 300) -> dict[str, Any]:
    """Cluster and split every dataset of ``SPLIT_DATASETS`` in ``data_dir``, write the split files
    and merge the ``splits`` key into ``processing.json``; returns that entry. ``check`` held-out
    test sequences (seeded sample) are searched against train with ``nearest_identity`` to record
    the largest test-to-train identity (must stay below the threshold)."""
    from dgm_science.domains.sequences.fasta import DNA, PROTEIN, read_fasta

    summary: dict[str, Any] = {}
    for name, (kind, threshold) in SPLIT_DATASETS.items():
        started = time.perf_counter()
        records = read_fasta(data_dir / f"{name}.fasta.gz", DNA if kind == "dna" else PROTEIN)
        sequences = [r.sequence for r in records]
        ids = [r.id for r in records]
        cluster_ids = identity_clusters(sequences, kind, threshold, n_jobs=n_jobs)
        splits = cluster_split(cluster_ids, seed=seed)
        write_split(data_dir / f"{name}.split.tsv", ids, cluster_ids, splits)
        elapsed = time.perf_counter() - started
        entry = {"kind": kind, "threshold": threshold, "linkage": "single", "k": DEFAULT_K[kind],
                 "n_candidates": CLUSTER_CANDIDATES[kind], "fractions": [0.8, 0.1, 0.1], "seed": seed,
                 "max_heldout_cluster_fraction": MAX_HELDOUT_CLUSTER,
                 **split_summary(cluster_ids, splits)}
        train = [s for s, split in zip(sequences, splits) if split == "train"]
        test = [s for s, split in zip(sequences, splits) if split == "test"]
        if check and test:
            rng = np.random.default_rng(seed)
            sample = [test[i] for i in np.sort(rng.choice(len(test), min(check, len(test)), replace=False))]
            nearest = nearest_identity(sample, train, kind, CHECK_CANDIDATES, n_jobs=n_jobs)
            entry["test_to_train_identity"] = {
                "sample": len(sample), "n_candidates": CHECK_CANDIDATES,
                "max": round(float(nearest.max()), 4), "mean": round(float(nearest.mean()), 4),
                "median": round(float(np.median(nearest)), 4), "p90": round(float(np.quantile(nearest, 0.9)), 4)}
        summary[name] = entry
        log.info("%s: %s (%.1f s clustering and split)", name, json.dumps(entry), elapsed)
    processing = data_dir / "processing.json"
    stats = json.loads(processing.read_text()) if processing.is_file() else {}
    stats["splits"] = summary
    with atomic_path(processing) as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Identity-cluster train/valid/test splits of data/sequences")
    parser.add_argument("--data", type=Path, default=Path("data/sequences"))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the alignments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", type=int, default=300, help="test sequences searched against train (0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    print(json.dumps(build_splits(args.data, args.jobs, args.seed, args.check), indent=2))
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
