"""Molecule data files: streamed SMILES chunks, the chunked process-pool map, memory-mapped npz
members, and the graph files that featurize writes and graph models train on."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from dgm_science.domains.molecules.data import (
    GraphStore, MoleculeDataset, NpzWriter, featurize_file, iter_smiles_chunks, load_npz_mapped, map_chunks,
    read_smiles,
)
from dgm_science.domains.molecules.featurize import smiles_to_graph
from dgm_science.tokenizer import Tokenizer
from dgm_science.errors import DataError

MOSES_SAMPLE = Path(__file__).parents[2] / "data" / "moses_sample.smi"


def _assert_same_graph(expected, actual, where):
    assert list(expected.keys()) == list(actual.keys()), where
    for key in expected.keys():
        if isinstance(expected[key], torch.Tensor):
            assert expected[key].dtype == actual[key].dtype, (where, key)
            assert torch.equal(expected[key], actual[key]), (where, key)
        else:
            assert expected[key] == actual[key], (where, key)


def test_smiles_chunks_cover_the_file_in_order(tmp_path):
    path = tmp_path / "x.smi"
    path.write_text("C\nCC\n\nCCC extra\nN\n")
    chunks = list(iter_smiles_chunks(path, chunk_size=2))
    assert chunks == [(0, ["C", "CC"]), (2, ["", "CCC"]), (4, ["N"])]
    assert [s for _, c in chunks for s in c] == read_smiles(path)
    assert list(iter_smiles_chunks(path, chunk_size=2, limit=3)) == [(0, ["C", "CC"]), (2, [""])]
    (tmp_path / "blank.smi").write_text("\n\n")
    with pytest.raises(DataError, match="blank.smi: no SMILES"):
        list(iter_smiles_chunks(tmp_path / "blank.smi"))
    with pytest.raises(DataError, match="missing.smi: file not found"):
        list(iter_smiles_chunks(tmp_path / "missing.smi"))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_map_chunks_keeps_order_with_bounded_queue(n_jobs):
    smiles = MOSES_SAMPLE.read_text().split()
    chunks = [(i, smiles[i:i + 7]) for i in range(0, len(smiles), 7)]
    results = list(map_chunks(repr, iter(chunks), n_jobs=n_jobs, in_flight=3))  # workers import builtins only
    assert results == [repr(chunk) for chunk in chunks]


def test_npz_writer_streams_blocks_into_memory_mapped_members(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 255, size=(n, 3), dtype=np.uint8) for n in (5, 0, 1000, 17)]
    with NpzWriter(tmp_path / "a.npz") as writer:
        writer.put("name", np.array("hello"))
        writer.put("types", np.array(["C", "N+"]))
        writer.declare("never", np.int64, (2,))
        for block in blocks:
            writer.append("rows", block)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # the part files are gone
    arrays = load_npz_mapped(tmp_path / "a.npz")
    assert isinstance(arrays["rows"], np.memmap) and not arrays["rows"].flags.writeable
    assert np.array_equal(arrays["rows"], np.concatenate(blocks))
    assert arrays["never"].shape == (0, 2) and arrays["never"].dtype == np.int64
    assert str(arrays["name"]) == "hello" and arrays["types"].tolist() == ["C", "N+"]
    with np.load(tmp_path / "a.npz", allow_pickle=False) as plain:  # a standard npz
        assert np.array_equal(plain["rows"], np.concatenate(blocks))
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_npz_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), NpzWriter(tmp_path / "a.npz") as writer:
        writer.append("rows", np.zeros((4, 2)))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_mapped_npz_refuses_pickles_and_compression(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="objects.npz: member 'x' holds Python objects"):
        load_npz_mapped(tmp_path / "objects.npz")
    np.savez_compressed(tmp_path / "packed.npz", x=np.arange(10))
    with pytest.raises(DataError, match="packed.npz: member 'x' is compressed"):
        load_npz_mapped(tmp_path / "packed.npz")
    torch.save({"x": torch.zeros(3)}, tmp_path / "old.pt")  # a torch zip, not an npz
    with pytest.raises(DataError, match="old.pt"):
        GraphStore(tmp_path / "old.pt")


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_featurized_graphs_are_those_of_smiles_to_graph(tmp_path, n_jobs):
    smiles = MOSES_SAMPLE.read_text().split() + ["[O-][N+](=O)c1ccccc1", "[H][H]", "[Na+].[Cl-]", "C"]
    (tmp_path / "m.smi").write_text("\n".join(smiles) + "\n")
    n = featurize_file(tmp_path / "m.smi", tmp_path / "g.npz", n_jobs, chunk_size=23)
    store = GraphStore(tmp_path / "g.npz")
    assert n == len(store) == len(smiles)
    for i, s in enumerate(smiles):
        _assert_same_graph(smiles_to_graph(s), store[i], s)
    _assert_same_graph(smiles_to_graph(smiles[-1]), store[-1], "negative index")
    with pytest.raises(IndexError):
        store[len(smiles)]
    arrays = store.arrays
    assert arrays["bond_type"].dtype == np.uint8 and arrays["atom_element"].dtype == np.uint8
    assert arrays["atom_charge"].dtype == np.int8 and arrays["bond_atoms"].dtype == np.uint16
    assert isinstance(arrays["bond_type"], np.memmap)
    assert arrays["atom_ptr"][-1] == len(arrays["atom_element"]) == sum(g.num_nodes for g in map(smiles_to_graph,
                                                                                                  smiles))
    copy = pickle.loads(pickle.dumps(store))  # a data loader worker re-opens the maps
    assert isinstance(copy.arrays["bond_type"], np.memmap)
    _assert_same_graph(store[7], copy[7], "pickled store")


def test_featurize_limit_and_bad_line(tmp_path):
    smiles = MOSES_SAMPLE.read_text().split()
    (tmp_path / "m.smi").write_text("\n".join(smiles) + "\n")
    assert featurize_file(tmp_path / "m.smi", tmp_path / "g.npz", 1, max_molecules=10, chunk_size=4) == 10
    assert len(GraphStore(tmp_path / "g.npz")) == 10
    (tmp_path / "bad.smi").write_text("CCO\nc1ccccc1\nC1CC\nCCN\n")
    with pytest.raises(DataError, match=r"bad.smi: line 3: SMILES 'C1CC' could not be parsed"):
        featurize_file(tmp_path / "bad.smi", tmp_path / "bad.npz", 2, chunk_size=1)
    assert not (tmp_path / "bad.npz").exists()


def test_molecule_dataset_batches_are_unchanged(tmp_path):
    smiles = MOSES_SAMPLE.read_text().split()[:40] + ["C" * 60]
    (tmp_path / "m.smi").write_text("\n".join(smiles) + "\n")
    featurize_file(tmp_path / "m.smi", tmp_path / "g.npz", 1)
    tokenizer = Tokenizer.fit("smiles", smiles)
    dataset = MoleculeDataset(smiles, tokenizer, max_length=50, graphs_path=tmp_path / "g.npz")
    assert len(dataset) == 40 and dataset.n_too_long == 1
    assert dataset.lengths == [len(tokenizer.encode(s)) for s in smiles[:40]]
    batch = dataset.collate([dataset[i] for i in (3, 0, 39)])
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(tokenizer.encode(smiles[i])) for i in (3, 0, 39)],
                                             batch_first=True, padding_value=tokenizer.pad_id)
    assert batch["tokens"].dtype == torch.long and torch.equal(batch["tokens"], tokens)
    expected = Batch.from_data_list([smiles_to_graph(smiles[i]) for i in (3, 0, 39)])
    for key in expected.keys():
        value = expected[key]
        if isinstance(value, torch.Tensor):
            assert value.dtype == batch["graph"][key].dtype and torch.equal(value, batch["graph"][key]), key
        else:
            assert value == batch["graph"][key], key
