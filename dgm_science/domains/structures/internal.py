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
    """Raise ValueError unless every atom 0 .. len(z_matrix) + 2 is placed once, after its three
    distinct references."""
    placed = set(roots)
    if len(placed) != 3:
        raise ValueError(f"roots {tuple(roots)}: three distinct atoms needed")
    for atom, *refs in z_matrix:
        if atom in placed or len(set(refs)) != 3 or not set(refs) <= placed:
            raise ValueError(f"Z-matrix row {(atom, *refs)}: atom placed twice or references not yet placed")
        placed.add(atom)
    n_atoms = len(z_matrix) + 3
    if placed != set(range(n_atoms)):
        raise ValueError(f"Z-matrix leaves atoms {sorted(set(range(n_atoms)) - placed)} unplaced")


def build_z_matrix(n_atoms: int, bonds: list[tuple[int, int]], heavy: list[bool],
                   roots: tuple[int, int, int] | None = None
                   ) -> tuple[tuple[tuple[int, int, int, int], ...], tuple[int, int, int]]:
    """A Z-matrix of any connected molecule from its bond graph (the topology's bonds), as the
    hand-written ``Z_MATRIX`` of alanine dipeptide is built:

    - roots (origin, first, second): ``roots`` if given (a peptide's CA, N, C), else the heavy atom
      closest to the centre of the heavy-atom graph (least eccentricity, then most heavy
      neighbours, then lowest index) and its two first-listed (heavy-first) neighbours;
    - then every atom bonded to a placed one, heavy atoms first, breadth first, lowest index on ties:
      bond partner b = its earliest-placed bonded neighbour; angle partner c = b's earliest-placed
      neighbour (heavy first); torsion partner: an atom already placed FROM b (a sibling: methyl
      hydrogens get torsions relative to the first one, ~+-2pi/3, as in ``Z_MATRIX``) else c's
      earliest-placed neighbour other than b (a proper torsion) else any other placed neighbour of b.

    ``bonds``: pairs of atom indices; ``heavy``: per atom, not hydrogen. ValueError when the graph
    is not connected or has fewer than 3 atoms, naming the pieces. Returns (z_matrix, roots)."""
    if n_atoms < 3:
        raise ValueError(f"{n_atoms} atoms: internal coordinates need at least 3")
    neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
    for a, b in bonds:
        a, b = int(a), int(b)
        if a != b and b not in neighbours[a]:
            neighbours[a].append(b)
            neighbours[b].append(a)
    for row in neighbours:
        row.sort(key=lambda j: (not heavy[j], j))
    components = _components(n_atoms, neighbours)
    if len(components) > 1:
        sizes = sorted((len(c) for c in components), reverse=True)
        raise ValueError(f"the bonds form {len(components)} separate molecules (sizes {', '.join(map(str, sizes[:8]))}"
                         f"{', ...' if len(sizes) > 8 else ''}); internal coordinates need one molecule")
    if roots is None:
        roots = _central_roots(n_atoms, neighbours, heavy)
    roots = tuple(int(r) for r in roots)
    order = {r: k for k, r in enumerate(roots)}  # atom -> placement rank
    placed_from: dict[int, list[int]] = {r: [] for r in range(n_atoms)}
    placed_from[roots[0]] = [roots[1], roots[2]]
    rows: list[tuple[int, int, int, int]] = []
    # breadth first from the roots, heavy atoms before hydrogens at each step
    while len(order) < n_atoms:
        frontier = [(a, min(order[b] for b in neighbours[a] if b in order)) for a in range(n_atoms)
                    if a not in order and any(b in order for b in neighbours[a])]
        atom, _ = min(frontier, key=lambda t: (not heavy[t[0]], t[1], t[0]))
        bond = min((b for b in neighbours[atom] if b in order), key=lambda b: order[b])
        angle_choices = sorted((c for c in neighbours[bond] if c in order and c != atom),
                               key=lambda c: (not heavy[c], order[c]))
        angle = angle_choices[0]
        siblings = [s for s in placed_from[bond] if s != angle]
        proper = sorted((d for d in neighbours[angle] if d in order and d not in (bond, atom)),
                        key=lambda d: (not heavy[d], order[d]))
        others = [d for d in angle_choices[1:]]
        if siblings:
            torsion = siblings[0]
        elif proper:
            torsion = proper[0]
        elif others:
            torsion = others[0]
        else:  # a chain end with nothing else placed near it: any placed atom
            torsion = min((d for d in order if d not in (atom, bond, angle)), key=lambda d: order[d])
        rows.append((atom, bond, angle, torsion))
        placed_from[bond].append(atom)
        order[atom] = len(order)
    z_matrix = tuple(rows)
    check_z_matrix(z_matrix, roots)
    return z_matrix, roots  # type: ignore[return-value]


