"""Tiny sequence data for tests: a prepared folder cut from the committed V4 amplicons (or
Swiss-Prot), with an index-based split, and tiny configs of the sequence models."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dgm_science.domains.sequences.fasta import read_fasta, write_fasta

DATA = Path(__file__).resolve().parents[3] / "data" / "sequences"
DENSITY = False
"""Models of discrete objects: log p < 0."""
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "seq-arm": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 360,
                "conditional": False},
    "seq-diffusion": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 360,
                      "conditional": False, "sampling_steps": 8, "elbo_samples": 2},
    "seq-vae": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 360, "latent_dim": 8,
                "encoder_channels": 32, "encoder_layers": 2, "kl_anneal_steps": 0},
    "seq-hvae": {"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 360, "latent_dim": 4,
                 "latent_layers": 2, "state_dim": 16, "encoder_channels": 32, "encoder_layers": 2,
                 "kl_anneal_steps": 0},
}


def write_raw(root: Path, dataset: str = "16s-v4", n: int = 120) -> Path:
    """A raw folder like data/sequences with the first ``n`` records of ``dataset``'s FASTA and a
    split file: every 10th record test, the next valid, the rest train. Labelled V4 records come
    first so that conditional paths see real phyla."""
    from dgm_science.domains.sequences.data import DATASETS

    data = DATASETS[dataset]
    records = read_fasta(DATA / data.fasta)
    if data.labelled:
        records = sorted(records, key=lambda r: "phylum=NA" in r.header)  # stable: labelled first
    records = records[:n]
    root.mkdir(parents=True, exist_ok=True)
    write_fasta(root / data.fasta, records)
    rows = ["id\tcluster\tsplit"]
    for i, record in enumerate(records):
        split = "test" if i % 10 == 0 else "valid" if i % 10 == 1 else "train"
        rows.append(f"{record.id}\t{i}\t{split}")
    (root / data.split).write_text("\n".join(rows) + "\n")
    return root


def prepared(root: Path, dataset: str = "16s-v4", n: int = 120) -> Path:
    """A prepared data folder (``dgm prepare`` output) of the tiny raw folder."""
    from dgm_science import registry

    raw = write_raw(root / "raw", dataset, n)
    registry.get("dataset", dataset).prepare(raw, root / "data")
    return root / "data"


def tiny_case(name: str, n: int = 16) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tiny config, domain state, training batch of ``n``) for sequence model ``name``."""
    from dgm_science import registry
    from dgm_science.config import from_dict

    spec = registry.get("model", name)
    domain = registry.get("domain", "sequences")
    cfg = from_dict(spec.Config, TINY_CONFIGS[name], name)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = prepared(Path(tmp))
        state = domain.fit_state(data_dir, spec, cfg)
        train, _ = domain.datasets(data_dir, spec, cfg, state)
    return TINY_CONFIGS[name], state, train.collate(list(range(n)))
