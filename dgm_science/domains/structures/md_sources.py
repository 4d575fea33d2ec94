"""A user's molecular-dynamics trajectory as a ``peptide-md`` dataset (file kind ``trajectory``).

Any trajectory mdtraj reads (DCD, XTC, TRR, AMBER NetCDF / mdcrd, multi-model PDB, GRO, ...), one
file or several read in order, with its topology (PDB, AMBER prmtop / parm7, CHARMM PSF, GRO,
MOL2). ``prepare`` keeps the atoms of ``selection`` (default: everything but water), every
``stride``-th frame after the first ``skip``, and splits the frames into CONTIGUOUS time blocks -
train, then validation, then test (the last frames) - since correlated MD frames would leak across
a random split. It writes what ``dgm prepare ala2`` writes (``{train,valid,test}.dcd``,
``topology.pdb``, ``prepare.json``) plus ``molecule.json``: the Z-matrix built from the topology's
bonds (``internal.build_z_matrix``), the backbone (phi, psi) torsion pairs mdtraj finds, the atom
names, the temperature and, where a force field is given (``force_field``: OpenMM XML files, or
``prmtop``), the OpenMM System of the selected atoms serialized as XML (energies u = U/kT in the
metrics; without one they are skipped). The peptide-md models and metrics then run unchanged.

HDF5 trajectories (.h5 / .lh5) are refused: mdtraj reads them through PyTables, which unpickles
attributes (no file read from disk may execute code); convert them with ``mdconvert``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dgm_science.config import bounded
from dgm_science.domains.structures import md
from dgm_science.domains.structures.internal import InternalCoordinates, build_z_matrix
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.sources import Source, SourceOptions, split_sizes, write_stats
from dgm_science.utils import all_or_nothing, atomic_path

log = logging.getLogger(__name__)

MOLECULE = "molecule.json"
"""What a user trajectory's prepare writes beside the frames: Z-matrix, backbone torsions, atom names,
temperature and the serialized OpenMM System (or null)."""

TRAJECTORY_SUFFIXES = (".dcd", ".xtc", ".trr", ".nc", ".ncdf", ".netcdf", ".mdcrd", ".crd", ".trj", ".binpos",
                       ".pdb", ".pdb.gz", ".gro", ".xyz", ".lammpstrj", ".arc")
TOPOLOGY_SUFFIXES = (".pdb", ".pdb.gz", ".prmtop", ".parm7", ".prm7", ".psf", ".gro", ".mol2")
UNSAFE_SUFFIXES = (".h5", ".lh5", ".hdf5")
MIN_ATOMS = 4
"""Internal coordinates of fewer atoms have no torsion."""


@dataclass(frozen=True)
class TrajectoryOptions(SourceOptions):
    """Frames of an MD trajectory (one file or several, read in order) and its topology."""

    split: str = "time"
    """time: contiguous blocks in time order - train, then validation, then test (the last frames)"""
    valid: float = bounded(0.1, exclusive_minimum=0.0)
    """validation block: a fraction (< 1) of the frames, or a count (>= 1)"""
    test: float = bounded(0.2, exclusive_minimum=0.0)
    """test block (the last frames): a fraction (< 1) of the frames, or a count (>= 1)"""
    topology: str | None = None
    """the topology (.pdb, .prmtop / .parm7, .psf, .gro, .mol2); may be left out when path is a .pdb / .gro"""
    selection: str = "not water"
    """mdtraj atom selection of the modelled molecule, e.g. "protein", "not water and not resname NA CL",
    "resid 0 to 3"; it must be one bonded molecule"""
    stride: int = bounded(1, minimum=1)
    """keep every stride-th frame"""
    skip: int = bounded(0, minimum=0)
    """drop this many frames at the start (equilibration), before the stride"""
    force_field: list[str] = field(default_factory=list)
    """OpenMM force-field XML files for the energies u = U/kT (e.g. [amber14-all.xml, implicit/obc2.xml]);
    with neither force_field nor prmtop the energy metrics are skipped"""
    prmtop: str | None = None
    """instead of force_field: an AMBER prmtop / parm7 of exactly the selected atoms"""
    implicit_solvent: str | None = None
    """with prmtop: OpenMM's implicit solvent model (OBC1, OBC2, GBn, GBn2, HCT); null: vacuum"""
    system: str | None = None
    """instead of force_field / prmtop: an OpenMM System of exactly the selected atoms, serialized as XML
    (``XmlSerializer.serialize(system)``)"""
    temperature_kelvin: float = bounded(300.0, exclusive_minimum=0.0)
    """the simulation's temperature (kT of the reduced energies)"""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".pdb.gz" if name.endswith(".pdb.gz") else path.suffix.lower()


