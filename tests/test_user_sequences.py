"""The sequences domain's user datasets: the ``fasta`` source kind (alphabet detection, normalisation,
deduplication, random and identity-cluster splits, bad files through the real CLI) and the tutorial
("train on your own sequences"), whose commands are run here exactly as written."""

from __future__ import annotations

import gzip
import json
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from dgm_science import cli, registry, schema, sources
from dgm_science.domains.sequences.clusters import identity_clusters
from dgm_science.domains.sequences.fasta import read_fasta
from dgm_science.errors import DataError

TUTORIAL_FASTA = Path(__file__).parent / "data" / "user" / "sequences" / "amplicons.fasta"


def prepare(tmp_path: Path, files: dict[str, str], **options) -> dict:
    """Write ``files`` (name -> text; .gz names gzipped) and prepare them with the fasta kind."""
    paths = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = tmp_path / name
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
        paths.append(str(path))
    kind, opts = sources.load({"kind": "fasta", "path": paths if len(paths) > 1 else paths[0], **options})
    return kind.prepare(opts, tmp_path / "data", n_jobs=1)


def written(tmp_path: Path) -> dict[str, list]:
    return {name: read_fasta(tmp_path / "data" / f"{name}.fasta") for name in ("train", "valid", "test")}


def random_dna(rng: random.Random, n: int, letters: str = "ACGT") -> str:
    return "".join(rng.choice(letters) for _ in range(n))


def fasta(records) -> str:
    return "".join(f">{header}\n{sequence}\n" for header, sequence in records)


PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MADQLTEEQIAEFKEAFSLFDKDGDGTITTKELGTVMRSL",
            "GSHMSLFDFFKNKGSAAATPPGAAQWEEPLRV", "MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGG",
            "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLF", "MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLL"]


# ----------------------------------------------------------------------------- alphabets and normalisation


def test_auto_detects_dna_rna_and_protein_and_says_which(tmp_path):
    rng = random.Random(0)
    dna = fasta((f"d{i}", random_dna(rng, 40)) for i in range(8))
    rna = fasta((f"r{i}", random_dna(rng, 40, "ACGU")) for i in range(8))
    protein = fasta((f"p{i}", s) for i, s in enumerate(PROTEINS))
    for name, text, read, kind, vocabulary in [
            ("dna", dna, "dna", "dna", "ACGTN"), ("rna", rna, "rna", "dna", "ACGTN"),
            ("protein", protein, "protein", "protein", "ACDEFGHIKLMNPQRSTVWY")]:
        stats = prepare(tmp_path / name, {"x.fa": text}, alphabet="auto")
        assert (stats["alphabet_read"], stats["kind"], stats["alphabet"]) == (read, kind, vocabulary)
        assert stats["detected"].startswith(read)
        on_disk = json.loads((tmp_path / name / "data" / "prepare.json").read_text())
        assert on_disk["alphabet_read"] == read and on_disk["v4"] is False and on_disk["labelled"] is False
    # RNA is written with the built-in DNA vocabulary: every U became T (counted)
    stats = prepare(tmp_path / "rna2", {"x.fa": rna}, alphabet="rna")
    letters = "".join(r.sequence for split in written(tmp_path / "rna2").values() for r in split)
    assert "U" not in letters and stats["u_as_t"] == rna.count("U")


def test_lower_case_iupac_codes_stop_codons_and_headers(tmp_path):
    records = [("a first record", "acgtacgtNNacgt"), ("b", "ACGTRYACGTACGG"), ("c  spaced  header ", "GGGCCCAAATTT"),
               ("d", "TTTTGGGGCCCCAAAA")]
    stats = prepare(tmp_path, {"x.fa": fasta(records)}, alphabet="dna", valid=1, test=1)
    out = {r.header: r.sequence for split in written(tmp_path).values() for r in split}
    assert out["a first record"] == "ACGTACGTNNACGT"  # upper-cased, header kept
    assert out["b"] == "ACGTNNACGTACGG"  # IUPAC codes -> N, as the built-in 16S sets
    assert "c  spaced  header" in out
    assert stats["ambiguity_codes_as_n"] == 2 and stats["sequences_with_n"] == 2
    # a trailing stop '*' of a protein is dropped (counted); X is not in the vocabulary: skipped with its line
    text = fasta([("p0", PROTEINS[0] + "*"), ("p1", PROTEINS[1]), ("px", "MKXAAAGGGLLL"), ("p2", PROTEINS[2]),
                  ("p3", PROTEINS[3].lower())])
    stats = prepare(tmp_path / "p", {"x.fa": text}, alphabet="protein")
    assert stats["stop_codons_removed"] == 1 and stats["skipped"] == 1 and stats["skipped_nonstandard_residues"] == 1
    assert stats["skipped_first"][0]["line"] == 5 and "'X'" in stats["skipped_first"][0]["reason"]
    sequences = {r.sequence for split in written(tmp_path / "p").values() for r in split}
    assert sequences == {PROTEINS[0], PROTEINS[1], PROTEINS[2], PROTEINS[3]}


