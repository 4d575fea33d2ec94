"""The molecules domain: what the CLI and the library need to train, sample and score molecule
models, whatever their family."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.base import Domain, ModelSpec, Samples
from dgm_science.config import SampleConfig
from dgm_science.domains.molecules import commands
from dgm_science.errors import DataError
from dgm_science.domains.molecules.data import MoleculeDataset, collate_molecules, read_smiles
from dgm_science.domains.molecules.dense import (
    DenseGraphDataset, DenseGraphs, decode_dense, dense_state, load_dense, smiles_to_dense_batch,
)
from dgm_science.domains.molecules.targets import property_split, standardize, training_targets
from dgm_science.tokenizer import Tokenizer
from dgm_science.registry import register

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MoleculeSampleConfig(SampleConfig):
    """How many molecules to draw for evaluation, and how (with the molecules decoder's options)."""

    valency_correction: bool = False
    """Molecular graphs: repair over-bonded atoms (MoFlow) before the SMILES is written; the
    validity before repair is kept in the ``valid_without_correction`` column."""

    def decode_options(self) -> dict[str, Any]:
        """``valency_correction=True`` where it is on (passed only then: a token model's decoder
        ignores it either way)."""
        return {"valency_correction": True} if self.valency_correction else {}


@register("domain", "molecules")
class MoleculeDomain(Domain):
    """Molecules as SMILES/SELFIES token sequences and RDKit graphs (MOSES, QM9)."""

    name = "molecules"
    headline = ("FCD/Test", "FCD/Test ↓")
    headline_ratio_scale = True
    size_unit = "heavy atom"
    samples_file = "samples.csv"
    SampleConfig = MoleculeSampleConfig

    @classmethod
    def headline_anchor(cls, dataset: str) -> tuple[str, float] | None:
        """FCD/Test of MOSES's CharRNN (MOSES Table 2) on MOSES; of GDSS (its Table 2, MoFlow's QM9 split) on QM9."""
        from dgm_science.domains.molecules.report import PUBLISHED_MOSES, PUBLISHED_QM9

        if dataset == "moses":
            return "CharRNN (MOSES, full train, GPU)", PUBLISHED_MOSES["CharRNN"]["FCD/Test"]
        if dataset == "qm9":
            return "GDSS (GPU; MoFlow's split)", PUBLISHED_QM9["GDSS"][1]["FCD/Test"]
        return None

    @staticmethod
    def fit_state(data_dir: Path, spec: type[ModelSpec], model_cfg: Any) -> dict[str, Any]:
        """Domain state saved in the checkpoint: the atom vocabulary and size of dense graphs, or
        the tokenizer fitted on train + valid."""
        if "dense" in spec.batch_fields:
            atom_types, atoms, bonds = load_dense(data_dir / "dense.npz", "train")
            return dense_state(atom_types, atoms, bonds)
        smiles = read_smiles(data_dir / "train.smi") + read_smiles(data_dir / "valid.smi")
        state: dict[str, Any] = {"tokenizer": Tokenizer.fit(model_cfg.tokenizer, smiles).state()}
        if "y" in spec.batch_fields:  # the tokenizer still knows the excluded elements: their molecules can be scored
            state["targets"] = training_targets(data_dir, model_cfg)
            for name, task, seen, missing in zip(*(state["targets"][k] for k in ("names", "tasks", "observed",
                                                                                 "missing"))):
                log.info("target %s: %s on %d training molecules (%d without a value skipped for it)", name, task,
                         seen, missing)
        return state

    @staticmethod
    def tokenizer(state: dict[str, Any]) -> Tokenizer:
        return Tokenizer.from_state(state["tokenizer"])

    @classmethod
    def datasets(
        cls, data_dir: Path, spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
    ) -> tuple[MoleculeDataset | DenseGraphDataset, MoleculeDataset | DenseGraphDataset]:
        if "dense" in spec.batch_fields:
            splits = [load_dense(data_dir / "dense.npz", split) for split in ("train", "valid")]
            return DenseGraphDataset(*splits[0][1:]), DenseGraphDataset(*splits[1][1:])
        tokenizer = cls.tokenizer(state)
        needs_graph = "graph" in spec.batch_fields
        out = []
        for split in ("train", "valid"):
            if "y" in spec.batch_fields:
                smiles, y = property_split(data_dir, split, model_cfg)
                out.append(MoleculeDataset(smiles, tokenizer, model_cfg.max_length,
                                           targets=standardize(y, state["targets"])))
                continue
            graphs = data_dir / f"graphs_{split}.npz" if needs_graph else None
            out.append(MoleculeDataset(read_smiles(data_dir / f"{split}.smi"), tokenizer, model_cfg.max_length, graphs))
        return out[0], out[1]

    @classmethod
    def decode_table(
        cls, raw: torch.Tensor | DenseGraphs, state: dict[str, Any], *, valency_correction: bool = False
    ) -> tuple[list[str | None], dict[str, list[Any]]]:
        """Model output -> (SMILES, None where invalid; extra per-sample columns).

        Token ids (B, L) decode to their string (None where the sequence never ended); dense
        graphs decode as MoFlow does, with the ``valid_without_correction`` column, and the
        valency correction only when asked for."""
        if isinstance(raw, DenseGraphs):
            smiles, valid_raw = decode_dense(raw, state["atom_types"], valency_correction=valency_correction)
            return smiles, {"valid_without_correction": [int(v) for v in valid_raw]}
        tokenizer = cls.tokenizer(state)
        return [tokenizer.decode(row) for row in raw.tolist()], {}

    @classmethod
    def batch_of(
        cls, smiles: Sequence[str | None], spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[int]]:
        """Model batch for those SMILES the model can score, and their positions in ``smiles``."""
        from dgm_science.domains.molecules.featurize import smiles_to_graph

        if "dense" in spec.batch_fields:
            return smiles_to_dense_batch(smiles, state["atom_types"], state["max_atoms"])
        tokenizer = cls.tokenizer(state)
        needs_graph = "graph" in spec.batch_fields
        items, keep = [], []
        for i, s in enumerate(smiles):
            if not s:
                continue
            try:
                ids = tokenizer.encode(s)
                item: dict[str, Any] = {"tokens": torch.tensor(ids)}
                if needs_graph:
                    item["graph"] = smiles_to_graph(s)
            except ValueError:  # not tokenizable, or RDKit cannot parse it for the graph
                continue
            if len(ids) > model_cfg.max_length or tokenizer.unk_id in ids:
                continue
            items.append(item)
            keep.append(i)
        if not items:
            return None, []
        return collate_molecules(items, tokenizer.pad_id), keep

    @staticmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        """CSV of sampled SMILES with validity, QED, SA, logP, MW, the model's log-likelihood (nats),
        the out-of-distribution score (empty where unknown) and then the extra per-sample
        ``columns`` (e.g. ``valid_without_correction``), written atomically. ``properties``
        (rows of ``properties_table``) are computed here unless given. Returns the number of valid
        molecules."""
        import csv

        from dgm_science.domains.molecules.properties import properties_table
        from dgm_science.utils import atomic_path

        items, log_likelihood, ood_score = samples.items, samples.log_likelihood, samples.ood_score
        columns, properties = samples.columns, samples.properties
        props = properties_table([s or "" for s in items], n_jobs=n_jobs) if properties is None else properties
        ood = np.full(len(items), math.nan) if ood_score is None else ood_score
        extra = columns or {}
        for name, values in extra.items():
            if len(values) != len(items):
                raise ValueError(f"column {name!r} has {len(values)} values for {len(items)} samples")
        n_valid = 0
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["smiles", "valid", "qed", "sa", "logp", "mw", "log_likelihood", "ood_score", *extra])
            for i, (s, p, ll, score) in enumerate(zip(items, props, log_likelihood, ood)):
                valid = p is not None
                n_valid += valid
                values = [f"{p[k]:.4f}" if valid else "" for k in ("qed", "sa", "logp", "mw")]
                writer.writerow([s or "", int(valid), *values, "" if math.isnan(ll) else f"{ll:.4f}",
                                 "" if math.isnan(score) else f"{score:.4f}", *(v[i] for v in extra.values())])
        return n_valid

    @staticmethod
    def read_samples(path: Path) -> list[str]:
        """Generated SMILES in order (the ``smiles`` column of ``write_samples``' CSV); an empty
        field is an invalid sample (kept, counted)."""
        return read_smiles(path, column="smiles", require_any=False)

    @staticmethod
    def item_sizes(smiles: Sequence[str | None]) -> np.ndarray:
        """Heavy-atom count per SMILES (NaN where RDKit cannot parse it): the size the typicality
        score normalises log p(x) by."""
        from dgm_science.domains.molecules.properties import parse_smiles

        mols = [parse_smiles(s) for s in smiles]
        return np.array([m.GetNumHeavyAtoms() if m is not None and m.GetNumHeavyAtoms() else math.nan
                         for m in mols], dtype=float)

    @staticmethod
    def typical_set(data_dir: Path, model_cfg: Any = None, max_molecules: int = 2000, seed: int = 0) -> list[str]:
        """Held-out molecules whose -log p(x) defines the model's typical set: a seeded subset of
        at most ``max_molecules`` of the validation SMILES (``valid.smi``), in file order, without
        the molecules holding an element the model was trained without (``exclude_elements``)."""
        smiles = [s for s in read_smiles(Path(data_dir) / "valid.smi") if s]
        excluded = getattr(model_cfg, "exclude_elements", None)
        if excluded:
            from dgm_science.domains.molecules.targets import without_elements

            smiles = [s for s, keep in zip(smiles, without_elements(smiles, excluded)) if keep]
        if len(smiles) > max_molecules:
            idx = np.sort(np.random.default_rng(seed).choice(len(smiles), max_molecules, replace=False))
            smiles = [smiles[i] for i in idx]
        return smiles

    @classmethod
    def add_sample_arguments(cls, group: Any) -> None:
        commands.add_sample_arguments(group)

    @classmethod
    def draw_samples(cls, loaded: Any, n: int, **kwargs: Any) -> Samples:
        return commands.draw_samples(loaded, n, **kwargs)

    @classmethod
    def after_writing(cls, samples: Samples, options: dict[str, Any]) -> None:
        commands.after_writing(samples, options)

    @staticmethod
    def reference(smiles_path: Path, out: Path, *, n_jobs: int, max_items: int | None, seed: int) -> int:
        """Cache MOSES reference statistics (ChemNet moments, fingerprints, fragments, scaffolds,
        properties) of a test set; ``max_items`` takes a seeded subset of molecules (quick runs)."""
        from dgm_science.domains.molecules import metrics
        from dgm_science.domains.molecules.properties import canonical_smiles, map_molecules

        smiles = read_smiles(smiles_path)
        if max_items is not None and max_items < len(smiles):
            idx = np.sort(np.random.default_rng(seed).choice(len(smiles), max_items, replace=False))
            smiles = [smiles[i] for i in idx]
        parsed = map_molecules(canonical_smiles, smiles, n_jobs=n_jobs)
        bad = [s for s, c in zip(smiles, parsed) if c is None]
        if bad:
            log.warning("%s: %d reference SMILES RDKit cannot parse were skipped, e.g. %r", smiles_path, len(bad),
                        bad[:3])
            smiles = [s for s, c in zip(smiles, parsed) if c is not None]
        stats = metrics.reference_statistics(smiles, n_jobs=n_jobs, progress=sys.stderr.isatty())
        metrics.save_reference(out, stats)
        return len(smiles)

    @staticmethod
    def evaluate(samples_path: Path, reference_dir: Path, *, n_jobs: int) -> dict[str, float]:
        """MOSES metrics of the samples against ``reference_dir``'s train_all.smi, ref_test.npz and
        (where the dataset has a scaffold split) ref_test_scaffolds.npz; for graph models also the
        validity without valency correction (the samples' ``valid_without_correction`` column)."""
        from dgm_science.domains.molecules import metrics

        generated = MoleculeDomain.read_samples(samples_path)
        if not generated:
            raise DataError(f"{samples_path}: no samples to evaluate (a header and no rows)")
        test = metrics.load_reference(reference_dir / "ref_test.npz")
        scaffolds_path = reference_dir / "ref_test_scaffolds.npz"
        test_scaffolds = metrics.load_reference(scaffolds_path) if scaffolds_path.is_file() else None
        result = metrics.evaluate(
            [s or None for s in generated],
            train=set(read_smiles(reference_dir / "train_all.smi")),
            test_stats=test,
            test_scaffolds_stats=test_scaffolds,
            n_jobs=n_jobs,
        )
        raw_valid = read_smiles(samples_path, column="valid_without_correction", require_any=False) \
            if "valid_without_correction" in _csv_header(samples_path) else None
        if raw_valid is not None:
            result["validity_without_correction"] = sum(v == "1" for v in raw_valid) / len(raw_valid)
        result["reference_test_size"] = float(len(test["logP"]))
        if test_scaffolds is not None:
            result["reference_test_scaffolds_size"] = float(len(test_scaffolds["logP"]))
        return result


def _csv_header(path: Path) -> list[str]:
    with open(path) as fh:
        return [h.strip() for h in fh.readline().split(",")]

