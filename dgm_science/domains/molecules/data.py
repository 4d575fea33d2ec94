"""MOSES data: fetch (molsets wheel from PyPI, sha256-checked), prepare (canonical SMILES,
subsets, splits), featurize (RDKit graphs for PyG, chunked over a process pool and stored as
memory-mapped arrays), datasets and collation."""

from __future__ import annotations

import array
import collections
import gzip
import json
import logging
import math
import multiprocessing
import shutil
import struct
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from rdkit import Chem, rdBase
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dgm_science import wheels
from dgm_science.domains.molecules.properties import canonical_smiles, map_molecules
from dgm_science.tokenizer import MAX_SMILES_LENGTH, Tokenizer
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path, unknown_summary

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")

MOSES_SPLITS = ("train", "test", "test_scaffolds")


def fetch_moses(out_dir: Path, *, version: str, sha256: str) -> dict[str, Any]:
    """Download the ``molsets`` wheel, check its sha256 and extract
    ``moses/dataset/data/{train,test,test_scaffolds}.csv.gz`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheels.download_wheel("molsets", version, sha256, Path(tmp))) as wheel:
            for split in MOSES_SPLITS:
                member = f"moses/dataset/data/{split}.csv.gz"
                with wheel.open(member) as src, atomic_path(out_dir / f"{split}.csv.gz") as tmp_out:
                    tmp_out.write_bytes(src.read())
    return wheels.write_source(out_dir, "molsets", version, sha256, [f"{s}.csv.gz" for s in MOSES_SPLITS])


QM9_PARTS = ("qm9pack/data/qm9_part1.csv", "qm9pack/data/qm9_part2.csv", "qm9pack/data/qm9_part3.csv")


QM9_PROPERTIES = {
    "mu": ("Dipole_debye", "D"),
    "alpha": ("Polarizability_bohr3", "bohr^3"),
    "homo": ("HOMO_au", "Ha"),
    "lumo": ("LUMO_au", "Ha"),
    "gap": ("HOMO_LUMO_gap_au", "Ha"),
    "r2": ("R2_bohr2", "bohr^2"),
    "zpve": ("ZPVE_au", "Ha"),
    "u0": ("InternalEnergy_0K_au", "Ha"),
    "u298": ("InternalEnergy_298K_au", "Ha"),
    "h298": ("Enthalphy_298K_au", "Ha"),
    "g298": ("GibbsFreeEnergy_298K_au", "Ha"),
    "cv": ("Heatcapacity_Cv_cal_mol_K", "cal/(mol K)"),
}
"""QM9's DFT properties (B3LYP/6-31G(2df,p), Ramakrishnan et al. 2014): our column -> (the
``qm9pack`` CSV column, unit as stored)."""


def fetch_qm9(out_dir: Path, *, version: str, sha256: str) -> dict[str, Any]:
    """Download the ``qm9pack`` wheel, check its sha256 and write ``qm9.csv.gz`` with the
    ``index`` (the dsgdb9nsd number), ``SMILES`` and property columns (``QM9_PROPERTIES``, in the
    units stored there) of its 130,831 molecules."""
    import csv
    import io

    out_dir.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 24)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = wheels.download_wheel("qm9pack", version, sha256, Path(tmp))
        with zipfile.ZipFile(wheel_path) as wheel, atomic_path(out_dir / "qm9.csv.gz") as tmp_out, \
                gzip.open(tmp_out, "wt") as out:
            out.write(",".join(["index", "SMILES", *QM9_PROPERTIES]) + "\n")
            for member in QM9_PARTS:
                with wheel.open(member) as raw:
                    reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
                    for line, row in enumerate(reader, start=2):
                        if not row.get("SMILES") or not row.get("Index"):
                            raise DataError(f"{wheel_path.name}:{member}: line {line}: no Index/SMILES")
                        try:
                            values = [repr(float(row[column])) for column, _ in QM9_PROPERTIES.values()]
                        except (KeyError, TypeError, ValueError):
                            raise DataError(f"{wheel_path.name}:{member}: line {line}: a property of "
                                            f"{', '.join(c for c, _ in QM9_PROPERTIES.values())} is missing or "
                                            "not a number") from None
                        out.write(",".join([str(int(row["Index"])), row["SMILES"].strip(), *values]) + "\n")
    return wheels.write_source(out_dir, "qm9pack", version, sha256, ["qm9.csv.gz"])


def read_smiles(path: str | Path, column: str = "SMILES", *, require_any: bool = True) -> list[str]:
    """SMILES from ``.smi`` (one per line), or ``.csv``/``.csv.gz`` with a ``column`` header
    (case-insensitive). Empty fields become ``""`` (invalid), so row order is kept."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except UNREADABLE as err:
        raise DataError(f"{path}: cannot be read as text ({type(err).__name__}: {err})") from None
    if ".csv" in path.suffixes:
        if not lines:
            raise DataError(f"{path}: empty file (expected a header line with a {column!r} column)")
        header = [h.strip().lower() for h in lines[0].split(",")]
        if column.lower() not in header:
            raise DataError(f"{path}: line 1: no {column!r} column in header {lines[0]!r}")
        idx = header.index(column.lower())
        rows = [line.split(",") for line in lines[1:]]
        smiles = [r[idx].strip() if idx < len(r) else "" for r in rows]
    else:
        smiles = [line.split()[0] if line.strip() else "" for line in lines]
    _check_lengths(path, smiles, first_line=2 if ".csv" in path.suffixes else 1)
    if require_any and not any(smiles):
        raise DataError(f"{path}: no SMILES found")
    return smiles


