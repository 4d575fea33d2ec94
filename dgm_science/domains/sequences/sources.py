"""Where sequence datasets come from: the data committed under ``data/sequences/`` and how it was made
(below), and the user's own FASTA files, the source kind ``fasta`` (``FastaFile``, end of the module).

Sources (Debian packages, fetched with ``apt-get download``; see ``data/README.md`` for versions
and sha256):

- ``microbiomeutil-data``: ``RESOURCES/rRNA16S.gold.fasta``, 5,181 full-length 16S rRNA genes
  (BSD-3-clause). Headers are ``id<TAB>organism<TAB>ids...[<TAB>lineage]``; 713 carry a lineage
  ``Bacteria; Phylum; Class; ...``. Sequences are upper-cased, U becomes T, and every IUPAC
  ambiguity code (R, Y, S, W, K, M, B, D, H, V, N) becomes N; a sequence with more than 1 % N is
  dropped (counted). The V4 amplicon is cut from the start of the 515F site to the end
  of the 806R site, primer sites included (:mod:`primers`, up to 2 IUPAC-aware mismatches each);
  sequences without both sites are counted.
- ``mmseqs2-examples``: ``DB.fasta.gz``, 20,000 UniProt entries of which the Swiss-Prot ones
  (``sp|`` headers) are kept, 50 to 1,024 residues long, made only of the 20 standard amino
  acids (entries with X, B, Z, U, O are dropped, counted).

Written headers: ``<id> phylum=<phylum or NA> lineage=<taxa joined by ';', spaces as '_', or NA>
organism=<free text>`` for 16S, the UniProt header for proteins.

Rebuild: ``python -m dgm_science.domains.sequences.sources --root <extracted .deb files> --out data/sequences``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import logging
import re
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from dgm_science.config import bounded
from dgm_science.domains.sequences.fasta import IUPAC_DNA, PROTEIN, FastaRecord, _record_id, read_fasta, write_fasta
from dgm_science.domains.sequences.primers import PRIMER_515F, PRIMER_806R, extract_v4
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.sources import SkipLog, Source, SourceOptions, group_split, random_split, write_stats
from dgm_science.utils import all_or_nothing, atomic_path

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")

RRNA_16S = "usr/share/microbiomeutil-data/RESOURCES/rRNA16S.gold.fasta"
SWISSPROT = "usr/share/doc/mmseqs2/example-data/DB.fasta.gz"
MAX_N_FRACTION = 0.01
PROTEIN_LENGTH = (50, 1024)
_AMBIGUOUS = str.maketrans({c: "N" for c in "RYSWKMBDHV"} | {"U": "T"})
_HEADER = re.compile(r"^(\S+) phylum=(\S+) lineage=(\S+) organism=(.*)$")


def normalize_dna(sequence: str) -> str:
    """Upper case, U -> T, IUPAC ambiguity codes -> N."""
    return sequence.upper().translate(_AMBIGUOUS)


def parse_16s_header(header: str) -> dict[str, str | None]:
    """id, organism, lineage (list joined by ';') and phylum of a microbiomeutil 16S header or
    of a header this module wrote; None where the header has no lineage."""
    match = _HEADER.match(header)
    if match:
        ident, phylum, lineage, organism = match.groups()
        return {"id": ident, "phylum": None if phylum == "NA" else phylum,
                "lineage": None if lineage == "NA" else lineage, "organism": organism}
    fields = [f.strip() for f in header.split("\t")]
    lineage = [t.strip().replace(" ", "_") for t in fields[3].split(";")] if len(fields) >= 4 and fields[3] else []
    return {"id": fields[0], "organism": fields[1] if len(fields) > 1 else "",
            "lineage": ";".join(lineage) or None, "phylum": lineage[1] if len(lineage) > 1 else None}


def _16s_header(info: dict[str, str | None]) -> str:
    return (f"{info['id']} phylum={info['phylum'] or 'NA'} lineage={info['lineage'] or 'NA'} "
            f"organism={info['organism']}")


def process_16s(path: Path) -> tuple[list[FastaRecord], list[FastaRecord], dict[str, Any]]:
    """(full-length records, V4 records, statistics) of the microbiomeutil 16S file."""
    records = read_fasta(path, IUPAC_DNA)
    full, v4 = [], []
    ambiguous_sequences = ambiguous_bases = too_many_n = 0
    for record in records:
        sequence = normalize_dna(record.sequence)
        n = sequence.count("N")
        ambiguous_sequences += n > 0
        ambiguous_bases += n
        if n > MAX_N_FRACTION * len(sequence):
            too_many_n += 1
            continue
        header = _16s_header(parse_16s_header(record.header))
        full.append(FastaRecord(header, sequence))
        region = extract_v4(sequence, with_primers=True)
        if region is not None:
            v4.append(FastaRecord(header, region))
    phyla = [parse_16s_header(r.header)["phylum"] for r in full]
    stats = {
        "source_records": len(records), "kept": len(full), "dropped_over_1pct_n": too_many_n,
        "sequences_with_ambiguity_codes": ambiguous_sequences, "ambiguous_bases_as_n": ambiguous_bases,
        "with_lineage": sum(p is not None for p in phyla),
        "phyla": dict(sorted({p: phyla.count(p) for p in set(phyla) if p}.items(), key=lambda kv: (-kv[1], kv[0]))),
        "v4_primers": {"515F": PRIMER_515F, "806R": PRIMER_806R, "max_mismatches": 2},
        "v4_both_sites": len(v4), "v4_missing_a_site": len(full) - len(v4),
        "length_full": [min(map(len, (r.sequence for r in full))), max(len(r.sequence) for r in full)],
        "length_v4": [min(len(r.sequence) for r in v4), max(len(r.sequence) for r in v4)],
    }
    return full, v4, stats


def process_swissprot(path: Path) -> tuple[list[FastaRecord], dict[str, Any]]:
    """(Swiss-Prot records of standard residues within PROTEIN_LENGTH, statistics)."""
    records = read_fasta(path)
    swissprot = [r for r in records if r.header.startswith("sp|")]
    standard = [r for r in swissprot if set(r.sequence) <= PROTEIN]
    lo, hi = PROTEIN_LENGTH
    kept = [r for r in standard if lo <= len(r.sequence) <= hi]
    stats = {"source_records": len(records), "swissprot": len(swissprot),
             "dropped_nonstandard_residues": len(swissprot) - len(standard),
             "dropped_length": len(standard) - len(kept), "length_filter": [lo, hi], "kept": len(kept)}
    return kept, stats


def build(root: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``rrna16s.fasta.gz``, ``rrna16s_v4.fasta.gz``, ``swissprot.fasta.gz`` and
    ``processing.json`` into ``out_dir`` from the extracted Debian packages under ``root``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    full, v4, stats_16s = process_16s(root / RRNA_16S)
    proteins, stats_protein = process_swissprot(root / SWISSPROT)
    write_fasta(out_dir / "rrna16s.fasta.gz", full)
    write_fasta(out_dir / "rrna16s_v4.fasta.gz", v4)
    write_fasta(out_dir / "swissprot.fasta.gz", proteins)
    stats = {"rrna16s": stats_16s, "swissprot": stats_protein}
    (out_dir / "processing.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


# ----------------------------------------------------------------------------- the user's FASTA files (kind fasta)
#
# A user dataset of the sequences domain: ``source: {kind: fasta, path: ..., alphabet: auto}`` is read as a
# stream (plain or gzip, several files in order), normalised as the built-in sets are (upper case; DNA / RNA:
# U -> T and every IUPAC ambiguity code -> N, the built-in "ACGTN" vocabulary; proteins: the 20 standard amino
# acids, records with X, B, Z, U, O or J skipped), deduplicated and split, then written as the built-in sets'
# prepare writes them (train / valid / test .fasta and prepare.json), so that every sequence model, `dgm
# likelihood` and `dgm compress` run on it unchanged.
#
# Memory: pass 1 keeps 13 to 16 bytes per record (a 64-bit hash of the normalised sequence, its length, and an N
# count for DNA / RNA or a non-standard flag for proteins; 25 with alphabet: auto, which keeps both readings),
# never the residues; the split is then drawn over
# the distinct records (sorting the hashes: about 80 bytes per record at the peak) and pass 2 streams the files
# again, writing each record to its split. Records are cut out of 4 MB blocks; only the current record is held
# whole. Measured: bench/prepare_fasta.py (docs/results/user-data/prepare_fasta_bench.json). The cluster split
# has to hold every distinct sequence and align each to its k-mer candidates (clusters.py): see FastaOptions.


FASTA_ALPHABETS = ("auto", "dna", "rna", "protein")
NUCLEOTIDE_LETTERS = b"ACGTURYSWKMBDHVN"
"""What ``alphabet: dna`` / ``rna`` accepts: A C G T U, N and the IUPAC ambiguity codes."""
_NUCLEOTIDE_TABLE = bytes.maketrans(b"URYSWKMBDHV", b"TNNNNNNNNNN")
_PROTEIN_LETTERS = "".join(sorted(PROTEIN)).encode()
_LETTERS = bytes(range(ord("A"), ord("Z") + 1))
_WHITESPACE = b" \t\r\n\x0b\x0c"
AUTO_NUCLEOTIDE_FRACTION = 0.9
"""``alphabet: auto`` reads a file as nucleotides when no record has a letter outside A C G T U N and the
IUPAC codes and at least this fraction of its residues are A, C, G, T, U or N (a protein has about 25 %)."""
IDENTITY_DEFAULTS = {"dna": 0.97, "protein": 0.4}
"""The cluster split's single-linkage identity threshold when ``identity`` is unset: the built-in sets'
(16S V4 at 97 %, the OTU level; Swiss-Prot at 40 %)."""
CLUSTER_MAX_SEQUENCES = 100_000
"""The most distinct sequences ``split: cluster`` takes: the k-mer prefilter compares every pair (quadratic
time) and each sequence is aligned to 20 candidates (about 1 ms per alignment of 250 residues on one core)."""
_WIDTH = 80


@dataclass(frozen=True)
class FastaOptions(SourceOptions):
    """Sequences of the user's FASTA file(s) (plain or .gz; several files read in order as one dataset)."""

    split: str = "random"
    """random: seeded random split of the distinct sequences (streamed, any size); cluster: whole single-linkage
    identity clusters per split (held-out sequences are less than `identity` identical to any training one, up to
    the k-mer prefilter of clusters.py; holds
    every sequence in memory and aligns each to 20 k-mer candidates, at most 100,000 distinct sequences)"""
    alphabet: str = bounded("auto", choices=FASTA_ALPHABETS)
    """dna, rna (U read as T), protein, or auto (detected from the residues; prepare.json says which). DNA / RNA use
    the built-in vocabulary A C G T N: IUPAC ambiguity codes become N (counted); proteins the 20 standard amino
    acids: records with X, B, Z, U, O or J are skipped (counted)"""
    max_residues: int | None = bounded(None, minimum=1)
    """drop sequences longer than this (counted); null: keep all"""
    max_n_fraction: float = bounded(1.0, minimum=0.0, maximum=1.0)
    """DNA / RNA: drop sequences in which more than this fraction of the bases are N after the ambiguity codes
    became N (counted; the built-in 16S sets use 0.01); 1: keep all"""
    identity: float | None = bounded(None, exclusive_minimum=0.0, maximum=1.0)
    """split: cluster: the identity threshold (EMBOSS needle identity) that links two sequences into one cluster;
    null: 0.97 for DNA / RNA, 0.4 for proteins (the built-in sets' thresholds)"""


