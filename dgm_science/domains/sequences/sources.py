"""Genetic-sequence data committed under ``data/sequences/`` and how it was made.

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
import json
import re
from pathlib import Path
from typing import Any

from dgm_science.domains.sequences.fasta import IUPAC_DNA, PROTEIN, FastaRecord, read_fasta, write_fasta
from dgm_science.domains.sequences.primers import PRIMER_515F, PRIMER_806R, extract_v4

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Rebuild data/sequences from the extracted Debian packages")
    parser.add_argument("--root", type=Path, required=True, help="folder the .deb files were extracted into")
    parser.add_argument("--out", type=Path, default=Path("data/sequences"))
    args = parser.parse_args()
    print(json.dumps(build(args.root, args.out), indent=2))
