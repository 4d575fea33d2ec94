"""Dense kekulized graphs: round trip, MoFlow decoding with and without valency correction,
the state a dense model is built from, and clear errors for molecules that don't fit."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from dgm_science.domains.molecules import data as data_module
from dgm_science.domains.molecules import dense as dense_module
from dgm_science.domains.molecules.dense import (
    DenseGraphDataset, DenseGraphs, correct_valency, decode_dense, dense_state, dense_to_mol, featurize_dense,
    fit_vocabulary, load_dense, mol_to_dense, parse_atom_token, smiles_to_dense_batch,
)
from dgm_science.errors import DataError

DATA = Path(__file__).resolve().parents[2] / "data"


def _canonical(smiles):
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


@pytest.mark.parametrize("name", ["moses_sample.smi", "qm9_sample.smi"])
def test_round_trip_is_exact(name):
    smiles = (DATA / name).read_text().split()
    atom_types, max_atoms = fit_vocabulary(smiles)
    batch, keep = smiles_to_dense_batch(smiles, atom_types, max_atoms)
    assert len(keep) == len(smiles)
    decoded, valid_raw = decode_dense(DenseGraphs(batch["atoms"], batch["bonds"]), atom_types)
    assert all(valid_raw)
    assert decoded == [_canonical(s) for s in smiles]


def test_charged_atoms_and_tokens():
    assert parse_atom_token("N+") == (7, 1) and parse_atom_token("O-") == (8, -1)
    assert parse_atom_token("Cl") == (17, 0) and parse_atom_token("C-2") == (6, -2)
    with pytest.raises(ValueError, match="not ELEMENT"):
        parse_atom_token("n+")
    zwitterion = "[NH3+]CC([O-])=O"
    types, n = fit_vocabulary([zwitterion])
    assert set(types) == {"N+", "C", "O", "O-"}
    batch, _ = smiles_to_dense_batch([zwitterion], types, n)
    assert decode_dense(DenseGraphs(batch["atoms"], batch["bonds"]), types)[0] == [_canonical(zwitterion)]


def test_molecules_that_do_not_fit_are_named():
    mol = Chem.MolFromSmiles("CCS")
    with pytest.raises(ValueError, match="'S' is not in the vocabulary"):
        mol_to_dense(mol, {"C": 0}, 9)
    with pytest.raises(ValueError, match="3 heavy atoms > max_atoms=2"):
        mol_to_dense(mol, {"C": 0, "S": 1}, 2)
    batch, keep = smiles_to_dense_batch(["CC", "CCS", "", "not smiles", "CO"], ["C", "O"], 4)
    assert keep == [0, 4] and batch["atoms"].shape == (2, 4)


def _graph(atoms, bond_list, n=4):
    bonds = np.zeros((n, n), dtype=np.int64)
    for i, j, order in bond_list:
        bonds[i, j] = bonds[j, i] = order
    return np.array(atoms + [0] * (n - len(atoms))), bonds


def test_valency_correction_lowers_the_highest_order_bond_of_an_overbonded_atom():
    types = ["C", "O"]
    # O=C(=O)=O: the carbon has valence 6; correction lowers its double bonds one at a time
    atoms, bonds = _graph([1, 2, 2, 2], [(0, 1, 2), (0, 2, 2), (0, 3, 2)])
    mol, valid_raw = dense_to_mol(atoms, bonds, types)
    assert mol is None and not valid_raw
    mol, valid_raw = dense_to_mol(atoms, bonds, types, valency_correction=True)
    assert not valid_raw and mol is not None
    assert Chem.MolToSmiles(mol) == "O=C(O)O"  # carbonic acid: two C=O lowered to C-O


def test_disconnected_graphs_are_invalid_without_correction_and_largest_fragment_with():
    atoms, bonds = _graph([1, 1, 1, 2], [(0, 1, 1), (1, 2, 1)])  # propane + a lone oxygen
    mol, valid_raw = dense_to_mol(atoms, bonds, ["C", "O"])
    assert mol is None and not valid_raw
    mol, _ = dense_to_mol(atoms, bonds, ["C", "O"], valency_correction=True)
    assert Chem.MolToSmiles(mol) == "CCC"


def test_correct_valency_leaves_valid_molecules_alone():
    mol = Chem.RWMol(Chem.MolFromSmiles("C=CC#N"))
    Chem.Kekulize(mol, clearAromaticFlags=True)
    before = Chem.MolToSmiles(mol)
    correct_valency(mol)
    assert Chem.MolToSmiles(mol) == before


def test_featurize_and_state(tmp_path):
    smiles = (DATA / "qm9_sample.smi").read_text().split()
    (tmp_path / "train.smi").write_text("\n".join(smiles[:250] + ["CCCCCCCCCCCC", "C[Si](C)C"]) + "\n")
    (tmp_path / "valid.smi").write_text("\n".join(smiles[250:] + ["CCS"]) + "\n")
    stats = featurize_dense(tmp_path / "train.smi", tmp_path / "valid.smi", tmp_path / "dense.npz", n_jobs=1,
                            max_atoms=9)
    assert stats["train"] == 250 and stats["valid"] == 50
    assert sum(stats["train_skipped"].values()) == 2 and sum(stats["valid_skipped"].values()) == 1
    types, atoms, bonds = load_dense(tmp_path / "dense.npz", "train")
    assert atoms.shape == (250, 9) and bonds.shape == (250, 36)  # bonds: the upper triangle
    assert atoms.dtype == np.uint8 and bonds.dtype == np.uint8
    assert isinstance(bonds, np.memmap)  # read lazily, never expanded for the whole split
    batch = DenseGraphDataset(atoms, bonds).collate(list(range(250)))
    expected, _ = smiles_to_dense_batch(smiles[:250], types, 9)
    assert batch["atoms"].dtype == batch["bonds"].dtype == torch.long
    assert torch.equal(batch["atoms"], expected["atoms"]) and torch.equal(batch["bonds"], expected["bonds"])
    assert torch.equal(batch["bonds"], batch["bonds"].transpose(1, 2))
    state = dense_state(types, atoms, bonds)
    assert state == dense_state(types, batch["atoms"], batch["bonds"])  # upper triangle or full: same counts
    assert abs(sum(state["num_atoms_distribution"]) - 1) < 1e-9
    assert abs(sum(state["atom_marginals"]) - 1) < 1e-9 and abs(sum(state["bond_marginals"]) - 1) < 1e-9
    sizes = (batch["atoms"] > 0).sum(1)
    assert state["num_atoms_distribution"][9] == pytest.approx(float((sizes == 9).float().mean()))
    assert state["atom_marginals"][0] == pytest.approx(float((atoms == 1).sum() / (atoms > 0).sum()))
    with np.load(tmp_path / "dense.npz", allow_pickle=False) as stored:  # plain arrays, no pickle
        assert stored["train_bonds"].shape == (250, 36) and int(stored["max_atoms"]) == 9


def test_state_chunks_add_up(tmp_path, monkeypatch):
    smiles = (DATA / "qm9_sample.smi").read_text().split()
    types, max_atoms = fit_vocabulary(smiles)
    batch, _ = smiles_to_dense_batch(smiles, types, max_atoms)
    whole = dense_state(types, batch["atoms"], batch["bonds"])
    monkeypatch.setattr(dense_module, "STATE_CHUNK", 7)
    assert dense_state(types, batch["atoms"], batch["bonds"]) == whole


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_featurize_streams_in_chunks_in_order(tmp_path, monkeypatch, n_jobs):
    smiles = (DATA / "moses_sample.smi").read_text().split()
    (tmp_path / "train.smi").write_text("\n".join(smiles[:200]) + "\n")
    (tmp_path / "valid.smi").write_text("\n".join(smiles[200:]) + "\n")
    featurize_dense(tmp_path / "train.smi", tmp_path / "valid.smi", tmp_path / "one.npz", n_jobs=1)  # one chunk
    monkeypatch.setattr(dense_module, "iter_smiles_chunks",
                        lambda path, chunk_size=0, limit=None: data_module.iter_smiles_chunks(path, 13, limit))
    stats = featurize_dense(tmp_path / "train.smi", tmp_path / "valid.smi", tmp_path / "many.npz", n_jobs=n_jobs)
    assert stats["train"] == 200 and stats["valid"] == 100
    with np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "many.npz") as many:
        assert one.files == many.files
        for key in one.files:
            assert np.array_equal(one[key], many[key]), key
    types, atoms, bonds = load_dense(tmp_path / "many.npz", "valid")
    expected, _ = smiles_to_dense_batch(smiles[200:], types, int(atoms.shape[1]))
    batch = DenseGraphDataset(atoms, bonds).collate([5, 0, 99])
    assert torch.equal(batch["bonds"], expected["bonds"][[5, 0, 99]])


def test_dataset_pickles_its_maps_not_their_data(tmp_path):
    smiles = (DATA / "moses_sample.smi").read_text().split()
    (tmp_path / "train.smi").write_text("\n".join(smiles) + "\n")
    (tmp_path / "valid.smi").write_text("\n".join(smiles[:10]) + "\n")
    featurize_dense(tmp_path / "train.smi", tmp_path / "valid.smi", tmp_path / "dense.npz", n_jobs=1)
    dataset = DenseGraphDataset(*load_dense(tmp_path / "dense.npz", "train")[1:])
    payload = pickle.dumps(dataset)
    assert len(payload) < dataset.bonds.nbytes / 10
    copy = pickle.loads(payload)
    assert isinstance(copy.bonds, np.memmap)
    for key, value in dataset.collate([3, 1, 4]).items():
        assert torch.equal(value, copy.collate([3, 1, 4])[key])


def test_load_dense_rejects_a_file_without_the_split(tmp_path):
    np.savez(tmp_path / "other.npz", atom_types=np.array(["C"]), max_atoms=np.array(3))
    with pytest.raises(DataError, match="other.npz.*'train'"):
        load_dense(tmp_path / "other.npz", "train")
