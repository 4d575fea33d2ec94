"""Benchmark: molecule model training throughput (molecules/s, and tokens/s for sequence models)
and sampling throughput (molecules/s for 10k molecules) on this machine, for every model of a
dataset in the default config. Writes bench/results/molecules_{dataset}.json.

Uses the prepared data (run `make run` or the molecules_prepare rule first) and the default
config's quick model sizes. Not a test: figures depend on the machine.

    python bench/bench_molecules.py --dataset qm9 [--steps 30] [--models graph-flow]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import yaml
from timing import brief, provenance, shown_path, time_model

from dgm_science import registry

ROOT = Path(__file__).resolve().parents[1]


def bench_model(name: str, data: Path, model_config: dict, steps: int, n_sample: int, threads: int,
                checkpoint: Path | None) -> dict:
    """Featurize what the model reads (if the pipeline has not), then time it."""
    spec = registry.get("model", name)
    if "graph" in spec.batch_fields:
        from dgm_science.domains.molecules.data import featurize_file

        for split in ("train", "valid"):
            if not (data / f"graphs_{split}.npz").is_file():
                featurize_file(data / f"{split}.smi", data / f"graphs_{split}.npz", threads)
    if "dense" in spec.batch_fields and not (data / "dense.npz").is_file():
        from dgm_science.domains.molecules.dense import featurize_dense

        featurize_dense(data / "train.smi", data / "valid.smi", data / "dense.npz", n_jobs=threads)
    return time_model(name, data, model_config, steps, n_sample, threads, checkpoint, unit="molecules")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="moses", help="moses or qm9")
    parser.add_argument("--models", nargs="*", default=None, help="models to time (default: all in the config)")
    parser.add_argument("--data", type=Path, default=None, help="default: resources/molecules/{dataset}/data")
    parser.add_argument("--config", type=Path, default=ROOT / "workflows/config/default.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per model")
    parser.add_argument("--sample", type=int, default=10000, help="molecules to sample per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--results", type=Path, default=None,
                        help="trained checkpoints {model}/seed0/model.ckpt to time sampling with "
                             "(default: results/molecules/{dataset})")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/molecules_{dataset}.json")
    args = parser.parse_args(argv)
    args.data = args.data or ROOT / f"resources/molecules/{args.dataset}/data"
    args.results = args.results or ROOT / f"results/molecules/{args.dataset}"
    args.out = args.out or ROOT / f"bench/results/molecules_{args.dataset}.json"
    models = yaml.safe_load(args.config.read_text())["molecules"][args.dataset]["models"]
    if args.models:
        models = {name: models[name] for name in args.models}
    made = provenance(__file__, argv, f"{shown_path(args.config)}: molecules.{args.dataset}.models "
                      f"({', '.join(models)}), their quick sizes", threads=args.threads, arguments=args, models=models)
    results = {"provenance": made, "machine": platform.processor() or platform.machine(), "threads": args.threads,
               "torch": torch.__version__, "models": {}}
    for name, model_config in models.items():
        checkpoint = args.results / name / "seed0" / "model.ckpt"
        results["models"][name] = bench_model(name, args.data, model_config, args.steps, args.sample, args.threads,
                                              checkpoint)
        results["models"][name]["provenance"] = brief(made)  # models merged from earlier runs keep theirs
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    if args.out.is_file():  # keep the figures of models not timed this time
        previous = json.loads(args.out.read_text()).get("models", {})
        results["models"] = {**previous, **results["models"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
