"""Fine-tuning the shipped SMILES prior on one ChEMBL ligand series, split by scaffold, against the
prior itself and the same model trained from scratch on the same molecules with the same budget.

The series: RDKit's ``Contrib/FreeWilson/data/CHEMBL2321810.smi`` (1,017 compounds, SMILES then ChEMBL id)
and ``CHEMBL2321810_act.csv`` (Name,Act: pActivity), shipped in the ``rdkit`` wheel. Everything runs
through the ``dgm`` command:

1. ``dgm prepare --source '{kind: smiles, path: ..., split: scaffold, valid: 0.1, test: 0.2, seed: 0}'``
2. (a) the prior ``data/models/moses-smiles-arm/model.ckpt`` as shipped;
   (b) ``dgm finetune --prior <it> --data <prepared> --config <TRAIN> --seed s``;
   (c) ``dgm train --model smiles-arm --config {model: <the prior's model block>, train: <TRAIN>} --seed s``
   (its vocabulary fitted on the series' train + valid split, as any `dgm train`);
3. ``dgm sample -n N --seed s`` of each;
4. here: validity, uniqueness (unique valid / valid), novelty (unique valid not in the train split /
   unique valid), and the share of the N samples within Tanimoto >= 0.4 (Morgan radius 2, 2048 bits) of at
   least one held-out active: a test-split molecule (scaffolds train lacks) with Act >= 7; also the share
   that is moreover valid and not a train-split molecule.

Example (about 15 min on 2 idle CPU cores at the defaults)::

    python bench/finetune_chembl2321810.py --work /tmp/ft --seeds 0 1 2 --samples 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import provenance  # noqa: E402

PRIOR = ROOT / "data/models/moses-smiles-arm/model.ckpt"
RESULT = ROOT / "docs/results/user-data/finetune_chembl2321810.json"
TRAIN = {"batch_size": 32, "lr": 0.0005, "warmup_steps": 20, "max_steps": 300, "val_every_steps": 25,
         "val_batches": 4, "checkpoint_every_steps": 100, "keep_best": True, "early_stopping_patience": 4,
         "accelerator": "cpu"}
"""The one training block of (b) and (c): the same steps, batch, learning rate and early stopping."""
SIMILARITY = 0.4
ACTIVE = 7.0


def series_files() -> tuple[Path, Path]:
    """The .smi and activity files of CHEMBL2321810 in the installed rdkit wheel."""
    import rdkit

    folder = Path(rdkit.__file__).parent / "Contrib/FreeWilson/data"
    return folder / "CHEMBL2321810.smi", folder / "CHEMBL2321810_act.csv"


def dgm(*args: str, threads: int) -> None:
    """Run one ``dgm`` command (this checkout's package), failing loudly."""
    command = [sys.executable, "-m", "dgm_science.cli", *args]
    print("+ dgm " + " ".join(args), flush=True)
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads),
                                                  MKL_NUM_THREADS=str(threads)))


def canonical(smiles: str) -> str | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(mol) if mol is not None else None


def fingerprint(smiles: str):
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return generator.GetFingerprint(Chem.MolFromSmiles(smiles))


def held_out_actives(data: Path, smi: Path, act: Path) -> list[str]:
    """Canonical SMILES of the test split whose compound has Act >= ACTIVE (the prepared SMILES mapped
    back to the ChEMBL ids through RDKit's canonical SMILES of the raw file: the series needs no
    standardisation, prepare.json says 0 standardised)."""
    activity = {row["Name"]: float(row["Act"]) for row in csv.DictReader(act.open())}
    by_smiles: dict[str, float] = {}
    for line in smi.read_text().splitlines():
        if line.strip():
            text, name = line.split()[:2]
            by_smiles[canonical(text)] = activity[name]
    test = [s for s in (data / "test.smi").read_text().split() if s]
    missing = [s for s in test if s not in by_smiles]
    if missing:
        raise SystemExit(f"{len(missing)} test molecules not found in {smi}, e.g. {missing[:2]}")
    return [s for s in test if by_smiles[s] >= ACTIVE]


