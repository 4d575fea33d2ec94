"""Ablation of goal-directed design methods: PMO's AUC top-10 of ``dgm optimize`` on a few GuacaMol tasks ×
seeds for each arm (a method and its settings), two one-thread runs at a time, as the design benchmark runs.

Arms (``ARMS``; ``--arms`` picks):
    reinvent             REINVENT 4's defaults (batch 100, sigma 128, lr 1e-4, memory 50)
    reinvent-am-settings REINVENT with Augmented Memory's PMO settings (batch 64, sigma 500, lr 5e-4, memory
                         100) but no augmented updates: what the settings alone give
    am-no-purge          those settings + 2 augmented rounds (randomized SMILES of the batch and the memory),
                         without Selective Memory Purge
    augmented-memory     the method as published: + Selective Memory Purge (float32 updates)
    am-bf16              augmented-memory with bf16-mixed updates (its default where the CPU has AMX / AVX512-BF16):
                         what the faster arithmetic costs
    am-ga                augmented-memory + genetic exploration: 64 Graph GA offspring of the best 1,024 molecules
                         per step, scored and learnt from (``ga_offspring``; float32 updates)
    am-ga-pop120         the same with parents from the best 120 (Graph GA's population; the default "auto" precision:
                         bf16-mixed on a CPU with AMX / AVX512-BF16, else float32; each run records its own)
    am-ga128-pop120      the same with 128 offspring per step (two thirds of the calls bred)
    reinvent-zinc250k    reinvent from the shipped ZINC 250k prior (PMO's REINVENT prior data) instead of MOSES's
    am-zinc250k          augmented-memory from the ZINC 250k prior
    reinvent-pmo-settings          reinvent with PMO's REINVENT settings (lr 5e-4, batch 64, sigma 500, replay 24)
    reinvent-pmo-settings-zinc250k the same from the ZINC 250k prior
    reinvent-pmo-loop    PMO's REINVENT loop: those settings, no diversity filter, unique sequences, replay in
                         proportion to the scores, the likelihood regulariser (5e3)
    reinvent-pmo-loop-zinc250k     the same from the ZINC 250k prior (PMO's REINVENT as published, on our prior)
    graph-ga             mol_ga's Graph GA (PMO's population 120, offspring 70), the method to beat

Each run is ``dgm optimize --objective guacamol:<task> --method <m> --config <settings> --budget B --seed s
--threads 1 --jobs 1 --out <work>/<arm>/<task>/seed<s>`` (a finished run's summary.json is reused). A run that
``--out`` or a ``--reuse`` file already records (its "runs", at the same budget) is reused unless ``--rerun``: the
grid grows across sessions. Each new run records its commit, CPU model and update precision. The
result: per task and arm the mean ± sd over seeds of the AUC top-10, and per arm the sum over the tasks
(mean ± sd over seeds of the per-seed sums) and the mean wall seconds of a run.

    python bench/design_ablation.py --work /tmp/ablation --seeds 0 1 2 \\
        --tasks albuterol_similarity mestranol_similarity ranolazine_mpo troglitazone_rediscovery median1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import brief, cpu_model, provenance  # noqa: E402

AM = {"batch_size": 64, "sigma": 500.0, "lr": 0.0005, "memory_size": 100}
PMO_REINVENT = {**AM, "replay_size": 24}
"""PMO's REINVENT hyperparameters (mol_opt main/reinvent/hparams_default.yaml at the published runs' commit: learning
rate 5e-4, batch 64, sigma 500, experience replay 24), with our memory of 100. Not PMO's loop: ours keeps REINVENT 4's
diversity filter; PMO's has none, drops repeated sequences and adds a likelihood regulariser."""
PMO_LOOP = {**PMO_REINVENT, "diversity_filter": False, "unique_sequences": True, "replay_weighting": "score",
            "likelihood_regularizer": 5000.0, "convergence_patience": 5}
"""PMO's REINVENT loop (mol_opt main/reinvent/run.py): its hyperparameters and no diversity filter (the reward is the
score), repeated sequences of a batch dropped, replay drawn in proportion to the scores from a memory of the 100
best, the loss plus 5e3 * -mean(1 / log P_agent) over the batch and the replayed sequences, and its convergence
stop (after 1,000 calls, the best 100 scores unchanged over 5 batches: the run ends, its top-10 carried to the
budget)."""
ARMS = {
    "reinvent": ("reinvent", {}),
    "reinvent-am-settings": ("reinvent", AM),
    "am-no-purge": ("reinvent", {**AM, "augmentation_rounds": 2, "selective_purge": False}),
    "augmented-memory": ("augmented-memory", {"precision": "32-true"}),
    "am-bf16": ("augmented-memory", {"precision": "bf16-mixed"}),
    "am-ga": ("augmented-memory", {"ga_offspring": 64, "precision": "32-true"}),
    "am-ga-pop120": ("augmented-memory", {"ga_offspring": 64, "ga_population_size": 120, "precision": "auto"}),
    "am-ga128-pop120": ("augmented-memory", {"ga_offspring": 128, "ga_population_size": 120, "precision": "auto"}),
    "graph-ga": ("graph-ga", {}),
    "reinvent-zinc250k": ("reinvent", {}, "zinc250k"),
    "reinvent-pmo-settings": ("reinvent", PMO_REINVENT),
    "reinvent-pmo-settings-zinc250k": ("reinvent", PMO_REINVENT, "zinc250k"),
    "reinvent-pmo-loop": ("reinvent", PMO_LOOP),
    "reinvent-pmo-loop-zinc250k": ("reinvent", PMO_LOOP, "zinc250k"),
    "am-zinc250k": ("augmented-memory", {}, "zinc250k"),
}
"""arm -> (method, settings[, shipped prior by name; default moses])."""
RESULT = ROOT / "docs/results/design/ablation.json"


def recorded_runs(path: Path, budget: int) -> dict[tuple[str, str, int], dict]:
    """The runs a tabulation at this budget recorded in ``path`` (its "runs"), by (arm, task, seed): they are
    reused, not rerun, so the grid grows across sessions whose work folders are gone. A run that records no commit
    gets the file's provenance commit (the text that says which code made its runs)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if data.get("budget", 10000) != budget:
        return {}
    made_by = data.get("provenance", {}).get("commit", "unknown")
    return {(r["arm"], r["task"], r["seed"]): {**r, "commit": r.get("commit", f"{path.name}: {made_by}")}
            for r in data.get("runs", [])}


def one_run(work: Path, arm: str, task: str, seed: int, budget: int, collect: bool = False,
            recorded: dict[tuple[str, str, int], dict] | None = None, commit: str = "") -> dict | None:
    if recorded and (arm, task, seed) in recorded:
        return recorded[(arm, task, seed)]
    out = work / arm / task / f"seed{seed}"
    summary = out / "summary.json"
    if not summary.is_file() and collect:
        return None
    if not summary.is_file():
        method, settings, *prior = ARMS[arm]
        command = [sys.executable, "-m", "dgm_science.cli", "optimize", "--objective", f"guacamol:{task}", "--method",
                   method, "--config", json.dumps(settings), "--budget", str(budget), "--seed", str(seed),
                   "--threads", "1", "--jobs", "1", "--out", str(out), "--prior", prior[0] if prior else "moses"]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0"))
        (out / "wall_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
        (out / "made_by.json").write_text(json.dumps({"commit": commit, "cpu": cpu_model()}) + "\n")
    data = json.loads(summary.read_text())
    wall = out / "wall_seconds.txt"
    made = json.loads((out / "made_by.json").read_text()) if (out / "made_by.json").is_file() else {}
    result = {"arm": arm, "task": task, "seed": seed, "auc": data["pmo_auc_top10"], "calls": data["calls"],
              "wall_seconds": float(wall.read_text()) if wall.is_file() else None,
              "precision": data.get("precision"), **made}
    print(json.dumps(result), flush=True)
    return result


def mean_sd(values: list[float]) -> str | None:
    if not values:
        return None
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--budget", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--collect", action="store_true",
                        help="only tabulate the finished runs under --work (a missing run: an empty cell, no sum)")
    parser.add_argument("--reuse", type=Path, nargs="*", default=[],
                        help="other result files of this script whose recorded runs are reused (as --out's)")
    parser.add_argument("--rerun", action="store_true",
                        help="rerun the runs --out already records (default: reuse them; new runs add to them)")
    args = parser.parse_args()
    record = provenance(__file__, None, f"arms {json.dumps({a: ARMS[a] for a in args.arms})}; budget {args.budget}; "
                        f"the shipped prior data/models/moses-smiles-arm unless the arm names another; one thread and "
                        f"one scoring process per run, {args.parallel} runs at a time", threads=1, arguments=args)
    recorded = {} if args.rerun else {key: run for path in [*args.reuse, args.out]
                                      for key, run in recorded_runs(path, args.budget).items()}
    jobs = [(arm, task, seed) for seed in args.seeds for task in args.tasks for arm in args.arms]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = [r for r in pool.map(lambda job: one_run(args.work, *job, args.budget, args.collect, recorded,
                                                           record["commit"]), jobs) if r]
    rows = []
    for arm in args.arms:
        mine = [r for r in results if r["arm"] == arm]
        per_task = [mean_sd([r["auc"] for r in mine if r["task"] == task]) for task in args.tasks]
        complete = len(mine) == len(args.tasks) * len(args.seeds)
        sums = [sum(r["auc"] for r in mine if r["seed"] == seed) for seed in args.seeds] if complete else []
        walls = [r["wall_seconds"] for r in mine if r["wall_seconds"] is not None]
        rows.append([arm, *per_task, mean_sd(sums), round(statistics.mean(walls), 1) if walls else None])
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    made = brief(record)
    if any((r["arm"], r["task"], r["seed"]) in recorded for r in results):
        made["commit"] = f"{made['commit']} tabulated; each run records the commit of its code (runs: commit)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "title": f"Design-method ablation: PMO AUC top-10 at {args.budget:,} calls, {len(args.tasks)} GuacaMol tasks, "
                 f"seeds {', '.join(map(str, args.seeds))} (mean ± sd over seeds)",
        "provenance": made,
        "columns": ["arm", *args.tasks, f"sum over the {len(args.tasks)} tasks", "wall seconds per run"],
        "budget": args.budget,
        "rows": rows,
        "runs": results,
        "notes": earlier.get("notes", []),
    }, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