def _open_fasta(path: Path) -> Any:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


_BLOCK = 1 << 22
"""Bytes read at a time: records are cut out of blocks at each newline followed by '>' (no per-line Python)."""


def _raw_records(path: Path) -> Iterator[tuple[int, bytes | None, bytes]]:
    """(line of the header, header without '>' or None for text before the first header, the record's text
    after its header line: line i of it is on line header + 1 + i) of each record of a plain or gzip FASTA
    file, streamed in blocks of ``_BLOCK`` bytes (a record is held whole, the file never)."""
    line, data, search = 1, b"", 0
    try:
        with _open_fasta(path) as fh:
            while True:
                block = fh.read(_BLOCK)
                data = data + block if data else block
                start = 0
                while True:
                    cut = data.find(b"\n>", max(start, search))
                    if cut < 0 and (block or start >= len(data)):
                        break
                    end = cut + 1 if cut >= 0 else len(data)
                    text = data[start:end]
                    yield from _record_of(text, line)
                    line += text.count(b"\n")
                    start = end
                data = data[start:]
                search = max(len(data) - 1, 0)
                if not block:
                    return
    except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupted gzip stream
        raise DataError(f"{path}: not a readable FASTA file ({type(err).__name__}: {err})") from None


def _record_of(text: bytes, line: int) -> Iterator[tuple[int, bytes | None, bytes]]:
    """The record (or the text before the first header, when it holds more than blank and ';' comment lines)
    of one piece of a file that starts at ``line``."""
    if text[:1] == b">":
        newline = text.find(b"\n")
        header = text[1:newline] if newline >= 0 else text[1:]
        yield line, header.strip(), text[newline + 1:] if newline >= 0 else b""
        return
    for i, raw in enumerate(text.split(b"\n")):
        stripped = raw.strip()
        if stripped and stripped[:1] != b";":  # ';' lines: comments of the old FASTA format
            yield line + i, None, b""
            return


