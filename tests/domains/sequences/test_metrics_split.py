"""Global identity, the k-mer prefilter, single-linkage clusters and the cluster split; the
sequence metrics on hand-checked examples; the RDP-style phylum classifier on the committed split;
the committed split files."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from dgm_science.domains.sequences.classifier import (
    PHYLUM_CLASSES, KmerNaiveBayes, label_accuracy, phylum_class,
)
from dgm_science.domains.sequences.clusters import (
    PROTEIN_LETTERS, SPLIT_DATASETS, assign_by_id, cluster_split, global_identity, identity_clusters,
    kmer_profiles, nearest_identity, read_split, read_split_table, top_candidates, write_split,
)
from dgm_science.domains.sequences.sources import parse_16s_header
from dgm_science.domains.sequences.fasta import DNA, PROTEIN, read_fasta
from dgm_science.domains.sequences.metrics import (
    NOVELTY_THRESHOLD, gc_content, gc_w1, js_divergence, kmer_js, kmer_spectrum, length_w1, primer_retention,
    sequence_metrics, wasserstein_1,
)
from dgm_science.domains.sequences.primers import PRIMER_515F, PRIMER_806R, reverse_complement

DATA = Path(__file__).resolve().parents[3] / "data" / "sequences"


def _random(n: int, rng: random.Random, letters: str = "ACGT") -> str:
    return "".join(rng.choice(letters) for _ in range(n))


def _mutate(sequence: str, positions: list[int], letters: str = "ACGT") -> str:
    out = list(sequence)
    for p in positions:
        out[p] = next(c for c in letters if c != out[p])
    return "".join(out)


def _substitute(sequence: str, m: int, rng: random.Random, letters: str = "ACGT") -> str:
    return _mutate(sequence, rng.sample(range(len(sequence)), m), letters)


# ---------------------------------------------------------------- identity and prefilter


@pytest.mark.parametrize("kind,letters,length", [("dna", "ACGT", 300), ("protein", PROTEIN_LETTERS, 200)])
@pytest.mark.parametrize("m", [0, 1, 5, 12])
def test_global_identity_planted_substitutions(kind, letters, length, m):
    rng = random.Random(m)
    a = _random(length, rng, letters)
    # substitutions spread out so no gapped alignment can score better than the ungapped one
    b = _mutate(a, list(range(10, 10 + 15 * m, 15)), letters)
    assert global_identity(a, b, kind) == pytest.approx((length - m) / length)


def test_global_identity_counts_gaps_and_rejects_bad_input():
    rng = random.Random(1)
    a = _random(200, rng)
    # a 10-base deletion in the middle: 200 columns, 190 identical
    assert global_identity(a, a[:95] + a[105:], "dna") == pytest.approx(190 / 200)
    with pytest.raises(ValueError, match="kind"):
        global_identity(a, a, "rna")
    with pytest.raises(ValueError, match="non-empty"):
        global_identity(a, "", "dna")
    with pytest.raises(ValueError, match="letters"):
        global_identity(a, a[:-1] + "J", "protein")


def test_kmer_profiles_skip_n_and_count_presence():
    profiles = kmer_profiles(["ACGACG", "ANNA"], 3, "ACGT")
    assert profiles.shape == (2, 64)
    # ACG, CGA, GAC, ACG -> 3 distinct words; ANNA has no valid 3-mer
    assert profiles[0].sum() == 3 and profiles[1].sum() == 0
    assert profiles[0, 0 * 16 + 1 * 4 + 2] == 1  # ACG


def test_nearest_identity_finds_planted_near_copy():
    rng = random.Random(2)
    references = [_random(300, rng) for _ in range(200)]
    queries = [_substitute(references[17], 6, rng), _substitute(references[150], 15, rng), references[3]]
    assert top_candidates(queries, references, 8, 3)[:2, 0].tolist() == [17, 150]
    nearest = nearest_identity(queries, references, "dna")
    assert nearest[0] >= 294 / 300 - 1e-9 and nearest[1] >= 285 / 300 - 0.01 and nearest[2] == 1.0
    assert nearest_identity([_random(300, rng)], references, "dna")[0] < 0.8  # unrelated
    assert nearest_identity([], references, "dna").shape == (0,)


def test_nearest_identity_parallel_matches_serial():
    rng = random.Random(3)
    references = [_random(120, rng, PROTEIN_LETTERS) for _ in range(40)]
    queries = [_substitute(r, 30, rng, PROTEIN_LETTERS) for r in references[:12]]
    serial = nearest_identity(queries, references, "protein")
    np.testing.assert_allclose(nearest_identity(queries, references, "protein", n_jobs=2), serial)
    assert np.all(serial >= 90 / 120 - 0.02)


def test_identity_clusters_single_linkage_chain():
    rng = random.Random(4)
    a = _random(300, rng)
    b = _mutate(a, list(range(0, 300, 40)))            # 8 differences from a: 97.3 %
    c = _mutate(b, list(range(20, 300, 40)))           # 8 more from b, 16 from a: 94.7 %
    unrelated = _random(300, rng)
    assert global_identity(a, c, "dna") < 0.97 <= min(global_identity(a, b, "dna"), global_identity(b, c, "dna"))
    ids = identity_clusters([a, unrelated, c, b, a], "dna", 0.97)
    assert ids.tolist() == [0, 1, 0, 0, 0]
    assert identity_clusters([a, unrelated, c, b], "dna", 0.99).tolist() == [0, 1, 2, 3]


def test_cluster_split_keeps_clusters_whole_and_hits_sizes():
    rng = np.random.default_rng(0)
    sizes = np.concatenate([[300], rng.integers(1, 6, size=400)])  # one giant cluster
    ids = np.repeat(np.arange(len(sizes)), sizes)
    splits = cluster_split(ids, seed=1)
    assert splits == cluster_split(ids, seed=1)
    per_cluster = {}
    for c, s in zip(ids, splits):
        assert per_cluster.setdefault(c, s) == s
    assert per_cluster[0] == "train"
    counts = {s: splits.count(s) for s in ("train", "valid", "test")}
    assert abs(counts["valid"] - 0.1 * len(ids)) <= 5 and abs(counts["test"] - 0.1 * len(ids)) <= 5
    with pytest.raises(ValueError, match="fractions"):
        cluster_split(ids, fractions=(0.5, 0.5, 0.5))
    assert assign_by_id(["x", "y"], {"x": "test"}) == ["test", "train"]


def test_read_split_errors_name_file_and_line(tmp_path):
    path = tmp_path / "s.split.tsv"
    write_split(path, ["a", "b"], [0, 1], ["train", "test"])
    assert read_split(path) == {"a": "train", "b": "test"}
    for body, line, message in [("id\tcluster\tsplit\na\t0\ttrain\nb\t1\n", 3, "3 tab-separated"),
                                ("id\tcluster\tsplit\na\tx\ttrain\n", 2, "not an integer"),
                                ("id\tcluster\tsplit\na\t0\tholdout\n", 2, "unknown split"),
                                ("id\tcluster\tsplit\na\t0\ttrain\na\t1\ttest\n", 3, "twice"),
                                ("name\tsplit\n", 1, "header")]:
        path.write_text(body)
        with pytest.raises(ValueError, match=rf"{path}:{line}: .*{message}"):
            read_split(path)
    with pytest.raises(ValueError, match="not found"):
        read_split(tmp_path / "missing.tsv")


# ---------------------------------------------------------------- metrics


def test_kmer_spectrum_hand_count_and_skips_n():
    # 2-mers of ACGTNAC: AC CG GT (TN NA skipped) AC -> AC 2/4, CG 1/4, GT 1/4
    spectrum = kmer_spectrum(["ACGTNAC"], 2, "ACGT")
    expected = np.zeros(16)
    expected[[1, 6, 11]] = [0.5, 0.25, 0.25]
    np.testing.assert_allclose(spectrum, expected)
    # pooled over sequences, no k-mer across the boundary; unknown symbols skipped too
    np.testing.assert_allclose(kmer_spectrum(["AA", "CX", "C"], 1, "ACGT"), [0.5, 0.5, 0, 0])
    assert kmer_spectrum(["AC"], 2, "ACGT")[1] == 1.0 and kmer_spectrum(["AC", "G"], 3, "ACGT").sum() == 0
    assert kmer_spectrum(["MK"], 1, PROTEIN_LETTERS).shape == (20,)


def test_js_divergence_bounds():
    rng = random.Random(5)
    seqs = [_random(100, rng) for _ in range(20)]
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in kmer_js(seqs, list(reversed(seqs)), (1, 2, 3)).values())
    assert kmer_js(["AAAA"], ["CCCC"], (1, 2))["kmer_js_k1"] == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4)
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = math.log2(1.0 / 0.75)
    assert js_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(0.5 * (kl_p + kl_q))
    assert math.isnan(js_divergence(np.zeros(4), np.ones(4)))


def test_gc_and_length_w1_by_hand():
    np.testing.assert_allclose(gc_content(["GGCC", "ATGC", "GNNA", "NNN"]), [1.0, 0.5, 0.5, np.nan])
    assert gc_w1(["GGCC", "AATT"], ["GGCC", "GGCC"]) == pytest.approx(0.5)  # half the mass moves by 1
    assert length_w1(["A" * 10, "A" * 20], ["A" * 12, "A" * 20]) == pytest.approx(1.0)
    assert wasserstein_1([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(1.0)
    assert math.isnan(wasserstein_1([], [1.0]))


def test_primer_retention_on_planted_amplicons():
    rng = random.Random(6)
    ok = PRIMER_515F.replace("Y", "C").replace("M", "A") + _random(250, rng) + reverse_complement(
        PRIMER_806R.replace("N", "A").replace("V", "G").replace("W", "T"))
    lost = _random(len(PRIMER_515F), rng) + ok[len(PRIMER_515F):]
    assert primer_retention([ok, ok, lost, ok[:-20]]) == pytest.approx(0.5)
    assert math.isnan(primer_retention([]))


def test_sequence_metrics_counts_none_as_invalid():
    rng = random.Random(7)
    train = [_random(150, rng) for _ in range(30)]
    test = [_random(150, rng) for _ in range(10)]
    samples = [train[0], _substitute(train[1], 3, rng), _random(150, rng), None, train[0]]
    out = sequence_metrics(samples, test, train, kind="dna")
    assert out["n_samples"] == 5 and out["valid_fraction"] == pytest.approx(0.8)
    assert out["exact_copy_fraction"] == pytest.approx(0.5) and out["unique_fraction"] == pytest.approx(0.75)
    assert out["novel_fraction"] == pytest.approx(0.25)  # only the random one is below 97 %
    assert {f"kmer_js_k{k}" for k in range(1, 7)} <= out.keys() and "gc_w1" in out and "primer_retention" not in out
    assert out["mean_length"] == 150 and out["length_w1"] == 0
    assert sequence_metrics(samples, test, train, kind="dna", alphabet="ACGTN") == out  # N is never a k-mer letter
    empty = sequence_metrics([None, None], test, train, kind="dna", v4=True)
    assert empty["valid_fraction"] == 0 and math.isnan(empty["kmer_js_k3"]) and math.isnan(empty["primer_retention"])
    protein = sequence_metrics(["MKV" * 20], ["MKL" * 20], ["MKV" * 20], kind="protein")
    assert "gc_w1" not in protein and "kmer_js_k4" not in protein and protein["exact_copy_fraction"] == 1
    assert NOVELTY_THRESHOLD == {"dna": 0.97, "protein": 0.4}


# ---------------------------------------------------------------- classifier


def test_phylum_class():
    assert phylum_class("Firmicutes") == "Firmicutes" and phylum_class("Chlorobi") == "other"
    assert phylum_class(None) is None and phylum_class("NA") is None
    assert PHYLUM_CLASSES[-1] == "other"


def test_naive_bayes_on_planted_classes_and_state_round_trip():
    rng = random.Random(8)
    roots = {"x": _random(300, rng), "y": _random(300, rng)}
    seqs, labels = [], []
    for label, root in roots.items():
        for _ in range(10):
            seqs.append(_substitute(root, 30, rng))
            labels.append(label)
    model = KmerNaiveBayes().fit(seqs, labels)
    queries = [_substitute(roots["y"], 30, rng), _substitute(roots["x"], 30, rng)]
    assert model.predict(queries) == ["y", "x"]
    assert np.all(model.predict_confidence(queries) > 0.9)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(queries)).sum(axis=1), 1.0)
    restored = KmerNaiveBayes.from_state(json.loads(json.dumps(model.to_state())))
    np.testing.assert_allclose(restored.decision_function(queries), model.decision_function(queries))
    assert label_accuracy(model, [queries[0], None, queries[1]], ["y", "x", "y"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not fitted"):
        KmerNaiveBayes().predict(queries)


def _labelled_v4(split: str) -> tuple[list[str], list[str]]:
    splits = read_split(DATA / "rrna16s_v4.split.tsv")
    seqs, labels = [], []
    for record in read_fasta(DATA / "rrna16s_v4.fasta.gz", DNA):
        label = phylum_class(parse_16s_header(record.header)["phylum"])
        if label is not None and splits[record.id] == split:
            seqs.append(record.sequence)
            labels.append(label)
    return seqs, labels


def test_classifier_accuracy_on_held_out_v4_test_split():
    model = KmerNaiveBayes().fit(*_labelled_v4("train"))
    test_seqs, test_labels = _labelled_v4("test")
    assert len(test_seqs) >= 40
    assert label_accuracy(model, test_seqs, test_labels) >= 0.8  # measured 0.882 (60 of 68)


# ---------------------------------------------------------------- committed split files


@pytest.mark.parametrize("name", list(SPLIT_DATASETS))
def test_committed_split_files(name):
    kind = SPLIT_DATASETS[name][0]
    records = read_fasta(DATA / f"{name}.fasta.gz", DNA if kind == "dna" else PROTEIN)
    rows = read_split_table(DATA / f"{name}.split.tsv")
    assert [r[0] for r in rows] == [r.id for r in records]  # every id once, in file order
    clusters = {s: {c for _, c, split in rows if split == s} for s in ("train", "valid", "test")}
    assert not clusters["test"] & clusters["train"] and not clusters["valid"] & clusters["train"]
    assert not clusters["test"] & clusters["valid"]
    n = {s: sum(split == s for *_, split in rows) for s in ("train", "valid", "test")}
    assert abs(n["test"] - 0.1 * len(rows)) <= 0.02 * len(rows) and n["train"] >= 0.75 * len(rows)
    stats = json.loads((DATA / "processing.json").read_text())["splits"][name]
    assert stats["sequences"] == n and stats["threshold"] == SPLIT_DATASETS[name][1]
    assert stats["test_to_train_identity"]["max"] < stats["threshold"]
