"""Shared fixtures: a small real MOSES sample and a tiny tokenizer state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one of `make test TEST_WORKERS=N`'s workers: torch (here and in the commands the tests start) on this
    # worker's share of the cores; two workers each spinning two OpenMP threads on two cores ran tiny training
    # steps about 10x slower
    _SHARE = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = _SHARE


@pytest.fixture(scope="session")
def moses_smiles() -> list[str]:
    return DATA.joinpath("moses_sample.smi").read_text().split()


@pytest.fixture(scope="session")
def molecule_state(moses_smiles: list[str]) -> dict:
    from dgm_science.tokenizer import Tokenizer

    from dgm_science.domains.molecules.dense import dense_state, fit_vocabulary, smiles_to_dense_batch

    atom_types, max_atoms = fit_vocabulary(moses_smiles)
    batch, _ = smiles_to_dense_batch(moses_smiles, atom_types, max_atoms)
    return {"tokenizer": Tokenizer.fit("smiles", moses_smiles).state(),
            **dense_state(atom_types, batch["atoms"], batch["bonds"])}


@pytest.fixture(scope="session")
def train_tiny_arm():
    """Factory: train a tiny smiles-arm on one thread in ``root`` on the given train / validation
    SMILES (written as train.smi, train_all.smi, valid.smi); returns (checkpoint, data folder, info)."""
    import torch

    from dgm_science import api

    def train(root: Path, train_smiles: list[str], valid_smiles: list[str], *, model: dict, steps: int,
              lr: float) -> tuple[Path, Path, dict]:
        data = root / "data"
        data.mkdir()
        for name, smiles in [("train.smi", train_smiles), ("train_all.smi", train_smiles),
                             ("valid.smi", valid_smiles)]:
            (data / name).write_text("\n".join(smiles) + "\n")
        config = api.RunConfig.parse("smiles-arm", {
            "model": model,
            "train": {"batch_size": 32, "max_steps": steps, "lr": lr, "warmup_steps": 10, "val_every_steps": 1000,
                      "val_batches": 1, "checkpoint_every_steps": 100000, "accelerator": "cpu"},
        })
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            info = api.train("smiles-arm", data, config, seed=0, out=root / "model.ckpt")
        finally:
            torch.set_num_threads(threads)
        return root / "model.ckpt", data, info

    return train


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one thread (two threads per process oversubscribe two cores);
    ``dgm --threads 1`` sets it globally, so it is restored after the test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
