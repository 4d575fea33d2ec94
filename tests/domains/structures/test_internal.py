"""Internal coordinates of alanine dipeptide: Z-matrix, torsions vs mdtraj, NeRF round trip,
log-Jacobian vs autograd."""

from __future__ import annotations

import math

import mdtraj
import numpy as np
import pytest
import torch

from dgm_science.domains.structures.internal import (
    ATOM_NAMES, BONDS, N_INTERNAL, ROOTS, TORSION_PHI, TORSION_PSI, TORSIONS, Z_MATRIX, InternalCoordinates,
    check_z_matrix, torsion_quartets, wrap_angle,
)
from tests.domains.structures.fixtures_md import DATA, frames


@pytest.fixture(scope="module")
def xyz():
    return torch.from_numpy(frames()[::10]).double()  # 30 real MD frames


@pytest.fixture(scope="module")
def topology():
    return mdtraj.load_topology(str(DATA / "alanine-dipeptide.pdb"))


def kabsch_rmsd_max(a: np.ndarray, b: np.ndarray) -> float:
    """Largest atom deviation after optimal rotation + translation of b onto a, per frame max."""
    worst = 0.0
    for x, y in zip(a, b):
        x, y = x - x.mean(0), y - y.mean(0)
        u, _, vt = np.linalg.svd(y.T @ x)
        d = np.sign(np.linalg.det(u @ vt))
        rotation = u @ np.diag([1, 1, d]) @ vt
        worst = max(worst, float(np.linalg.norm(y @ rotation - x, axis=1).max()))
    return worst


def test_atom_order_and_z_matrix_bonds_match_the_prmtop():
    from openmm import app

    prmtop = app.AmberPrmtopFile(str(DATA / "alanine-dipeptide.prmtop"))
    names = tuple(f"{a.residue.name}:{a.name}" for a in prmtop.topology.atoms())
    assert names == ATOM_NAMES
    chemical = {frozenset((a.index, b.index)) for a, b in prmtop.topology.bonds()}
    z_bonds = {frozenset((row[0], row[1])) for row in Z_MATRIX} | {frozenset((ROOTS[0], r)) for r in ROOTS[1:]}
    assert z_bonds == chemical  # every bond length is an internal coordinate, and only bonds
    check_z_matrix()
    assert 3 + 3 * len(Z_MATRIX) == N_INTERNAL == 60


def test_check_z_matrix_rejects_a_reference_not_yet_placed():
    bad = ((4, 6, 8, 16),) + Z_MATRIX[1:]
    with pytest.raises(ValueError, match="not yet placed"):
        check_z_matrix(bad)


def test_torsions_equal_mdtraj_dihedrals_phi_and_psi(xyz, topology):
    internal = InternalCoordinates().to_internal(xyz).numpy()
    trajectory = mdtraj.Trajectory(xyz.numpy(), topology)
    expected = mdtraj.compute_dihedrals(trajectory, torsion_quartets())
    difference = wrap_angle(torch.from_numpy(internal[:, TORSIONS] - expected)).abs().max()
    assert difference < 1e-5
    torsions = internal[:, TORSIONS]
    np.testing.assert_allclose(torsions[:, TORSION_PHI], mdtraj.compute_phi(trajectory)[1][:, 0], atol=1e-5)
    np.testing.assert_allclose(torsions[:, TORSION_PSI], mdtraj.compute_psi(trajectory)[1][:, 0], atol=1e-5)
    bonds = mdtraj.compute_distances(trajectory, [(r[0], r[1]) for r in Z_MATRIX])
    np.testing.assert_allclose(internal[:, BONDS][:, : len(Z_MATRIX)], bonds, atol=1e-6)


def test_cartesian_internal_cartesian_round_trip_up_to_rigid_motion(xyz):
    z = InternalCoordinates()
    rebuilt, _ = z.to_cartesian(z.to_internal(xyz))
    assert kabsch_rmsd_max(xyz.numpy(), rebuilt.numpy()) < 1e-4
    # float32 too (the model's precision): still well under 1e-4 nm
    rebuilt32, _ = z.to_cartesian(z.to_internal(xyz.float()))
    assert kabsch_rmsd_max(xyz.numpy(), rebuilt32.double().numpy()) < 1e-4


def test_internal_is_invariant_to_rigid_motion_and_rebuild_is_canonical(xyz):
    z = InternalCoordinates()
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    rotation = rotation * torch.sign(torch.linalg.det(rotation))  # proper
    moved = xyz @ rotation.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(z.to_internal(moved), z.to_internal(xyz), atol=1e-9, rtol=0)
    canonical, _ = z.to_cartesian(z.to_internal(xyz))
    ca, n, c = (canonical[:, i] for i in ROOTS)
    assert ca.abs().max() == 0 and n[:, 1:].abs().max() == 0 and c[:, 2].abs().max() == 0 and (n[:, 0] > 0).all()


def test_internal_to_cartesian_to_internal_is_identity_off_the_data(xyz):
    z = InternalCoordinates()
    internal = z.to_internal(xyz[:5])
    noise = torch.randn(internal.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    perturbed = internal + 0.02 * noise
    perturbed[:, TORSIONS] = wrap_angle(internal[:, TORSIONS] + 2.0 * noise[:, TORSIONS])
    back = z.to_internal(z.to_cartesian(perturbed)[0])
    torch.testing.assert_close(back[:, : TORSIONS.start], perturbed[:, : TORSIONS.start], atol=1e-10, rtol=0)
    assert wrap_angle(back[:, TORSIONS] - perturbed[:, TORSIONS]).abs().max() < 1e-10


def test_log_det_jacobian_matches_autograd(xyz):
    z = InternalCoordinates()
    internal = z.to_internal(xyz[:3])
    _, log_det = z.to_cartesian(internal)
    torch.testing.assert_close(z.log_det_jacobian(internal), log_det)
    for q, expected in zip(internal, log_det):
        jacobian = torch.autograd.functional.jacobian(
            lambda v: z.canonical_free_coordinates(z.to_cartesian(v[None])[0])[0], q)
        assert jacobian.shape == (60, 60)
        sign, value = torch.linalg.slogdet(jacobian)
        assert sign != 0 and abs(float(value - expected)) < 1e-8


def test_wrap_angle_range():
    x = torch.tensor([-3 * math.pi, -math.pi, 0.0, math.pi, 3 * math.pi + 0.5])
    wrapped = wrap_angle(x)
    assert (wrapped > -math.pi).all() and (wrapped <= math.pi + 1e-6).all()
    torch.testing.assert_close(torch.cos(wrapped), torch.cos(x))
    torch.testing.assert_close(torch.sin(wrapped), torch.sin(x), atol=1e-6, rtol=0)