def _check_suffix(path: Path, allowed: tuple[str, ...], what: str, option: str) -> None:
    suffix = _suffix(path)
    if suffix in UNSAFE_SUFFIXES:
        raise DataError(f"{path}: HDF5 {what} files are not read (mdtraj reads them through PyTables, which unpickles "
                        "attributes); convert it with `mdconvert -o out.dcd` (source." f"{option})")
    if suffix not in allowed:
        raise DataError(f"{path}: unknown {what} format {suffix or '(no suffix)'!r}; one of {', '.join(allowed)} "
                        f"(source.{option})")


def read_topology(path: Path) -> Any:
    """The mdtraj Topology of a topology file; DataError naming the file when unreadable."""
    import mdtraj

    _check_suffix(path, TOPOLOGY_SUFFIXES, "topology", "topology")
    try:
        topology = mdtraj.load_topology(str(path))
    except Exception as err:  # mdtraj raises assorted exceptions for malformed files
        raise DataError(f"{path}: not a readable {_suffix(path)} topology ({type(err).__name__}: {err})") from None
    if topology.n_atoms == 0:
        raise DataError(f"{path}: the topology has no atoms")
    return topology


def _atoms_per_frame(path: Path) -> int | None:
    """Atoms per frame a trajectory file holds (its header / first frame), None if it cannot tell."""
    import mdtraj

    try:
        with mdtraj.open(str(path)) as fh:
            out = fh.read(n_frames=1)
        xyz = out[0] if isinstance(out, tuple) else getattr(out, "xyz", out)
        return int(np.shape(xyz)[1])
    except Exception:  # noqa: BLE001  (only a hint for the error message)
        return None


def read_frames(path: Path, topology: Any, topology_path: Path) -> np.ndarray:
    """Frames (T, n_atoms, 3) float32 nm of one trajectory file; DataError when unreadable or when its
    atom count differs from the topology's."""
    import mdtraj

    _check_suffix(path, TRAJECTORY_SUFFIXES, "trajectory", "path")
    try:
        trajectory = mdtraj.load(str(path), top=topology)
    except Exception as err:  # mdtraj raises IOError / ValueError / RuntimeError / struct.error ...
        n_file = _atoms_per_frame(path)
        if n_file is not None and n_file != topology.n_atoms:
            raise DataError(f"{path} has {n_file} atoms per frame but the topology {topology_path} has "
                            f"{topology.n_atoms}: they are not the same system") from None
        raise DataError(f"{path}: not a readable {_suffix(path)} trajectory ({type(err).__name__}: "
                        f"{str(err)[:200]})") from None
    if trajectory.n_atoms != topology.n_atoms:
        raise DataError(f"{path} has {trajectory.n_atoms} atoms per frame but the topology {topology_path} has "
                        f"{topology.n_atoms}: they are not the same system")
    xyz = trajectory.xyz
    bad = np.flatnonzero(~np.isfinite(xyz).all(axis=(1, 2)))
    if len(bad):
        raise DataError(f"{path}: frame {bad[0]} has non-finite coordinates")
    return xyz.astype(np.float32)


def select_atoms(topology: Any, selection: str, where: Path) -> np.ndarray:
    """Atom indices of an mdtraj selection; DataError when it does not parse or matches nothing."""
    try:
        atoms = topology.select(selection)
    except Exception as err:  # mdtraj's selection parser raises ValueError / KeyError / TypeError
        raise DataError(f"source.selection {selection!r}: not an mdtraj selection ({type(err).__name__}: "
                        f"{err})") from None
    if len(atoms) == 0:
        names = sorted({r.name for r in topology.residues})
        raise DataError(f"{where}: the selection {selection!r} matches no atom (the topology has {topology.n_atoms} "
                        f"atoms in residues {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}; "
                        "set source.selection)")
    return atoms


def backbone_pairs(topology: Any) -> list[list[list[int]]]:
    """(phi, psi) atom quartets per residue that has both (mdtraj's definitions), in chain order."""
    import mdtraj

    frame = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), dtype=np.float32), topology)
    phi, _ = mdtraj.compute_phi(frame)
    psi, _ = mdtraj.compute_psi(frame)
    by_residue = {tuple(int(i) for i in q[0:3]): q for q in psi}  # psi: N(i), CA(i), C(i), N(i+1)
    pairs = []
    for q in phi:  # phi: C(i-1), N(i), CA(i), C(i)
        match = by_residue.get(tuple(int(i) for i in q[1:4]))
        if match is not None:
            pairs.append([[int(i) for i in q], [int(i) for i in match]])
    return pairs


