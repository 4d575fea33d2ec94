"""The structures domain's part of the ``dgm`` command: ``simulate`` (molecular dynamics of
alanine dipeptide with OpenMM)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dgm_science.commands import add_seed_argument, command, confirm_size, output_argument, positive_float, positive_int
from dgm_science.utils import set_threads

log = logging.getLogger("dgm")


MAX_NANOSECONDS = 10_000
"""``dgm simulate`` beyond this (20x the paper config; days of CPU time) needs ``--yes``."""
MAX_FRAMES = 100_000_000
"""Frames joined into one trajectory in memory at the end (26 GB for the 22 atoms): refused beyond."""


def _simulate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", type=Path, required=True, help="folder written by `dgm fetch ala2` (prmtop + PDB)")
    output_argument(p, "--out", kind="folder", required=True,
                    help="folder for trajectory.dcd, topology.pdb, checkpoints")
    p.add_argument("--nanoseconds", type=positive_float, required=True, help="length of the production run")
    p.add_argument("--temperature", type=positive_float, default=300.0, help="kelvin")
    p.add_argument("--timestep-fs", type=positive_float, default=1.0, help="integration step (no constraints)")
    p.add_argument("--friction", type=positive_float, default=1.0, help="Langevin friction, 1/ps")
    p.add_argument("--save-every-ps", type=positive_float, default=1.0, help="frame interval")
    p.add_argument("--checkpoint-every-ps", type=positive_float, default=100.0, help="resume-checkpoint interval")
    add_seed_argument(p, "seed of velocities and the Langevin noise")
    p.add_argument("--yes", action="store_true", help=f"simulate more than {MAX_NANOSECONDS:,} ns")
    p.add_argument("--platform", default="Reference", choices=["Reference", "CPU", "CUDA", "OpenCL"],
                   help="OpenMM platform (Reference is the fastest for 22 atoms on a CPU)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (CPU platform) and torch threads")


@command("simulate", "molecular dynamics of alanine dipeptide with OpenMM (Langevin, implicit solvent); resumes "
                     "from its last checkpoint in --out if killed", _simulate_arguments)
def cmd_simulate(args: argparse.Namespace) -> None:
    from dgm_science.domains.structures.md import simulate

    confirm_size(args, "--nanoseconds", args.nanoseconds, limit=MAX_NANOSECONDS,
                 what="OpenMM runs alanine dipeptide at about 3,000 ns per day on a CPU core")
    confirm_size(args, "--nanoseconds / --save-every-ps (frames)", args.nanoseconds * 1000 / args.save_every_ps,
                 limit=MAX_FRAMES, cannot=MAX_FRAMES, what="the frames are joined into one trajectory in memory")
    set_threads(args.threads)
    stats = simulate(args.raw, args.out, nanoseconds=args.nanoseconds, temperature_kelvin=args.temperature,
                     timestep_fs=args.timestep_fs, friction_per_ps=args.friction, save_every_ps=args.save_every_ps,
                     checkpoint_every_ps=args.checkpoint_every_ps, seed=args.seed, threads=args.threads,
                     platform=args.platform)
    log.info("simulated -> %s: %s", args.out, json.dumps(stats))
