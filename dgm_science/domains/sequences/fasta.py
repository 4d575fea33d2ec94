"""FASTA reading and writing with errors that name the file, line and record.

``read_fasta`` accepts plain or gzip-compressed files, multi-line records and any letter case; it
refuses sequence lines before the first header, empty records and characters outside the given
alphabet (one ``DataError`` naming the file, line and record id). ``write_fasta`` writes
atomically, gzip-compressed when the name ends in ``.gz`` (deterministic: no timestamp).
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Iterable, NamedTuple

from dgm_science.errors import DataError
from dgm_science.utils import atomic_path

DNA = frozenset("ACGTN")
"""Nucleotides after normalisation: IUPAC ambiguity codes become N (see ``normalize_dna``)."""
IUPAC_DNA = frozenset("ACGTURYSWKMBDHVN")
PROTEIN = frozenset("ACDEFGHIKLMNPQRSTVWY")
"""The 20 standard amino acids."""


class FastaRecord(NamedTuple):
    header: str
    """The header line without '>' (the id is its first word)."""
    sequence: str

    @property
    def id(self) -> str:
        return self.header.split(maxsplit=1)[0] if self.header.strip() else ""


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(path, encoding="utf-8")  # type: ignore[return-value]


def _record_id(header: str) -> str:
    """The record's id (first word of the header) for an error message, cut when very long."""
    words = header.split(maxsplit=1)
    name = words[0] if words else "(no id)"
    return repr(name) if len(name) <= 60 else f"{name[:60]!r}..."


def read_fasta(path: str | Path, alphabet: frozenset[str] | None = None, *, uppercase: bool = True) -> list[FastaRecord]:
    """All records of ``path``; sequences upper-cased (unless ``uppercase=False``) and checked
    against ``alphabet`` (None: any letters)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: FASTA file not found")
    records: list[FastaRecord] = []
    header: str | None = None
    header_line = 0
    chunks: list[str] = []

    def finish() -> None:
        if header is None:
            return
        sequence = "".join(chunks)
        if not sequence:
            raise DataError(f"{path}:{header_line}: record {_record_id(header)} has an empty sequence")
        records.append(FastaRecord(header, sequence))

    try:
        with _open_text(path) as fh:
            for number, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    finish()
                    header, header_line, chunks = line[1:].strip(), number, []
                    if not header:
                        raise DataError(f"{path}:{number}: a header without an id")
                    continue
                if header is None:
                    raise DataError(f"{path}:{number}: sequence data before the first '>' header")
                if uppercase:
                    line = line.upper()
                if alphabet is not None:
                    bad = next((c for c in line if c not in alphabet), None)
                    if bad is not None:
                        raise DataError(f"{path}:{number}: record {_record_id(header)} has the illegal character "
                                        f"{bad!r} (allowed: {''.join(sorted(alphabet))})")
                chunks.append(line)
            finish()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as err:  # zlib.error: a corrupted gzip stream
        raise DataError(f"{path}: not a readable FASTA file ({err})") from None
    if not records:
        raise DataError(f"{path}: no FASTA records")
    return records


def write_fasta(path: str | Path, records: Iterable[FastaRecord], width: int = 80) -> int:
    """Write ``records`` (lines of ``width`` letters) atomically; returns how many were written."""
    path = Path(path)
    lines: list[str] = []
    n = 0
    for record in records:
        lines.append(f">{record.header}\n")
        lines.extend(record.sequence[i:i + width] + "\n" for i in range(0, len(record.sequence), width))
        n += 1
    data = "".join(lines).encode()
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as fh:
                fh.write(data)
        else:
            tmp.write_bytes(data)
    return n
