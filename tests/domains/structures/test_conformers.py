"""QM9-3D data and the conformers domain: parsing the wheel's CSV, EDM's split, centring, the
SDF/XYZ samples files, evaluation, and training through api.train on a tiny prepared folder."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dgm_science.base import Samples
from dgm_science import api, registry
from dgm_science.domains.structures import data as structure_data
from dgm_science.domains.structures import domain as structure_domain
from dgm_science.domains.structures import metrics as structure_metrics
from dgm_science.errors import DataError

from tests.domains.structures import fixtures_qm9 as fixtures

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny graphs gain nothing from more threads

HEADER = "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop\n"
ROWS = [
    '"dsgdb9nsd_000001.xyz",1,"C","InChI=1S/CH4/h1H4",5,"[4,1,0,0,0]","[\'C\',\'H\',\'H\',\'H\',\'H\']",'
    '"[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],'
    '[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],'
    '[-0.5238136345,1.4379326443,0.9063972942]]","[-0.5,0.1,0.1,0.1,0.1]"\n',
    '"dsgdb9nsd_000003.xyz",3,"O","InChI=1S/H2O/h1H2",3,"[2,0,0,1,0]","[\'O\',\'H\',\'H\']",'
    '"[[-0.0343604951,0.9775395708,0.0076015923],[0.0647664923,0.0205721989,0.0015346341],'
    '[0.8717903737,1.3007173699,0.0006931336]]","[-0.4,0.2,0.2]"\n',
]


def _wheel(rows: list[str]) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("qm9pack/data/qm9_part1.csv", HEADER + "".join(rows))
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def test_parse_part_reads_elements_and_coordinates():
    part = structure_data._parse_part(_wheel(ROWS), "qm9pack/data/qm9_part1.csv", "test.whl")
    assert part["n_atoms"].tolist() == [5, 3] and part["index"].tolist() == [1, 3]
    assert part["atom_types"][0, :6].tolist() == [1, 0, 0, 0, 0, -1]  # C H H H H, padding
    assert part["atom_types"][1, :3].tolist() == [3, 0, 0] and part["smiles"].tolist() == ["C", "O"]
    assert part["positions"].shape == (2, 29, 3) and part["positions"].dtype == np.float32
    assert np.allclose(part["positions"][1, 2], [0.8717903737, 1.3007173699, 0.0006931336])
    assert (part["positions"][1, 3:] == 0).all()


def test_parse_part_names_the_file_on_mismatch():
    broken = ROWS[1].replace('"[\'O\',\'H\',\'H\']"', '"[\'O\',\'H\']"')
    with pytest.raises(DataError, match="test.whl:qm9pack/data/qm9_part1.csv"):
        structure_data._parse_part(_wheel([broken]), "qm9pack/data/qm9_part1.csv", "test.whl")


def _prepared(tmp_path: Path) -> Path:
    data = fixtures.sample_arrays()
    raw = tmp_path / "raw"
    raw.mkdir()
    shifted = data["positions"] + np.where(np.arange(29)[None, :, None] < data["n_atoms"][:, None, None], 5.0, 0.0)
    np.savez(raw / structure_data.RAW_FILE, **{**data, "positions": shifted.astype(np.float32)})
    out = tmp_path / "data"
    registry.get("dataset", "qm9-3d").prepare(raw, out, train_size=None, val_size=None, seed=0, n_jobs=1)
    return out


def test_prepare_splits_with_edm_proportions_and_centres(tmp_path):
    out = _prepared(tmp_path)
    stats = json.loads((out / "prepare.json").read_text())
    assert (stats["train"], stats["valid"], stats["test"]) == (40, 4, 4)
    indices = [set(structure_data.load_npz(out / f"{s}.npz")["index"].tolist()) for s in structure_data.SPLITS]
    assert not (indices[0] & indices[1]) and not (indices[0] & indices[2]) and not (indices[1] & indices[2])
    train = structure_data.load_npz(out / "train.npz")
    mask = np.arange(29)[None, :] < train["n_atoms"][:, None]
    centre = (train["positions"] * mask[..., None]).sum(1) / train["n_atoms"][:, None]
    assert np.abs(centre).max() < 1e-5 and (train["positions"][~mask] == 0).all()
    assert len((out / "train_smiles.txt").read_text().split()) >= 35
    again = tmp_path / "again"  # through the CLI, without --val-size (the whole validation split)
    from dgm_science.cli import main

    assert main(["prepare", "qm9-3d", "--raw", str(tmp_path / "raw"), "--out", str(again), "--train-size", "10"]) == 0
    assert json.loads((again / "prepare.json").read_text())["valid"] == 4
    small = set(structure_data.load_npz(again / "train.npz")["index"].tolist())
    assert len(small) == 10 and small <= indices[0]  # a subset of the same training split
    row = structure_domain.data_row(out / "train.npz", tmp_path / "row.json")
    assert json.loads((tmp_path / "row.json").read_text())["n_samples"] == 40
    assert row["molecule_stability"] > 0.8 and row["novelty"] == 0.0
    n = registry.get("domain", "conformers").reference(out / "train.npz", tmp_path / "sub.json", n_jobs=1,
                                                       max_items=7, seed=0)
    assert n == 7 and json.loads((tmp_path / "sub.json").read_text())["n_samples"] == 7


def test_load_npz_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.npz"):
        structure_data.load_npz(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        structure_data.load_npz(tmp_path / "bad.npz")


def _items(n: int = 6) -> list[structure_data.Item]:
    data = fixtures.sample_arrays()
    return [([structure_metrics.ELEMENTS[t] for t in data["atom_types"][k, :m]], data["positions"][k, :m].astype(float))
            for k, m in enumerate(data["n_atoms"][:n].tolist())]


def test_write_read_and_evaluate_samples(tmp_path):
    from rdkit import Chem

    domain = registry.get("domain", "conformers")
    items = _items(6)
    items.append((["C", "Xx", "H"], np.array([[0.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0]])))  # unknown element
    ll = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0, np.nan])
    path = tmp_path / "samples.sdf"
    n_valid = domain.write_samples(path, Samples(items, ll))
    mols = list(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
    assert len(mols) == 7 and n_valid == sum(m.GetProp("valid") == "1" for m in mols) >= 5
    assert mols[0].GetNumBonds() > 0 and mols[0].GetProp("log_likelihood") == "1.0000"
    assert mols[2].GetProp("log_likelihood") == "" and mols[6].GetProp("valid") == "0"
    assert mols[6].GetNumAtoms() == 3 and mols[6].GetNumBonds() == 0
    assert np.allclose(mols[0].GetConformer().GetPositions(), items[0][1], atol=1e-4)
    back = domain.read_samples(path)
    assert [s for s, _ in back] == [s for s, _ in items]
    assert all(np.allclose(a[1], b[1], atol=1e-6) for a, b in zip(back, items))
    metrics = domain.evaluate(path, tmp_path, n_jobs=1)
    positions, types, n_atoms = structure_data.items_to_arrays(items)
    assert metrics == structure_metrics.edm_metrics(positions, types, n_atoms)
    assert metrics["n_samples"] == 7 and metrics["validity"] < 1


def test_batch_of_skips_unscorable_items():
    state, _ = fixtures.tiny_state_and_batch()
    items = _items(3) + [(["C", "Xx"], np.zeros((2, 3))), (["C"] * 30, np.zeros((30, 3)))]
    batch, keep = registry.get("domain", "conformers").batch_of(items, None, None, state)
    assert keep == [0, 1, 2] and batch["positions"].shape[0] == 3
    centre = batch["positions"].double().sum(1) / batch["n_atoms"][:, None]
    assert centre.abs().max() < 1e-5


def test_train_sample_and_score_through_the_api(tmp_path):
    data = _prepared(tmp_path)
    config = api.RunConfig.parse("qm9-edm", {
        "model": {**fixtures.TINY_CONFIG, "ema_decay": 0.9},
        "train": {"batch_size": 8, "max_steps": 4, "lr": 1e-3, "warmup_steps": 1, "val_every_steps": 2,
                  "val_batches": 1, "checkpoint_every_steps": 100000, "accelerator": "cpu"},
        "sample": {"n": 5, "batch_size": 3},
    })
    info = api.train("qm9-edm", data, config, seed=0, out=tmp_path / "run" / "model.ckpt")
    loaded = api.load(tmp_path / "run" / "model.ckpt", device="cpu")
    items, extra = loaded.sample_table(5, seed=1)
    # an untrained model's samples are far apart (the chain divides by alpha_0): score real molecules
    ll = loaded.log_likelihood(_items(5) + [(["Xx"], np.zeros((1, 3)))])
    assert info["train_examples"] == 40 and info["global_step"] == 4
    ema = loaded.model.ema_denoiser.embed.weight
    assert not torch.equal(ema, loaded.model.denoiser.embed.weight)  # EMA updated, lagging behind
    assert len(items) == 5 and extra == {}
    assert all(set(s) <= set(structure_metrics.ELEMENTS) and x.shape == (len(s), 3) for s, x in items)
    assert np.isfinite(ll[:5]).all() and np.isnan(ll[5])
    assert loaded.state["n_atoms_histogram"][int(np.bincount([len(s) for s, _ in items]).argmax())] > 0


def test_evaluate_draws_the_learning_curve_of_a_run_with_snapshots(tmp_path, monkeypatch):
    """train.snapshot_every_steps + dgm evaluate: learning_curve.json / .png beside the samples, a point
    per snapshot before the end (CURVE_SAMPLES molecules each) and the final samples' metrics."""
    from dgm_science.domains.structures import curve

    monkeypatch.setattr(curve, "CURVE_SAMPLES", 4)
    data = _prepared(tmp_path)
    config = api.RunConfig.parse("qm9-edm", {
        "model": {**fixtures.TINY_CONFIG, "sampling_steps": 5},
        "train": {"batch_size": 8, "max_steps": 4, "lr": 1e-3, "warmup_steps": 1, "val_every_steps": 100,
                  "val_batches": 1, "checkpoint_every_steps": 100000, "snapshot_every_steps": 2,
                  "accelerator": "cpu"},
        "sample": {"n": 5, "batch_size": 5},
    })
    run = tmp_path / "run"
    api.train("qm9-edm", data, config, seed=0, out=run / "model.ckpt")
    assert [step for step, _ in curve.snapshots(run)] == [2, 4]
    domain = registry.get("domain", "conformers")
    loaded = api.load(run / "model.ckpt", device="cpu")
    domain.write_samples(run / "samples.sdf", Samples(loaded.sample(5, seed=0), np.full(5, np.nan)))
    metrics = domain.evaluate(run / "samples.sdf", data, n_jobs=1)
    table = json.loads((run / "learning_curve.json").read_text())
    assert table["columns"][:3] == ["step", "samples", "atom_stability"]
    assert [row[:2] for row in table["rows"]] == [[2, 4], [4, 5]]  # the step-4 snapshot is the final model
    assert table["rows"][-1][3] == metrics["molecule_stability"]
    assert all(0 <= v <= 1 for row in table["rows"] for v in row[2:])
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    # a run without snapshots gets no curve
    (run / "learning_curve.png").unlink()
    for _, path in curve.snapshots(run):
        path.unlink()
    domain.evaluate(run / "samples.sdf", data, n_jobs=1)
    assert not (run / "learning_curve.png").exists()
