"""Alanine-dipeptide MD: fetch, resumable simulation, time-block split, OpenMM energies/forces."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch

from dgm_science import registry
from dgm_science.domains.structures import md
from dgm_science.errors import DataError
from tests.domains.structures.fixtures_md import DATA, RAW, frames, prmtop_text

TINY_RUN = {"temperature_kelvin": 300.0, "timestep_fs": 1.0, "save_every_ps": 0.5, "checkpoint_every_ps": 1.0,
            "seed": 3, "threads": 1, "equilibration_ps": 0.5}


@pytest.fixture(scope="module")
def energy():
    return md.PotentialEnergy(prmtop_text(), 300.0)


def test_fetch_writes_prmtop_pdb_and_source(tmp_path, monkeypatch):
    from dgm_science import wheels

    def fake_download(package, version, sha256, dest):
        wheel = Path(dest) / f"{package}-{version}-py3-none-any.whl"
        crd = "ACE\n    22\n" + "".join(
            "".join(f"{v * 10:12.7f}" for v in row) + ("\n" if i % 2 else "")
            for i, row in enumerate(frames()[0]))
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{md.WHEEL_DIR}/{md.PRMTOP}", prmtop_text())
            zf.writestr(f"{md.WHEEL_DIR}/alanine-dipeptide.crd", crd)
        assert (package, version, sha256) == ("openmmtools", "0.27.0", md.OPENMMTOOLS_SHA256)
        return wheel

    monkeypatch.setattr(wheels, "download_wheel", fake_download)
    source = registry.get("dataset", "ala2").fetch(tmp_path)
    assert source["files"] == [md.PRMTOP, md.PDB]
    assert json.loads((tmp_path / "SOURCE.json").read_text())["sha256"] == md.OPENMMTOOLS_SHA256
    pdb = mdtraj.load(str(tmp_path / md.PDB))  # the prmtop's 22 atoms at the crd coordinates (A -> nm)
    assert pdb.n_atoms == 22 and [a.name for a in pdb.topology.atoms][:2] == ["H1", "CH3"]
    np.testing.assert_allclose(pdb.xyz[0], frames()[0], atol=2e-4)


def test_simulation_resumes_after_a_kill_without_losing_or_duplicating_frames(tmp_path, monkeypatch):
    whole = md.simulate(RAW, tmp_path / "whole", nanoseconds=0.003, **TINY_RUN)
    assert whole["frames"] == 6
    reference = md.load_frames(tmp_path / "whole" / md.TRAJECTORY, tmp_path / "whole" / md.TOPOLOGY)
    assert reference.shape == (6, 22, 3)
    assert np.abs(np.diff(reference, axis=0)).max() > 1e-3  # frames move

    real_checkpoint, calls = md._atomic_checkpoint, []

    def killed_at_second_chunk(simulation, path):
        calls.append(path.name)
        if path.name == "chunk_000001.chk":
            raise KeyboardInterrupt  # killed after the chunk's frames, before its checkpoint
        real_checkpoint(simulation, path)

    monkeypatch.setattr(md, "_atomic_checkpoint", killed_at_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        md.simulate(RAW, tmp_path / "resumed", nanoseconds=0.003, **TINY_RUN)
    assert not (tmp_path / "resumed" / md.TRAJECTORY).exists()
    monkeypatch.setattr(md, "_atomic_checkpoint", real_checkpoint)
    md.simulate(RAW, tmp_path / "resumed", nanoseconds=0.003, **TINY_RUN)
    resumed = md.load_frames(tmp_path / "resumed" / md.TRAJECTORY, tmp_path / "resumed" / md.TOPOLOGY)
    assert resumed.shape == reference.shape
    np.testing.assert_allclose(resumed[:2], reference[:2], atol=1e-5)  # chunk 0 kept as written
    # chunk 1 re-run from chunk 0's checkpoint (positions, velocities, Langevin RNG state): same frames
    np.testing.assert_allclose(resumed, reference, atol=1e-4)

    extended = md.simulate(RAW, tmp_path / "resumed", nanoseconds=0.004, **TINY_RUN)
    longer = md.load_frames(tmp_path / "resumed" / md.TRAJECTORY, tmp_path / "resumed" / md.TOPOLOGY)
    assert extended["frames"] == 8 and longer.shape[0] == 8
    np.testing.assert_array_equal(longer[:6], resumed)

    with pytest.raises(DataError, match="other settings"):
        md.simulate(RAW, tmp_path / "resumed", nanoseconds=0.004, **{**TINY_RUN, "seed": 4})


def test_prepare_splits_contiguous_time_blocks(tmp_path):
    sim = tmp_path / "md"
    sim.mkdir()
    xyz = frames()[:100]
    topology = mdtraj.load_topology(str(DATA / "alanine-dipeptide.pdb"))
    mdtraj.Trajectory(xyz, topology).save_dcd(str(sim / md.TRAJECTORY))
    shutil.copy(DATA / "alanine-dipeptide.pdb", sim / md.TOPOLOGY)
    shutil.copy(DATA / md.PRMTOP, sim / md.PRMTOP)
    (sim / "simulate.json").write_text(json.dumps({"temperature_kelvin": 310.0, "save_every_ps": 1.0}))
    stats = registry.get("dataset", "ala2").prepare(sim, tmp_path / "data", train_size=None, val_size=None,
                                                    seed=0, n_jobs=1)
    assert stats["frames"] == {"train": 70, "valid": 10, "test": 20}
    assert stats["time_ps"]["test"] == [80.0, 100.0] and stats["temperature_kelvin"] == 310.0
    data = tmp_path / "data"
    for split, (lo, hi) in {"train": (0, 70), "valid": (70, 80), "test": (80, 100)}.items():
        np.testing.assert_allclose(md.load_frames(data / f"{split}.dcd", data / md.TOPOLOGY), xyz[lo:hi], atol=1e-5)
    assert (data / md.PRMTOP).read_text() == prmtop_text()
    stats = md.prepare_ala2(sim, tmp_path / "data2", train_size=30, val_size=5, test_size=40)
    assert stats["frames"] == {"train": 30, "valid": 5, "test": 40} and stats["time_ps"]["valid"] == [55.0, 60.0]
    with pytest.raises(DataError, match="cannot hold"):
        md.prepare_ala2(sim, tmp_path / "data3", val_size=50, test_size=50)


def test_bad_md_files_raise_data_error_naming_them(tmp_path):
    topology = mdtraj.load_topology(str(DATA / "alanine-dipeptide.pdb"))
    three_atoms = mdtraj.Trajectory(frames()[:4, :3], topology.subset([0, 1, 2]))
    three_atoms.save_dcd(str(tmp_path / "short.dcd"))
    with pytest.raises(DataError, match=r"short\.dcd has 3 atoms.*alanine-dipeptide\.pdb has 22"):
        md.load_frames(tmp_path / "short.dcd", DATA / "alanine-dipeptide.pdb")
    (tmp_path / "junk.dcd").write_bytes(b"not a dcd at all")
    with pytest.raises(DataError, match=r"junk\.dcd"):
        md.load_frames(tmp_path / "junk.dcd", DATA / "alanine-dipeptide.pdb")
    (tmp_path / "junk.pdb").write_text("garbage\n")
    with pytest.raises(DataError, match=r"junk\.pdb"):
        md.load_frames(DATA / "frames.dcd", tmp_path / "junk.pdb")
    bad = frames()[:3].copy()
    bad[1, 5, 0] = np.nan
    mdtraj.Trajectory(bad, topology).save_dcd(str(tmp_path / "nan.dcd"))
    with pytest.raises(DataError, match=r"nan\.dcd: frame 1"):
        md.load_frames(tmp_path / "nan.dcd", DATA / "alanine-dipeptide.pdb")


def test_reduced_energy_is_openmm_energy_over_kt_and_forces_are_its_gradient(energy):
    import openmm as mm
    from openmm import app, unit

    xyz = frames()[:3].astype(np.float64)
    u, force = energy.reduced_and_forces(xyz)
    system = app.AmberPrmtopFile(str(DATA / md.PRMTOP)).createSystem(
        implicitSolvent=app.OBC2, nonbondedMethod=app.NoCutoff, constraints=None)
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(xyz[0])
    kj = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    kt = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    assert u[0] == pytest.approx(kj / kt, rel=1e-9)
    assert -80 < u.mean() < 0  # ~ -40 kT for equilibrium frames at 300 K
    h = 1e-6
    for atom, axis in ((8, 0), (17, 2), (5, 1)):
        plus, minus = xyz[:1].copy(), xyz[:1].copy()
        plus[0, atom, axis] += h
        minus[0, atom, axis] -= h
        gradient = (energy.reduced(plus)[0] - energy.reduced(minus)[0]) / (2 * h)
        assert -force[0, atom, axis] == pytest.approx(gradient, rel=1e-3, abs=1e-2)


def test_reduced_energy_autograd_and_clashes(energy):
    xyz = torch.from_numpy(frames()[:4].astype(np.float64)).requires_grad_(True)
    u = md.ReducedEnergy.apply(xyz, energy)
    u.sum().backward()
    _, force = energy.reduced_and_forces(xyz.detach().numpy())
    np.testing.assert_allclose(xyz.grad.numpy(), -force)
    clash = frames()[:2].astype(np.float64)
    clash[0, 0] = clash[0, 1]  # two atoms on top of each other
    clash[1, 3, 2] = np.nan
    u_clash = energy.reduced(clash)
    assert u_clash[1] == np.inf and (u_clash[0] > 1e4 or u_clash[0] == np.inf)


def test_linlogcut_is_continuous_monotone_and_capped():
    u = torch.tensor([-50.0, 999.0, 1000.0, 1001.0, 1e6, float("inf"), float("nan")])
    cut = md.linlogcut(u, high=1000.0, maximum=1e9)
    assert torch.isfinite(cut).all()
    assert cut[0] == -50.0 and cut[1] == 999.0 and cut[2] == 1000.0
    assert 1000.0 < cut[3] < 1001.0 and cut[4] < 1020.0
    assert (cut[:6].diff() >= 0).all()