def _sequence_lines(body: bytes) -> list[bytes]:
    """A record's lines after its header, ';' comment lines blanked (so that entry i stays on line i)."""
    return [b"" if raw.lstrip()[:1] == b";" else raw for raw in body.split(b"\n")]


class _Parsed(NamedTuple):
    """A record that parsed: its file, header line, header (UTF-8 bytes) and residues (upper case)."""

    file: int
    line: int
    header: bytes
    residues: bytes
    body: bytes


def _parsed_records(paths: Sequence[Path], skips: SkipLog | None, counts: dict[str, int]) -> Iterator[_Parsed]:
    """The records of ``paths`` that parse (upper-cased, spaces removed, one trailing stop '*' removed); the
    others are skipped into ``skips`` (when given) with their line. ``counts``: records, stop codons removed,
    lines before the first header. DataError for an empty file or one without any '>' header."""
    for f, path in enumerate(paths):
        prefix = f"{path.name}: " if len(paths) > 1 else ""
        headers = text = 0
        for line, header, body in _raw_records(path):
            text += 1
            if header is None:
                counts["files_with_text_before_first_header"] += 1
                continue
            headers += 1
            counts["records"] += 1
            if b";" in body:
                body = b"\n".join(_sequence_lines(body))
            residues = body.upper().translate(None, _WHITESPACE)
            if residues.endswith(b"*"):
                residues = residues[:-1]
                counts["stop_codons_removed"] += 1
            reason = None
            if not header:
                reason = "a header without an id"
            elif not residues:
                reason = "an empty sequence"
            else:
                other = residues.translate(None, _LETTERS)
                if other:
                    bad = chr(other[0])
                    reason = (f"the character {bad!r} (an alignment gap: give unaligned sequences)" if bad in "-."
                              else f"the character {bad!r}, not a residue letter")
                else:
                    try:
                        header.decode("utf-8")
                    except UnicodeDecodeError:
                        reason = "the header is not UTF-8 text"
            if reason is not None:
                if skips is not None:
                    skips.skip(line, f"{prefix}{reason}")
                continue
            yield _Parsed(f, line, header, residues, body)
        if text == 0:
            raise DataError(f"{path}: empty file (no FASTA records)")
        if headers == 0:
            raise DataError(f"{path}: not a FASTA file: no '>' header line (a record is a '>id description' line "
                            "followed by its sequence lines)")