def read_property_table(path: Path, columns: Sequence[str], *, required: bool = True
                        ) -> tuple[list[str], np.ndarray] | None:
    """The named numeric ``columns`` of a CSV (``.csv`` / ``.csv.gz``, header matched
    case-insensitively) as (names, float64 array (rows, columns)); an empty field is NaN. A column
    that is absent: DataError, or None when not ``required`` and none of them is there."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in columns if c.lower() not in header]
            if missing and not required and len(missing) == len(columns):
                return None
            if missing:
                raise DataError(f"{path}: line 1: no column {', '.join(map(repr, missing))} (has {', '.join(header)})")
            where = [header.index(c.lower()) for c in columns]
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append([float(row[j]) if j < len(row) and row[j].strip() else math.nan for j in where])
                except ValueError:
                    raise DataError(f"{path}: line {line}: a value of {', '.join(columns)} is not a number") from None
    except UNREADABLE as err:
        raise DataError(f"{path}: cannot be read as text ({type(err).__name__}: {err})") from None
    return list(columns), np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))


def write_property_table(path: Path, values: np.ndarray, columns: Sequence[str]) -> None:
    """Write (rows, columns) numbers as a CSV with a header, atomically (NaN: an empty field)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(",".join(columns) + "\n")
        for row in values:
            fh.write(",".join("" if math.isnan(v) else repr(float(v)) for v in row) + "\n")


UNREADABLE = (OSError, UnicodeDecodeError, EOFError, zlib.error)
"""What reading a damaged text or gzip file raises."""


def _check_lengths(path: Path, smiles: Sequence[str], first_line: int) -> None:
    """DataError naming the line of a SMILES longer than any molecule (``MAX_SMILES_LENGTH``
    characters): tokenizing and featurizing such a line would take minutes."""
    for i, s in enumerate(smiles):
        if len(s) > MAX_SMILES_LENGTH:
            raise DataError(f"{path}: line {first_line + i}: a SMILES of {len(s):,} characters (at most "
                            f"{MAX_SMILES_LENGTH:,})")


