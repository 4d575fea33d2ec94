"""A user's molecules as a dataset: SMILES files (``.smi``, ``.csv`` / ``.tsv``, gzipped or not) and SDF files,
standardised (largest fragment, neutralised), canonicalised and deduplicated by canonical SMILES, then split
at random or by Bemis-Murcko scaffold into the files a built-in dataset's prepare writes (``train.smi``,
``valid.smi``, ``test.smi``, ``train_all.smi`` and ``properties_<split>.csv``), so that every molecule model,
its metrics (against the user's test split) and the property predictors run on them unchanged.

RDKit does the chemistry: ``rdMolStandardize`` (LargestFragmentChooser, Uncharger), ``MolToSmiles``,
``MurckoScaffold``; the parsing runs over all cores (``map_molecules``).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dgm_science.chem import map_molecules, standardized
from dgm_science.domains.molecules.data import MAX_SMILES_LENGTH, UNREADABLE, write_property_table, write_smiles
from dgm_science.config import bounded
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.sources import SkipLog, Source, SourceOptions, group_split, random_split, write_stats
from dgm_science.utils import all_or_nothing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoleculeOptions(SourceOptions):
    """Molecules of the user's file(s)."""

    split: str = "scaffold"
    """scaffold: Bemis-Murcko scaffold split (chemprop's balanced variant; held-out molecules have scaffolds
    train lacks), random: seeded random split"""
    properties: list[str] = field(default_factory=list)
    """numeric columns (SD tags for SDF) kept beside each molecule: the targets property predictors train on"""
    standardize: bool = True
    """keep each entry's largest organic fragment (strip salts and solvents) and neutralise its charges"""


@dataclass(frozen=True)
class SmilesOptions(MoleculeOptions):
    """SMILES from a .smi (SMILES first on each line, an optional name after it) or a .csv / .tsv file."""

    smiles_column: str = "smiles"
    """the CSV / TSV column holding the SMILES (case-insensitive); ignored for .smi"""
    smi_field: int = bounded(1, minimum=1)
    """which whitespace-separated field of a .smi line is the SMILES (2 where the name comes first)"""


@dataclass(frozen=True)
class SdfOptions(MoleculeOptions):
    """Molecules of an SD file (several conformers of one molecule count once)."""


# ----------------------------------------------------------------------------- reading


@dataclass
class Rows:
    """What a reader yields: the raw entries, the line each starts on and their property values."""

    items: list[Any]
    lines: list[int]
    properties: np.ndarray  # (n, K) float, NaN where empty
    skipped: list[tuple[int, str]]


def _open_text(path: Path) -> io.TextIOBase:
    try:
        return gzip.open(path, "rt", encoding="utf-8", newline="") if path.suffix == ".gz" else \
            open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err})") from None


def _number(text: str) -> float:
    """A property value: a number; empty or NA: NaN; anything else: ValueError."""
    text = text.strip()
    if text == "" or text.upper() in {"NA", "NAN", "N/A", "NULL", "NONE"}:
        return math.nan
    return float(text)


def _csv_rows(path: Path, options: SmilesOptions, delimiter: str) -> Rows:
    smiles, lines, values, skipped = [], [], [], []
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header line with a {options.smiles_column!r} column)")
        names = [h.strip().lower() for h in header]
        wanted = [options.smiles_column, *options.properties]
        missing = [c for c in wanted if c.lower() not in names]
        if missing:
            raise DataError(f"{path}: line 1: no column {', '.join(map(repr, missing))} (the header has "
                            f"{', '.join(map(repr, [h.strip() for h in header]))}; set source.smiles_column / "
                            "source.properties)")
        s_col = names.index(options.smiles_column.lower())
        p_cols = [names.index(c.lower()) for c in options.properties]
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            text = row[s_col].strip() if s_col < len(row) else ""
            try:
                props = [_number(row[j]) if j < len(row) else math.nan for j in p_cols]
            except ValueError:
                skipped.append((line, f"a value of {', '.join(options.properties)} is not a number"))
                continue
            smiles.append(text)
            lines.append(line)
            values.append(props)
    return Rows(smiles, lines, np.asarray(values, dtype=np.float64).reshape(len(values), len(p_cols)), skipped)


