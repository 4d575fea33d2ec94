"""Genetic sequences: the datasets (16S V4 amplicons, full-length 16S genes, Swiss-Prot), the
token layout every sequence model shares, and the ``sequences`` domain (state, datasets, decode,
likelihood, FASTA samples, evaluation).

Token layout: ids 0..3 are ``<pad> <bos> <eos> <mask>``, then the alphabet's letters. A causal
model reads ``<bos> x_1 .. x_T <eos> <pad> ..``; a masked-diffusion model reads the fixed-length
canvas ``x_1 .. x_T <eos> <pad> ..`` of ``max_length - 1`` positions, so both model the length.
A decoded sample is a ``SequenceSample`` (residues and the label it was drawn for), or None when
the tokens are not ``residues+ <eos> <pad>*`` (no end, an empty sequence, a special token inside):
invalid samples are counted, never repaired.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import random
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from dgm_science.base import GenerativeModel
from dgm_science.config import ConfigError
from dgm_science.domains.sequences.fasta import PROTEIN, FastaRecord, read_fasta, write_fasta
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

SPECIALS = ("<pad>", "<bos>", "<eos>", "<mask>")
PAD, BOS, EOS, MASK = range(4)
UNKNOWN_LABEL = "unknown"
SPLITS = ("train", "valid", "test")


class SequenceSample(NamedTuple):
    """A sequence and the label it was generated for (None for unconditional models)."""

    sequence: str
    label: str | None = None


class Vocabulary:
    """Token ids of an alphabet: the four specials, then one id per letter."""

    def __init__(self, alphabet: str) -> None:
        self.alphabet = alphabet
        self.tokens = list(SPECIALS) + list(alphabet)
        self._lookup = np.full(256, -1, dtype=np.int64)
        for i, letter in enumerate(alphabet):
            self._lookup[ord(letter)] = len(SPECIALS) + i
        self._letters = np.frombuffer(("\0" * len(SPECIALS) + alphabet).encode("ascii"), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, sequence: str) -> np.ndarray:
        """Residue ids (T,) of ``sequence``; ValueError naming the first letter outside the alphabet."""
        ids = self._lookup[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]
        if (ids < 0).any():
            bad = sequence[int(np.argmax(ids < 0))]
            raise ValueError(f"letter {bad!r} is not in the alphabet {self.alphabet}")
        return ids

    def decode_row(self, ids: np.ndarray, canvas: bool = False) -> str | None:
        """The sequence of a row laid out ``<bos> residues+ <eos> <pad>*`` (``canvas``: without the
        <bos>), or None."""
        if not canvas:
            if not len(ids) or ids[0] != BOS:
                return None
            ids = ids[1:]
        ends = np.flatnonzero(ids == EOS)
        if not len(ends) or ends[0] == 0:
            return None
        end = int(ends[0])
        body, tail = ids[:end], ids[end + 1:]
        if (body < len(SPECIALS)).any() or (tail != PAD).any():
            return None
        return self._letters[body].tobytes().decode("ascii")


# ------------------------------------------------------------------------------------------ data


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
    from dgm_science.domains.sequences.data import parse_16s_header

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
    return json.loads(path.read_text())


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


def token_rows(rows: Sequence[np.ndarray], length: int | None, canvas: bool) -> torch.Tensor:
    """(B, L) long: ``<bos> ids <eos> <pad>..`` (causal; L = longest + 2) or ``ids <eos> <pad>..``
    (canvas; L = ``length``)."""
    start = 0 if canvas else 1
    width = length if length is not None else max(len(r) for r in rows) + 2
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    if not canvas:
        out[:, 0] = BOS
    for i, ids in enumerate(rows):
        out[i, start:start + len(ids)] = ids
        out[i, start + len(ids)] = EOS
    return torch.from_numpy(out)


class Layout(NamedTuple):
    """A model's token layout: ``canvas`` (no <bos>, fixed width ``width``) or causal (width per
    batch, ``width`` None); ``max_residues`` is the longest sequence that fits."""

    canvas: bool
    width: int | None
    max_residues: int

    @classmethod
    def of(cls, state: dict[str, Any]) -> "Layout":
        max_length = int(state["max_length"])
        if state["layout"] == "canvas":
            return cls(True, max_length - 1, max_length - 2)
        return cls(False, None, max_length - 2)

    def tokens(self, rows: Sequence[np.ndarray]) -> torch.Tensor:
        return token_rows(rows, self.width, self.canvas)


def record_label(record: FastaRecord | SequenceSample | str, state: dict[str, Any]) -> str | None:
    """The condition label of an item: its phylum class for labelled data, else None."""
    if not state.get("labels"):
        return None
    if isinstance(record, SequenceSample):
        return record.label
    if isinstance(record, FastaRecord):
        return _phylum_class(record)
    return None


def condition_matrix(state: dict[str, Any], labels: Sequence[str | None]) -> torch.Tensor | None:
    """One-hot (B, C) over ``state["labels"]`` (the last is ``unknown``, for unlabelled
    sequences); None for an unconditional model. An unknown label name is a ValueError."""
    classes = state.get("labels") or []
    if not classes:
        return None
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for label in labels:
        name = UNKNOWN_LABEL if label is None else label
        if name not in index:
            raise ValueError(f"label {label!r} is not one of this model's labels: {', '.join(classes)}")
        rows.append(index[name])
    return torch.nn.functional.one_hot(torch.tensor(rows, dtype=torch.long), len(classes)).float()


# ---------------------------------------------------------------------------------------- domain


def _labels_of(items: Sequence[Any]) -> list[str | None]:
    return [item.label if isinstance(item, SequenceSample) else None for item in items]


def _sequence_of(item: Any) -> str | None:
    if item is None:
        return None
    if isinstance(item, (SequenceSample, FastaRecord)):
        return item.sequence
    return str(item)


@register("domain", "sequences")
class SequenceDomain:
    """DNA and protein sequences: items are ``SequenceSample`` (or plain strings / FASTA records)."""

    name = "sequences"
    samples_file = "samples.fasta"
    condition_options = ("label",)

    @staticmethod
    def fit_state(data_dir: Path, spec: Any, model_cfg: Any) -> dict[str, Any]:
        """Alphabet, layout, length limit, labels (with the training label frequencies that
        conditional sampling draws from) and, for canvas models, the training length histogram:
        everything needed to rebuild and use the model."""
        prepared = read_prepared(data_dir)
        state: dict[str, Any] = {
            "dataset": prepared["dataset"], "kind": prepared["kind"], "alphabet": prepared["alphabet"],
            "v4": prepared["v4"], "layout": "canvas" if getattr(spec, "canvas", False) else "causal",
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
    def datasets(data_dir: Path, spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[SequenceDataset, SequenceDataset]:
        alphabet = frozenset(state["alphabet"])
        return tuple(SequenceDataset(read_fasta(Path(data_dir) / f"{split}.fasta", alphabet), state)
                     for split in ("train", "valid"))  # type: ignore[return-value]

    @staticmethod
    def typical_set(data_dir: Path) -> list[FastaRecord]:
        return read_fasta(Path(data_dir) / "valid.fasta")

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

    @classmethod
    def decode(cls, raw: torch.Tensor, state: dict[str, Any], **options: Any) -> list[SequenceSample | None]:
        return cls.decode_table(raw, state, **options)[0]

    @staticmethod
    def batch_of(items: Sequence[Any], spec: Any, model_cfg: Any, state: dict[str, Any]
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

    @classmethod
    @torch.no_grad()
    def log_likelihood(cls, model: GenerativeModel, items: Sequence[Any], spec: Any, model_cfg: Any,
                       state: dict[str, Any], batch_size: int = 500) -> np.ndarray:
        """log p(x [| label]) in nats per item (an ELBO for bound models); NaN where the item is
        invalid, too long or has a letter outside the alphabet."""
        out = np.full(len(items), math.nan)
        device = next(model.parameters()).device
        model.eval()
        # sort by length so that causal batches carry little padding
        order = sorted(range(len(items)), key=lambda i: len(_sequence_of(items[i]) or ""))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch, keep = cls.batch_of([items[i] for i in chunk], spec, model_cfg, state)
            if batch is None:
                continue
            log_p = model.log_prob({k: v.to(device) for k, v in batch.items()})
            out[[chunk[k] for k in keep]] = log_p.double().cpu().numpy()
        return out

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        """Residues per item (bases for DNA): the unit of bits per base."""
        return np.array([len(_sequence_of(item) or "") or math.nan for item in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, items: Sequence[SequenceSample | None], log_likelihood: np.ndarray,
                      n_jobs: int = 1, *, state: dict[str, Any] | None = None,
                      columns: dict[str, list[Any]] | None = None) -> int:
        """``path`` (.fasta): the valid samples, headers ``sample<i> label=<label|NA>
        log_likelihood=<nats> bits_per_residue=<bits>``; ``samples.csv`` beside it: one row per
        drawn sample (index, valid, label, length, log_likelihood), so invalid ones are counted.
        Both written atomically; returns the number of valid samples."""
        path = Path(path)
        if path.suffix != ".fasta":
            raise ValueError(f"{path}: sequence samples are written as .fasta")
        labels = (columns or {}).get("label") or _labels_of(items)
        records = []
        rows = []
        for i, item in enumerate(items):
            label = labels[i] if i < len(labels) else None
            ll = float(log_likelihood[i])
            if item is None:
                rows.append([i, 0, label or "", "", _cell(ll)])
                continue
            bits = -ll / math.log(2) / len(item.sequence) if math.isfinite(ll) else math.nan
            records.append(FastaRecord(f"sample{i} label={label or 'NA'} log_likelihood={_cell(ll) or 'NA'} "
                                       f"bits_per_residue={_cell(bits) or 'NA'}", item.sequence))
            rows.append([i, 1, label or "", len(item.sequence), _cell(ll)])
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


def _cell(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ""