def _first_bad_letter(record: _Parsed, allowed: bytes) -> tuple[int, str]:
    """(line, letter) of the first letter of ``record`` outside ``allowed``."""
    for i, chunk in enumerate(_sequence_lines(record.body)):
        other = chunk.upper().translate(None, allowed + _WHITESPACE + b"*")
        if other:
            return record.line + 1 + i, chr(other[0])
    return record.line, "?"  # pragma: no cover (the caller found one)


def _digest(residues: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(residues, digest_size=8).digest(), "little")


def _normalized(residues: bytes, nucleotide: bool) -> bytes:
    return residues.translate(_NUCLEOTIDE_TABLE) if nucleotide else residues


def _wrapped(record: _Parsed, residues: bytes) -> bytes:
    lines = [b">" + record.header]
    lines.extend(residues[i:i + _WIDTH] for i in range(0, len(residues), _WIDTH))
    return b"\n".join(lines) + b"\n"


def prepare_fasta(options: FastaOptions, out_dir: Path, *, n_jobs: int = 1) -> dict[str, Any]:
    """Read, normalise, deduplicate and split the user's FASTA file(s) into ``{train,valid,test}.fasta`` and
    ``prepare.json`` (the built-in sets' keys, plus what was read, skipped, removed and detected) in ``out_dir``.
    Two streaming passes (three for ``split: cluster``); nothing is written when a DataError is raised."""
    paths = options.paths
    where = ", ".join(map(str, paths))
    declared = options.alphabet
    skips = SkipLog(where, "records")
    counts = {"records": 0, "stop_codons_removed": 0, "files_with_text_before_first_header": 0}
    # pass 1: per parsed record, a hash of each reading it may get, its length, N count and non-standard flag
    need_nucleotide, need_protein = declared != "protein", declared in ("protein", "auto")
    nuc_hash, prot_hash = array("Q"), array("Q")
    lengths, n_counts, nonstandard = array("I"), array("I"), bytearray()  # 4 + 4 + 1 bytes per record
    nonstandard_first: list[tuple[int, str]] = []
    residues_total = acgtun = u_count = t_count = 0
    nucleotide_file = True
    first_other: tuple[Path, int, str, str] | None = None  # a letter no nucleotide reading takes
    for record in _parsed_records(paths, skips, counts):
        residues = record.residues
        outside = residues.translate(None, NUCLEOTIDE_LETTERS)
        if outside and nucleotide_file:
            nucleotide_file = False
            line, letter = _first_bad_letter(record, NUCLEOTIDE_LETTERS)
            first_other = (paths[record.file], line, _record_id(record.header.decode()), letter)
            if declared in ("dna", "rna"):
                path, line, name, letter = first_other
                raise DataError(
                    f"{path}:{line}: record {name} has the letter {letter!r}, which is not a nucleotide "
                    f"(alphabet: {declared} takes A, C, G, T, U, N and the IUPAC codes R Y S W K M B D H V; "
                    "set alphabet: protein or auto for amino acids)")
        residues_total += len(residues)
        acgtun += len(residues) - len(residues.translate(None, b"ACGTUN"))
        u_count += residues.count(b"U")
        t_count += residues.count(b"T")
        lengths.append(len(residues))
        if need_nucleotide and nucleotide_file:
            normal = residues.translate(_NUCLEOTIDE_TABLE)
            nuc_hash.append(_digest(normal))
            n_counts.append(normal.count(b"N"))
        if need_protein:
            prot_hash.append(_digest(residues))
            odd = residues.translate(None, _PROTEIN_LETTERS)
            nonstandard.append(bool(odd))
            if odd and len(nonstandard_first) < SkipLog.SHOWN:
                prefix = f"{paths[record.file].name}: " if len(paths) > 1 else ""
                nonstandard_first.append((record.line, f"{prefix}the residue {chr(odd[0])!r} is not one of the 20 "
                                                       "standard amino acids (the protein vocabulary)"))
    read = counts["records"]
    skips.check(read)
    fraction = acgtun / max(residues_total, 1)
    if declared == "auto":
        if nucleotide_file and fraction >= AUTO_NUCLEOTIDE_FRACTION:
            alphabet = "rna" if u_count and not t_count else "dna"
            detected = (f"{alphabet}: every letter is a nucleotide code and {fraction:.1%} of the residues are "
                        f"A, C, G, T, U or N ({'U without T' if alphabet == 'rna' else 'T present'})")
        elif fraction >= AUTO_NUCLEOTIDE_FRACTION and first_other is not None:
            path, line, name, letter = first_other
            raise DataError(f"{path}:{line}: record {name} has the letter {letter!r}, which is not a nucleotide, but "
                            f"{fraction:.1%} of the residues are A, C, G, T, U or N: alphabet: auto cannot tell "
                            "(set alphabet: dna to stop at each such record, or protein to read all as amino acids)")
        else:
            alphabet = "protein"
            reason = (f"the letter {first_other[3]!r} (record {first_other[2]}, {first_other[0]}:{first_other[1]})"
                      if first_other else f"only {fraction:.1%} of the residues are A, C, G, T, U or N")
            detected = f"protein: {reason}"
    else:
        alphabet, detected = declared, None
        if declared == "protein" and nucleotide_file and fraction >= AUTO_NUCLEOTIDE_FRACTION:
            raise DataError(f"{where}: alphabet: protein, but {fraction:.1%} of the residues are A, C, G, T, U or N "
                            "and every letter is a nucleotide code: these look like DNA / RNA (set alphabet: dna, "
                            "rna or auto)")
    nucleotide = alphabet != "protein"
    n = len(lengths)
    keep = np.ones(n, dtype=bool)
    n_sequences_with_n = n_dropped_n = n_nonstandard = 0
    if nucleotide:
        hashes = np.frombuffer(nuc_hash, dtype=np.uint64) if n else np.zeros(0, np.uint64)
        n_of = np.frombuffer(n_counts, dtype=np.uint32) if n else np.zeros(0, np.uint32)
        length_of = np.frombuffer(lengths, dtype=np.uint32) if n else np.zeros(0, np.uint32)
        n_sequences_with_n = int((n_of > 0).sum())
        over = n_of > options.max_n_fraction * length_of
        n_dropped_n = int(over.sum())
        keep &= ~over
    else:
        hashes = np.frombuffer(prot_hash, dtype=np.uint64) if n else np.zeros(0, np.uint64)
        length_of = np.frombuffer(lengths, dtype=np.uint32) if n else np.zeros(0, np.uint32)
        flags = np.frombuffer(bytes(nonstandard), dtype=np.uint8).astype(bool) if n else np.zeros(0, bool)
        n_nonstandard = int(flags.sum())
        skips.extend(nonstandard_first)
        skips.count += n_nonstandard - len(nonstandard_first)
        keep &= ~flags
        skips.check(read)
    too_long = 0
    if options.max_residues is not None:
        long_ = keep & (length_of > options.max_residues)
        too_long = int(long_.sum())
        keep &= ~long_
    candidates = np.flatnonzero(keep)
    _, first = np.unique(hashes[candidates], return_index=True)
    unique = candidates[np.sort(first)]
    duplicates = len(candidates) - len(unique)
    if not len(unique):
        raise DataError(f"{where}: no sequence is left ({too_long:,} longer than max_residues "
                        f"{options.max_residues}, {n_dropped_n:,} over max_n_fraction, {skips.count:,} skipped)")
    kind = "dna" if nucleotide else "protein"
    vocabulary = "ACGTN" if nucleotide else "".join(sorted(PROTEIN))
    assignment = np.full(n, 3, dtype=np.int8)  # 0 train, 1 valid, 2 test, 3 not written
    cluster_stats: dict[str, Any] = {}
    if options.split == "cluster":
        from dgm_science.domains.sequences.clusters import identity_clusters

        if len(unique) > CLUSTER_MAX_SEQUENCES:
            raise DataError(f"{where}: {len(unique):,} distinct sequences; split: cluster takes at most "
                            f"{CLUSTER_MAX_SEQUENCES:,} (all-pairs k-mer prefilter and 20 alignments per sequence: "
                            "use split: random)")
        wanted = np.zeros(n, dtype=bool)
        wanted[unique] = True
        sequences = []
        for ordinal, record in enumerate(_parsed_records(paths, None, dict.fromkeys(counts, 0))):
            if wanted[ordinal]:
                sequences.append(_normalized(record.residues, nucleotide).decode("ascii"))
        threshold = options.identity if options.identity is not None else IDENTITY_DEFAULTS[kind]
        started = time.perf_counter()
        groups = identity_clusters(sequences, kind, threshold, n_jobs=n_jobs)
        split = group_split(groups.tolist(), options.valid, options.test, options.seed, where, "distinct sequences")
        cluster_stats = {"identity": threshold, "linkage": "single", "clusters": int(len(np.unique(groups))),
                         "largest_cluster": int(np.bincount(groups).max()),
                         "cluster_seconds": round(time.perf_counter() - started, 2),
                         **{f"clusters_{name}": int(len(np.unique(groups[index]))) for name, index in split.items()}}
        del sequences
    else:
        split = random_split(len(unique), options.valid, options.test, options.seed, where, "distinct sequences")
    for code, name in enumerate(SPLIT_NAMES):
        assignment[unique[split[name]]] = code
    # pass 2: stream again, each kept record to its split's file
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_split = {name: {"sequences": 0, "residues": 0, "length": [0, 0]} for name in SPLIT_NAMES}
    ambiguity_as_n = u_as_t = non_ascii_headers = 0
    with all_or_nothing(), contextlib.ExitStack() as stack:
        temps = [stack.enter_context(atomic_path(out_dir / f"{name}.fasta")) for name in SPLIT_NAMES]
        handles = [stack.enter_context(open(tmp, "wb")) for tmp in temps]
        for ordinal, record in enumerate(_parsed_records(paths, None, dict.fromkeys(counts, 0))):
            code = assignment[ordinal]
            if code == 3:
                continue
            residues = record.residues
            if nucleotide:
                u_as_t += residues.count(b"U")
                ambiguity_as_n += len(residues.translate(None, b"ACGTUN"))
                residues = residues.translate(_NUCLEOTIDE_TABLE)
            non_ascii_headers += not record.header.isascii()
            handles[code].write(_wrapped(record, residues))
            entry = per_split[SPLIT_NAMES[code]]
            size = len(residues)
            entry["length"] = [size, size] if not entry["sequences"] else [min(entry["length"][0], size),
                                                                            max(entry["length"][1], size)]
            entry["sequences"] += 1
            entry["residues"] += size
        for handle in handles:
            handle.close()
        stats: dict[str, Any] = {
            "dataset": out_dir.parent.name if out_dir.name == "data" else out_dir.name,
            "kind": kind, "alphabet": vocabulary, "v4": False, "labelled": False,
            "source": [str(p) for p in paths], "source_kind": options.kind, "split_file": None,
            "alphabet_option": declared, "alphabet_read": alphabet, "detected": detected,
            "read": read, "skipped": skips.count, "skipped_first": skips.as_dict()["skipped_first"],
            "skipped_nonstandard_residues": n_nonstandard,
            "stop_codons_removed": counts["stop_codons_removed"],
            "files_with_text_before_first_header": counts["files_with_text_before_first_header"],
            "u_as_t": u_as_t if nucleotide else None, "ambiguity_codes_as_n": ambiguity_as_n if nucleotide else None,
            "sequences_with_n": n_sequences_with_n if nucleotide else None,
            "max_n_fraction": options.max_n_fraction if nucleotide else None, "dropped_over_max_n_fraction": n_dropped_n,
            "max_residues": options.max_residues, "dropped_over_max_residues": too_long,
            "duplicates_removed": int(duplicates), "unique": int(len(unique)), "non_ascii_headers": non_ascii_headers,
            "split": options.split, "seed": options.seed, "valid_share": options.valid, "test_share": options.test,
            **cluster_stats, **per_split,
        }
        write_stats(out_dir, stats)
    if skips.count:
        log.warning("%s: %d of %d records skipped (%s)", where, skips.count, read, skips.lines())
    if non_ascii_headers:
        log.warning("%s: %d headers are not ASCII: `dgm compress` codes ASCII FASTA only", where, non_ascii_headers)
    log.info("prepared %s as %s: %d distinct sequences (%d duplicates removed), train %d / valid %d / test %d",
             where, alphabet, len(unique), duplicates, *(per_split[s]["sequences"] for s in SPLIT_NAMES))
    return stats


@register("source", "fasta")
class FastaFile(Source):
    """DNA, RNA or protein sequences of FASTA files (.fasta / .fa / .gz ...), deduplicated, split random or by identity cluster."""

    domain = "sequences"
    Options = FastaOptions
    split_methods = ("random", "cluster")

    @classmethod
    def prepare(cls, options: FastaOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        return prepare_fasta(options, out_dir, n_jobs=n_jobs)



if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Rebuild data/sequences from the extracted Debian packages")
    parser.add_argument("--root", type=Path, required=True, help="folder the .deb files were extracted into")
    parser.add_argument("--out", type=Path, default=Path("data/sequences"))
    args = parser.parse_args()
    print(json.dumps(build(args.root, args.out), indent=2))
