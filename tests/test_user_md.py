"""A user's MD trajectory as a peptide-md dataset (file kind ``trajectory``, dgm_science/domains/structures/md_sources.py):
internal coordinates of a molecule other than alanine dipeptide (Z-matrix from the topology's bonds), the contiguous
time-block split, each bad file's one error through the real ``dgm prepare --source``, the metrics without a force
field or a backbone, the workflow's plan, and the tutorial's commands on the shipped tetrapeptide
(tests/data/user/md: ACE-ALA-ALA-NME, 300 frames, made by make_tetrapeptide.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch
import yaml

from dgm_science.domains.structures import metrics as structure_metrics
from dgm_science.domains.structures.internal import InternalCoordinates, build_z_matrix
from dgm_science.domains.structures.md_sources import TrajectoryOptions, backbone_pairs, prepare_trajectory
from dgm_science.errors import DataError
from tests.workflow_fixtures import copy_workflow, run_snakemake

ROOT = Path(__file__).resolve().parents[1]
MD = ROOT / "tests" / "data" / "user" / "md"
TRAJECTORY, TOPOLOGY = MD / "tetrapeptide.dcd", MD / "tetrapeptide.pdb"
ALA2 = ROOT / "tests" / "data" / "ala2"


def frames() -> tuple[np.ndarray, mdtraj.Topology]:
    trajectory = mdtraj.load(str(TRAJECTORY), top=str(TOPOLOGY))
    return trajectory.xyz.astype(np.float64), trajectory.topology


def z_matrix_of(topology: mdtraj.Topology) -> InternalCoordinates:
    bonds = [(b[0].index, b[1].index) for b in topology.bonds]
    heavy = [a.element.symbol != "H" for a in topology.atoms]
    return InternalCoordinates(*build_z_matrix(topology.n_atoms, bonds, heavy))


# ----------------------------------------------------------------------------- internal coordinates


def test_internal_coordinates_of_a_tetrapeptide_round_trip_to_cartesian():
    xyz, topology = frames()
    assert topology.n_atoms == 32 and [r.name for r in topology.residues] == ["ACE", "ALA", "ALA", "NME"]
    z = z_matrix_of(topology)
    assert z.n_internal == 3 * 32 - 6 and z.torsions.stop - z.torsions.start == 32 - 3
    x = torch.from_numpy(xyz[::10])
    internal = z.to_internal(x)
    rebuilt, _ = z.to_cartesian(internal)
    # the same molecule up to a rigid motion: every interatomic distance and the internal coordinates agree
    distances = torch.cdist(x, x)
    np.testing.assert_allclose(torch.cdist(rebuilt, rebuilt).numpy(), distances.numpy(), atol=1e-7)  # cdist: ~1e-8 noise
    np.testing.assert_allclose(z.to_internal(rebuilt).numpy(), internal.numpy(), atol=1e-9)
    # every bond of the Z-matrix is a bond of the topology (no bond made up between unbonded atoms)
    bonded = {frozenset((b[0].index, b[1].index)) for b in topology.bonds}
    assert all(frozenset((row[0], row[1])) in bonded for row in z.z_matrix)


def test_the_log_jacobian_of_a_generic_z_matrix_is_the_autograd_one():
    xyz, topology = frames()
    z = z_matrix_of(topology)
    internal = z.to_internal(torch.from_numpy(xyz[:1]))[0]

    def free(q: torch.Tensor) -> torch.Tensor:
        return z.canonical_free_coordinates(z.to_cartesian(q[None])[0])[0]

    jacobian = torch.autograd.functional.jacobian(free, internal)
    expected = torch.linalg.slogdet(jacobian)[1]
    assert torch.allclose(z.log_det_jacobian(internal[None])[0], expected, atol=1e-8)


def test_a_molecule_without_backbone_gets_a_z_matrix_and_no_ramachandran_pair():
    _, topology = frames()
    alanine = topology.subset(topology.select("resid 1"))  # one alanine residue, no phi or psi
    assert backbone_pairs(alanine) == []
    z = z_matrix_of(alanine)
    assert z.n_atoms == alanine.n_atoms == 10
    assert len(backbone_pairs(topology)) == 2  # the tetrapeptide: (phi, psi) of both alanines


def test_disconnected_atoms_are_refused():
    with pytest.raises(ValueError, match="2 separate molecules"):
        build_z_matrix(6, [(0, 1), (1, 2), (3, 4), (4, 5)], [True] * 6)


# ----------------------------------------------------------------------------- prepare


def test_prepare_splits_contiguous_time_blocks_after_skip_and_stride(tmp_path):
    options = TrajectoryOptions(kind="trajectory", path=str(TRAJECTORY), topology=str(TOPOLOGY), valid=30, test=60,
                                skip=10, stride=2)
    stats = prepare_trajectory(options, tmp_path)
    kept = frames()[0][10::2]
    assert stats["frames"] == {"train": 145 - 90, "valid": 30, "test": 60}
    assert stats["energies"] is False and stats["backbone_pairs"] == 2
    for split, (lo, hi) in {"train": (0, 55), "valid": (55, 85), "test": (85, 145)}.items():
        written = mdtraj.load(str(tmp_path / f"{split}.dcd"), top=str(tmp_path / "topology.pdb")).xyz
        np.testing.assert_allclose(written, kept[lo:hi], atol=2e-4)  # DCD: float32 Angstrom
    molecule = json.loads((tmp_path / "molecule.json").read_text())
    assert molecule["openmm_system"] is None and len(molecule["z_matrix"]) == 32 - 3
    assert [molecule["atom_names"][i] for i in molecule["roots"]] == ["ALA2:CA", "ALA2:N", "ALA2:C"]


@pytest.mark.parametrize("suffix", ["xtc", "trr", "nc", "mdcrd", "pdb", "gro"])
def test_the_trajectory_formats_mdtraj_writes_prepare_alike(tmp_path, suffix):
    """The same 40 frames as XTC, TRR, AMBER NetCDF / mdcrd with the PDB topology, and as a multi-model PDB or
    a GRO that is its own topology: the same split and the same frames (to the format's precision)."""
    trajectory = mdtraj.load(str(TRAJECTORY), top=str(TOPOLOGY))[:40]
    path = tmp_path / f"frames.{suffix}"
    trajectory.save(str(path))
    topology = None if suffix in ("pdb", "gro") else str(TOPOLOGY)
    stats = prepare_trajectory(TrajectoryOptions(kind="trajectory", path=str(path), topology=topology),
                               tmp_path / "out")
    assert stats["frames"] == {"train": 28, "valid": 4, "test": 8} and stats["backbone_pairs"] == 2
    test = mdtraj.load(str(tmp_path / "out" / "test.dcd"), top=str(tmp_path / "out" / "topology.pdb")).xyz
    np.testing.assert_allclose(test, trajectory.xyz[32:], atol=2e-3)  # GRO / XTC keep 0.001 nm


def test_energies_from_a_serialized_openmm_system_equal_the_force_fields(tmp_path):
    import openmm as mm
    from openmm import app

    base = dict(kind="trajectory", path=str(TRAJECTORY), topology=str(TOPOLOGY), valid=30, test=60)
    by_force_field = prepare_trajectory(TrajectoryOptions(**base, force_field=["amber14-all.xml", "implicit/obc2.xml"]),
                                        tmp_path / "ff")
    system = app.ForceField("amber14-all.xml", "implicit/obc2.xml").createSystem(
        app.PDBFile(str(TOPOLOGY)).topology, nonbondedMethod=app.NoCutoff, constraints=None)
    (tmp_path / "system.xml").write_text(mm.XmlSerializer.serialize(system))
    by_system = prepare_trajectory(TrajectoryOptions(**base, system=str(tmp_path / "system.xml")), tmp_path / "xml")
    assert by_system["energies"] and by_force_field["energies"]
    for split in ("train", "valid", "test"):
        assert by_system["reduced_energy_mean"][split] == pytest.approx(by_force_field["reduced_energy_mean"][split],
                                                                        abs=1e-3)
    with pytest.raises(DataError, match="give one of force_field, prmtop and system"):
        prepare_trajectory(TrajectoryOptions(**base, system=str(tmp_path / "system.xml"), force_field=["x.xml"]),
                           tmp_path / "both")


def test_metrics_without_force_field_or_backbone_say_so():
    xyz, topology = frames()
    atoms = topology.select("resid 1")
    sub = topology.subset(atoms)
    z = z_matrix_of(sub)
    out = structure_metrics.evaluate_conformations(xyz[:100, atoms], None, xyz[200:, atoms], None, z, [])
    assert out["energy_skipped_no_force_field"] == 1.0 and "energy_mean" not in out
    assert out["backbone_pairs"] == 0.0 and np.isnan(out["kl_ramachandran"])
    assert np.isfinite(out["kl_torsions_mean"]) and out["n_samples"] == 100


def dgm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgm_science.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_bad_files_give_one_clear_error_and_write_nothing(tmp_path):
    (tmp_path / "garbage.dcd").write_bytes(b"not a trajectory at all" * 40)
    (tmp_path / "frames.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    top = str(TOPOLOGY)
    cases = [
        ({"path": "garbage.dcd", "topology": top}, "garbage.dcd: not a readable .dcd trajectory"),
        ({"path": str(ALA2 / "frames.dcd"), "topology": top},
         f"frames.dcd has 22 atoms per frame but the topology {top} has 32: they are not the same system"),
        ({"path": str(TRAJECTORY), "topology": top, "skip": 298},
         "(skip 298, stride 1): 2 frames are too few to split into train / validation / test (valid=0.1, test=0.2; "
         "at least 3 frames needed)"),
        ({"path": str(TRAJECTORY), "topology": top, "selection": "resname HOH"},
         "the selection 'resname HOH' matches no atom (the topology has 32 atoms in residues ACE, ALA, NME; "
         "set source.selection)"),
        ({"path": str(TRAJECTORY), "topology": top, "selection": "resname ACE or resname NME"},
         "the bonds form 2 separate molecules (sizes 6, 6); internal coordinates need one molecule"),
        ({"path": "frames.h5", "topology": top}, "frames.h5: HDF5 trajectory files are not read"),
        ({"path": str(TRAJECTORY)}, "a .dcd trajectory needs source.topology"),
    ]
    for block, message in cases:
        done = dgm("prepare", "--source", json.dumps({"kind": "trajectory", **block}), "--out", "out", cwd=tmp_path)
        errors = [line for line in done.stderr.splitlines() if line.startswith("dgm: error:")]
        assert done.returncode == 2 and len(errors) == 1 and message in errors[0], (block, done.stderr)
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), block


# ----------------------------------------------------------------------------- the workflow


@pytest.mark.e2e
def test_the_workflow_plans_a_user_trajectory(tmp_path):
    copy_workflow(tmp_path)
    for path in (TRAJECTORY, TOPOLOGY):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    config = {"seeds": [0], "structures": {"tetrapeptide": {
        "source": {"kind": "trajectory", "path": TRAJECTORY.name, "topology": TOPOLOGY.name, "valid": 30,
                   "test": 60, "force_field": ["amber14-all.xml", "implicit/obc2.xml"]},
        "mixing": {"chains": 4, "steps": 40, "every": 2},
        "models": {name: {"model": {"hidden": 32}, "train": {"max_steps": 10}, "sample": {"n": 10}}
                   for name in ("ala2-flow", "ala2-ebm")}}}}
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(config))
    done = run_snakemake(tmp_path, ["user.yaml"], "-n", "-p")
    assert done.returncode == 0, done.stderr
    for rule in ("peptide_md_import", "structures_train", "md_sample", "structures_evaluate", "md_mixing", "report"):
        assert f"rule {rule}:" in done.stdout or f"{rule} " in done.stdout, (rule, done.stdout[-3000:])
    assert "ala2_prepare" not in done.stdout and "ala2_simulate" not in done.stdout
    assert "--chains 4 --steps 40 --every 2" in done.stdout
    assert "resources/structures/tetrapeptide/data/molecule.json" in done.stdout


def test_a_bad_topology_is_one_error(tmp_path):
    (tmp_path / "broken.pdb").write_text("ATOM      1  N   ALA A   1    garbage\n")
    with pytest.raises(DataError):
        prepare_trajectory(TrajectoryOptions(kind="trajectory", path=str(TRAJECTORY), topology=str(tmp_path / "broken.pdb")),
                           tmp_path / "out")