def sample_metrics(samples: Path, train: set[str], active_fps: list) -> dict[str, float]:
    """Validity, uniqueness, novelty and the shares within SIMILARITY of an active of one samples.csv."""
    from rdkit import DataStructs

    rows = list(csv.DictReader(samples.open()))
    n = len(rows)
    valid = [canonical(r["smiles"]) for r in rows if r["valid"] == "1"]
    valid = [s for s in valid if s]
    unique = set(valid)
    novel = {s for s in unique if s not in train}
    best: dict[str, float] = {}
    for s in unique:
        best[s] = max(DataStructs.BulkTanimotoSimilarity(fingerprint(s), active_fps))
    near = sum(best[s] >= SIMILARITY for s in valid)
    near_novel = sum(best[s] >= SIMILARITY and s not in train for s in valid)
    return {"samples": n, "validity": len(valid) / n, "uniqueness": len(unique) / max(1, len(valid)),
            "novelty": len(novel) / max(1, len(unique)), "near_active": near / n, "near_active_novel": near_novel / n}


def train_info(checkpoint: Path) -> dict[str, float]:
    from dgm_science import checkpoint as ckpt

    info = ckpt.load(checkpoint)["info"]
    return {"steps": info["global_step"], "best_step": info.get("best_step"), "best_val_nll": info.get("best_val_nll"),
            "train_seconds": info["train_seconds"], "stopped_early": info.get("stopped_early"),
            "train_examples": info["train_examples"],
            "skipped_unknown_tokens": info.get("skipped_unknown_tokens", {}).get("train", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ft-bench"), help="scratch folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--max-steps", type=int, default=TRAIN["max_steps"], help="train.max_steps (a smoke run)")
    parser.add_argument("--long-scratch-steps", type=int, default=0,
                        help="also train (c) with this max_steps (0: not)")
    args = parser.parse_args()
    TRAIN["max_steps"] = args.max_steps
    smi, act = series_files()
    record = provenance(__file__, None, f"bench/finetune_chembl2321810.py TRAIN={json.dumps(TRAIN)}; prior "
                        f"{PRIOR.relative_to(ROOT)}", threads=args.threads, arguments=args, train=TRAIN)
    from dgm_science import checkpoint as ckpt
    from dgm_science.wheels import sha256_of

    prior = ckpt.load(PRIOR)
    work, data = args.work, args.work / "data"
    source = {"kind": "smiles", "path": str(smi), "split": "scaffold", "valid": 0.1, "test": 0.2, "seed": 0}
    if not (data / "prepare.json").is_file():
        dgm("prepare", "--source", json.dumps(source), "--out", str(data), "--jobs", "1", threads=args.threads)
    actives = held_out_actives(data, smi, act)
    active_fps = [fingerprint(s) for s in actives]
    train = {canonical(s) for s in (data / "train.smi").read_text().split() if s}
    split = json.loads((data / "prepare.json").read_text())
    runs: dict[str, list[dict]] = {"prior": [], "fine-tuned": [], "from scratch": []}

    def sample(checkpoint: Path, seed: int, out: Path) -> dict[str, float]:
        if not out.is_file():
            dgm("sample", "--checkpoint", str(checkpoint), "-n", str(args.samples), "--seed", str(seed), "--out",
                str(out), "--threads", str(args.threads), threads=args.threads)
        return sample_metrics(out, train, active_fps)

    runs["prior"].append({"seed": 0, **sample(PRIOR, 0, work / "prior/samples.csv")})
    scratch_config = {"model": prior["config"]["model"], "train": TRAIN}
    for seed in args.seeds:
        for name, folder in (("fine-tuned", "finetune"), ("from scratch", "scratch")):
            model = work / folder / f"seed{seed}/model.ckpt"
            if not model.is_file():
                if name == "fine-tuned":
                    dgm("finetune", "--prior", str(PRIOR), "--data", str(data), "--config",
                        json.dumps({"train": TRAIN}), "--seed", str(seed), "--out", str(model),
                        "--threads", str(args.threads), threads=args.threads)
                else:
                    dgm("train", "--model", "smiles-arm", "--data", str(data), "--config", json.dumps(scratch_config),
                        "--seed", str(seed), "--out", str(model), "--threads", str(args.threads),
                        threads=args.threads)
            runs[name].append({"seed": seed, **train_info(model), **sample(model, seed, model.parent / "samples.csv")})
            print(name, json.dumps(runs[name][-1]), flush=True)

    for seed in args.seeds if args.long_scratch_steps else []:
        name = f"from scratch, max_steps {args.long_scratch_steps}"
        model = work / f"scratch-{args.long_scratch_steps}" / f"seed{seed}/model.ckpt"
        if not model.is_file():
            dgm("train", "--model", "smiles-arm", "--data", str(data), "--config",
                json.dumps({**scratch_config, "train": {**TRAIN, "max_steps": args.long_scratch_steps}}),
                "--seed", str(seed), "--out", str(model), "--threads", str(args.threads), threads=args.threads)
        runs.setdefault(name, []).append({"seed": seed, **train_info(model),
                                          **sample(model, seed, model.parent / "samples.csv")})
        print(name, json.dumps(runs[name][-1]), flush=True)

    columns = ["model", "seeds", "near_active", "near_active_sd", "near_active_novel", "near_active_novel_sd",
               "validity", "validity_sd", "uniqueness", "uniqueness_sd", "novelty", "novelty_sd", "steps",
               "best_val_nll"]
    rows = []
    for name, items in runs.items():
        row: list = [name, len(items)]
        for key in ("near_active", "near_active_novel", "validity", "uniqueness", "novelty"):
            values = [r[key] for r in items]
            row += [round(statistics.mean(values), 4),
                    round(statistics.stdev(values), 4) if len(values) > 1 else None]
        steps = [r["steps"] for r in items if "steps" in r]
        nll = [r["best_val_nll"] for r in items if r.get("best_val_nll") is not None]
        row += [round(statistics.mean(steps), 1) if steps else None, round(statistics.mean(nll), 3) if nll else None]
        rows.append(row)
    result = {
        "title": "Fine-tuning the shipped MOSES smiles-arm prior on ChEMBL series CHEMBL2321810 (scaffold split): "
                 f"share of {args.samples:,} samples within Tanimoto {SIMILARITY} of a held-out active",
        "provenance": {k: record[k] for k in ("commit", "command", "config", "date", "machine")},
        "columns": columns,
        "rows": rows,
        "notes": [
            f"Data: RDKit wheel Contrib/FreeWilson/data/CHEMBL2321810.smi (1,017 compounds) and _act.csv; "
            f"dgm prepare --source {json.dumps(source)}: train {split['train']} / valid {split['valid']} / test "
            f"{split['test']} molecules, {split['scaffolds']} Bemis-Murcko scaffolds (test scaffolds absent from train).",
            f"Held-out actives: the {len(actives)} test-split molecules with Act >= {ACTIVE} (of {split['test']}).",
            f"near_active: share of all {args.samples:,} samples (invalid ones count as misses) whose max Tanimoto "
            f"(Morgan r=2, 2048 bits) to the held-out actives is >= {SIMILARITY}; near_active_novel: those that are "
            "moreover not a train-split molecule. validity: valid / samples; uniqueness: unique valid / valid; "
            "novelty: unique valid not in the train split / unique valid. Computed by this script (RDKit), not by "
            "dgm evaluate.",
            f"prior: {PRIOR.relative_to(ROOT)} (sha256 {sha256_of(PRIOR)[:16]}...) sampled with seed 0, as shipped. "
            f"fine-tuned: dgm finetune --prior it; from scratch: dgm train of the same model block "
            f"({json.dumps(prior['config']['model'])}) from a random init, vocabulary fitted on the series. Both with "
            f"train {json.dumps(TRAIN)}: early stopping on the validation split's NLL, best validation's weights "
            "kept. The fine-tuned model keeps the prior's vocabulary and skips the training molecules with a token "
            "outside it (counted in the runs below); the scratch model trains on them all.",
            "mean and sd over the seeds (seed = training seed = sampling seed); sd null for one run.",
        ],
        "runs": runs,
        "series": {"actives": len(actives), "test": split["test"], "train": split["train"], "valid": split["valid"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"done in {time.time() - start:.0f} s")
