"""Property prediction's part of the ``dgm`` command: ``predict`` and ``evaluate-predictor``
(``predict.py``)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from dgm_science.applications.prediction import predict
from dgm_science.commands import (add_device_arguments, add_seed_argument, command, output_argument, positive_float,
                                  positive_int)
from dgm_science.utils import set_threads

log = logging.getLogger("dgm")


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
                   help="the prepared folder the models were trained on (test.smi, properties_test.csv): QM9's "
                        "or your own file's (dgm prepare --source)")
    p.add_argument("--moses", type=Path, default=None,
                   help="MOSES SMILES (e.g. its test.csv.gz) for the shifted set of larger drug-like molecules "
                        "(only those made of the elements the models saw)")
    p.add_argument("--shifted", action="append", default=[], metavar="NAME=PATH",
                   help="a further shifted set: a SMILES file (.smi, or .csv with a SMILES column; e.g. another "
                        "dataset's test split), only its molecules made of the elements the models saw (repeatable)")
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

    shifted = {}
    for item in args.shifted:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            raise ValueError(f"--shifted {item!r}: give NAME=PATH")
        if name in shifted or name in ("randomized", "excluded_elements", "moses"):
            raise ValueError(f"--shifted {item!r}: the set name {name!r} is taken")
        shifted[name] = Path(path)
    set_threads(args.threads)
    predictor = predict.Predictor([api.load(path, device=args.device) for path in args.checkpoint])
    start = time.perf_counter()
    metrics = predict.evaluate_predictor(predictor, args.data, moses=args.moses, max_molecules=args.max_molecules,
                                         seed=args.seed, batch_size=args.batch_size, n_jobs=args.jobs,
                                         shifted=shifted)
    metrics.update(checkpoints=[str(p) for p in args.checkpoint], seconds=time.perf_counter() - start)
    write_json(args.out, metrics)
    first = predictor.targets["names"][0]
    row = metrics["test"][first]
    key = "auroc" if row.get("task") == "classification" else "mae"
    log.info("%s: %s %.4g %s on %d test molecules -> %s", first, key.upper(), row[key], row["unit"],
             metrics["test"]["n"], args.out)
