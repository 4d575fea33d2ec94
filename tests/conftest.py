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

    from dgm_science.domains.molecules.dense import fit_vocabulary

    atom_types, max_atoms = fit_vocabulary(moses_smiles)
    return {"tokenizer": Tokenizer.fit("smiles", moses_smiles).state(), "atom_types": atom_types,
            "max_atoms": max_atoms}
