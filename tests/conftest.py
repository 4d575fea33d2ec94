"""Shared fixtures: a small real MOSES sample and a tiny tokenizer state."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def moses_smiles() -> list[str]:
    return DATA.joinpath("moses_sample.smi").read_text().split()


@pytest.fixture(scope="session")
def molecule_state(moses_smiles: list[str]) -> dict:
    from dgm_science.domains.molecules.tokenizer import Tokenizer

    from dgm_science.domains.molecules.dense import dense_state, fit_vocabulary, smiles_to_dense_batch

    atom_types, max_atoms = fit_vocabulary(moses_smiles)
    batch, _ = smiles_to_dense_batch(moses_smiles, atom_types, max_atoms)
    return {"tokenizer": Tokenizer.fit("smiles", moses_smiles).state(),
            **dense_state(atom_types, batch["atoms"], batch["bonds"])}