def openmm_system(options: TrajectoryOptions, topology: Any, n_atoms: int) -> str | None:
    """The serialized OpenMM System of the selected atoms (no cutoff, no constraints) from ``force_field``
    or ``prmtop``, or the user's own ``system`` XML; None when none is given."""
    import openmm as mm
    from openmm import app

    given = [name for name in ("force_field", "prmtop", "system") if getattr(options, name)]
    if len(given) > 1:
        raise DataError(f"source: give one of force_field, prmtop and system, not {' and '.join(given)}")
    if options.system:
        try:
            system = mm.XmlSerializer.deserialize(Path(options.system).read_text(encoding="utf-8"))
        except Exception as err:  # OpenMM raises bare Exception for malformed XML
            raise DataError(f"{options.system}: not an OpenMM System XML ({type(err).__name__}: "
                            f"{str(err)[:200]})") from None
        if not isinstance(system, mm.System):
            raise DataError(f"{options.system}: serializes a {type(system).__name__}, not an OpenMM System")
        if system.getNumParticles() != n_atoms:
            raise DataError(f"{options.system} has {system.getNumParticles()} particles but the selection "
                            f"{options.selection!r} {n_atoms} atoms")
    elif options.prmtop:
        solvent = options.implicit_solvent
        models = {"OBC1": app.OBC1, "OBC2": app.OBC2, "GBn": app.GBn, "GBn2": app.GBn2, "HCT": app.HCT}
        if solvent is not None and solvent not in models:
            raise DataError(f"source.implicit_solvent {solvent!r}: one of {', '.join(models)} or null")
        try:
            prmtop = app.AmberPrmtopFile(options.prmtop)
            system = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
                                         implicitSolvent=models.get(solvent) if solvent else None)
        except Exception as err:  # OpenMM raises bare Exception / ValueError for bad files
            raise DataError(f"{options.prmtop}: not a readable AMBER prmtop ({type(err).__name__}: {err})") from None
        if system.getNumParticles() != n_atoms:
            raise DataError(f"{options.prmtop} has {system.getNumParticles()} atoms but the selection "
                            f"{options.selection!r} {n_atoms}: give a prmtop of the selected atoms (strip the solvent "
                            "with cpptraj / parmed) or force_field")
    elif options.force_field:
        if options.implicit_solvent:
            raise DataError("source.implicit_solvent goes with prmtop; with force_field add the implicit-solvent "
                            "XML (e.g. implicit/obc2.xml)")
        try:
            forcefield = app.ForceField(*options.force_field)
        except Exception as err:  # OpenMM raises ValueError / OSError for unknown files
            raise DataError(f"source.force_field {options.force_field}: not OpenMM force-field files "
                            f"({type(err).__name__}: {err})") from None
        try:
            system = forcefield.createSystem(topology.to_openmm(), nonbondedMethod=app.NoCutoff, constraints=None,
                                             rigidWater=False)
        except Exception as err:  # "No template found for residue ..." and the like
            raise DataError(f"source.force_field {options.force_field} cannot parametrise the selected atoms "
                            f"({type(err).__name__}: {str(err)[:300]})") from None
    else:
        return None
    return mm.XmlSerializer.serialize(system)


def atom_labels(topology: Any) -> list[str]:
    """``RES<number>:ATOM`` per atom."""
    return [f"{a.residue.name}{a.residue.resSeq}:{a.name}" for a in topology.atoms]