def _smi_rows(path: Path, options: SmilesOptions) -> Rows:
    if options.properties:
        raise DataError(f"{path}: a .smi file has no property columns (source.properties: use a .csv)")
    smiles, lines = [], []
    with _open_text(path) as fh:
        for line, text in enumerate(fh, start=1):
            fields = text.split()
            if not fields:
                continue
            value = fields[options.smi_field - 1] if len(fields) >= options.smi_field else ""
            if line == 1 and value.lower() in {"smiles", "canonical_smiles", "smi"}:
                continue  # a header line
            smiles.append(value)
            lines.append(line)
    return Rows(smiles, lines, np.zeros((len(smiles), 0)), [])


def read_smiles_source(path: Path, options: SmilesOptions) -> Rows:
    """The entries of one SMILES file (the format from its name: .csv, .tsv, else .smi; .gz allowed)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    try:
        if ".csv" in suffixes:
            return _csv_rows(path, options, ",")
        if ".tsv" in suffixes:
            return _csv_rows(path, options, "\t")
        return _smi_rows(path, options)
    except UNREADABLE as err:
        raise DataError(f"{path}: cannot be read as text ({type(err).__name__}: {err})") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None


def read_sdf_source(path: Path, options: SdfOptions) -> Rows:
    """The entries of one SD file as SMILES (with stereo from the 3D coordinates), each record's line and its
    SD-tag properties; a record RDKit cannot read is skipped with its line."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    smiles, lines, values, skipped = [], [], [], []
    try:
        raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
        with raw:
            text = raw.read()
    except UNREADABLE as err:
        raise DataError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file (no SD records)")
    records = text.split(b"$$$$")
    if not records[-1].strip():
        records = records[:-1]
    line = 1
    found: set[str] = set()  # every record's tags, readable or not (a property named nowhere is an error)
    for i, record in enumerate(records):
        # after "$$$$" the rest of its line; the molblock starts on the next (its first line, the name, may be empty)
        body = record.split(b"\n", 1)[1] if i > 0 and b"\n" in record else record
        start = line + (1 if i > 0 else 0)
        line += record.count(b"\n")
        decoded = body.decode("utf-8", "replace")
        tags = _sd_tags(decoded)
        found.update(tags)
        mol = Chem.MolFromMolBlock(decoded.split("\n>")[0], sanitize=True, removeHs=False)
        if mol is None:
            skipped.append((start, "RDKit cannot read the record"))
            continue
        row = []
        for p in options.properties:
            try:
                row.append(_number(tags.get(p, "")))
            except ValueError:
                row.append(None)
        if None in row:
            skipped.append((start, f"a value of {', '.join(options.properties)} is not a number"))
            continue
        if mol.GetNumConformers() and mol.GetConformer().Is3D():
            Chem.AssignStereochemistryFrom3D(mol)
        smiles.append(Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False)))
        lines.append(start)
        values.append(row)
    absent = [p for p in options.properties if p not in found]
    if absent and records:
        raise DataError(f"{path}: no SD tag {', '.join(map(repr, absent))} in any record (tags: "
                        f"{', '.join(sorted(found)) or 'none'})")
    return Rows(smiles, lines, np.asarray(values, dtype=np.float64).reshape(len(values), len(options.properties)),
                skipped)


def _sd_tags(record: str) -> dict[str, str]:
    """The ``> <name>`` data fields of one SD record."""
    tags: dict[str, str] = {}
    lines = record.splitlines()
    for i, text in enumerate(lines):
        if text.startswith(">") and "<" in text and ">" in text[text.index("<"):]:
            name = text[text.index("<") + 1: text.index(">", text.index("<"))]
            tags[name] = lines[i + 1].strip() if i + 1 < len(lines) else ""
    return tags


# ----------------------------------------------------------------------------- prepare


