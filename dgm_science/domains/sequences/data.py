"""Genetic-sequence datasets: the committed FASTA files (16S V4 amplicons, full-length 16S
genes, Swiss-Prot; built by ``sources.py``) with their identity-cluster splits, registered as
``16s-v4``, ``16s`` and ``swissprot``; ``dgm prepare`` (``prepare_sequences``), the prepared
splits' reader and the torch dataset of token rows.

An item is a ``SequenceSample``: the residues and the label it was drawn for (None for
unconditional models); labelled data are conditioned on the phylum class of their header.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from dgm_science.domains.sequences.fasta import PROTEIN, FastaRecord, read_fasta, write_fasta
from dgm_science.domains.sequences.tokens import Layout, Vocabulary, condition_matrix
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path, read_json

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class SequenceSample(NamedTuple):
    """A sequence and the label it was generated for (None for unconditional models)."""

    sequence: str
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class SequenceData:
    """A committed FASTA with its identity-cluster split (see ``clusters.py``)."""

    name: str
    fasta: str
    split: str
    kind: str  # "dna" | "protein"
    labelled: bool  # headers carry a phylum
    v4: bool  # V4 amplicons: primer retention is scored

    @property
    def alphabet(self) -> str:
        return "ACGTN" if self.kind == "dna" else "".join(sorted(PROTEIN))


def _phylum_class(record: FastaRecord) -> str | None:
    from dgm_science.domains.sequences.classifier import phylum_class
    from dgm_science.domains.sequences.sources import parse_16s_header

    return phylum_class(parse_16s_header(record.header)["phylum"])


def prepare_sequences(data: SequenceData, raw_dir: Path, out_dir: Path, *, train_size: int | None = None,
                      seed: int = 0, max_residues: int | None = None) -> dict[str, Any]:
    """Write ``{train,valid,test}.fasta`` and ``prepare.json`` into ``out_dir`` from the committed
    FASTA and split under ``raw_dir``; ``max_residues`` keeps the records of at most that length
    in every split (counted), ``train_size`` then takes a seeded subset of the training split."""
    from dgm_science.domains.sequences.clusters import assign_by_id, read_split

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    alphabet = frozenset(data.alphabet)
    records = read_fasta(raw_dir / data.fasta, alphabet)
    split = read_split(raw_dir / data.split)
    missing = [r.id for r in records if r.id not in split]
    if missing and data.name != "16s":
        raise DataError(f"{raw_dir / data.split}: no split for {len(missing)} record(s) of {data.fasta}, "
                        f"e.g. {missing[:3]}")
    parts: dict[str, list[FastaRecord]] = {name: [] for name in SPLITS}
    too_long = 0
    # full-length 16S: the V4 split by gene id; genes without a V4 amplicon train
    for record, name in zip(records, assign_by_id((r.id for r in records), split)):
        if max_residues is not None and len(record.sequence) > max_residues:
            too_long += 1
            continue
        parts[name].append(record)
    if train_size is not None and train_size < len(parts["train"]):
        parts["train"] = random.Random(seed).sample(parts["train"], train_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"dataset": data.name, "kind": data.kind, "alphabet": data.alphabet, "v4": data.v4,
                             "labelled": data.labelled, "source": data.fasta, "split_file": data.split,
                             "max_residues": max_residues, "dropped_over_max_residues": too_long}
    for name, part in parts.items():
        write_fasta(out_dir / f"{name}.fasta", part)
        lengths = [len(r.sequence) for r in part]
        stats[name] = {"sequences": len(part), "residues": int(sum(lengths)),
                       "length": [min(lengths, default=0), max(lengths, default=0)]}
        if data.labelled:
            labels = [_phylum_class(r) for r in part]
            stats[name]["labels"] = {c: labels.count(c) for c in sorted(set(filter(None, labels)))}
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _register_dataset(data: SequenceData, doc: str) -> None:
    class _Dataset:
        __doc__ = doc
        domain = "sequences"
        sources = (f"data/sequences/{data.fasta}", f"data/sequences/{data.split}")
        """The committed FASTA and its split, which the workflow passes to ``dgm prepare``."""
        version = "committed"
        spec = data

        @staticmethod
        def fetch(out_dir: Path) -> dict[str, Any]:
            raise ValueError(f"{data.name} is committed under data/sequences/: nothing to fetch; "
                             "`dgm prepare` reads it with --raw data/sequences")

        @staticmethod
        def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None = None, val_size: int | None = None,
                    seed: int = 0, n_jobs: int = 1, max_residues: int | None = None) -> dict[str, Any]:
            """The split is by identity clusters (committed): ``val_size`` must be unset."""
            if val_size is not None:
                raise ValueError(f"--val-size: {data.name} has a fixed identity-cluster split")
            return prepare_sequences(data, raw_dir, out_dir, train_size=train_size, seed=seed,
                                     max_residues=max_residues)

    _Dataset.__name__ = f"Dataset_{data.name.replace('-', '_')}"
    register("dataset", data.name)(_Dataset)


DATASETS = {
    "16s-v4": SequenceData("16s-v4", "rrna16s_v4.fasta.gz", "rrna16s_v4.split.tsv", "dna", True, True),
    "16s": SequenceData("16s", "rrna16s.fasta.gz", "rrna16s_v4.split.tsv", "dna", True, False),
    "swissprot": SequenceData("swissprot", "swissprot.fasta.gz", "swissprot.split.tsv", "protein", False, False),
}
_register_dataset(DATASETS["16s-v4"], "16S rRNA V4 amplicons (515F-806R, primers included), 97 % identity-cluster split.")
_register_dataset(DATASETS["16s"], "Full-length 16S rRNA genes, split by their V4 amplicon's cluster.")
_register_dataset(DATASETS["swissprot"], "Swiss-Prot proteins (50-1,024 residues), identity-cluster split.")


def read_prepared(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / "prepare.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dgm prepare` for this dataset first")
    return read_json(path)


class SequenceDataset(torch.utils.data.Dataset):
    """Token rows of FASTA records; records longer than ``max_length`` tokens are dropped and
    counted (``n_too_long``). ``canvas``: rows are fixed-length canvases without <bos>."""

    def __init__(self, records: Sequence[FastaRecord], state: dict[str, Any]) -> None:
        vocab = Vocabulary(state["alphabet"])
        self.layout = Layout.of(state)
        kept = [r for r in records if len(r.sequence) <= self.layout.max_residues]
        self.n_too_long = len(records) - len(kept)
        if self.n_too_long:
            log.info("dropped %d sequences longer than %d residues", self.n_too_long, self.layout.max_residues)
        if not kept:
            raise DataError(f"no sequence fits max_length {state['max_length']}")
        self.ids = [vocab.encode(r.sequence) for r in kept]
        self.condition = condition_matrix(state, [record_label(r, state) for r in kept])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.ids]

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = [self.ids[i] for i in indices]
        batch = {"tokens": self.layout.tokens(rows)}
        if self.condition is not None:
            batch["condition"] = self.condition[indices]
        return batch


def record_label(record: FastaRecord | SequenceSample | str, state: dict[str, Any]) -> str | None:
    """The condition label of an item: its phylum class for labelled data, else None."""
    if not state.get("labels"):
        return None
    if isinstance(record, SequenceSample):
        return record.label
    if isinstance(record, FastaRecord):
        return _phylum_class(record)
    return None
