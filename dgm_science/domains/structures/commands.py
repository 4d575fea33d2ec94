"""The structures domain's part of the ``dgm`` command: ``simulate`` (molecular dynamics of
alanine dipeptide with OpenMM) and ``mixing`` (the Markov-chain sampler diagnostics of an
energy-based model)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from dgm_science.commands import (add_device_arguments, add_seed_argument, command, confirm_size, output_argument,
                                  positive_float, positive_int)
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


MAX_CHAIN_STEPS = 1_000_000
"""``dgm mixing`` chain steps (sweeps) beyond this need ``--yes``."""
MAX_RECORDS = 10_000_000
"""Chain states ``dgm mixing`` keeps in memory (60 floats each: 2.4 GB)."""


def _mixing_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="an energy-based model (ala2-ebm) checkpoint")
    p.add_argument("--chains", type=positive_int, default=32, help="independent chains from noise")
    p.add_argument("--steps", type=positive_int, default=500, help="steps (the sampler's sweeps) per chain")
    p.add_argument("--every", type=positive_int, default=5, help="record the chains every this many steps")
    add_seed_argument(p, "seed of the chains' starts and noise")
    p.add_argument("--yes", action="store_true", help=f"run more than {MAX_CHAIN_STEPS:,} steps")
    output_argument(p, "--out", required=True, help="JSON: R-hat and effective sample size per statistic")
    add_device_arguments(p)


@command("mixing", "mixing diagnostics of an energy-based model's Markov-chain sampler: split R-hat and effective "
         "sample size of the energy and the backbone torsions over independent chains", _mixing_arguments,
         description="Runs --chains chains from the noise distribution for --steps steps (sweeps: the "
                     "sampler `dgm sample` uses) and, over the second half of each chain, computes ArviZ's rank-normalized "
                     "split R-hat and bulk ESS of the learned energy and of sin / cos of phi and psi. R-hat below "
                     "1.01 means the chains agree, i.e. the sampler has mixed; an energy-based model's samples are "
                     "only as good as that.")
def cmd_mixing(args: argparse.Namespace) -> None:
    import torch

    from dgm_science import api
    from dgm_science.commands import write_json
    from dgm_science.domains.structures.internal import TORSION_PHI, TORSION_PSI
    from dgm_science.domains.structures.metrics import backbone_torsions
    from dgm_science.domains.structures.models import internal_coordinates
    from dgm_science.families.energy_based import mixing_diagnostics

    confirm_size(args, "--steps", args.steps, limit=MAX_CHAIN_STEPS, what="each step is a gradient of the energy")
    if (args.steps // args.every) * args.chains > MAX_RECORDS:
        raise ValueError(f"--every {args.every}: {args.steps // args.every:,} records of {args.chains} chains held in "
                         f"memory; record less often (at most {MAX_RECORDS:,} chain states)")
    if args.every > args.steps // 2:
        raise ValueError(f"--every {args.every}: record at least twice in the second half of the {args.steps} steps")
    set_threads(args.threads)
    loaded = api.load(args.checkpoint, device=args.device)
    model = loaded.model
    if model.likelihood != "unnormalized" or not hasattr(model, "chains"):
        raise ValueError(f"{args.checkpoint}: a {loaded.name} model has no Markov-chain sampler; `dgm mixing` "
                         "diagnoses energy-based models")
    generator = torch.Generator(device=loaded.device).manual_seed(args.seed)
    started = time.perf_counter()
    trace = model.chains(args.chains, args.steps, every=args.every, generator=generator)  # (draws, chains, dim)
    seconds = time.perf_counter() - started
    trace = trace[trace.shape[0] // 2:]  # the second half: after warm-up
    with torch.no_grad():
        energy = -model.log_prob({model.key: trace.reshape(-1, trace.shape[-1])}).reshape(trace.shape[:2])
    z = internal_coordinates(loaded.state)
    torsions = trace[..., z.torsions]
    pairs = loaded.state.get("ramachandran")
    if pairs:  # a user trajectory with a backbone: its first residue's (phi, psi), from the Cartesian frames
        xyz = z.to_cartesian(trace.reshape(-1, trace.shape[-1]).double().cpu())[0].numpy()
        torsions = torch.from_numpy(backbone_torsions(xyz, pairs[0])).reshape(*trace.shape[:2], 2)
        named = (("phi", 0), ("psi", 1))
    elif pairs is None:  # alanine dipeptide: its Z-matrix's first two torsions are phi and psi
        named = (("phi", TORSION_PHI), ("psi", TORSION_PSI))
    else:  # no backbone: the first two Z-matrix torsions
        named = tuple((f"torsion{k + 1}", k) for k in range(min(2, torsions.shape[-1])))
    statistics = {"energy": energy}
    for name, k in named:
        statistics[f"sin_{name}"] = torch.sin(torsions[..., k])
        statistics[f"cos_{name}"] = torch.cos(torsions[..., k])
    diagnostics = {name: mixing_diagnostics(values.double().cpu().numpy()) for name, values in statistics.items()}
    out = {**diagnostics, "max_rhat": max(d["rhat"] for d in diagnostics.values()),
           "min_ess_bulk": min(d["ess_bulk"] for d in diagnostics.values()), "chains": args.chains,
           "steps": args.steps, "every": args.every, "seed": args.seed, **model.sampler_info(),
           "seconds_per_chain_step": seconds / (args.chains * args.steps)}
    write_json(args.out, out)
    log.info("%d chains x %d steps: max R-hat %.3f, min bulk ESS %.0f -> %s", args.chains, args.steps,
             out["max_rhat"], out["min_ess_bulk"], args.out)
