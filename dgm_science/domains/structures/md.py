"""Alanine dipeptide molecular dynamics: fetch (openmmtools' AMBER files), simulate (OpenMM,
resumable), prepare (contiguous time-block split) and the OpenMM potential energy u(x) = U(x)/kT.

The system is the one of the Boltzmann-generator papers (Noé et al. 2019; Köhler et al. 2021;
Midgley et al. 2023): ACE-ALA-NME with AMBER ff96 and the OBC GBSA implicit solvent, from the
``openmmtools`` wheel's ``openmmtools/data/alanine-dipeptide-gbsa/`` (never imported), simulated
without constraints so every bond length is a free coordinate.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgm_science import wheels
from dgm_science.errors import DataError
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

OPENMMTOOLS_VERSION = wheels.pinned("openmmtools").version
OPENMMTOOLS_SHA256 = wheels.pinned("openmmtools").sha256
WHEEL_DIR = "openmmtools/data/alanine-dipeptide-gbsa"
PRMTOP = "alanine-dipeptide.prmtop"
PDB = "alanine-dipeptide.pdb"
TRAJECTORY = "trajectory.dcd"
TOPOLOGY = "topology.pdb"
SPLITS = ("train", "valid", "test")
MOLAR_GAS_CONSTANT_KJ = 8.314462618e-3
"""R in kJ / (mol K): kT = R T per mole."""


def kt_kj_per_mol(temperature_kelvin: float) -> float:
    return MOLAR_GAS_CONSTANT_KJ * temperature_kelvin


def fetch_ala2(out_dir: Path, *, version: str = OPENMMTOOLS_VERSION,
               sha256: str = OPENMMTOOLS_SHA256) -> dict[str, Any]:
    """Download the ``openmmtools`` wheel (sha256-checked) and write ``alanine-dipeptide.prmtop``,
    ``alanine-dipeptide.pdb`` (OpenMM's PDBFile of the prmtop topology at the crd's coordinates)
    and SOURCE.json into ``out_dir``."""
    from openmm import app

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheels.download_wheel("openmmtools", version, sha256, Path(tmp))) as wheel:
            for name in (PRMTOP, "alanine-dipeptide.crd"):
                (Path(tmp) / name).write_bytes(wheel.read(f"{WHEEL_DIR}/{name}"))
        prmtop = app.AmberPrmtopFile(str(Path(tmp) / PRMTOP))
        coordinates = app.AmberInpcrdFile(str(Path(tmp) / "alanine-dipeptide.crd"))
        with atomic_path(out_dir / PRMTOP) as tmp_out:
            shutil.copyfile(Path(tmp) / PRMTOP, tmp_out)
        with atomic_path(out_dir / PDB) as tmp_out, open(tmp_out, "w") as fh:
            app.PDBFile.writeFile(prmtop.topology, coordinates.getPositions(), fh)
    return wheels.write_source(out_dir, "openmmtools", version, sha256, [PRMTOP, PDB])


def _system(prmtop_path: Path) -> tuple[Any, Any]:
    """(topology, System) of AMBER ff96 + OBC GBSA, no cutoff, no constraints."""
    from openmm import app

    try:
        prmtop = app.AmberPrmtopFile(str(prmtop_path))
    except Exception as err:  # OpenMM raises bare Exception/ValueError subclasses for bad files
        raise DataError(f"{prmtop_path}: not a readable AMBER prmtop ({err})") from None
    system = prmtop.createSystem(implicitSolvent=app.OBC2, nonbondedMethod=app.NoCutoff, constraints=None,
                                 rigidWater=False)
    return prmtop.topology, system


class PotentialEnergy:
    """Reduced potential energy u(x) = U(x) / kT of alanine dipeptide from the prmtop TEXT (so a
    checkpoint carrying the text is self-describing), or of any molecule from ``system_xml`` (an
    OpenMM System serialized by ``XmlSerializer``: a user dataset's force field), with one reused
    OpenMM Context.

    ``reduced(xyz: (B, 22, 3) nm) -> (B,)``; ``reduced_and_forces`` also gives -du/dx = F / kT
    (B, 22, 3) in 1/nm. Non-finite energies (clashing samples, NaN input) come back as +inf with
    zero force. ``platform``: "Reference" (fastest per call for 22 atoms: ~70 us) or "CPU".
    """

    def __init__(self, prmtop_text: str | None, temperature_kelvin: float = 300.0, platform: str = "Reference",
                 *, system_xml: str | None = None) -> None:
        import openmm as mm

        if system_xml is not None:  # a user dataset's force field: the OpenMM System prepare serialized
            system = mm.XmlSerializer.deserialize(system_xml)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / PRMTOP
                path.write_text(prmtop_text or "")
                _, system = _system(path)
        for i in reversed(range(system.getNumForces())):
            if isinstance(system.getForce(i), mm.CMMotionRemover):
                system.removeForce(i)
        self.n_atoms = system.getNumParticles()
        self.temperature_kelvin = float(temperature_kelvin)
        self.kt = kt_kj_per_mol(temperature_kelvin)
        self._integrator = mm.VerletIntegrator(0.001)
        self._context = mm.Context(system, self._integrator, mm.Platform.getPlatformByName(platform))

    def reduced_and_forces(self, xyz: np.ndarray, *, forces: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """xyz: (B, n_atoms, 3) nm -> (u (B,), F / kT (B, n_atoms, 3) 1/nm; zeros when not asked)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.ndim != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"positions of shape {xyz.shape}; expected (B, {self.n_atoms}, 3)")
        energies = np.full(len(xyz), np.inf)
        force = np.zeros_like(xyz)
        finite = np.isfinite(xyz).all(axis=(1, 2))
        for i in np.flatnonzero(finite):
            self._context.setPositions(xyz[i])
            state = self._context.getState(getEnergy=True, getForces=forces)
            energy = state.getPotentialEnergy()._value / self.kt  # kJ/mol
            if math.isfinite(energy):
                energies[i] = energy
                if forces:
                    f = state.getForces(asNumpy=True)._value / self.kt
                    if np.isfinite(f).all():
                        force[i] = f
        return energies, force

    def reduced(self, xyz: np.ndarray) -> np.ndarray:
        """u(x) = U(x) / kT: (B, n_atoms, 3) nm -> (B,), +inf where not finite."""
        return self.reduced_and_forces(xyz, forces=False)[0]


