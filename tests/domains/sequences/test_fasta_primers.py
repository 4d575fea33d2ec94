"""FASTA round trip and errors naming the record; primer matching with planted mismatches; the
committed sequence data."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from dgm_science.domains.sequences.sources import normalize_dna, parse_16s_header
from dgm_science.domains.sequences.fasta import DNA, PROTEIN, FastaRecord, read_fasta, write_fasta
from dgm_science.domains.sequences.primers import (
    PRIMER_515F, PRIMER_806R, extract_v4, find_primer, has_v4_primer_sites, reverse_complement,
)
from dgm_science.errors import DataError

DATA = Path(__file__).resolve().parents[3] / "data" / "sequences"


def _random_dna(n: int, rng: random.Random) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


@pytest.mark.parametrize("name", ["x.fasta", "x.fasta.gz"])
def test_fasta_round_trip(tmp_path, name):
    rng = random.Random(0)
    records = [FastaRecord(f"seq{i} some description", _random_dna(rng.randint(1, 300), rng)) for i in range(20)]
    assert write_fasta(tmp_path / name, records, width=60) == 20
    assert read_fasta(tmp_path / name, DNA) == records
    if name.endswith(".gz"):  # deterministic bytes: no timestamp, no file name
        first = (tmp_path / name).read_bytes()
        write_fasta(tmp_path / name, records, width=60)
        assert (tmp_path / name).read_bytes() == first and gzip.decompress(first).startswith(b">seq0 ")


@pytest.mark.parametrize("text, message", [
    ("ACGT\n>a\nACGT\n", r"x.fa:1: sequence data before the first '>' header"),
    (">a\nACGT\n>b\n>c\nAC\n", r"x.fa:3: record 'b' has an empty sequence"),
    (">a\nACGT\n>b desc\nACXT\n", r"x.fa:4: record 'b' has the illegal character 'X'"),
    (">\nACGT\n", r"x.fa:1: a header without an id"),
    ("", r"x.fa: no FASTA records"),
])
def test_malformed_fasta_names_the_line_and_record(tmp_path, text, message):
    path = tmp_path / "x.fa"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_fasta(path, DNA)


def test_primer_found_with_planted_mismatches_and_not_beyond():
    rng = random.Random(1)
    for mismatches in range(4):
        primer = "".join(rng.choice("ACGT") for _ in range(20))
        site = list(primer)
        for i in rng.sample(range(20), mismatches):
            site[i] = {"A": "C", "C": "G", "G": "T", "T": "A"}[site[i]]
        background = _random_dna(200, rng)
        sequence = background[:87] + "".join(site) + background[87:]
        found = find_primer(sequence, primer, max_mismatches=2)
        if mismatches <= 2:
            assert found is not None and found.start == 87 and found.mismatches == mismatches
        else:
            assert found is None or found.start != 87


def test_iupac_codes_match_their_bases_and_v4_is_cut_between_the_primers():
    assert reverse_complement("ACGTRY") == "RYACGT"
    forward = PRIMER_515F.replace("Y", "T").replace("M", "A")  # concrete bases the IUPAC codes allow
    reverse = reverse_complement(PRIMER_806R).replace("N", "G").replace("B", "C").replace("W", "A")
    rng = random.Random(2)
    v4 = _random_dna(253, rng)
    gene = _random_dna(500, rng) + forward + v4 + reverse + _random_dna(600, rng)
    assert extract_v4(gene) == v4
    amplicon = extract_v4(gene, with_primers=True)
    assert amplicon == forward + v4 + reverse and has_v4_primer_sites(amplicon)
    assert not has_v4_primer_sites(v4) and not has_v4_primer_sites(amplicon[3:])
    assert extract_v4(gene.replace(reverse, _random_dna(len(reverse), rng))) is None


def test_normalize_and_headers():
    assert normalize_dna("acgUryn") == "ACGTNNN"
    info = parse_16s_header("7\tSome bug \tids\tBacteria; Firmicutes; Bacilli; Candidatus X")
    assert info == {"id": "7", "organism": "Some bug", "lineage": "Bacteria;Firmicutes;Bacilli;Candidatus_X",
                    "phylum": "Firmicutes"}
    assert parse_16s_header("7 phylum=Firmicutes lineage=Bacteria;Firmicutes organism=Some bug")["phylum"] == "Firmicutes"
    assert parse_16s_header("8\tNo lineage")["phylum"] is None


def test_committed_sequence_data():
    full = read_fasta(DATA / "rrna16s.fasta.gz", DNA)
    v4 = read_fasta(DATA / "rrna16s_v4.fasta.gz", DNA)
    proteins = read_fasta(DATA / "swissprot.fasta.gz", PROTEIN)
    assert (len(full), len(v4), len(proteins)) == (4932, 4889, 2818)
    assert all(1200 <= len(r.sequence) <= 1700 for r in full) and all(280 <= len(r.sequence) <= 360 for r in v4)
    assert all(r.sequence.count("N") <= 0.01 * len(r.sequence) for r in full)
    assert all(50 <= len(r.sequence) <= 1024 and r.header.startswith("sp|") for r in proteins)
    by_id = {r.id: r.sequence for r in full}
    assert all(r.sequence in by_id[r.id] for r in v4[:200])  # each V4 amplicon is a substring of its gene
    assert all(has_v4_primer_sites(r.sequence) for r in v4)
