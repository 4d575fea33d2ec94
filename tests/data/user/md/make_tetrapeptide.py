"""Writes the tutorial's tiny MD files: ACE-ALA-ALA-NME (capped dialanine, 32 atoms) in OBC2 implicit
solvent, AMBER ff14SB (OpenMM's amber14-all.xml + implicit/obc2.xml), 300 K, 300 frames 0.1 ps apart
(after 10 ps of equilibration), simulated on OpenMM's Reference platform in about half a minute.

The heavy atoms are built from ideal peptide geometry (bond lengths and angles of Engh & Huber; an
alpha-helical start, phi -60, psi -45, trans peptide bonds; the L-alanine CB at CB-CA-N-C = -120
degrees as in openmmtools' alanine dipeptide), OpenMM's Modeller adds the hydrogens. Writes
tetrapeptide.pdb (the topology, first frame) and tetrapeptide.dcd beside this file.

    python tests/data/user/md/make_tetrapeptide.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """NeRF: the atom at ``bond`` nm from a, angle (degrees) to a-b, dihedral (degrees) with a-b-c."""
    angle, torsion = math.radians(angle), math.radians(torsion)
    ab = (a - b) / np.linalg.norm(a - b)
    n = np.cross(b - c, ab)
    n /= np.linalg.norm(n)
    m = np.cross(n, ab)
    d = np.array([-math.cos(angle), math.sin(angle) * math.cos(torsion), math.sin(angle) * math.sin(torsion)]) * bond
    return a + d[0] * ab + d[1] * m + d[2] * n


def heavy_atoms(n_ala: int = 2, phi: float = -60.0, psi: float = -45.0) -> list[tuple[str, str, str, np.ndarray]]:
    """(residue, atom, element, position nm) of ACE-(ALA)n-NME's heavy atoms."""
    ch3 = np.zeros(3)
    c = np.array([0.152, 0.0, 0.0])
    o = np.array([0.152 + 0.1229 * math.cos(math.radians(59.5)), 0.1229 * math.sin(math.radians(59.5)), 0.0])
    atoms = [("ACE", "CH3", "C", ch3), ("ACE", "C", "C", c), ("ACE", "O", "O", o)]
    prev_c, prev_ca, prev_o = c, ch3, o
    n = place(prev_c, prev_ca, prev_o, 0.1335, 116.2, 180.0)
    for _ in range(n_ala):
        ca = place(n, prev_c, prev_ca, 0.1458, 121.7, 180.0)           # omega = 180
        c_atom = place(ca, n, prev_c, 0.1525, 111.2, phi)               # phi
        cb = place(ca, n, c_atom, 0.1530, 110.5, -120.0)                # L chirality
        n_next = place(c_atom, ca, n, 0.1335, 116.2, psi)               # psi
        o_atom = place(c_atom, ca, n_next, 0.1229, 120.5, 180.0)        # O trans to the next N
        atoms += [("ALA", "N", "N", n), ("ALA", "CA", "C", ca), ("ALA", "CB", "C", cb), ("ALA", "C", "C", c_atom),
                  ("ALA", "O", "O", o_atom)]
        prev_c, prev_ca, n = c_atom, ca, n_next
    atoms += [("NME", "N", "N", n), ("NME", "C", "C", place(n, prev_c, prev_ca, 0.1458, 121.7, 180.0))]
    return atoms


def main(out_dir: Path = Path(__file__).resolve().parent, frames: int = 300, steps_per_frame: int = 100) -> None:
    import mdtraj
    import openmm as mm
    from openmm import app, unit

    topology = app.Topology()
    chain = topology.addChain()
    residue, positions = None, []
    for res, name, element, xyz in heavy_atoms():
        if residue is None or residue.name != res or name == "N":  # each residue starts at its N (ACE: CH3)
            residue = topology.addResidue(res, chain)
        topology.addAtom(name, app.Element.getBySymbol(element), residue)
        positions.append(mm.Vec3(*xyz))
    topology.createStandardBonds()
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    modeller = app.Modeller(topology, positions * unit.nanometer)
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    integrator = mm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 1 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    simulation = app.Simulation(modeller.topology, system, integrator, mm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    simulation.step(10_000)
    xyz = np.empty((frames, system.getNumParticles(), 3), dtype=np.float32)
    for i in range(frames):
        simulation.step(steps_per_frame)
        xyz[i] = simulation.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    md_topology = mdtraj.Topology.from_openmm(modeller.topology)
    trajectory = mdtraj.Trajectory(xyz, md_topology, time=np.arange(frames) * steps_per_frame / 1000.0)
    trajectory[0].save_pdb(str(out_dir / "tetrapeptide.pdb"))
    trajectory.save_dcd(str(out_dir / "tetrapeptide.dcd"))
    print(f"{frames} frames of {trajectory.n_atoms} atoms -> {out_dir}")


if __name__ == "__main__":
    main()