@functools.lru_cache(maxsize=4)
def potential_energy(prmtop_text: str, temperature_kelvin: float) -> PotentialEnergy:
    """A cached PotentialEnergy per (prmtop text, temperature): one OpenMM Context each."""
    return PotentialEnergy(prmtop_text, temperature_kelvin)


@functools.lru_cache(maxsize=4)
def system_energy(system_xml: str, temperature_kelvin: float) -> PotentialEnergy:
    """A cached PotentialEnergy per (serialized OpenMM System, temperature)."""
    return PotentialEnergy(None, temperature_kelvin, system_xml=system_xml)


def state_energy(state: dict[str, Any]) -> PotentialEnergy | None:
    """The potential energy a fitted peptide-md state names: alanine dipeptide's prmtop, a user dataset's
    serialized OpenMM System, or None (a user dataset given without a force field: no energies)."""
    temperature = float(state["temperature_kelvin"])
    if state.get("prmtop"):
        return potential_energy(state["prmtop"], temperature)
    if state.get("openmm_system"):
        return system_energy(state["openmm_system"], temperature)
    return None


class ReducedEnergy(torch.autograd.Function):
    """u(x) with OpenMM's forces as its gradient: ``ReducedEnergy.apply(xyz (B, 22, 3) nm, energy)
    -> (B,)``; backward du/dx = -F/kT. Runs on the CPU in float64 whatever xyz's device/dtype."""

    @staticmethod
    def forward(ctx: Any, xyz: torch.Tensor, energy: PotentialEnergy) -> torch.Tensor:
        u, force = energy.reduced_and_forces(xyz.detach().double().cpu().numpy())
        ctx.save_for_backward(torch.from_numpy(-force).to(xyz))
        return torch.from_numpy(u).to(xyz)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return grad_output[:, None, None] * gradient, None


def linlogcut(u: torch.Tensor, high: float = 1e3, maximum: float = 1e9) -> torch.Tensor:
    """Energy regularisation of Noé et al. (2019): linear below ``high``, logarithmic above, capped
    at ``maximum`` (and +inf -> ``maximum``), so clashing samples do not blow up the reverse KL."""
    u = torch.nan_to_num(u, nan=maximum, posinf=maximum).clamp(max=maximum)
    excess = (u - high).clamp(min=0.0)
    return torch.where(u > high, high + torch.log1p(excess), u)


# ----------------------------------------------------------------------------------- simulation

RUN_KEYS = ("temperature_kelvin", "timestep_fs", "friction_per_ps", "save_every_ps", "checkpoint_every_ps",
            "seed", "equilibration_ps")