def test_duplicates_are_removed_across_splits_files_and_case_and_counted(tmp_path):
    rng = random.Random(1)
    base = [random_dna(rng, 50) for _ in range(30)]
    first = fasta((f"s{i}", s) for i, s in enumerate(base))
    # the second file repeats 5 of them: one lower case, one as RNA, one re-wrapped, two verbatim
    again = [("dup0", base[0].lower()), ("dup1", base[1].replace("T", "U")), ("dup2", base[2][:20] + "\n" + base[2][20:]),
             ("dup3", base[3]), ("dup4", base[3]), ("new", random_dna(rng, 50))]
    stats = prepare(tmp_path, {"a.fa": first, "b.fa.gz": fasta(again)}, alphabet="dna", seed=3)
    assert stats["read"] == 36 and stats["duplicates_removed"] == 5 and stats["unique"] == 31
    splits = written(tmp_path)
    sequences = [r.sequence for split in splits.values() for r in split]
    assert len(sequences) == len(set(sequences)) == 31  # no sequence twice, within or across splits
    assert sum(stats[s]["sequences"] for s in ("train", "valid", "test")) == 31
    headers = {r.header for split in splits.values() for r in split}
    assert "s0" in headers and "dup0" not in headers  # the first occurrence is the one kept
    # the split is the seeded random split over the distinct sequences: same seed, same split
    again_stats = prepare(tmp_path / "again", {"a.fa": first, "b.fa.gz": fasta(again)}, alphabet="dna", seed=3)
    assert [r.header for r in written(tmp_path / "again")["test"]] == [r.header for r in splits["test"]]
    assert again_stats["test"] == stats["test"]


def test_max_residues_and_max_n_fraction_drop_and_count(tmp_path):
    rng = random.Random(2)
    records = [(f"s{i}", random_dna(rng, 30 + 10 * (i % 5))) for i in range(20)] + [("n", "ACGTNNNNNNACGTACGTAC")]
    stats = prepare(tmp_path, {"x.fa": fasta(records)}, alphabet="dna", max_residues=50, max_n_fraction=0.1)
    assert stats["dropped_over_max_residues"] == 8  # lengths 60 and 70: i % 5 in (3, 4)
    assert stats["dropped_over_max_n_fraction"] == 1
    assert max(len(r.sequence) for split in written(tmp_path).values() for r in split) <= 50


def test_cluster_split_keeps_identity_clusters_whole(tmp_path):
    rng = random.Random(3)
    families = []
    for f in range(12):  # 12 unrelated families of 5 near-identical 120-mers (1 to 2 substitutions each)
        root = random_dna(rng, 120)
        members = []
        for m in range(5):
            s = list(root)
            for _ in range(m % 2 + 1):
                i = rng.randrange(len(s))
                s[i] = rng.choice("ACGT".replace(s[i], ""))
            members.append("".join(s))
        families.append(members)
    records = [(f"f{f}_m{m}", s) for f, members in enumerate(families) for m, s in enumerate(members)]
    rng.shuffle(records)
    stats = prepare(tmp_path, {"x.fa": fasta(records)}, alphabet="dna", split="cluster", valid=0.2, test=0.2)
    assert stats["identity"] == 0.97 and stats["clusters"] == 12
    split_of_family: dict[str, set[str]] = {}
    for name, split in written(tmp_path).items():
        for record in split:
            split_of_family.setdefault(record.id.split("_")[0], set()).add(name)
    assert all(len(names) == 1 for names in split_of_family.values())  # every family in one split
    assert {n for names in split_of_family.values() for n in names} == {"train", "valid", "test"}
    # the clusters are clusters.py's single-linkage identity clusters
    groups = identity_clusters([s for _, s in records], "dna", 0.97)
    assert len(set(groups.tolist())) == 12


# ----------------------------------------------------------------------------- bad files, through the CLI


