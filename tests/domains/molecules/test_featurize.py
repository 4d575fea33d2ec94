"""Tests for molecule <-> graph featurization.

Fixture ``tests/data/moses_sample.smi``: the first 300 SMILES of MOSES ``test.csv.gz`` (molsets
wheel, ``moses/dataset/data/test.csv.gz``, MIT license), one per line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch

from dgm_science.domains.molecules.featurize import (
    ATOM_FEATURE_DIM,
    BOND_FEATURE_DIM,
    BOND_TYPES,
    ELEMENTS,
    OTHER_ELEMENT,
    graph_to_mol,
    mol_to_graph,
    smiles_to_graph,
)

MOSES_SAMPLE = Path(__file__).parents[2] / "data" / "moses_sample.smi"


def _canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


@pytest.fixture(scope="module")
def moses_smiles() -> list[str]:
    return MOSES_SAMPLE.read_text().split()


def test_fixture_is_the_moses_sample(moses_smiles: list[str]) -> None:
    assert len(moses_smiles) == 300
    assert moses_smiles[0] == "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1"


def test_round_trip_preserves_canonical_smiles(moses_smiles: list[str]) -> None:
    for smiles in moses_smiles:
        mol = graph_to_mol(smiles_to_graph(smiles))
        assert mol is not None, smiles
        assert _canonical(Chem.MolToSmiles(mol)) == _canonical(smiles), smiles


@pytest.mark.parametrize(
    "smiles",
    ["C[N+](C)(C)C", "[O-][N+](=O)c1ccccc1", "O=c1cc[nH]c(=O)[nH]1", "C#N", "[NH3+]CC([O-])=O",
     "B(O)(O)c1ccccc1", "C[Si](C)(C)[Se]C", "O=P(O)(O)OCCI", "[H][H]"],
)
def test_round_trip_charges_heteroatoms_and_explicit_hydrogen(smiles: str) -> None:
    mol = graph_to_mol(smiles_to_graph(smiles))
    assert mol is not None
    assert _canonical(Chem.MolToSmiles(mol)) == _canonical(smiles)


def test_features_and_labels_for_pyridine_n_oxide() -> None:
    graph = smiles_to_graph("[O-][n+]1ccccc1")
    assert graph.x.shape == (7, ATOM_FEATURE_DIM)
    assert graph.edge_index.shape == (2, 14)
    assert graph.edge_attr.shape == (14, BOND_FEATURE_DIM)
    assert ATOM_FEATURE_DIM == 36 and BOND_FEATURE_DIM == 6
    assert graph.atom_element.tolist() == [ELEMENTS.index("O")] + [ELEMENTS.index("N")] + [
        ELEMENTS.index("C")
    ] * 5
    assert graph.atom_charge.tolist() == [-1, 1, 0, 0, 0, 0, 0]
    assert graph.atom_num_hs.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert graph.atom_aromatic.tolist() == [0, 1, 1, 1, 1, 1, 1]
    # groups: element, charge, aromatic bit, Hs, degree, hybridization, in-ring bit
    sizes = [len(ELEMENTS) + 1, 4, 1, 4, 6, 6, 1]
    element, charge, is_aromatic, num_hs, degree, hybridization, in_ring = graph.x.split(sizes, 1)
    for one_hot in (element, charge, num_hs, degree, hybridization):
        assert torch.equal(one_hot.sum(1), torch.ones(7))
    assert torch.equal(element.argmax(1), graph.atom_element)
    assert charge.argmax(1).tolist() == [0, 2, 1, 1, 1, 1, 1]  # slots (-1, 0, +1, other)
    assert is_aromatic.squeeze(1).tolist() == [0, 1, 1, 1, 1, 1, 1]
    assert num_hs.argmax(1).tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert degree.argmax(1).tolist() == [1, 3, 2, 2, 2, 2, 2]
    assert hybridization.argmax(1).tolist() == [1] * 7  # SP2
    assert in_ring.squeeze(1).tolist() == [0, 1, 1, 1, 1, 1, 1]
    aromatic = BOND_TYPES.index(Chem.BondType.AROMATIC)
    assert sorted(graph.bond_type.tolist()) == [0, 0] + [aromatic] * 12
    assert torch.equal(graph.edge_attr[:, : len(BOND_TYPES)].argmax(1), graph.bond_type)


def test_edges_come_in_both_directions_with_equal_features(moses_smiles: list[str]) -> None:
    for smiles in moses_smiles[:50]:
        graph = smiles_to_graph(smiles)
        forward, backward = graph.edge_index[:, 0::2], graph.edge_index[:, 1::2]
        assert torch.equal(forward, backward.flip(0)), smiles
        assert torch.equal(graph.edge_attr[0::2], graph.edge_attr[1::2]), smiles
        assert graph.edge_index.shape[1] == 2 * Chem.MolFromSmiles(smiles).GetNumBonds()


def test_single_atom_and_batching() -> None:
    methane = smiles_to_graph("C")
    assert methane.edge_index.shape == (2, 0)
    assert methane.edge_attr.shape == (0, BOND_FEATURE_DIM)
    batch = Batch.from_data_list([methane, smiles_to_graph("CO")])
    assert batch.num_graphs == 2
    assert batch.edge_index.tolist() == [[1, 2], [2, 1]]  # offset by the first graph's node
    assert batch.smiles == ["C", "CO"]


def test_unknown_element_goes_to_other_bucket_and_does_not_decode() -> None:
    graph = smiles_to_graph("[Na+].[Cl-]")
    assert graph.atom_element.tolist() == [OTHER_ELEMENT, ELEMENTS.index("Cl")]
    assert graph.x[0, OTHER_ELEMENT] == 1
    assert graph_to_mol(graph) is None


def test_graph_to_mol_rejects_invalid_valence() -> None:
    graph = smiles_to_graph("CC")
    graph.bond_type[:] = BOND_TYPES.index(Chem.BondType.TRIPLE)  # keeps 3 Hs per carbon
    assert graph_to_mol(graph) is None


def test_graph_to_mol_infers_hydrogens_without_counts() -> None:
    graph = mol_to_graph(Chem.MolFromSmiles("c1ccncc1CC(=O)O"))
    del graph.atom_num_hs
    mol = graph_to_mol(graph)
    assert mol is not None
    assert Chem.MolToSmiles(mol) == _canonical("c1ccncc1CC(=O)O")


def test_unparseable_smiles_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="C1CC\\(N"):
        smiles_to_graph("C1CC(N")
