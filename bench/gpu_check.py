"""GPU runbook, one step: train every paper-config model of one domain for a fixed short budget
(bf16 autocast on a GPU that supports it), check that the training loss falls and that sampling
works, and record throughput beside this repository's CPU figures.

Each model is built at its paper size (``workflows/config/paper.yaml``) with its paper batch size;
batches are drawn with replacement from the prepared data under ``resources/{domain}/{dataset}/data``
(``bench/gpu_check.sh`` prepares them with the paper-smoke pipeline first), so the figures measure
the paper models' speed, not their converged quality. Writes ``bench/results/gpu_{domain}.json``.

    python bench/gpu_check.py --prepare gpu-check            # the paper-smoke pipeline, data for the checks
    python bench/gpu_check.py --domain molecules --resources gpu-check/resources [--seconds 45]

Not a test: figures depend on the machine. ``--device cpu --max-steps 2`` runs the same code on a
CPU (the test suite does that for one model, so the runbook cannot rot between GPU sessions).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import DataLoader, RandomSampler

from dgm_science import api, registry
from timing import provenance, shown_path

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "workflows/config/paper.yaml"
LOSS_WINDOW = 0.2  # loss falls: mean of the last 20 % of steps below the mean of the first 20 %


def _examples(batch: Any) -> int:
    if isinstance(batch, dict):
        return next(int(v.shape[0]) for v in batch.values() if isinstance(v, torch.Tensor))
    return int(getattr(batch, "num_graphs", 1))


def check_model(name: str, data: Path, model_config: dict, *, device: torch.device, seconds: float,
                max_steps: int | None, n_sample: int, batch_size: int | None) -> dict[str, Any]:
    """Train ``name`` at its paper config for ``seconds`` (or ``max_steps``), then sample
    ``n_sample`` items. Returns throughputs, the loss curve's start and end, and the decodable
    fraction of the samples."""
    config = api.RunConfig.parse(name, model_config)
    spec = registry.get("model", name)
    domain = registry.get("domain", spec.domain)
    torch.manual_seed(0)
    state = domain.fit_state(data, spec, config.model)
    model = spec.build(config.model, state).to(device)
    train_set, _ = domain.datasets(data, spec, config.model, state)
    batch_size = batch_size or config.train.batch_size
    sampler = RandomSampler(train_set, replacement=True, num_samples=10**9,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, collate_fn=train_set.collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    model.train()
    losses: list[float] = []
    examples = tokens = 0
    batches = iter(loader)
    warm = next(batches)  # one untimed step: CUDA context, kernels, allocator
    warm = move_data_to_device(warm, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model.loss(warm).backward()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and (max_steps is None or len(losses) < max_steps):
        batch = move_data_to_device(next(batches), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        losses.append(loss.item())  # a sync per step, as Lightning's logging does
        examples += _examples(batch)
        if isinstance(batch, dict) and "tokens" in batch:
            tokens += int((batch["tokens"][:, 1:] != 0).sum())
    train_seconds = time.perf_counter() - start
    window = max(1, math.ceil(LOSS_WINDOW * len(losses)))
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None

    loaded = api.LoadedModel(name, model, spec, config, domain, state, {})
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        decoded = loaded.sample(n_sample, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sample_seconds = time.perf_counter() - start
    finite = all(math.isfinite(x) for x in losses)
    return {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch_size": batch_size,
        "precision": "bf16-mixed" if bf16 else "32-true",
        "steps": len(losses),
        "train_seconds": train_seconds,
        "train_steps_per_s": len(losses) / train_seconds,
        "train_examples_per_s": examples / train_seconds,
        "train_tokens_per_s": tokens / train_seconds if tokens else None,
        "peak_gpu_memory_gib": peak_gib,
        "loss_first": first,
        "loss_last": last,
        "loss_falls": finite and last < first,
        "sample_n": n_sample,
        "sample_seconds": sample_seconds,
        "sample_per_s": n_sample / sample_seconds,
        "sample_decodable_fraction": sum(d is not None for d in decoded) / len(decoded),
    }


def cpu_figures(domain: str, dataset: str, model: str) -> dict[str, Any] | None:
    """This repository's CPU bench figures for the same model (quick-config sizes, 2 cores)."""
    path = ROOT / f"bench/results/{domain}_{dataset}.json"
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get("models", {}).get(model)
    if not isinstance(entry, dict):
        return None
    keep = ("parameters", "batch_size", "precision", "train_step_seconds", "train_tokens_per_s")
    return {k: v for k, v in entry.items() if k in keep or k.endswith("_per_s")}


