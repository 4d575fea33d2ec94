"""Internal coordinates (Z-matrix) of alanine dipeptide: Cartesian <-> bonds, angles, torsions.

The Boltzmann generator of Noé et al. (2019, Science 365, eaaw1147) and its successors (Köhler et
al. 2021; bgflow's ``MixedCoordinateTransformation``) model molecules in internal coordinates,
which remove the 6 rigid-body degrees of freedom and make the density smooth. Here all 22 atoms
are internal: three root atoms N, CA, C of the alanine residue fix a canonical frame (CA at the
origin, N on +x, C in the xy-plane) and carry 3 coordinates (two bond lengths, one angle); every
other atom is placed by (bond partner, angle partner, torsion partner) with the Natural Extension
Reference Frame (NeRF; Parsons et al. 2005, J. Comput. Chem. 26, 1063). 3N - 6 = 60 coordinates.

Layout of the internal vector (B, 60): ``[bonds (21) | angles (20) | torsions (19)]``; bonds and
angles list the 19 placed atoms in ``PLACED`` order and then the roots (|N-CA|, |C-CA|; angle
N-CA-C). Units: nm and radians; torsions in (-pi, pi] with the IUPAC sign convention of
``mdtraj.compute_dihedrals``. The 2nd and 3rd placed atoms' torsions are phi (C-N-CA-C) and psi
(N-CA-C-N), ``TORSION_PHI`` and ``TORSION_PSI``.

Volume change of the internal -> Cartesian map (Cartesian = the 3N - 6 coordinates of the
canonical frame: N's x, C's x and y, every placed atom's xyz): N's x is its bond length
(Jacobian 1), C's (x, y) are polar coordinates (|C-CA|, angle) with Jacobian |C-CA|, and each
placed atom is in spherical coordinates about its bond partner with Jacobian b^2 sin(angle):
``log|det J| = log|C-CA| + sum_placed (2 log b_i + log sin a_i)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ATOM_NAMES = (
    "ACE:H1", "ACE:CH3", "ACE:H2", "ACE:H3", "ACE:C", "ACE:O",
    "ALA:N", "ALA:H", "ALA:CA", "ALA:HA", "ALA:CB", "ALA:HB1", "ALA:HB2", "ALA:HB3", "ALA:C", "ALA:O",
    "NME:N", "NME:H", "NME:C", "NME:H1", "NME:H2", "NME:H3",
)
"""Atom order of the AMBER prmtop (and of the PDB/DCD files written from it): residue:atom."""

N_ATOMS = len(ATOM_NAMES)
N_INTERNAL = 3 * N_ATOMS - 6

ROOTS = (8, 6, 14)
"""Root atoms (CA, N, C of ALA): CA at the origin, N on +x, C in the xy-plane."""

Z_MATRIX = (
    # (atom, bond partner, angle partner, torsion partner), in placement order; atom indices
    (4, 6, 8, 14),    # ACE C   torsion C-N-CA-C = phi
    (16, 14, 8, 6),   # NME N   torsion N-C-CA-N = psi
    (10, 8, 6, 14),   # CB      chirality of CA
    (9, 8, 6, 14),    # HA
    (5, 4, 6, 8),     # ACE O   O-C-N-CA: cis, ~0 in a trans amide
    (1, 4, 6, 8),     # ACE CH3 omega of the ACE-ALA peptide bond, ~pi
    (7, 6, 4, 5),     # ALA H   H-N-C-O, ~pi
    (0, 1, 4, 6),     # ACE H1  methyl rotation
    (2, 1, 4, 0),     # ACE H2  relative to H1, ~+-2pi/3
    (3, 1, 4, 0),     # ACE H3
    (15, 14, 8, 16),  # ALA O   improper about the carbonyl C
    (17, 16, 14, 15), # NME H   H-N-C-O, ~pi
    (18, 16, 14, 8),  # NME C   omega of the ALA-NME peptide bond, ~pi
    (19, 18, 16, 14), # NME H1  methyl rotation
    (20, 18, 16, 19), # NME H2
    (21, 18, 16, 19), # NME H3
    (11, 10, 8, 6),   # HB1     methyl rotation
    (12, 10, 8, 11),  # HB2
    (13, 10, 8, 11),  # HB3
)

N_PLACED = len(Z_MATRIX)
N_BONDS = N_PLACED + 2
N_ANGLES = N_PLACED + 1
N_TORSIONS = N_PLACED
BONDS = slice(0, N_BONDS)
ANGLES = slice(N_BONDS, N_BONDS + N_ANGLES)
TORSIONS = slice(N_BONDS + N_ANGLES, N_INTERNAL)
TORSION_PHI = 0
TORSION_PSI = 1
TORSION_HISTOGRAM_BINS = 60
"""Bins over (-pi, pi] of the torsion histograms (the flow's cut points, the Ramachandran KL)."""


def torsion_quartets(z_matrix: tuple[tuple[int, int, int, int], ...] = Z_MATRIX) -> np.ndarray:
    """(N_TORSIONS, 4) atom quartets whose dihedrals are the internal torsions, mdtraj's order."""
    return np.array([[atom, bond, angle, torsion] for atom, bond, angle, torsion in z_matrix])


def torsion_names(z_matrix: tuple[tuple[int, int, int, int], ...] = Z_MATRIX) -> list[str]:
    """Readable names of the torsions, e.g. ``ACE:C-ALA:N-ALA:CA-ALA:C``."""
    return ["-".join(ATOM_NAMES[i] for i in quartet) for quartet in torsion_quartets(z_matrix)]


def check_z_matrix(z_matrix: tuple[tuple[int, int, int, int], ...] = Z_MATRIX, roots: tuple[int, ...] = ROOTS) -> None:
    """Raise ValueError unless every atom is placed once, after its three distinct references."""
    placed = set(roots)
    for atom, *refs in z_matrix:
        if atom in placed or len(set(refs)) != 3 or not set(refs) <= placed:
            raise ValueError(f"Z-matrix row {(atom, *refs)}: atom placed twice or references not yet placed")
        placed.add(atom)
    if placed != set(range(N_ATOMS)):
        raise ValueError(f"Z-matrix leaves atoms {sorted(set(range(N_ATOMS)) - placed)} unplaced")


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def dihedral(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
    """Dihedral angle of p0-p1-p2-p3 in (-pi, pi], IUPAC sign (as mdtraj): (..., 3) x4 -> (...)."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = torch.cross(b0, b1, dim=-1), torch.cross(b1, b2, dim=-1)
    y = (torch.cross(n1, n2, dim=-1) * _normalize(b1)).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def _angle(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Angle p0-p1-p2 via atan2 (accurate near 0 and pi): (..., 3) x3 -> (...)."""
    u, v = p0 - p1, p2 - p1
    return torch.atan2(torch.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1))


class InternalCoordinates:
    """Cartesian (B, 22, 3) nm <-> internal (B, 60) for a Z-matrix, vectorized over the batch.

    ``to_internal`` is invariant to rigid motions; ``to_cartesian`` rebuilds the molecule in the
    canonical frame and returns log|det d(Cartesian 3N-6)/d(internal)| per example (module docstring).
    Reflections are not removed: ``to_cartesian(to_internal(x))`` is x up to a proper rotation and
    translation, since the torsions fix the chirality.
    """

    def __init__(self, z_matrix: tuple[tuple[int, int, int, int], ...] = Z_MATRIX,
                 roots: tuple[int, int, int] = ROOTS) -> None:
        check_z_matrix(z_matrix, roots)
        self.z_matrix = tuple(tuple(int(i) for i in row) for row in z_matrix)
        self.roots = tuple(int(i) for i in roots)
        rows = torch.tensor(self.z_matrix, dtype=torch.long)
        self.atom, self.bond_partner, self.angle_partner, self.torsion_partner = rows.unbind(1)

    def to_internal(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: (B, 22, 3) -> internal (B, 60) = [bonds | angles | torsions]."""
        index = [i.to(xyz.device) for i in (self.atom, self.bond_partner, self.angle_partner, self.torsion_partner)]
        a, b, c, d = (xyz[:, i] for i in index)
        bonds = (a - b).norm(dim=-1)
        angles = _angle(a, b, c)
        torsions = dihedral(a, b, c, d)
        origin, first, second = (xyz[:, i] for i in self.roots)
        root_bonds = torch.stack([(first - origin).norm(dim=-1), (second - origin).norm(dim=-1)], dim=-1)
        root_angle = _angle(first, origin, second).unsqueeze(-1)
        return torch.cat([bonds, root_bonds, angles, root_angle, torsions], dim=-1)

    def to_cartesian(self, internal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """internal (B, 60) -> (xyz (B, 22, 3) in the canonical frame, log|det J| (B,)) by NeRF."""
        bonds, angles, torsions = internal[:, BONDS], internal[:, ANGLES], internal[:, TORSIONS]
        n = internal.shape[0]
        positions: list[torch.Tensor | None] = [None] * N_ATOMS
        zero = internal.new_zeros(n)
        b_first, b_second, root_angle = bonds[:, N_PLACED], bonds[:, N_PLACED + 1], angles[:, N_PLACED]
        positions[self.roots[0]] = internal.new_zeros(n, 3)
        positions[self.roots[1]] = torch.stack([b_first, zero, zero], dim=-1)
        positions[self.roots[2]] = torch.stack(
            [b_second * torch.cos(root_angle), b_second * torch.sin(root_angle), zero], dim=-1)
        for k, (atom, bond, angle, torsion) in enumerate(self.z_matrix):
            positions[atom] = _place(positions[bond], positions[angle], positions[torsion],
                                     bonds[:, k], angles[:, k], torsions[:, k])
        xyz = torch.stack(positions, dim=1)  # type: ignore[arg-type]
        placed_bonds, placed_angles = bonds[:, :N_PLACED], angles[:, :N_PLACED]
        log_det = torch.log(b_second) + (2 * torch.log(placed_bonds) + torch.log(torch.sin(placed_angles))).sum(-1)
        return xyz, log_det

    def log_det_jacobian(self, internal: torch.Tensor) -> torch.Tensor:
        """log|det d(Cartesian 3N-6)/d(internal)|: (B, 60) -> (B,), without building the molecule."""
        bonds, angles = internal[:, BONDS], internal[:, ANGLES]
        return torch.log(bonds[:, N_PLACED + 1]) + (
            2 * torch.log(bonds[:, :N_PLACED]) + torch.log(torch.sin(angles[:, :N_PLACED]))).sum(-1)

    def canonical_free_coordinates(self, xyz: torch.Tensor) -> torch.Tensor:
        """The 3N - 6 free coordinates of a canonical-frame molecule: (B, 22, 3) -> (B, 60), N's x,
        C's x and y, then the placed atoms' xyz in ``Z_MATRIX`` order (the Jacobian's codomain)."""
        placed = xyz[:, self.atom.to(xyz.device)].flatten(1)
        first, second = xyz[:, self.roots[1]], xyz[:, self.roots[2]]
        return torch.cat([first[:, :1], second[:, :2], placed], dim=-1)


def _place(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, bond: torch.Tensor, angle: torch.Tensor,
           torsion: torch.Tensor) -> torch.Tensor:
    """NeRF: the atom at distance ``bond`` from a, angle ``angle`` to (a, b) and dihedral
    ``torsion`` of (atom, a, b, c); a, b, c: (B, 3); bond, angle, torsion: (B,) -> (B, 3)."""
    ab = _normalize(a - b)
    normal = _normalize(torch.cross(b - c, ab, dim=-1))
    in_plane = torch.cross(normal, ab, dim=-1)
    local = torch.stack([-torch.cos(angle), torch.sin(angle) * torch.cos(torsion),
                         torch.sin(angle) * torch.sin(torsion)], dim=-1) * bond.unsqueeze(-1)
    return a + local[:, :1] * ab + local[:, 1:2] * in_plane + local[:, 2:] * normal


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Angles to (-pi, pi]."""
    return math.pi - torch.remainder(math.pi - x, 2 * math.pi)