def prepare_trajectory(options: TrajectoryOptions, out_dir: Path) -> dict[str, Any]:
    """Read, select, stride and split the frames; write the prepared folder (module docstring)."""
    import mdtraj

    paths = options.paths
    if options.topology is None:
        if _suffix(paths[0]) not in (".pdb", ".pdb.gz", ".gro"):
            raise DataError(f"{paths[0]}: a {_suffix(paths[0])} trajectory needs source.topology (a .pdb, .prmtop, "
                            ".psf, .gro or .mol2 of the same atoms)")
        topology_path = paths[0]
    else:
        topology_path = Path(options.topology)
        if not topology_path.exists():
            raise DataError(f"{topology_path}: file not found (source.topology)")
    topology = read_topology(topology_path)
    blocks, read = [], 0
    for path in paths:
        frames = read_frames(path, topology, topology_path)
        read += len(frames)
        blocks.append(frames)
    xyz = np.concatenate(blocks)
    where = ", ".join(map(str, paths))
    if len(xyz) == 0:
        raise DataError(f"{where}: no frames")
    atoms = select_atoms(topology, options.selection, topology_path)
    xyz = xyz[options.skip::options.stride][:, atoms]
    sub = topology.subset(atoms)
    if sub.n_atoms < MIN_ATOMS:
        raise DataError(f"{topology_path}: the selection {options.selection!r} holds {sub.n_atoms} atoms; internal "
                        f"coordinates need a molecule of at least {MIN_ATOMS}")
    n = len(xyz)
    counted = where if (options.skip, options.stride) == (0, 1) else \
        f"{where} (skip {options.skip}, stride {options.stride})"
    n_train, n_valid, n_test = split_sizes(n, options.valid, options.test, counted, "frames")
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}
    pairs = backbone_pairs(sub)
    bonds = [(b[0].index, b[1].index) for b in sub.bonds]
    heavy = [a.element is None or a.element.symbol != "H" for a in sub.atoms]
    roots = None
    if pairs:  # a peptide: the canonical frame of the first residue with phi and psi (CA, N, C), as ala2's
        phi = pairs[0][0]
        roots = (phi[2], phi[1], phi[3])
    if not bonds:
        raise DataError(f"{topology_path}: the topology has no bonds between the selected atoms; give one with bonds "
                        "(a .prmtop, .psf, or a .pdb with CONECT records)")
    try:
        z_matrix, roots = build_z_matrix(sub.n_atoms, bonds, heavy, roots)
    except ValueError as err:
        raise DataError(f"{topology_path}: selection {options.selection!r}: {err}; set source.selection to one "
                        "molecule (e.g. \"protein\" or \"not water and not resname NA CL\")") from None
    z = InternalCoordinates(z_matrix, roots)
    import torch

    internal = z.to_internal(torch.from_numpy(xyz[:1]).double())
    if not torch.isfinite(internal).all():
        raise DataError(f"{where}: the first frame's internal coordinates are not finite (overlapping or collinear "
                        "bonded atoms)")
    system_xml = openmm_system(options, sub, sub.n_atoms)
    energies = None
    if system_xml is not None:
        energy = md.PotentialEnergy(None, options.temperature_kelvin, system_xml=system_xml)
        energies = energy.reduced(xyz)
        if not np.isfinite(energies).all():
            bad = int(np.flatnonzero(~np.isfinite(energies))[0])
            raise DataError(f"{where}: frame {bad} (after skip and stride) has a non-finite OpenMM energy with the "
                            "given force field")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    molecule = {"atom_names": atom_labels(sub), "z_matrix": [list(r) for r in z_matrix], "roots": list(roots),
                "ramachandran": pairs, "temperature_kelvin": options.temperature_kelvin,
                "force_field": list(options.force_field) or [f for f in (options.prmtop, options.system) if f],
                "openmm_system": system_xml}
    with all_or_nothing():
        for split, (lo, hi) in bounds.items():
            md._save_frames(out_dir / f"{split}.dcd", xyz[lo:hi], sub)
        with atomic_path(out_dir / md.TOPOLOGY) as tmp:
            mdtraj.Trajectory(xyz[:1], sub).save_pdb(str(tmp), force_overwrite=True)
        with atomic_path(out_dir / MOLECULE) as tmp:
            tmp.write_text(json.dumps(molecule))
        stats = {
            "source": [str(p) for p in paths], "kind": options.kind, "topology": str(topology_path),
            "read": read, "skip": options.skip, "stride": options.stride, "selection": options.selection,
            "atoms": int(sub.n_atoms), "atoms_in_file": int(topology.n_atoms), "residues": int(sub.n_residues),
            "internal_coordinates": z.n_internal, "backbone_pairs": len(pairs),
            "split": options.split, "frames": {s: hi - lo for s, (lo, hi) in bounds.items()},
            "frame_range": {s: [options.skip + lo * options.stride, options.skip + (hi - 1) * options.stride]
                            for s, (lo, hi) in bounds.items()},
            "temperature_kelvin": options.temperature_kelvin, "energies": system_xml is not None,
            "reduced_energy_mean": None if energies is None else
            {s: float(energies[lo:hi].mean()) for s, (lo, hi) in bounds.items()},
            **{s: hi - lo for s, (lo, hi) in bounds.items()},
        }
        write_stats(out_dir, stats)
    log.info("prepared %s: %d atoms (%d internal coordinates, %d backbone (phi, psi) pairs), frames train %d / "
             "valid %d / test %d, energies %s", where, sub.n_atoms, z.n_internal, len(pairs), n_train, n_valid,
             n_test, "from the force field" if system_xml else "skipped (no force field)")
    return stats


@register("source", "trajectory")
class TrajectoryFile(Source):
    """An MD trajectory mdtraj reads (dcd, xtc, trr, nc, mdcrd, multi-model pdb, gro, ...) with its topology,
    split into contiguous time blocks; energies where a force field is given."""

    domain = "peptide-md"
    Options = TrajectoryOptions
    file_fields = ("path", "topology", "prmtop", "system")
    split_methods = ("time",)

    @classmethod
    def prepare(cls, options: TrajectoryOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        return prepare_trajectory(options, out_dir)


def read_molecule(data_dir: Path) -> dict[str, Any] | None:
    """``molecule.json`` of a prepared user trajectory; None for alanine dipeptide's folder."""
    path = Path(data_dir) / MOLECULE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not readable JSON ({err}); rerun dgm prepare --source") from None