def prepare(work: Path, cores: int) -> int:
    """The paper path on this machine: paper.yaml with the paper-smoke overlay, run to the report in
    ``work`` on the committed samples (no download), which also leaves every paper dataset prepared
    under ``work/resources`` for the model checks. Returns Snakemake's exit code."""
    sys.path.insert(0, str(ROOT))
    from tests.workflow_fixtures import copy_workflow, run_snakemake, write_raw_inputs

    if not (work / "Snakefile").is_file():
        work.mkdir(parents=True, exist_ok=True)
        copy_workflow(work)
        moses = (ROOT / "tests/data/moses_sample.smi").read_text().split()
        write_raw_inputs(work, {"train": moses[:260], "test": moses[260:], "test_scaffolds": moses[200:]},
                         {"16s": 40, "swissprot": 40})
    start = time.perf_counter()
    result = run_snakemake(work, ["workflows/config/paper.yaml", "workflows/config/overlays/paper-smoke.yaml"],
                           cores=cores, timeout=3600)
    print(result.stderr[-4000:])
    print(f"paper-smoke pipeline: exit {result.returncode} in {time.perf_counter() - start:.0f} s")
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, default=None, metavar="WORK",
                        help="run the paper-smoke pipeline in WORK (prepares every paper dataset) and exit")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="Snakemake cores for --prepare")
    parser.add_argument("--domain", choices=sorted(yaml.safe_load(PAPER.read_text()).keys() - {"seeds"}))
    parser.add_argument("--datasets", nargs="*", default=None, help="default: every dataset of the domain in paper.yaml")
    parser.add_argument("--models", nargs="*", default=None, help="default: every model of each dataset")
    parser.add_argument("--config", type=Path, default=PAPER)
    parser.add_argument("--resources", type=Path, default=ROOT / "resources", help="prepared data root")
    parser.add_argument("--seconds", type=float, default=45.0, help="training budget per model")
    parser.add_argument("--max-steps", type=int, default=None, help="stop earlier after this many steps")
    parser.add_argument("--batch-size", type=int, default=None, help="override the paper batch size")
    parser.add_argument("--sample", type=int, default=256, help="items to sample per model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/gpu_{domain}.json")
    args = parser.parse_args(argv)
    if args.prepare is not None:
        return prepare(args.prepare.resolve(), args.cores)
    if args.domain is None:
        parser.error("--domain is required (or --prepare WORK)")
    device = api.resolve_device(args.device)
    config = yaml.safe_load(args.config.read_text())[args.domain]
    out = args.out or ROOT / f"bench/results/gpu_{args.domain}.json"
    results: dict[str, Any] = {
        "provenance": provenance(__file__, argv, f"{shown_path(args.config)}: {args.domain} models at their paper "
                                 f"sizes{'' if args.batch_size is None else f', batch size {args.batch_size}'}; data "
                                 f"{shown_path(args.resources)}/{args.domain}", threads=torch.get_num_threads(),
                                 arguments=args),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT) else str(args.config),
        "seconds_per_model": args.seconds,
        "runs": {},
    }
    failed = []
    out.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets or config:
        for name in args.models or config[dataset]["models"]:
            if name not in config[dataset]["models"]:
                continue
            data = args.resources / args.domain / dataset / "data"
            print(f"{args.domain}/{dataset}/{name}: training {args.seconds:.0f} s on {device}", flush=True)
            try:
                result = check_model(name, data, config[dataset]["models"][name], device=device,
                                     seconds=args.seconds, max_steps=args.max_steps, n_sample=args.sample,
                                     batch_size=args.batch_size)
            except Exception as error:  # one model's crash is its failure, not the end of the others' checks
                traceback.print_exc()
                result = {"error": f"{type(error).__name__}: {error}"}
            result["cpu_bench"] = cpu_figures(args.domain, dataset, name)
            results["runs"][f"{dataset}/{name}"] = result
            print(json.dumps(result, indent=None), flush=True)
            if "error" in result or not result["loss_falls"] or result["sample_decodable_fraction"] == 0.0:
                failed.append(f"{dataset}/{name}")
            out.write_text(json.dumps(results, indent=2) + "\n")  # after each model: a cut-off step keeps its figures
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    if failed:
        print(f"FAILED (crashed, loss did not fall or no sample decoded): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