def write_smiles(path: Path, smiles: Iterable[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{s}\n" for s in smiles))


def prepare_moses(
    raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int, seed: int, n_jobs: int
) -> dict[str, Any]:
    """Draw a seeded subset of ``val_size + train_size`` MOSES training lines (None: all), write
    their RDKit canonical SMILES as ``valid.smi`` / ``train.smi`` (a line RDKit cannot parse is
    skipped, counted and its line number logged), ``train_all.smi``: every training string,
    the novelty reference exactly as molsets computes novelty (``set(train)``), and ``test.smi``:
    the Test set as shipped (for scoring held-out molecules)."""
    path = raw_dir / "train.csv.gz"
    raw = read_smiles(path)
    order = np.random.default_rng(seed).permutation(len(raw))
    if val_size >= len(order):
        raise DataError(f"{path}: val_size={val_size} leaves no training molecules ({len(order)} in all)")
    chosen = order if train_size is None else order[: val_size + train_size]
    canonical = map_molecules(canonical_smiles, [raw[i] for i in chosen], n_jobs=n_jobs,
                              progress=sys.stderr.isatty(), desc=f"canonicalize {path.name}")
    bad = sorted(int(chosen[j]) + 2 for j, c in enumerate(canonical) if c is None)  # 1-based, after the header
    if bad:
        log.warning("%s: %d line(s) RDKit could not parse were skipped (lines %s%s)",
                    path, len(bad), bad[:10], " ..." if len(bad) > 10 else "")
    kept = [c for c in canonical if c is not None]
    if len(kept) <= val_size:
        raise DataError(f"{path}: {len(kept)} of the {len(chosen)} drawn SMILES parse, not enough for {val_size} "
                        f"validation molecules and a training set (unparseable lines {bad[:5]}...)")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_smiles(out_dir / "valid.smi", kept[:val_size])
    write_smiles(out_dir / "train.smi", kept[val_size:])
    write_smiles(out_dir / "train_all.smi", (s for s in raw if s))
    write_smiles(out_dir / "test.smi", (s for s in read_smiles(raw_dir / "test.csv.gz") if s))
    stats = {"source": str(path), "read": len(raw), "drawn": int(len(chosen)), "unparseable": len(bad),
             "unparseable_lines": bad[:100], "train": len(kept) - min(val_size, len(kept)),
             "valid": min(val_size, len(kept)), "seed": seed}
    log.info("prepared %s", {k: v for k, v in stats.items() if k != "unparseable_lines"})
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats


def prepare_qm9(
    raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int, seed: int, n_jobs: int
) -> dict[str, Any]:
    """Seeded split of QM9 with DiGress's sizes (Vignac et al. 2023): 10% test, ``train_size``
    (100,000) train, the rest (``val_size``, 17,748) validation. Writes canonical SMILES as
    ``train.smi`` / ``valid.smi`` / ``test.smi`` and ``train_all.smi`` (the novelty reference:
    the training split), and where the raw file has QM9's property columns, ``properties_{split}.csv``
    row by row beside each split's SMILES. A SMILES RDKit cannot parse is skipped and counted."""
    path = raw_dir / "qm9.csv.gz"
    raw = read_smiles(path)
    properties = read_property_table(path, list(QM9_PROPERTIES), required=False)
    n_test = len(raw) // 10
    train_size = 100_000 if train_size is None else train_size
    if n_test + train_size + val_size > len(raw):
        raise DataError(f"{path}: train_size={train_size} + val_size={val_size} + 10% test exceed the "
                        f"{len(raw)} molecules")
    order = np.random.default_rng(seed).permutation(len(raw))
    canonical = map_molecules(canonical_smiles, raw, n_jobs=n_jobs, progress=sys.stderr.isatty(),
                              desc=f"canonicalize {path.name}")
    bad = sorted(i + 2 for i, c in enumerate(canonical) if c is None)
    if bad:
        log.warning("%s: %d line(s) RDKit could not parse were skipped (lines %s)", path, len(bad), bad[:10])
    splits = {"test": order[:n_test], "train": order[n_test:n_test + train_size],
              "valid": order[n_test + train_size:n_test + train_size + val_size]}
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"source": str(path), "read": len(raw), "unparseable": len(bad),
                             "unparseable_lines": bad[:100], "seed": seed,
                             "properties": [] if properties is None else properties[0]}
    for split, idx in splits.items():
        kept_idx = [i for i in idx if canonical[i] is not None]
        kept = [canonical[i] for i in kept_idx]
        write_smiles(out_dir / f"{split}.smi", kept)
        if split == "train":
            write_smiles(out_dir / "train_all.smi", kept)
        if properties is not None:
            write_property_table(out_dir / f"properties_{split}.csv", properties[1][kept_idx], properties[0])
        stats[split] = len(kept)
    log.info("prepared %s", {k: v for k, v in stats.items() if k != "unparseable_lines"})
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats


SMILES_CHUNK = 4096
"""Molecules per task of the chunked, streamed featurization steps (bounds their memory)."""


def iter_smiles_chunks(
    path: Path, chunk_size: int = SMILES_CHUNK, limit: int | None = None
) -> Iterator[tuple[int, list[str]]]:
    """``(index of the first, SMILES)`` chunks of a SMILES file, parsed as :func:`read_smiles`
    does (``""`` for an empty line), the first ``limit`` only (None: all). A ``.smi`` file is
    streamed; a CSV is read whole. DataError if the file is missing or holds no SMILES."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if ".csv" in path.suffixes:
        smiles = read_smiles(path)[:limit]
        for start in range(0, len(smiles), chunk_size):
            yield start, smiles[start:start + chunk_size]
        return
    opener = gzip.open if path.suffix == ".gz" else open
    chunk: list[str] = []
    start = n = 0
    found = False
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if limit is not None and n >= limit:
                    break
                fields = line.split()
                chunk.append(fields[0] if fields else "")
                _check_lengths(path, chunk[-1:], first_line=n + 1)
                found = found or bool(fields)
                n += 1
                if len(chunk) == chunk_size:
                    yield start, chunk
                    start, chunk = n, []
    except UNREADABLE as err:
        raise DataError(f"{path}: cannot be read as text ({type(err).__name__}: {err})") from None
    if chunk:
        yield start, chunk
    if not found:
        raise DataError(f"{path}: no SMILES found")


_worker_log_block: Any = None


def _quiet_worker() -> None:
    global _worker_log_block
    _worker_log_block = rdBase.BlockLogs()


def map_chunks(
    function: Callable[[_T], _R], chunks: Iterable[_T], *, n_jobs: int, in_flight: int | None = None
) -> Iterator[_R]:
    """``function(chunk)`` for each chunk, in order, with RDKit logging silenced: scatter over a
    "forkserver" pool of ``n_jobs`` processes (in this process when ``n_jobs <= 1``) with at most
    ``in_flight`` (default ``2 * n_jobs``) chunks queued, gather in input order, so memory holds
    a few chunks whatever the length of ``chunks``. ``function`` must be picklable."""
    if n_jobs <= 1:
        with rdBase.BlockLogs():
            for chunk in chunks:
                yield function(chunk)
        return
    limit = in_flight or 2 * n_jobs
    with multiprocessing.get_context("forkserver").Pool(n_jobs, initializer=_quiet_worker) as pool:
        pending: collections.deque = collections.deque()
        for chunk in chunks:
            pending.append(pool.apply_async(function, (chunk,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class NpzWriter:
    """Build one uncompressed ``.npz`` from arrays that arrive in row blocks: ``append`` streams
    each block to a part file beside ``path``, ``close`` writes the zip (every member stored, so
    :func:`load_npz_mapped` can memory-map it) and renames it over ``path``. Use as a context
    manager; on an error nothing is written and the part files are removed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parts = tempfile.TemporaryDirectory(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".parts")
        self._members: dict[str, dict[str, Any]] = {}

    def declare(self, name: str, dtype: Any, row_shape: tuple[int, ...] = ()) -> None:
        """Make ``name`` a member of dtype ``dtype`` and rows of ``row_shape``, even if no block comes."""
        if name not in self._members:
            part = Path(self._parts.name) / f"{len(self._members)}.bin"
            self._members[name] = {"dtype": np.dtype(dtype), "row_shape": tuple(row_shape), "rows": 0,
                                   "file": open(part, "wb"), "part": part}

    def append(self, name: str, block: np.ndarray) -> None:
        """Append the rows of ``block`` to member ``name`` (cast to its declared dtype)."""
        block = np.asarray(block)
        self.declare(name, block.dtype, block.shape[1:])
        member = self._members[name]
        if block.shape[1:] != member["row_shape"]:
            raise ValueError(f"{self.path}: {name}: rows of shape {block.shape[1:]}, expected {member['row_shape']}")
        member["file"].write(np.ascontiguousarray(block, dtype=member["dtype"]).tobytes())
        member["rows"] += len(block)

    def put(self, name: str, array: np.ndarray) -> None:
        """A member given whole."""
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise ValueError(f"{self.path}: {name}: object arrays cannot be stored without pickle")
        self.declare(name, array.dtype, array.shape[1:] if array.ndim else ())
        member = self._members[name]
        if array.ndim == 0:
            member["scalar"] = True
            member["file"].write(array.tobytes())
            member["rows"] = 1
        else:
            self.append(name, array)

    def close(self) -> None:
        with atomic_path(self.path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, member in self._members.items():
                member["file"].close()
                shape = () if member.get("scalar") else (member["rows"], *member["row_shape"])
                header = {"descr": np.lib.format.dtype_to_descr(member["dtype"]), "fortran_order": False,
                          "shape": shape}
                with zf.open(f"{name}.npy", "w", force_zip64=True) as out, open(member["part"], "rb") as part:
                    np.lib.format.write_array_header_1_0(out, header)
                    shutil.copyfileobj(part, out, 1 << 24)
        self._parts.cleanup()

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            for member in self._members.values():
                member["file"].close()
            self._parts.cleanup()


def load_npz_mapped(path: Path) -> dict[str, np.ndarray]:
    """The members of an uncompressed ``.npz`` as read-only memory-mapped arrays (scalars and
    empty arrays are read into memory). Never unpickles: DataError for a compressed member, an
    object dtype or a file that is not an npz."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not an .npz file") from None
    arrays: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        for info in infos:
            name = info.filename[: -len(".npy")]
            if info.compress_type != zipfile.ZIP_STORED:
                raise DataError(f"{path}: member {name!r} is compressed and cannot be memory-mapped; re-create it")
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise DataError(f"{path}: member {name!r}: broken zip local header")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_length + extra_length)
            try:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = read_header(fh)
            except ValueError as err:
                raise DataError(f"{path}: member {name!r} is not a .npy array ({err})") from None
            if dtype.hasobject:
                raise DataError(f"{path}: member {name!r} holds Python objects (would need pickle)")
            offset = fh.tell()
            order = "F" if fortran_order else "C"
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if not shape or not nbytes:
                arrays[name] = np.frombuffer(fh.read(nbytes), dtype=dtype).reshape(shape, order=order).copy()
            else:
                arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    return arrays


def portable(array: Any) -> Any:
    """A memory-mapped array as ``(file, offset, dtype, shape, order)`` for pickling to a data
    loader worker (which re-opens it with :func:`unportable`) instead of a copy of its data."""
    if isinstance(array, np.memmap) and array.filename is not None and (
            array.flags.c_contiguous or array.flags.f_contiguous):
        order = "C" if array.flags.c_contiguous else "F"
        return ("memmap", array.filename, array.offset, array.dtype.str, array.shape, order)
    return array


def unportable(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 6 and value[0] == "memmap":
        _, filename, offset, dtype, shape, order = value
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape, order=order)
    return value


GRAPH_FORMAT = "dgm-science molecule graphs v1"
"""The ``format`` member of the graph files that :func:`featurize_file` writes."""


def _graph_chunk(task: tuple[int, list[str]]) -> dict[str, Any]:
    """Graph arrays of a chunk of SMILES, concatenated, with per-molecule atom and bond counts
    and the UTF-8 SMILES; ``{"error": (index, message)}`` at the first SMILES that fails."""
    from dgm_science.domains.molecules.featurize import mol_rows, rows_to_arrays

    start, smiles = task
    atoms: list[tuple[int, ...]] = []
    bonds: list[tuple[int, ...]] = []
    num_atoms, num_bonds, encoded = [], [], []
    for k, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is None:
            return {"error": (start + k, f"SMILES {s!r} could not be parsed by RDKit")}
        try:
            mol_atoms, mol_bonds = mol_rows(mol, s)
        except ValueError as err:
            return {"error": (start + k, str(err))}
        atoms += mol_atoms
        bonds += mol_bonds
        num_atoms.append(len(mol_atoms))
        num_bonds.append(len(mol_bonds))
        encoded.append(s.encode())
    arrays = rows_to_arrays(atoms, bonds)._asdict()
    arrays.update(num_atoms=np.array(num_atoms, np.int64), num_bonds=np.array(num_bonds, np.int64),
                  smiles_length=np.array([len(e) for e in encoded], np.int64),
                  smiles_utf8=np.frombuffer(b"".join(encoded), dtype=np.uint8))
    return arrays


def featurize_file(smiles_path: Path, out_path: Path, n_jobs: int, max_molecules: int | None = None,
                   chunk_size: int = SMILES_CHUNK) -> int:
    """RDKit graphs of the SMILES of ``smiles_path`` (the first ``max_molecules``; None: all), in
    order, as one uncompressed ``.npz`` of concatenated :class:`~featurize.GraphArrays` fields
    (atoms as uint8 / int8, bond ends uint16, bond types uint8), the UTF-8 SMILES, and per-graph
    offsets ``atom_ptr`` / ``bond_ptr`` / ``smiles_ptr: (M + 1,)`` int64. Chunks of ``chunk_size``
    molecules are featurized over ``n_jobs`` processes and streamed to disk, so memory does not
    grow with the file. :class:`GraphStore` reads it back; returns the number of graphs. A SMILES
    RDKit cannot featurize is a DataError naming its line."""
    from dgm_science.domains.molecules.featurize import GRAPH_ARRAY_DTYPES

    smiles_path = Path(smiles_path)
    tasks = iter_smiles_chunks(smiles_path, chunk_size, max_molecules)
    done = 0
    totals = {"atom_ptr": 0, "bond_ptr": 0, "smiles_ptr": 0}
    progress = tqdm(desc=f"featurize {smiles_path.name}", unit="mol", disable=not sys.stderr.isatty())
    with NpzWriter(out_path) as writer, progress:
        writer.put("format", np.array(GRAPH_FORMAT))
        for name, dtype in GRAPH_ARRAY_DTYPES.items():
            writer.declare(name, dtype, (2,) if name == "bond_atoms" else ())
        writer.declare("smiles_utf8", np.uint8)
        for name in totals:
            writer.append(name, np.zeros(1, np.int64))
        for arrays in map_chunks(_graph_chunk, tasks, n_jobs=n_jobs):
            if "error" in arrays:
                index, message = arrays["error"]
                line = index + 1 if ".csv" not in smiles_path.suffixes else index + 2
                raise DataError(f"{smiles_path}: line {line}: {message}")
            for name in [*GRAPH_ARRAY_DTYPES, "smiles_utf8"]:
                writer.append(name, arrays[name])
            for name, counts in (("atom_ptr", arrays["num_atoms"]), ("bond_ptr", arrays["num_bonds"]),
                                 ("smiles_ptr", arrays["smiles_length"])):
                writer.append(name, totals[name] + np.cumsum(counts))
                totals[name] += int(counts.sum())
            done += len(arrays["num_atoms"])
            progress.update(len(arrays["num_atoms"]))
            if not sys.stderr.isatty() and done // 100_000 != (done - len(arrays["num_atoms"])) // 100_000:
                log.info("featurized %d molecules of %s", done, smiles_path)
    return done


class GraphStore:
    """Graphs written by :func:`featurize_file`, indexable like a list of PyG ``Data``: the
    arrays stay memory-mapped and each item is built when it is read, as
    :func:`~featurize.mol_to_graph` builds it."""

    def __init__(self, path: Path) -> None:
        from dgm_science.domains.molecules.featurize import GRAPH_ARRAY_DTYPES

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: graph file not found (run the featurize step)")
        arrays = load_npz_mapped(self.path)
        if "format" not in arrays or str(arrays["format"]) != GRAPH_FORMAT:
            raise DataError(f"{self.path}: not a graph file of this version (format {GRAPH_FORMAT!r}); "
                            "re-run the featurize step")
        required = [*GRAPH_ARRAY_DTYPES, "smiles_utf8", "atom_ptr", "bond_ptr", "smiles_ptr"]
        missing = [name for name in required if name not in arrays]
        if missing:
            raise DataError(f"{self.path}: graph file lacks {missing}; re-run the featurize step")
        self.arrays = arrays
        self.fields = tuple(GRAPH_ARRAY_DTYPES)

    def __len__(self) -> int:
        return len(self.arrays["atom_ptr"]) - 1

    def __getitem__(self, i: int) -> Any:
        from dgm_science.domains.molecules.featurize import ATOM_FIELDS, GraphArrays, graph_from_arrays

        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: graph {i} of {len(self)}")
        i %= len(self)
        a = self.arrays
        atoms = slice(int(a["atom_ptr"][i]), int(a["atom_ptr"][i + 1]))
        bonds = slice(int(a["bond_ptr"][i]), int(a["bond_ptr"][i + 1]))
        text = bytes(a["smiles_utf8"][int(a["smiles_ptr"][i]):int(a["smiles_ptr"][i + 1])]).decode()
        fields = {name: np.asarray(a[name][atoms if name in ATOM_FIELDS else bonds]) for name in self.fields}
        return graph_from_arrays(GraphArrays(**fields), text)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "fields": self.fields,
                "arrays": {name: portable(value) for name, value in self.arrays.items()}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.fields = state["path"], state["fields"]
        self.arrays = {name: unportable(value) for name, value in state["arrays"].items()}


class MoleculeDataset(Dataset):
    """Tokenized molecules, optionally with their graphs. Molecules longer than ``max_length``
    tokens are dropped and counted in ``n_too_long``; molecules with a token outside the tokenizer's
    vocabulary (a fine-tuned prior's, fitted on other data) are skipped and counted in ``n_unknown``
    (their tokens in ``unknown_tokens``). Token ids are held as one int32 array with
    offsets; an item's ``tokens`` is a (L,) long tensor."""

    def __init__(
        self, smiles: Sequence[str], tokenizer: Tokenizer, max_length: int, graphs_path: Path | None = None,
        targets: np.ndarray | None = None,
    ) -> None:
        if targets is not None and len(targets) != len(smiles):
            raise DataError(f"{len(targets)} rows of targets for {len(smiles)} SMILES")
        graphs = GraphStore(graphs_path) if graphs_path is not None else None
        if graphs is not None and len(graphs) > len(smiles):
            raise DataError(f"{graphs_path}: {len(graphs)} graphs for {len(smiles)} SMILES; re-run featurize")
        if graphs is not None and len(graphs) < len(smiles):
            log.info("%s holds the first %d of %d molecules: training on those", graphs_path, len(graphs), len(smiles))
            smiles = smiles[: len(graphs)]
        ids = array.array("i")
        lengths = array.array("i")
        index = array.array("q")
        self.n_unknown = 0
        self.unknown_tokens: collections.Counter[str] = collections.Counter()
        for i, s in enumerate(smiles):
            encoded = tokenizer.encode(s)
            if tokenizer.unk_id in encoded:  # a vocabulary not fitted on these molecules (a fine-tuned prior's)
                self.n_unknown += 1
                self.unknown_tokens.update(t for t in tokenizer.split(s) if t not in tokenizer.index)
                continue
            if len(encoded) <= max_length:
                ids.extend(encoded)
                lengths.append(len(encoded))
                index.append(i)
        self._ids = np.frombuffer(ids, dtype=np.int32) if len(ids) else np.zeros(0, np.int32)
        self._lengths = np.frombuffer(lengths, dtype=np.int32) if len(lengths) else np.zeros(0, np.int32)
        self._offsets = np.concatenate([[0], np.cumsum(self._lengths, dtype=np.int64)])
        self.index = np.frombuffer(index, dtype=np.int64) if len(index) else np.zeros(0, np.int64)
        self.n_too_long = len(smiles) - len(self.index) - self.n_unknown
        if self.n_too_long:
            log.info("dropped %d molecules longer than %d tokens", self.n_too_long, max_length)
        if self.n_unknown:
            log.warning("skipped %d of %d molecules with a token outside the vocabulary (%s)", self.n_unknown,
                        len(smiles), unknown_summary(self.unknown_tokens))
        self.graphs = graphs
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        self.pad_id = tokenizer.pad_id

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> list[int]:
        return self._lengths.tolist()

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"molecule {i} of {len(self)}")
        i %= len(self)
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        item: dict[str, Any] = {"tokens": torch.from_numpy(self._ids[start:end].astype(np.int64))}
        if self.graphs is not None:
            item["graph"] = self.graphs[int(self.index[i])]
        if self.targets is not None:
            item["y"] = torch.from_numpy(self.targets[int(self.index[i])])
        return item

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_molecules(items, self.pad_id)


def collate_molecules(items: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Batch dict: ``tokens`` (B, L) padded with ``pad_id``; ``graph`` a PyG Batch and ``y`` (B, K)
    targets if present."""
    tokens = torch.nn.utils.rnn.pad_sequence([it["tokens"] for it in items], batch_first=True, padding_value=pad_id)
    batch: dict[str, Any] = {"tokens": tokens}
    if "y" in items[0]:
        batch["y"] = torch.stack([it["y"] for it in items])
    if "graph" in items[0]:
        from torch_geometric.data import Batch

        batch["graph"] = Batch.from_data_list([it["graph"] for it in items])
    return batch


@register("dataset", "moses")
class Moses:
    """MOSES (Polykovskiy et al. 2020): 1.58 M train, 176 k test, 176 k scaffold-test molecules
    from ZINC Clean Leads, shipped inside the ``molsets`` wheel."""

    domain = "molecules"
    sources: tuple[str, ...] = ()
    """Committed files the workflow passes to ``dgm prepare`` (none: ``dgm fetch`` downloads the data)."""
    version = wheels.pinned("molsets").version
    sha256 = wheels.pinned("molsets").sha256

    @classmethod
    def fetch(cls, out_dir: Path) -> dict[str, Any]:
        return fetch_moses(out_dir, version=cls.version, sha256=cls.sha256)

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int = 10000, seed: int,
                n_jobs: int) -> dict[str, Any]:
        return prepare_moses(raw_dir, out_dir, train_size=train_size, val_size=val_size, seed=seed, n_jobs=n_jobs)


@register("dataset", "qm9")
class QM9:
    """QM9 (Ramakrishnan et al. 2014): 130,831 molecules of up to 9 heavy atoms (C, N, O, F), the
    SMILES of the ``qm9pack`` wheel; DiGress split sizes 100,000 / 17,748 / 13,083."""

    domain = "molecules"
    sources: tuple[str, ...] = ()
    """Committed files the workflow passes to ``dgm prepare`` (none: ``dgm fetch`` downloads the data)."""
    version = wheels.pinned("qm9pack").version
    sha256 = wheels.pinned("qm9pack").sha256

    @classmethod
    def fetch(cls, out_dir: Path) -> dict[str, Any]:
        return fetch_qm9(out_dir, version=cls.version, sha256=cls.sha256)

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int = 10000, seed: int,
                n_jobs: int) -> dict[str, Any]:
        return prepare_qm9(raw_dir, out_dir, train_size=train_size, val_size=val_size, seed=seed, n_jobs=n_jobs)
