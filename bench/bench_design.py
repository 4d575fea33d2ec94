"""Benchmarks of goal-directed design (`dgm optimize`), one function per section, figures merged into
bench/results/design.json under the section's name.

Sections:
    task      whole `dgm optimize` runs on one task (default guacamol:osimertinib_mpo) at --budget calls
              (default 10,000, PMO's) with the shipped prior: wall time per method (and per --variants
              setting), the RL methods' seconds per step (sampling, scoring, update), calls per second and the
              scores reached.
    scoring   scoring calls per second of an objective (default: the multi-parameter example
              workflows/config/objectives/celecoxib_analogue.yaml) on N distinct SMILES, for each --jobs:
              one batch of all N (the pool, if any, already started), RL-sized batches of new molecules,
              a batch of cached molecules, the pool's start-up, and each component's cost per molecule.
    update    the likelihoods of one Augmented Memory update (agent forward + backward, prior forward) on
              --update-rows randomized SMILES of the prior's samples, the batch padded to its longest against packed.

Example:
    python bench/bench_design.py --smiles resources/molecules/moses/data/test.smi --only scoring
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from dgm_science.applications.design.objectives import Objective, Scorer
from timing import brief, machine, provenance, shown_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results/design.json"
DEFAULT_SMILES = ROOT / "resources/molecules/moses/data/test.smi"  # written by the moses prepare rule
DEFAULT_OBJECTIVE = ROOT / "workflows/config/objectives/celecoxib_analogue.yaml"


def read_smiles(path: Path, n: int) -> list[str]:
    """The first ``n`` distinct SMILES of a file with one SMILES (first whitespace-separated field) per line."""
    seen: dict[str, None] = {}
    with path.open() as handle:
        for line in handle:
            fields = line.split()
            if fields and fields[0].lower() != "smiles":
                seen.setdefault(fields[0], None)
                if len(seen) == n:
                    break
    if len(seen) < n:
        raise ValueError(f"{path}: {len(seen)} distinct SMILES, fewer than the {n} asked for")
    return list(seen)


def bench_scoring(args: argparse.Namespace) -> dict:
    """Scoring calls per second for each --jobs (a fresh Scorer each, so nothing is cached between them)."""
    objective = Objective.load(args.objective)
    n_warm = max(4 * args.chunk_size, 64)
    smiles = read_smiles(args.smiles, args.n + n_warm + args.rl_batches * args.rl_batch)
    warm, measured, rl = smiles[:n_warm], smiles[n_warm:n_warm + args.n], smiles[n_warm + args.n:]
    shown = args.objective.resolve()
    out = {"objective": str(shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown),
           "columns": objective.columns, "smiles": shown_path(args.smiles), "n": args.n, "chunk_size": args.chunk_size,
           "rl_batch": args.rl_batch, "rl_batches": args.rl_batches, "machine_before": machine(), "jobs": {}}
    for jobs in args.jobs:
        with Scorer(objective, jobs=jobs, chunk_size=args.chunk_size) as scorer:
            start = time.perf_counter()
            scorer.score(warm)  # starts the pool (jobs > 1): workers import RDKit and rebuild the objective
            warm_seconds = time.perf_counter() - start
            start = time.perf_counter()
            batch = scorer.score(measured)
            seconds = time.perf_counter() - start
            calls = int(batch.new.sum())
            start = time.perf_counter()
            for i in range(args.rl_batches):
                scorer.score(rl[i * args.rl_batch:(i + 1) * args.rl_batch])
            rl_seconds = time.perf_counter() - start
            start = time.perf_counter()
            cached = scorer.score(measured)
            cached_seconds = time.perf_counter() - start
            assert not cached.new.any()
        result = {
            "calls": calls,
            "seconds": round(seconds, 3),
            "calls_per_second": round(calls / seconds, 1),
            "rl_batches_calls_per_second": round(args.rl_batches * args.rl_batch / rl_seconds, 1),
            "cached_rows_per_second": round(len(measured) / cached_seconds, 1),
            "first_batch_seconds": round(warm_seconds, 3),
            "first_batch_size": n_warm,
            "valid_fraction": round(calls / len(measured), 4),
        }
        print(f"scoring jobs={jobs}: {result}", flush=True)
        out["jobs"][str(jobs)] = result
    out["component_ms_per_molecule"] = component_costs(objective, measured[:args.profile])
    out["machine_after"] = machine()
    return out


def component_costs(objective: Objective, smiles: list[str]) -> dict[str, float]:
    """Milliseconds per molecule of parsing, canonicalising and each component, in this process."""
    from rdkit import Chem, rdBase

    from dgm_science.domains.molecules.properties import parse_smiles

    costs = {}
    with rdBase.BlockLogs():
        start = time.perf_counter()
        mols = [parse_smiles(s) for s in smiles]
        costs["parse"] = time.perf_counter() - start
        mols = [m for m in mols if m is not None]
        start = time.perf_counter()
        canonical = [Chem.MolToSmiles(m) for m in mols]
        costs["canonical"] = time.perf_counter() - start
        for component in objective.components:
            start = time.perf_counter()
            component.evaluate(mols, canonical, None)
            costs[component.name] = time.perf_counter() - start
    return {name: round(1000 * seconds / max(1, len(smiles)), 3) for name, seconds in costs.items()}


def bench_task(args: argparse.Namespace) -> dict:
    """Wall time of whole ``dgm optimize`` runs (REINVENT, screening, Graph GA) on one task at
    --budget calls with the shipped prior, and REINVENT's time per step (sampling, scoring,
    update); torch threads and scoring processes: --threads."""
    import torch

    from dgm_science.applications.design import optimize

    torch.set_num_threads(args.threads)
    objective = Objective.load(args.task)
    out: dict = {"task": args.task, "budget": args.budget, "prior": shown_path(args.prior), "threads": args.threads,
                 "machine_before": machine(), "methods": {}}
    runs = {method: (method, {}) for method in args.methods}
    runs.update({label: (method, settings) for label, (method, settings) in json.loads(args.variants).items()})
    for label, (method, settings) in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            summary = optimize.optimize(args.prior, objective, method=method, budget=args.budget, seed=0,
                                        out=Path(tmp) / "run", jobs=args.threads,
                                        config=optimize.method_config(method, settings))
        out["methods"][label] = {key: summary.get(key) for key in (
            "method", "settings", "precision", "seconds", "calls", "steps", "calls_per_second", "seconds_per_step",
            "top1", "top10_mean", "pmo_auc_top10", "guacamol_score", "guacamol_molecules", "top100_diversity",
            "valid_fraction")}
    out["machine_after"] = machine()
    return out


def bench_update(args: argparse.Namespace) -> dict:
    """One Augmented Memory update's likelihoods on the prior: the agent's forward + backward and the prior's
    forward over randomized SMILES of --update-rows valid molecules the prior samples (seed 0; a step's batch,
    offspring and memory: 64 + 64 + 100), padded to the longest as one batch against packed (the padding
    skipped, ``CausalTransformer.hidden_packed``), the same molecules and weights in the same run."""
    import random

    import torch
    import torch.nn.functional as F

    from dgm_science import api
    from dgm_science.applications.design.optimize import _sample, _token_batch, randomized_smiles

    torch.set_num_threads(args.threads)
    loaded = api.load(args.prior, device="cpu")
    model = loaded.model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sampled = [s for s in _sample(model, loaded, 2 * args.update_rows, generator, 1.0, True)[1] if s]
    batch, _ = _token_batch(loaded, randomized_smiles(sampled[:args.update_rows], random.Random(0)))
    tokens = batch["tokens"]

    def padded() -> torch.Tensor:  # the whole (B, L) batch through every layer, padding masked afterwards
        targets = tokens[:, 1:]
        logits = model.network(tokens[:, :-1]).transpose(1, 2).float()
        return (-F.cross_entropy(logits, targets, reduction="none") * (targets != model.pad_id)).sum(1)

    def packed() -> torch.Tensor:
        return model.log_prob(batch)

    out: dict = {"prior": shown_path(args.prior), "rows": int(tokens.shape[0]),
                 "length": int(tokens.shape[1]), "real_token_fraction": round(float((tokens != model.pad_id).float()
                                                                                    .mean()), 4),
                 "threads": args.threads, "repeats": args.repeats, "machine_before": machine(), "modes": {}}
    assert torch.allclose(padded(), packed(), atol=1e-3), "packed and padded likelihoods differ"

    def agent_step(fn: Callable[[], torch.Tensor]) -> None:
        model.zero_grad()
        fn().sum().backward()

    def prior_step(fn: Callable[[], torch.Tensor]) -> None:
        with torch.no_grad():
            fn()

    modes = {"padded": padded, "packed": packed}
    steps = {"agent_forward_backward": agent_step, "prior_forward": prior_step}
    times: dict[str, dict[str, list[float]]] = {mode: {label: [] for label in steps} for mode in modes}
    for repeat in range(args.repeats + 1):  # interleaved, so that a shared machine's drift hits both alike
        for mode, fn in modes.items():
            for label, step in steps.items():
                start = time.perf_counter()
                step(fn)
                if repeat:  # the first round warms up
                    times[mode][label].append(time.perf_counter() - start)
    for mode in modes:
        out["modes"][mode] = {f"{label}_seconds": round(statistics.median(values), 4)
                              for label, values in times[mode].items()}
        print(f"update {mode}: {out['modes'][mode]}", flush=True)
    out["machine_after"] = machine()
    return out


SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {"scoring": bench_scoring, "task": bench_task,
                                                            "update": bench_update}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS),
                        help="sections to run (default: all)")
    parser.add_argument("--smiles", type=Path, default=DEFAULT_SMILES, help="one SMILES per line (MOSES-like)")
    parser.add_argument("--objective", type=Path, default=DEFAULT_OBJECTIVE, help="objective YAML to score with")
    parser.add_argument("--n", type=int, default=5000, help="distinct SMILES scored in one batch")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="Scorer process counts to time")
    parser.add_argument("--chunk-size", type=int, default=64, help="SMILES per worker task")
    parser.add_argument("--rl-batch", type=int, default=128, help="batch size of the RL-like section")
    parser.add_argument("--rl-batches", type=int, default=8, help="RL-like batches of new molecules")
    parser.add_argument("--profile", type=int, default=1000, help="molecules timed per component")
    parser.add_argument("--task", default="guacamol:osimertinib_mpo", help="objective of the task section")
    parser.add_argument("--budget", type=int, default=10000, help="scoring calls of the task section")
    parser.add_argument("--prior", type=Path, default=ROOT / "data/models/moses-smiles-arm/model.ckpt",
                        help="prior of the task section")
    parser.add_argument("--methods", nargs="+", default=["reinvent", "screening", "graph-ga"],
                        help="methods of the task section")
    parser.add_argument("--variants", default="{}",
                        help='task section: more runs as JSON {label: [method, settings]}, e.g. '
                             '\'{"augmented-memory float32": ["augmented-memory", {"precision": "32-true"}]}\'')
    parser.add_argument("--threads", type=int, default=2, help="torch threads and scoring processes (task section)")
    parser.add_argument("--update-rows", type=int, default=228, help="molecules of the update section's batch")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats of the update section (medians)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON to merge the sections' figures into")
    args = parser.parse_args(argv)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    configs = {"scoring": f"objective {shown_path(args.objective)} on {shown_path(args.smiles)}",
               "task": f"objective {args.task}, prior {shown_path(args.prior)}, default method settings"
                       + (f"; variants {args.variants}" if args.variants != "{}" else ""),
               "update": f"prior {shown_path(args.prior)}, randomized SMILES of {args.update_rows} of its samples "
                         f"(seed 0)"}
    made = provenance(__file__, argv, "; ".join(configs[name] for name in args.only),
                      threads=f"{args.threads} (task section)", arguments=args)
    report["provenance"] = made
    for name in args.only:
        report[name] = SECTIONS[name](args)
        report[name]["provenance"] = {**brief(made), "config": configs[name]}  # sections of other runs keep theirs
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
