"""The ``sequences`` domain: models of DNA and protein sequences — their state (alphabet, token
layout, length limit, labels), datasets, label conditions, decode, likelihood, FASTA samples and
evaluation. The datasets live in ``data.py``, the token layout in ``tokens.py``.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.base import Domain, ModelSpec, Samples
from dgm_science.commands import positive_int
from dgm_science.config import ConfigError
from dgm_science.domains.sequences.data import (
    SPLITS, SequenceDataset, SequenceSample, _phylum_class, read_prepared, record_label,
)
from dgm_science.domains.sequences.fasta import FastaRecord, read_fasta, write_fasta
from dgm_science.domains.sequences.tokens import UNKNOWN_LABEL, Layout, Vocabulary, condition_matrix
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path, csv_number


def _labels_of(items: Sequence[Any]) -> list[str | None]:
    return [item.label if isinstance(item, SequenceSample) else None for item in items]


def _sequence_of(item: Any) -> str | None:
    if item is None:
        return None
    if isinstance(item, (SequenceSample, FastaRecord)):
        return item.sequence
    return str(item)


@register("domain", "sequences")
class SequenceDomain(Domain):
    """DNA and protein sequences: items are ``SequenceSample`` (or plain strings / FASTA records)."""

    name = "sequences"
    headline = ("kmer_js_k3", "3-mer JS ↓")
    headline_ratio_scale = True
    size_unit = "residue"
    samples_file = "samples.fasta"
    condition_options = ("label",)

    @staticmethod
    def fit_state(data_dir: Path, spec: type[ModelSpec], model_cfg: Any) -> dict[str, Any]:
        """Alphabet, layout, length limit, labels (with the training label frequencies that
        conditional sampling draws from) and, for canvas models, the training length histogram:
        everything needed to rebuild and use the model."""
        prepared = read_prepared(data_dir)
        state: dict[str, Any] = {
            "dataset": prepared["dataset"], "kind": prepared["kind"], "alphabet": prepared["alphabet"],
            "v4": prepared["v4"], "layout": "canvas" if spec.canvas else "causal",
            "max_length": int(model_cfg.max_length), "labels": [], "label_weights": [],
        }
        conditional = getattr(model_cfg, "conditional", False)
        train = read_fasta(Path(data_dir) / "train.fasta") if state["layout"] == "canvas" or conditional else []
        if state["layout"] == "canvas":  # P(n) over n = 0 .. max_length - 2 residues (n = 0 never)
            room = Layout.of(state).max_residues + 1
            state["length_counts"] = np.bincount([len(r.sequence) for r in train if len(r.sequence) < room],
                                                 minlength=room).tolist()
            if not sum(state["length_counts"]):
                raise ConfigError(f"model.max_length: no training sequence of {data_dir} fits {state['max_length']}")
        if conditional:
            if not prepared["labelled"]:
                raise ConfigError(f"model.conditional: dataset {prepared['dataset']} has no labels")
            from dgm_science.domains.sequences.classifier import PHYLUM_CLASSES

            labels = [_phylum_class(r) for r in train]
            state["labels"] = [*PHYLUM_CLASSES, UNKNOWN_LABEL]
            state["label_weights"] = [sum(lab == c for lab in labels) for c in PHYLUM_CLASSES] + [
                sum(lab is None for lab in labels)]
        return state

    @staticmethod
    def datasets(data_dir: Path, spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[SequenceDataset, SequenceDataset]:
        alphabet = frozenset(state["alphabet"])
        return tuple(SequenceDataset(read_fasta(Path(data_dir) / f"{split}.fasta", alphabet), state)
                     for split in ("train", "valid"))  # type: ignore[return-value]

    @staticmethod
    def typical_set(data_dir: Path, model_cfg: Any = None) -> list[FastaRecord]:
        return read_fasta(Path(data_dir) / "valid.fasta")

    @classmethod
    def add_sample_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--label", default=None,
                           help="conditional sequence models: generate every sample for this label (e.g. Firmicutes; "
                                "default: labels drawn from the training frequencies)")

    @classmethod
    def add_prepare_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--max-residues", type=positive_int, default=None,
                           help="keep only records of at most this many residues, in every split (default: all)")

    @staticmethod
    def draw_conditions(n: int, state: dict[str, Any], generator: torch.Generator | None = None,
                        label: str | None = None) -> tuple[torch.Tensor | None, dict[str, list[str | None]]]:
        """Conditions for ``n`` samples: ``label`` for all, or labels drawn from the training
        label frequencies (``unknown`` included, so samples follow the data's marginal); and the
        decoder's ``labels`` option."""
        if not state.get("labels"):
            if label is not None:
                raise ValueError("this model is unconditional: it takes no label")
            return None, {"labels": [None] * n}
        if label is None:
            weights = torch.tensor(state["label_weights"], dtype=torch.float64)
            device = generator.device if generator is not None else torch.device("cpu")
            picks = torch.multinomial(weights.to(device), n, replacement=True, generator=generator).tolist()
            labels = [state["labels"][i] for i in picks]
        else:
            labels = [label] * n
        names = [None if lab == UNKNOWN_LABEL else lab for lab in labels]
        return condition_matrix(state, names), {"labels": names}

    @staticmethod
    def decode_table(raw: torch.Tensor, state: dict[str, Any], labels: Sequence[str | None] | None = None,
                     **options: Any) -> tuple[list[SequenceSample | None], dict[str, list[Any]]]:
        """Token rows (B, L) -> samples (None where not ``residues+ <eos> <pad>*``) and their labels."""
        vocab = Vocabulary(state["alphabet"])
        labels = list(labels) if labels is not None else [None] * len(raw)
        rows = raw.detach().cpu().numpy()
        canvas = Layout.of(state).canvas
        items = []
        for row, label in zip(rows, labels):
            sequence = vocab.decode_row(row, canvas=canvas)
            items.append(None if sequence is None else SequenceSample(sequence, label))
        return items, {"label": labels}

    @staticmethod
    def batch_of(items: Sequence[Any], spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """Token rows (and conditions) of the items that fit the model, and their positions."""
        vocab = Vocabulary(state["alphabet"])
        layout = Layout.of(state)
        keep, rows = [], []
        for i, item in enumerate(items):
            sequence = _sequence_of(item)
            if not sequence or len(sequence) > layout.max_residues:
                continue
            try:
                rows.append(vocab.encode(sequence))
            except ValueError:
                continue
            keep.append(i)
        if not keep:
            return None, []
        batch = {"tokens": layout.tokens(rows)}
        condition = condition_matrix(state, [record_label(items[i], state) for i in keep])
        if condition is not None:
            batch["condition"] = condition
        return batch, keep

    @staticmethod
    def scoring_order(items: Sequence[Any]) -> list[int]:
        """By length, so that causal batches carry little padding."""
        return sorted(range(len(items)), key=lambda i: len(_sequence_of(items[i]) or ""))

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        """Residues per item (bases for DNA): the unit of bits per base."""
        return np.array([len(_sequence_of(item) or "") or math.nan for item in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        """``path`` (.fasta): the valid samples, headers ``sample<i> label=<label|NA>
        log_likelihood=<nats> bits_per_residue=<bits>``; ``samples.csv`` beside it: one row per
        drawn sample (index, valid, label, length, log_likelihood), so invalid ones are counted.
        Both written atomically; returns the number of valid samples."""
        path = Path(path)
        if path.suffix != ".fasta":
            raise ValueError(f"{path}: sequence samples are written as .fasta")
        items, log_likelihood = samples.items, samples.log_likelihood
        labels = samples.columns.get("label") or _labels_of(items)
        records = []
        rows = []
        for i, item in enumerate(items):
            label = labels[i] if i < len(labels) else None
            ll = float(log_likelihood[i])
            if item is None:
                rows.append([i, 0, label or "", "", csv_number(ll)])
                continue
            bits = -ll / math.log(2) / len(item.sequence) if math.isfinite(ll) else math.nan
            records.append(FastaRecord(f"sample{i} label={label or 'NA'} log_likelihood={csv_number(ll) or 'NA'} "
                                       f"bits_per_residue={csv_number(bits) or 'NA'}", item.sequence))
            rows.append([i, 1, label or "", len(item.sequence), csv_number(ll)])
        with atomic_path(path) as tmp:
            write_fasta(tmp, records)
        with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "valid", "label", "length", "log_likelihood"])
            writer.writerows(rows)
        return len(records)

    @staticmethod
    def read_samples(path: Path) -> list[SequenceSample | None]:
        """The drawn samples in order (None for invalid ones) from a samples FASTA and its CSV."""
        path = Path(path)
        table = path.with_suffix(".csv")
        if not table.is_file():
            raise DataError(f"{table}: missing (written beside {path} by `dgm sample`)")
        records = {r.id: r.sequence for r in read_fasta(path)} if path.stat().st_size else {}
        out: list[SequenceSample | None] = []
        with open(table, newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    index, valid = int(row["index"]), row["valid"] == "1"
                except (KeyError, ValueError, TypeError):
                    raise DataError(f"{table}:{line}: expected columns index, valid, label, length, "
                                    "log_likelihood") from None
                if not valid:
                    out.append(None)
                    continue
                if f"sample{index}" not in records:
                    raise DataError(f"{table}:{line}: sample{index} is valid but missing from {path}")
                out.append(SequenceSample(records[f"sample{index}"], row["label"] or None))
        return out

    @classmethod
    def evaluate(cls, samples_path: Path, reference_dir: Path, *, n_jobs: int = 1) -> dict[str, float]:
        """Sequence metrics of the samples against the test split (novelty against train), the
        same for the validation split (``data_*``, real held-out sequences: the data row), and for
        conditional samples the accuracy of an RDP-style k-mer classifier trained on the labelled
        training sequences at recovering the requested label (``data_label_accuracy``: on the
        labelled test sequences)."""
        from dgm_science.domains.sequences.metrics import sequence_metrics

        reference_dir = Path(reference_dir)
        prepared = read_prepared(reference_dir)
        alphabet = frozenset(prepared["alphabet"])
        samples = cls.read_samples(samples_path)
        split = {name: read_fasta(reference_dir / f"{name}.fasta", alphabet) for name in SPLITS}
        test = [r.sequence for r in split["test"]]
        train = [r.sequence for r in split["train"]]
        options = {"kind": prepared["kind"], "alphabet": prepared["alphabet"], "v4": prepared["v4"], "n_jobs": n_jobs}
        metrics = sequence_metrics([_sequence_of(s) for s in samples], test, train, **options)
        data = sequence_metrics([r.sequence for r in split["valid"]], test, train, **options)
        metrics.update({f"data_{k}": v for k, v in data.items()})
        requested = [(s.sequence, s.label) for s in samples if s is not None and s.label is not None]
        if prepared["labelled"] and requested:
            from dgm_science.domains.sequences.classifier import KmerNaiveBayes, label_accuracy

            labelled = [(r.sequence, _phylum_class(r)) for r in split["train"]]
            labelled = [(s, lab) for s, lab in labelled if lab is not None]
            classifier = KmerNaiveBayes().fit([s for s, _ in labelled], [lab for _, lab in labelled])
            metrics["label_accuracy"] = label_accuracy(classifier, [s for s, _ in requested], [lab for _, lab in requested])
            metrics["label_samples"] = float(len(requested))
            held_out = [(r.sequence, _phylum_class(r)) for r in split["test"]]
            held_out = [(s, lab) for s, lab in held_out if lab is not None]
            metrics["data_label_accuracy"] = label_accuracy(classifier, [s for s, _ in held_out],
                                                            [lab for _, lab in held_out])
        return metrics