def prepare_molecules(rows_of: Any, options: MoleculeOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
    """Read every file of ``options`` (``rows_of(path, options) -> Rows``), standardise and canonicalise the
    molecules over ``n_jobs`` processes, drop the ones that fail (counted, first lines reported), merge
    duplicates by canonical SMILES (their properties averaged), split, and write the prepared folder."""
    paths = options.paths
    where = ", ".join(map(str, paths))
    items: list[str] = []
    origin: list[tuple[int, int]] = []  # (file index, line)
    values = []
    skips = SkipLog(where, "molecules")
    for f, path in enumerate(paths):
        rows = rows_of(path, options)
        items.extend(rows.items)
        origin.extend((f, line) for line in rows.lines)
        values.append(rows.properties)
        prefix = f"{path.name} " if len(paths) > 1 else ""
        skips.extend((line, f"{prefix}{reason}") for line, reason in rows.skipped)
    read = len(items) + skips.count
    y = np.concatenate(values) if values else np.zeros((0, len(options.properties)))
    tasks = [(s, options.standardize, options.split == "scaffold") for s in items]
    results = map_molecules(partial(standardized, max_length=MAX_SMILES_LENGTH), tasks, n_jobs=n_jobs,
                            progress=sys.stderr.isatty(), desc="standardize")
    canonical: dict[str, int] = {}
    first_item: list[int] = []
    groups: list[str] = []
    sum_rows: list[np.ndarray] = []
    count_rows: list[np.ndarray] = []
    changed = duplicates = 0
    for i, (smiles, scaffold, note) in enumerate(results):
        if smiles is None:
            f, line = origin[i]
            skips.skip(line, f"{paths[f].name}: {note}" if len(paths) > 1 else note)
            continue
        changed += note == "standardized"
        known = canonical.get(smiles)
        if known is None:
            canonical[smiles] = known = len(first_item)
            first_item.append(i)
            groups.append(scaffold or "")
            sum_rows.append(np.zeros(y.shape[1]))
            count_rows.append(np.zeros(y.shape[1]))
        else:
            duplicates += 1
        present = ~np.isnan(y[i])
        sum_rows[known][present] += y[i][present]
        count_rows[known][present] += 1
    skips.check(read)
    sums, counts = np.stack(sum_rows), np.stack(count_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    molecules = list(canonical)
    if options.split == "scaffold":
        splits = group_split(groups, options.valid, options.test, options.seed, where, "unique molecules")
    else:
        splits = random_split(len(molecules), options.valid, options.test, options.seed, where, "unique molecules")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with all_or_nothing():
        for name, index in splits.items():
            write_smiles(out_dir / f"{name}.smi", (molecules[i] for i in index))
            write_property_table(out_dir / f"properties_{name}.csv", merged[index], list(options.properties))
        # the novelty reference: every training molecule (as MOSES's novelty is against its train set)
        write_smiles(out_dir / "train_all.smi", (molecules[i] for i in splits["train"]))
        stats = {"source": [str(p) for p in paths], "kind": options.kind, "read": read, "skipped": skips.count,
                 "skipped_first": skips.as_dict()["skipped_first"], "standardized": changed if options.standardize
                 else None, "duplicates_removed": duplicates, "unique": len(molecules),
                 "split": options.split, "seed": options.seed, "properties": list(options.properties),
                 "scaffolds": len(set(groups)) if options.split == "scaffold" else None,
                 **{name: int(len(index)) for name, index in splits.items()}}
        write_stats(out_dir, stats)
    if skips.count:
        log.warning("%s: %d of %d molecules skipped (%s)", where, skips.count, read, skips.lines())
    log.info("prepared %s: %d unique molecules (%d duplicates removed), train %d / valid %d / test %d", where,
             len(molecules), duplicates, stats["train"], stats["valid"], stats["test"])
    return stats


@register("source", "smiles")
class SmilesFile(Source):
    """SMILES from .smi / .csv / .tsv files (gzipped or not), with optional numeric property columns."""

    domain = "molecules"
    Options = SmilesOptions
    split_methods = ("scaffold", "random")

    @classmethod
    def prepare(cls, options: SmilesOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        return prepare_molecules(read_smiles_source, options, out_dir, n_jobs=n_jobs)


@register("source", "sdf")
class SdfFile(Source):
    """Molecules of SD files (.sdf / .sdf.gz), property values from SD tags; conformers of one molecule merge."""

    domain = "molecules"
    Options = SdfOptions
    split_methods = ("scaffold", "random")

    @classmethod
    def prepare(cls, options: SdfOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        return prepare_molecules(read_sdf_source, options, out_dir, n_jobs=n_jobs)