def _components(n_atoms: int, neighbours: list[list[int]]) -> list[list[int]]:
    seen = [False] * n_atoms
    out = []
    for start in range(n_atoms):
        if seen[start]:
            continue
        stack, part = [start], []
        seen[start] = True
        while stack:
            a = stack.pop()
            part.append(a)
            for b in neighbours[a]:
                if not seen[b]:
                    seen[b] = True
                    stack.append(b)
        out.append(part)
    return out


def _central_roots(n_atoms: int, neighbours: list[list[int]], heavy: list[bool]) -> tuple[int, int, int]:
    """(origin, first, second): the most central atom with two neighbours (heavy atoms preferred)."""
    def eccentricity(start: int) -> int:
        depth = {start: 0}
        queue = [start]
        for a in queue:
            for b in neighbours[a]:
                if b not in depth and heavy[b]:
                    depth[b] = depth[a] + 1
                    queue.append(b)
        return max(depth.values())

    candidates = [a for a in range(n_atoms) if len(neighbours[a]) >= 2]
    if not candidates:
        raise ValueError("no atom has two bonded neighbours: internal coordinates need a branch point or a chain")
    origin = min(candidates, key=lambda a: (not heavy[a], eccentricity(a) if heavy[a] else 0,
                                            -sum(heavy[b] for b in neighbours[a]), a))
    return origin, neighbours[origin][0], neighbours[origin][1]


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
    """Cartesian (B, N, 3) nm <-> internal (B, 3N - 6) for a Z-matrix of N = len(z_matrix) + 3 atoms
    (alanine dipeptide's by default: N = 22, 60 coordinates), vectorized over the batch; the layout
    ``[bonds (N - 1) | angles (N - 2) | torsions (N - 3)]`` is in ``self.bonds`` / ``angles`` /
    ``torsions`` (slices).

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
        rows = torch.tensor(self.z_matrix, dtype=torch.long).reshape(-1, 4)
        self.atom, self.bond_partner, self.angle_partner, self.torsion_partner = rows.unbind(1)
        self.n_placed = len(self.z_matrix)
        self.n_atoms = self.n_placed + 3
        self.n_internal = 3 * self.n_atoms - 6
        self.bonds = slice(0, self.n_placed + 2)
        self.angles = slice(self.n_placed + 2, 2 * self.n_placed + 3)
        self.torsions = slice(2 * self.n_placed + 3, self.n_internal)

    def to_internal(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: (B, N, 3) -> internal (B, 3N - 6) = [bonds | angles | torsions]."""
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
        """internal (B, 3N - 6) -> (xyz (B, N, 3) in the canonical frame, log|det J| (B,)) by NeRF."""
        bonds, angles, torsions = internal[:, self.bonds], internal[:, self.angles], internal[:, self.torsions]
        n = internal.shape[0]
        n_placed = self.n_placed
        positions: list[torch.Tensor | None] = [None] * self.n_atoms
        zero = internal.new_zeros(n)
        b_first, b_second, root_angle = bonds[:, n_placed], bonds[:, n_placed + 1], angles[:, n_placed]
        positions[self.roots[0]] = internal.new_zeros(n, 3)
        positions[self.roots[1]] = torch.stack([b_first, zero, zero], dim=-1)
        positions[self.roots[2]] = torch.stack(
            [b_second * torch.cos(root_angle), b_second * torch.sin(root_angle), zero], dim=-1)
        for k, (atom, bond, angle, torsion) in enumerate(self.z_matrix):
            positions[atom] = _place(positions[bond], positions[angle], positions[torsion],
                                     bonds[:, k], angles[:, k], torsions[:, k])
        xyz = torch.stack(positions, dim=1)  # type: ignore[arg-type]
        placed_bonds, placed_angles = bonds[:, :n_placed], angles[:, :n_placed]
        log_det = torch.log(b_second) + (2 * torch.log(placed_bonds) + torch.log(torch.sin(placed_angles))).sum(-1)
        return xyz, log_det

    def log_det_jacobian(self, internal: torch.Tensor) -> torch.Tensor:
        """log|det d(Cartesian 3N-6)/d(internal)|: (B, 3N - 6) -> (B,), without building the molecule."""
        bonds, angles, n_placed = internal[:, self.bonds], internal[:, self.angles], self.n_placed
        return torch.log(bonds[:, n_placed + 1]) + (
            2 * torch.log(bonds[:, :n_placed]) + torch.log(torch.sin(angles[:, :n_placed]))).sum(-1)

    def canonical_free_coordinates(self, xyz: torch.Tensor) -> torch.Tensor:
        """The 3N - 6 free coordinates of a canonical-frame molecule: (B, 22, 3) -> (B, 60), N's x,
        C's x and y, then the placed atoms' xyz in ``Z_MATRIX`` order (the Jacobian's codomain); (B, N, 3) -> (B, 3N - 6)."""
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