def run_prepare(tmp_path: Path, source: str, capsys) -> tuple[int, str]:
    code = cli.main(["prepare", "--source", source, "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err


BAD_FILES = [
    ("empty.fa", b"", "{kind: fasta, path: %s}", r"empty\.fa: empty file \(no FASTA records\)"),
    ("notes.txt", b"sample, reads\nA1, 1200\n", "{kind: fasta, path: %s}",
     r"notes\.txt: not a FASTA file: no '>' header line"),
    ("proteins.fa", b">a\nACGTACGT\n>sp|P1|X protein\nACGTACGT\nMKTAYIAKQR\n", "{kind: fasta, path: %s, alphabet: dna}",
     r"proteins\.fa:5: record 'sp\|P1\|X' has the letter 'I', which is not a nucleotide \(alphabet: dna"),
    ("dna.fa", b">a\nACGTACGTAC\n>b\nTTGACCAGTA\n>c\nGGCATTACAG\n", "{kind: fasta, path: %s, alphabet: protein}",
     r"alphabet: protein, but 100\.0% of the residues are A, C, G, T, U or N"),
    ("mixed.fa", b">a\nACGTACGTAC\n>b\nTTGACCAGTA\n>c\nGGCATTEACAG\n", "{kind: fasta, path: %s}",
     r"mixed\.fa:6: record 'c' has the letter 'E', which is not a nucleotide, but 96\.8% of the residues are A, C, G, "
     r"T, U or N: alphabet: auto cannot tell"),
    ("gaps.fa", b">a\nAC--GT\n>b\nAC..GT\n", "{kind: fasta, path: %s}",
     r"none of the 2 records parse \(line 1: the character '-' \(an alignment gap: give unaligned sequences\); "
     r"line 3: the character '\.'"),
    ("two.fa", b">a\nACGTACGT\n>b\nACGTACGA\n>c\nACGTACGT\n", "{kind: fasta, path: %s}",
     r"2 distinct sequences are too few to split into train / validation / test .*at least 3 distinct sequences"),
    ("broken.fa.gz", gzip.compress(bytes(random.Random(0).choices(b"ACGT\n", k=4000)))[:-100], "{kind: fasta, path: %s}",
     r"broken\.fa\.gz: not a readable FASTA file"),
]


@pytest.mark.parametrize("name, content, source, message", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_bad_file_is_one_clear_error_and_nothing_is_written(tmp_path, capsys, name, content, source, message):
    path = tmp_path / name
    path.write_bytes(content)
    code, err = run_prepare(tmp_path, source % path, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("dgm: error:")]
    assert len(lines) == 1, err
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_records_that_fail_are_skipped_counted_with_their_lines(tmp_path):
    rng = random.Random(4)
    text = "; a comment line\n" + fasta((f"s{i}", random_dna(rng, 30)) for i in range(6))
    text += ">\nACGTACGT\n>empty\n>gapped\nACGT-ACGT\n>digits 1\nACGT1234\n"
    stats = prepare(tmp_path, {"x.fa": text}, alphabet="dna")
    assert stats["read"] == 10 and stats["skipped"] == 4 and stats["unique"] == 6
    assert [(s["line"], s["reason"].split(" (")[0]) for s in stats["skipped_first"]] == [
        (14, "a header without an id"), (16, "an empty sequence"), (17, "the character '-'"),
        (19, "the character '1', not a residue letter")]


# ----------------------------------------------------------------------------- scale: streamed


def test_prepare_streams_the_file_memory_is_far_below_its_size(tmp_path, monkeypatch):
    """8 MB of FASTA read in 64 kB blocks: pass 1 keeps a few bytes per record and pass 2 writes as it reads,
    never holding the residues."""
    from dgm_science.domains.sequences import sources as sequence_sources

    monkeypatch.setattr(sequence_sources, "_BLOCK", 1 << 16)
    rng = np.random.default_rng(0)
    path = tmp_path / "big.fa"
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(path, "wb") as fh:
        for i in range(4_000):
            fh.write(b">r%d\n" % i + letters[rng.integers(0, 4, 2_000)].tobytes() + b"\n")
    size = path.stat().st_size
    kind, options = sources.load({"kind": "fasta", "path": str(path), "alphabet": "dna"})
    tracemalloc.start()
    stats = kind.prepare(options, tmp_path / "data", n_jobs=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats["unique"] == 4_000 and size > 8_000_000
    assert peak < size / 8, f"peak {peak / 1e6:.1f} MB of Python memory for a {size / 1e6:.1f} MB file"


# ----------------------------------------------------------------------------- the workflow block

SNAKEMAKE_CONFIG = """\
seeds: [0]
sequences:
  my-amplicons:
    source: {kind: fasta, path: amplicons.fasta, alphabet: auto, split: random}
    compression: true
    models:
      seq-arm:
        model: {d_model: 16, n_layers: 1, n_heads: 2, dropout: 0.0, max_length: 300}
"""
"""A user FASTA's pipeline block (docs/your-data/sequences.md has the whole one)."""


def test_the_user_block_validates_with_compression_and_the_kind_is_registered(tmp_path):
    from snakemake.utils import validate as snakemake_validate

    assert registry.get("source", "fasta").domain == "sequences"
    assert sources.kinds("sequences") == ["fasta"]
    config = yaml.safe_load(SNAKEMAKE_CONFIG)
    path = Path(__file__).parent / ".." / "workflows" / "schemas" / "config.schema.yaml"
    generated = tmp_path / "schema.yaml"
    generated.write_text(yaml.safe_dump(schema.pipeline_schema(path.resolve())))
    generated = str(generated)
    snakemake_validate(config, generated)
    block = config["sequences"]["my-amplicons"]
    assert block["compression"] is True and block["source"]["alphabet"] == "auto"
    bad = yaml.safe_load(SNAKEMAKE_CONFIG)
    bad["sequences"]["my-amplicons"]["source"]["alphabet"] = "dan"
    with pytest.raises(Exception, match="dan"):
        snakemake_validate(bad, generated)


def test_tutorial_file_errors_are_data_errors():
    """The tutorial's file read as protein is refused: it is DNA."""
    kind, options = sources.load({"kind": "fasta", "path": str(TUTORIAL_FASTA), "alphabet": "protein"})
    with pytest.raises(DataError, match="look like DNA"):
        kind.prepare(options, Path("/nonexistent/never-written"), n_jobs=1)