def _atomic_checkpoint(simulation: Any, path: Path) -> None:
    """A resume checkpoint: kept even when the command fails later (the progress a rerun continues)."""
    with atomic_path(path, durable=True) as tmp:
        simulation.saveCheckpoint(str(tmp))


def _save_frames(path: Path, xyz: np.ndarray, topology: Any, *, durable: bool = False) -> None:
    import mdtraj

    with atomic_path(path, durable=durable) as tmp:
        mdtraj.Trajectory(xyz.astype(np.float32), topology).save_dcd(str(tmp), force_overwrite=True)


def simulate(
    raw_dir: Path,
    out_dir: Path,
    *,
    nanoseconds: float,
    temperature_kelvin: float = 300.0,
    timestep_fs: float = 1.0,
    friction_per_ps: float = 1.0,
    save_every_ps: float = 1.0,
    seed: int = 0,
    threads: int | None = None,
    checkpoint_every_ps: float = 100.0,
    equilibration_ps: float = 20.0,
    platform: str = "Reference",
) -> dict[str, Any]:
    """Langevin MD of alanine dipeptide (OpenMM LangevinMiddleIntegrator, OBC2 implicit solvent, no
    cutoff, no constraints); writes ``out_dir/{trajectory.dcd, topology.pdb, alanine-dipeptide.prmtop,
    simulate.json}``.

    Energy minimisation and ``equilibration_ps`` of unsaved dynamics precede production. Frames
    every ``save_every_ps`` go to numbered chunk DCDs in ``out_dir/work``, one per
    ``checkpoint_every_ps``; after each chunk an OpenMM checkpoint named by the chunk number is
    written atomically, so a killed run resumes after the last complete chunk, neither losing nor
    duplicating frames; a longer ``nanoseconds`` extends a finished run. The chunks are joined
    into ``trajectory.dcd`` atomically at the end. OpenMM seeds are ``seed + 1`` (0 means "random"
    to OpenMM). A NaN energy or position raises DataError naming the prmtop and the step.
    """
    import mdtraj
    import openmm as mm
    from openmm import app, unit

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    prmtop_path, pdb_path = raw_dir / PRMTOP, raw_dir / PDB
    for path in (prmtop_path, pdb_path):
        if not path.is_file():
            raise DataError(f"{path}: missing; run `dgm fetch ala2 --out {raw_dir}` first")
    run = {"temperature_kelvin": temperature_kelvin, "timestep_fs": timestep_fs, "friction_per_ps": friction_per_ps,
           "save_every_ps": save_every_ps, "checkpoint_every_ps": checkpoint_every_ps, "seed": seed,
           "equilibration_ps": equilibration_ps}
    run_path = work / "run.json"
    if run_path.is_file():
        previous = json.loads(run_path.read_text())
        changed = [k for k in RUN_KEYS if previous.get(k) != run[k]]
        if changed:
            raise DataError(f"{run_path}: the partial run in {work} used other settings ({', '.join(changed)}); "
                            "delete the folder to start over")
    else:
        with atomic_path(run_path, durable=True) as tmp:
            tmp.write_text(json.dumps(run, indent=2))

    steps_per_frame = max(1, round(save_every_ps * 1000.0 / timestep_fs))
    frames_per_chunk = max(1, round(checkpoint_every_ps / save_every_ps))
    n_frames = max(1, round(nanoseconds * 1000.0 / save_every_ps))
    n_chunks = math.ceil(n_frames / frames_per_chunk)

    topology, system = _system(prmtop_path)
    try:
        pdb = app.PDBFile(str(pdb_path))
        md_topology = mdtraj.load_topology(str(pdb_path))
    except Exception as err:  # OpenMM/mdtraj raise assorted exceptions for bad PDB files
        raise DataError(f"{pdb_path}: not a readable PDB ({err})") from None
    if md_topology.n_atoms != system.getNumParticles():
        raise DataError(f"{pdb_path} has {md_topology.n_atoms} atoms but {prmtop_path} {system.getNumParticles()}")
    kelvin = temperature_kelvin * unit.kelvin
    integrator = mm.LangevinMiddleIntegrator(kelvin, friction_per_ps / unit.picosecond,
                                             timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(seed + 1)
    properties = {"Threads": str(threads)} if threads and platform == "CPU" else {}
    simulation = app.Simulation(topology, system, integrator, mm.Platform.getPlatformByName(platform), properties)

    done = sorted(int(p.stem.split("_")[1]) for p in work.glob("chunk_*.chk"))
    if done:
        start_chunk = done[-1] + 1
        simulation.loadCheckpoint(str(work / f"chunk_{done[-1]:06d}.chk"))
        log.info("resuming after chunk %d of %d (%.3f ns saved)", done[-1] + 1, n_chunks,
                 min(start_chunk * frames_per_chunk, n_frames) * save_every_ps / 1000)
    elif (work / "equilibrated.chk").is_file():
        start_chunk = 0
        simulation.loadCheckpoint(str(work / "equilibrated.chk"))
    else:
        start_chunk = 0
        simulation.context.setPositions(pdb.getPositions())
        simulation.minimizeEnergy()
        simulation.context.setVelocitiesToTemperature(kelvin, seed + 1)
        simulation.step(round(equilibration_ps * 1000.0 / timestep_fs))
        _check_finite(simulation, prmtop_path)
        _atomic_checkpoint(simulation, work / "equilibrated.chk")
        log.info("minimised and equilibrated for %.1f ps", equilibration_ps)

    start = time.perf_counter()
    simulated_ps = 0.0
    for chunk in range(start_chunk, n_chunks):
        size = min(frames_per_chunk, n_frames - chunk * frames_per_chunk)
        xyz = np.empty((size, system.getNumParticles(), 3), dtype=np.float32)
        for i in range(size):
            simulation.step(steps_per_frame)
            xyz[i] = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value
        if not np.isfinite(xyz).all():
            raise DataError(f"{prmtop_path}: NaN positions in MD chunk {chunk} (step {simulation.currentStep})")
        _check_finite(simulation, prmtop_path)
        _save_frames(work / f"chunk_{chunk:06d}.dcd", xyz, md_topology, durable=True)
        _atomic_checkpoint(simulation, work / f"chunk_{chunk:06d}.chk")
        for old in work.glob("chunk_*.chk"):
            if old.stem != f"chunk_{chunk:06d}":
                old.unlink()
        simulated_ps += size * save_every_ps
        elapsed = time.perf_counter() - start
        done_ns = min((chunk + 1) * frames_per_chunk, n_frames) * save_every_ps / 1000
        log.info("MD %.3f / %.3f ns, %.0f ns/day", done_ns, n_frames * save_every_ps / 1000,
                 simulated_ps / 1000 / elapsed * 86400 if elapsed > 0 else 0.0)
    wall = time.perf_counter() - start

    chunks = [work / f"chunk_{chunk:06d}.dcd" for chunk in range(n_chunks)]
    trajectory = mdtraj.load(list(map(str, chunks)), top=md_topology)
    if trajectory.n_frames != n_frames:
        raise DataError(f"{work}: the chunks hold {trajectory.n_frames} frames, expected {n_frames}")
    with atomic_path(out_dir / TRAJECTORY) as tmp:
        trajectory.save_dcd(str(tmp), force_overwrite=True)
    for src, name in ((pdb_path, TOPOLOGY), (prmtop_path, PRMTOP)):
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(src, tmp)
    stats = {**run, "nanoseconds": n_frames * save_every_ps / 1000, "frames": n_frames,
             "steps_per_frame": steps_per_frame, "platform": platform, "threads": threads,
             "production_seconds_this_run": wall,
             "ns_per_day_this_run": simulated_ps / 1000 / wall * 86400 if wall > 0 and simulated_ps else None}
    with atomic_path(out_dir / "simulate.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats


def _check_finite(simulation: Any, prmtop_path: Path) -> None:
    energy = simulation.context.getState(getEnergy=True).getPotentialEnergy()._value
    if not math.isfinite(energy):
        raise DataError(f"{prmtop_path}: potential energy {energy} at MD step {simulation.currentStep}; "
                        "try a smaller --timestep-fs")


# -------------------------------------------------------------------------------------- prepare


def load_frames(trajectory_path: Path, topology_path: Path, *, allow_nonfinite: bool = False) -> np.ndarray:
    """Frames of a DCD with its PDB topology: (T, n_atoms, 3) float32 nm; DataError naming the file
    when unreadable, when the atom counts differ or (unless ``allow_nonfinite``, for generated
    samples) when a coordinate is not finite."""
    import mdtraj

    # the PDB and DCD readers by name, not mdtraj's by-extension dispatch (its HDF5 formats
    # go through PyTables, which unpickles attributes)
    if Path(topology_path).suffix.lower() != ".pdb":
        raise DataError(f"{topology_path}: the topology must be a .pdb file")
    try:
        topology = mdtraj.load_topology(str(topology_path))
    except Exception as err:  # mdtraj raises assorted exceptions for malformed files
        raise DataError(f"{topology_path}: not a readable PDB topology ({err})") from None
    try:
        with mdtraj.formats.DCDTrajectoryFile(str(trajectory_path)) as fh:
            xyz = fh.read()[0] / 10.0  # DCD stores Angstrom
    except Exception as err:  # mdtraj raises IOError/ValueError/RuntimeError for bad DCDs
        raise DataError(f"{trajectory_path}: not a readable DCD trajectory ({err})") from None
    if xyz.ndim != 3 or xyz.shape[1] != topology.n_atoms:
        raise DataError(f"{trajectory_path} has {xyz.shape[1] if xyz.ndim == 3 else '?'} atoms per frame but "
                        f"{topology_path} has {topology.n_atoms}")
    bad = np.flatnonzero(~np.isfinite(xyz).all(axis=(1, 2)))
    if len(bad) and not allow_nonfinite:
        raise DataError(f"{trajectory_path}: frame {bad[0]} has non-finite coordinates")
    return xyz.astype(np.float32)


def prepare_ala2(
    raw_dir: Path, out_dir: Path, *, train_size: int | None = None, val_size: int | None = None,
    test_size: int | None = None,
) -> dict[str, Any]:
    """Split ``raw_dir/trajectory.dcd`` (``dgm simulate``'s folder) into CONTIGUOUS time blocks —
    train, then valid, then test (the last ``test_size`` frames, default 20 %; valid the
    ``val_size`` before them, default 10 %), since correlated MD frames would leak across a random
    split — written as ``{train,valid,test}.dcd`` with ``topology.pdb``, the prmtop and
    prepare.json in ``out_dir``. ``train_size`` keeps only the first frames of the train block.
    Every frame's OpenMM energy is checked: a NaN raises DataError naming the trajectory."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    trajectory_path, topology_path, prmtop_path = raw_dir / TRAJECTORY, raw_dir / TOPOLOGY, raw_dir / PRMTOP
    for path in (trajectory_path, topology_path, prmtop_path):
        if not path.is_file():
            raise DataError(f"{path}: missing; run `dgm simulate --out {raw_dir}` first")
    xyz = load_frames(trajectory_path, topology_path)
    simulation_path = raw_dir / "simulate.json"
    simulation = json.loads(simulation_path.read_text()) if simulation_path.is_file() else {}
    temperature = float(simulation.get("temperature_kelvin", 300.0))
    n = len(xyz)
    test_size = test_size if test_size is not None else max(1, round(0.2 * n))
    val_size = val_size if val_size is not None else max(1, round(0.1 * n))
    n_train = n - val_size - test_size
    if n_train < 2:
        raise DataError(f"{trajectory_path}: {n} frames cannot hold {val_size} validation and {test_size} test "
                        "frames and a training block")
    bounds = {"train": (0, n_train if train_size is None else min(train_size, n_train)),
              "valid": (n_train, n_train + val_size), "test": (n_train + val_size, n)}
    energy = PotentialEnergy(prmtop_path.read_text(), temperature)
    energies = energy.reduced(xyz)
    if not np.isfinite(energies).all():
        bad = int(np.flatnonzero(~np.isfinite(energies))[0])
        raise DataError(f"{trajectory_path}: frame {bad} has a non-finite OpenMM energy")
    import mdtraj

    md_topology = mdtraj.load_topology(str(topology_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, (lo, hi) in bounds.items():
        _save_frames(out_dir / f"{split}.dcd", xyz[lo:hi], md_topology)
    for src, name in ((topology_path, TOPOLOGY), (prmtop_path, PRMTOP)):
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(src, tmp)
    save_every_ps = float(simulation.get("save_every_ps", 1.0))
    stats = {
        "frames": {split: hi - lo for split, (lo, hi) in bounds.items()},
        "time_ps": {split: [lo * save_every_ps, hi * save_every_ps] for split, (lo, hi) in bounds.items()},
        "temperature_kelvin": temperature, "save_every_ps": save_every_ps,
        "reduced_energy_mean": {split: float(energies[lo:hi].mean()) for split, (lo, hi) in bounds.items()},
        "trajectory_sha256": hashlib.sha256(trajectory_path.read_bytes()).hexdigest(),
    }
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats

