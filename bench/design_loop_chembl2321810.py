"""The design loop a chemist runs, on a real public series: train a property predictor on the assay, write an
objective with several components around it, steer the shipped prior with ``dgm optimize``, kill the run
half-way and resume it, and summarise the ranked candidates.

The series: ChEMBL CHEMBL2321810 as RDKit's wheel ships it (``Contrib/FreeWilson/data``: 1,017 aryl
sulfonamides with their pActivity ``Act``), joined into one CSV by ``bench/user_assay.py``. Every step is a
``dgm`` command:

1. ``dgm prepare --source '{kind: smiles, path: assay.csv, split: scaffold, properties: [Act], seed: 0}'``
2. ``dgm train --model hybrid-arm`` on ``Act`` (p(Act | x) p(x): the prediction, its standard deviation and
   an OOD flag from p(x)), written as ``<work>/loop/model.ckpt``
3. ``dgm finetune --prior data/models/moses-smiles-arm/model.ckpt`` on the series' train split (the
   training of ``bench/finetune_chembl2321810.py``): the prior a medicinal chemist starts REINVENT from
4. the committed objective ``workflows/config/objectives/with-predictor/chembl2321810.yaml`` copied beside
   the predictor
5. ``dgm optimize --objective <work>/loop/chembl2321810.yaml --budget B --method reinvent``: from the shipped
   prior, uninterrupted; from the fine-tuned prior, killed with SIGKILL once half of the budget is scored and
   started again with the same command (it resumes); with ``--check-replay`` that command also runs
   uninterrupted into another folder, and the two ``molecules.csv`` are compared
6. here: the summary of each run and of its best molecules (``best.csv``)

    python bench/design_loop_chembl2321810.py --work /tmp/loop --budget 3000 --check-replay
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import brief, provenance  # noqa: E402
from user_assay import contrib_folder, join  # noqa: E402

OBJECTIVE = ROOT / "workflows/config/objectives/with-predictor/chembl2321810.yaml"
RESULT = ROOT / "docs/results/design/design_loop_chembl2321810.json"
MODEL = {"targets": ["Act"], "d_model": 64, "n_layers": 2, "n_heads": 4, "dropout": 0.1, "max_length": 100,
         "head_hidden": 64, "density_weight": 1.0}
TRAIN = {"batch_size": 64, "lr": 0.001, "warmup_steps": 40, "max_steps": 400, "val_every_steps": 100,
         "val_batches": 2, "checkpoint_every_steps": 200, "keep_best": True}
"""The predictor of docs/results/user-data/prediction_chembl2321810.json (its hybrid-arm on Act)."""
PRIOR = ROOT / "data/models/moses-smiles-arm/model.ckpt"
FINETUNE = {"batch_size": 32, "lr": 0.0005, "warmup_steps": 20, "max_steps": 300, "val_every_steps": 25,
            "val_batches": 4, "checkpoint_every_steps": 100, "keep_best": True, "early_stopping_patience": 4}
"""bench/finetune_chembl2321810.py's TRAIN."""


def dgm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dgm_science.cli", *args]


def run(*args: str, threads: int) -> None:
    print("+ dgm " + " ".join(args), flush=True)
    subprocess.run(dgm_command(*args), check=True, env=environment(threads))


def environment(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONHASHSEED="0")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def killed_and_resumed(optimize: list[str], out: Path, budget: int, threads: int) -> dict:
    """Start ``dgm optimize``, SIGKILL it once half the budget is in its score store, start it again."""
    partial = out.with_name(out.name + ".partial-scores.csv")
    started = time.perf_counter()
    process = subprocess.Popen(dgm_command(*optimize), env=environment(threads))
    while process.poll() is None:
        if partial.is_file() and partial.read_text().count("\n") - 2 >= budget // 2:
            break
        time.sleep(0.5)
    if process.poll() is not None:
        raise SystemExit(f"dgm optimize ended (exit {process.returncode}) before it could be killed")
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_seconds = time.perf_counter() - started
    stored = partial.read_text().count("\n") - 2
    print(f"killed after {killed_seconds:.1f} s with {stored} molecules scored; resuming", flush=True)
    started = time.perf_counter()
    subprocess.run(dgm_command(*optimize), check=True, env=environment(threads))
    return {"killed_after_seconds": round(killed_seconds, 1), "scored_before_kill": stored,
            "resumed_seconds": round(time.perf_counter() - started, 1)}


def summarise(run_dir: Path, series: list[tuple[str, str, float, int]], top: int) -> dict:
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    def scaffold(smiles: str) -> str:
        return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(Chem.MolFromSmiles(smiles)))

    series_canonical = {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s, *_ in series}
    series_scaffolds = {scaffold(s) for s, *_ in series}
    best = rows(run_dir / "best.csv")[:top]
    summary = json.loads((run_dir / "summary.json").read_text())

    def share(flags) -> float:
        flags = list(flags)
        return round(sum(flags) / len(flags), 3) if flags else None

    return {
        "calls": summary["calls"], "oracle_calls": summary["oracle_calls"], "resumed": summary["resumed"],
        "run_seconds": round(summary["seconds"], 1), "top1": summary["top1"], "top10_mean": summary["top10_mean"],
        "top100_mean": summary["top100_mean"], "top100_diversity": summary["top100_diversity"],
        "best": len(best),
        "predicted_act_ge_7": share(float(r["potency_raw"]) >= 7.0 for r in best),
        "predictor_ood": share(r["potency_ood"] == "1" for r in best),
        "aryl_sulfonamide": share(r["aryl_sulfonamide"] == "1" for r in best),
        "in_series": share(r["smiles"] in series_canonical for r in best),
        "distinct_scaffolds": len({r["scaffold"] for r in best}),
        "scaffolds_not_in_series": len({r["scaffold"] for r in best} - series_scaffolds),
        "top10": [{key: r[key] for key in ("rank", "smiles", "scaffold", "score", "potency_raw", "potency_sd",
                                           "potency_ood", "similarity_actives_raw", "mw_raw", "qed_raw", "sa_raw")}
                  for r in best[:10]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--check-replay", action="store_true",
                        help="also run the same command uninterrupted and compare the two molecules.csv")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    record = provenance(__file__, None, f"objective workflows/config/objectives/with-predictor/chembl2321810.yaml; "
                        f"predictor hybrid-arm model={json.dumps(MODEL)} train={json.dumps(TRAIN)}; fine-tuned prior "
                        f"train={json.dumps(FINETUNE)}; dgm optimize "
                        f"--method reinvent (REINVENT 4 defaults) --budget {args.budget} --seed {args.seed}, the "
                        f"shipped prior data/models/moses-smiles-arm", threads=args.threads, arguments=args)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    series = join(contrib_folder(), 7.0)
    with open(work / "assay.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["smiles", "chembl_id", "Act", "active"])
        writer.writerows(series)
    loop = work / "loop"
    model = loop / "model.ckpt"
    if not model.is_file():
        source = {"kind": "smiles", "path": str(work / "assay.csv"), "split": "scaffold", "properties": ["Act"],
                  "seed": 0}
        run("prepare", "--source", json.dumps(source), "--out", str(work / "data"), "--jobs", "1", threads=1)
        started = time.perf_counter()
        run("train", "--model", "hybrid-arm", "--data", str(work / "data"), "--config",
            json.dumps({"model": MODEL, "train": TRAIN}), "--seed", "0", "--out", str(model), "--threads",
            str(args.threads), threads=args.threads)
        print(f"predictor trained in {time.perf_counter() - started:.0f} s", flush=True)
    finetuned = work / "prior" / "model.ckpt"
    if not finetuned.is_file():
        run("finetune", "--prior", str(PRIOR), "--data", str(work / "data"), "--config",
            json.dumps({"train": FINETUNE}), "--seed", "0", "--out", str(finetuned), "--threads", str(args.threads),
            threads=args.threads)
    shutil.copy(OBJECTIVE, loop / OBJECTIVE.name)
    optimize = ["optimize", "--objective", str(loop / OBJECTIVE.name), "--budget", str(args.budget), "--method",
                "reinvent", "--seed", str(args.seed), "--threads", str(args.threads), "--jobs", "1"]
    shipped = work / "run-shipped-prior"
    shutil.rmtree(shipped, ignore_errors=True)
    started = time.perf_counter()
    run(*optimize, "--prior", str(PRIOR), "--out", str(shipped), threads=args.threads)
    runs = {"shipped MOSES prior": {"wall_seconds": round(time.perf_counter() - started, 1),
                                    **summarise(shipped, series, args.top)}}
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    command = [*optimize, "--prior", str(finetuned), "--out", str(out)]
    kill = killed_and_resumed(command, out, args.budget, args.threads)
    result = {"kill": kill, **summarise(out, series, args.top)}
    if args.check_replay:
        whole = work / "uninterrupted"
        shutil.rmtree(whole, ignore_errors=True)
        started = time.perf_counter()
        run(*command[:-1], str(whole), threads=args.threads)
        result["uninterrupted_seconds"] = round(time.perf_counter() - started, 1)
        result["resumed_equals_uninterrupted"] = rows(out / "molecules.csv") == rows(whole / "molecules.csv")
    runs["prior fine-tuned on the series (killed and resumed)"] = result
    print(json.dumps(runs, indent=2))
    best_rows = [[r["rank"], r["smiles"], r["scaffold"], r["score"], r["potency_raw"], r["potency_sd"],
                  r["potency_ood"], r["similarity_actives_raw"], r["mw_raw"], r["qed_raw"], r["sa_raw"]]
                 for r in result["top10"]]
    for item in runs.values():
        item.pop("top10")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "title": f"The design loop on ChEMBL CHEMBL2321810: the ten best of a killed and resumed {args.budget:,}-call "
                 f"REINVENT run from the fine-tuned prior (seed {args.seed})",
        "provenance": brief(record),
        "columns": ["rank", "SMILES", "scaffold", "score", "predicted pActivity", "sd", "OOD",
                    "similarity to the 5 best actives", "MW", "QED", "SA"],
        "rows": best_rows,
        "runs": runs,
        "notes": [],
    }, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
