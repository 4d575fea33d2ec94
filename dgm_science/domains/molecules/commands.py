"""The molecules domain's part of the ``dgm`` command: ``featurize`` and ``dense``, and the candidate
search ``dgm sample`` runs for molecule models (filters, sorting, SDF and image output). The
applications' commands (``optimize``, ``decorate``, ``predict``, ``evaluate-predictor``) are in their
packages, ``dgm_science/applications/<app>/commands.py``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from dgm_science.base import Samples
from dgm_science.commands import command, output_argument, positive_int
from dgm_science.domains.molecules import candidates

log = logging.getLogger("dgm")


def _featurize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smiles", type=Path, required=True, help="one SMILES per line")
    output_argument(p, "--out", required=True,
                    help="output .npz (uncompressed; graph arrays with per-molecule offsets, no pickle)")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="featurize only the first N molecules (graph models then train on those)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")


@command("featurize", "RDKit molecular graphs (PyG) for a SMILES file, in chunks over --jobs processes, stored as "
                      "arrays that training memory-maps", _featurize_arguments)
def cmd_featurize(args: argparse.Namespace) -> None:
    from dgm_science.domains.molecules.data import featurize_file

    n = featurize_file(args.smiles, args.out, args.jobs, max_molecules=args.max_molecules)
    log.info("featurized %d molecules into %s", n, args.out)


def _dense_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="folder with train.smi and valid.smi")
    output_argument(p, "--out", required=True,
                    help="output .npz (uncompressed, uint8 arrays; memory-mapped by training)")
    p.add_argument("--max-molecules", type=positive_int, default=None,
                   help="the first N training molecules only (default: all)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")


@command("dense", "dense kekulized graphs (atom types, bond orders) of train.smi / valid.smi for one-shot graph "
                  "models; molecules that don't fit are skipped and counted", _dense_arguments)
def cmd_dense(args: argparse.Namespace) -> None:
    from dgm_science.domains.molecules.dense import featurize_dense

    stats = featurize_dense(args.data / "train.smi", args.data / "valid.smi", args.out, n_jobs=args.jobs,
                            max_molecules=args.max_molecules)
    log.info("dense graphs -> %s: %s", args.out, json.dumps(stats))


# ----------------------------------------------------------------------------- dgm sample


def property_range(text: str) -> candidates.PropertyRange:
    """argparse type of a property filter "LO:HI" (either side may be empty, inclusive)."""
    try:
        return candidates.PropertyRange.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_sample_arguments(g: argparse._ArgumentGroup) -> None:
    """Decoding, candidate filters (any of them keeps valid molecules only) and outputs."""
    g.add_argument("--valency-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="graph models: repair over-bonded atoms before writing the SMILES (validity before repair "
                        "is the valid_without_correction column; default: the checkpoint's sample.valency_correction)")
    g.add_argument("--valid", action="store_true", help="filter: only molecules RDKit can parse and sanitize")
    g.add_argument("--unique", action="store_true", help="filter: each molecule once (by canonical SMILES)")
    g.add_argument("--novel", action="store_true", help="filter: only molecules not among the training SMILES")
    g.add_argument("--train-smiles", type=Path, default=None, metavar="PATH",
                   help="training SMILES for --novel, one per line, compared as written with each molecule's "
                        "canonical SMILES (default: train_all.smi in the training data folder the checkpoint records)")
    g.add_argument("--qed", type=property_range, default=None, metavar="LO:HI",
                   help="filter: drug-likeness QED within LO..HI inclusive; either side may be empty (0.6:)")
    g.add_argument("--sa", type=property_range, default=None, metavar="LO:HI",
                   help="filter: synthetic accessibility score (1 easy .. 10 hard) range, e.g. :4")
    g.add_argument("--mw", type=property_range, default=None, metavar="LO:HI",
                   help="filter: molecular weight range, e.g. 200:500")
    g.add_argument("--logp", type=property_range, default=None, metavar="LO:HI",
                   help="filter: Crippen logP range, e.g. -1:5")
    g.add_argument("--remove-alerts", action="store_true",
                   help="filter: drop molecules matching an MCF or PAINS structural alert (the MOSES filter SMARTS)")
    g.add_argument("--max-draws", type=positive_int, default=None, metavar="N",
                   help="stop a search after this many samples (default: 50 x -n); what was found is written, "
                        "with a warning")
    g.add_argument("--sort", choices=tuple(candidates.SORT_KEYS), default=None,
                   help="order rows best first: log_likelihood and qed high first; ood_score (most typical), sa, "
                        "logp and mw low first (default: sampling order)")
    output_argument(g, "--sdf", default=None, metavar="PATH",
                   help="also write an SDF: 2D coordinates, properties, log_likelihood and ood_score as SD tags")
    output_argument(g, "--png", default=None, metavar="PATH",
                   help="also draw a grid image of the top valid molecules")
    g.add_argument("--png-top", type=positive_int, default=24, metavar="N",
                   help="molecules in the --png grid, in --sort order (default: 24)")


def _criteria(options: dict[str, Any]) -> candidates.CandidateCriteria:
    ranges = {name: options[name] for name in candidates.PROPERTIES if options.get(name) is not None}
    return candidates.CandidateCriteria(valid=options["valid"], unique=options["unique"], novel=options["novel"],
                                        ranges=ranges, remove_alerts=options["remove_alerts"])


def _training_smiles_path(options: dict[str, Any], loaded: Any) -> Path:
    """--train-smiles, else train_all.smi in the training data folder the checkpoint records."""
    if options["train_smiles"] is not None:
        return options["train_smiles"]
    data_dir = loaded.info.get("data_dir")
    if data_dir is None:
        raise ValueError(f"--novel: {loaded.path} does not record its training data (trained before "
                         "dgm-science recorded it); pass --train-smiles PATH")
    path = Path(data_dir) / "train_all.smi"
    if not path.is_file():
        raise ValueError(f"--novel: the checkpoint's training SMILES {path} are not there; pass --train-smiles PATH")
    return path


def _check_options(options: dict[str, Any], criteria: candidates.CandidateCriteria, loaded: Any) -> None:
    """Reject options that would be silently ignored, before any sampling."""
    if not criteria.active and (options["max_draws"] is not None or options["train_smiles"] is not None):
        raise ValueError("--max-draws and --train-smiles apply to a candidate search: add --valid, --unique, "
                         "--novel, a property range or --remove-alerts")
    if options["train_smiles"] is not None and not criteria.novel:
        raise ValueError("--train-smiles is the reference of --novel: add --novel")
    if loaded.typicality is None:
        if options["sort"] == "ood_score":
            raise ValueError(f"--sort ood_score: {loaded.path} has no typicality statistics (trained before "
                             "they were recorded); retrain it or sort by log_likelihood")
        log.warning("%s has no typicality statistics (trained before they were recorded): the ood_score "
                    "column is empty; retrain the model to get it", loaded.path)


def draw_samples(loaded: Any, n: int, *, seed: int, temperature: float | None, batch_size: int | None,
                 n_jobs: int, progress: bool, options: dict[str, Any]) -> Samples:
    """Without filters: ``n`` samples in sampling order, invalid ones included (the evaluation
    set). With any filter: draw in rounds, one seeded stream, until ``n`` molecules pass them all
    or ``--max-draws`` is reached. Scored, with properties, sorted as asked."""
    criteria = _criteria(options)
    _check_options(options, criteria, loaded)
    decode = {} if options["valency_correction"] is None else {"valency_correction": options["valency_correction"]}
    start = time.perf_counter()
    if criteria.active:
        train = None
        if criteria.novel:
            path = _training_smiles_path(options, loaded)
            train = candidates.training_smiles(path)
            log.info("novel = not among the %d training SMILES of %s", len(train), path)
        table, report = candidates.find_candidates(
            loaded, n, criteria, train=train, seed=seed, max_draws=options["max_draws"], temperature=temperature,
            batch_size=batch_size, n_jobs=n_jobs, progress=progress, **decode)
        if report.hit_limit:
            log.warning("stopped at the draw limit (--max-draws %d): %s; writing what was found. Raise "
                        "--max-draws or relax the filters (%s) for more.", report.max_draws, report, criteria)
        else:
            log.info("%s in %.1f s", report, time.perf_counter() - start)
    else:
        items, columns = loaded.sample_table(n, seed=seed, temperature=temperature, batch_size=batch_size,
                                             progress=progress, **decode)
        generated = time.perf_counter() - start
        table = candidates.score_samples(loaded, items, columns, n_jobs=n_jobs)
        log.info("sampled %d (%d valid) in %.1f s (%.0f/s)", len(items), table.n_valid, generated,
                 len(items) / generated)
    table.ood_score = loaded.ood_score(table.log_likelihood, table.smiles)
    if options["sort"] is not None:
        table = table.sorted_by(options["sort"])
    # a filtered search draws, scores and filters in rounds: no separate generation time
    seconds = {} if criteria.active else {"generate": generated, "score": time.perf_counter() - start - generated}
    return Samples(table.smiles, table.log_likelihood, table.ood_score, table.columns, table.properties,
                   seconds=seconds)


def after_writing(samples: Samples, options: dict[str, Any]) -> None:
    """``--sdf`` and ``--png`` of the written rows, in their order."""
    if options["sdf"] is None and options["png"] is None:
        return
    table = candidates.CandidateTable(samples.items, samples.properties or [], samples.log_likelihood,
                                      samples.ood_score, samples.columns)
    if options["sdf"] is not None:
        log.info("%d molecules with 2D coordinates -> %s", candidates.write_sdf(options["sdf"], table), options["sdf"])
    if options["png"] is not None:
        drawn = candidates.write_grid_image(options["png"], table, top=options["png_top"])
        if drawn:
            log.info("grid of the top %d molecules -> %s", drawn, options["png"])
        else:
            log.warning("--png: no valid molecule to draw; %s not written", options["png"])
