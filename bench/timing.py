"""What the bench scripts share: the timing loop (training steps/s and sampling throughput of one
registered model built from prepared data, whatever its domain), and how a result records the
machine, the paths it was measured on and its provenance (commit, command, config, date, machine:
the keys a result file under docs/results/ carries, which ``bench/result_tables.py`` copies over)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dgm_science import api, registry
from dgm_science.training import resolve_precision

WARMUP_STEPS = 3
ROOT = Path(__file__).resolve().parents[1]


def shown_path(path: Path) -> str:
    """A path as recorded in the results: relative to the repository, or only its name (the
    results are committed; a machine's own paths are not)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def cpu_model() -> str:
    """The CPU's model name (times, and which arithmetic is native, depend on it)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where the figures were measured; the load average matters on a shared machine."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def _commit() -> str:
    """The short commit of the code, ``-dirty`` when tracked files other than recorded results
    (bench/results/, docs/results/) differ from it: a bench rewriting its own JSON does not change the
    code the next bench runs. ``unknown (...)`` outside a git checkout (a copied tree), which
    ``bench/result_tables.py`` refuses."""
    from dgm_science.docs import current_commit

    try:
        commit = current_commit(ROOT)
        if commit.endswith("-dirty"):
            changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                     capture_output=True, text=True, check=True).stdout.splitlines()
            if all(line[3:].startswith(("bench/results/", "docs/results/")) for line in changed):
                commit = commit.removesuffix("-dirty")
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        return f"unknown ({ROOT} is not a git checkout: {error})"
    return commit


def machine_words(threads: int | str | None = None) -> str:
    """The machine in words, as a result file states it: CPU cores, the GPU or "no GPU", and the threads."""
    from dgm_science.docs import machine as cores_and_gpu

    words = cores_and_gpu()
    if "," not in words:  # docs.machine() names the GPU after a comma when there is one
        words += ", no GPU"
    return words if threads is None else f"{words}, threads: {threads}"


def provenance(script: str | Path, argv: list[str] | None, config: str, threads: int | str | None = None,
               arguments: argparse.Namespace | None = None, **settings) -> dict:
    """What made a bench result, taken when the bench starts (the code that runs, not what changed
    since): ``commit``, ``command`` (``python bench/<script> <argv>``, ``argv`` defaulting to
    ``sys.argv[1:]``), ``config`` (the files and keys read), ``date`` (UTC), ``machine`` in words (CPU
    cores, GPU if torch sees one, torch threads), the same keys a docs/results file carries; besides
    them ``script``, ``host`` (:func:`machine`), every parsed argument (defaults included) and
    ``settings`` (e.g. the model configs read)."""
    argv = sys.argv[1:] if argv is None else argv
    out = {"commit": _commit(), "command": shlex.join(["python", shown_path(Path(script)), *map(str, argv)]),
           "config": config, "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
           "machine": machine_words(threads), "script": shown_path(Path(script)), "host": machine()}
    if arguments is not None:
        out["arguments"] = _plain(vars(arguments))
    if settings:
        out["settings"] = _plain(settings)
    return out


def brief(record: dict) -> dict:
    """The keys of a provenance that a docs/results file carries (for a part of a bench JSON that
    is merged with parts of other runs, e.g. one model's figures)."""
    from dgm_science.docs import PROVENANCE_KEYS

    return {key: record[key] for key in PROVENANCE_KEYS}


def _plain(value):
    """``value`` as JSON: paths as :func:`shown_path`, tuples as lists."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return shown_path(value)
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def time_model(name: str, data: Path, model_config: dict, steps: int, n_sample: int, threads: int,
               checkpoint: Path | None, unit: str) -> dict:
    """Time ``steps`` optimisation steps (after WARMUP_STEPS untimed ones) of ``name`` on ``data``
    with the config's batch size, lr and precision, then the sampling and decoding of ``n_sample``
    items from the trained ``checkpoint`` (seed 0) when it exists, else from the untrained model.
    Throughputs are ``train_{unit}_per_s`` / ``sample_{unit}_per_s`` (+ ``train_tokens_per_s`` for
    token batches)."""
    torch.set_num_threads(threads)
    config = api.RunConfig.parse(name, model_config)
    spec = registry.get("model", name)
    domain = registry.get("domain", spec.domain)
    state = domain.fit_state(data, spec, config.model)
    model = spec.build(config.model, state)
    train_set, _ = domain.datasets(data, spec, config.model, state)
    loader = DataLoader(train_set, batch_size=config.train.batch_size, shuffle=True, collate_fn=train_set.collate,
                        generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, fused=True)
    precision = resolve_precision(config.train)
    model.train()
    tokens = examples = 0
    it = iter(loader)
    for step in range(steps + WARMUP_STEPS):
        if step == WARMUP_STEPS:
            start, tokens, examples = time.perf_counter(), 0, 0
        batch = next(it)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if "tokens" in batch:
            tokens += int((batch["tokens"][:, 1:] != 0).sum())
        examples += next(iter(batch.values())).shape[0]
    train_seconds = time.perf_counter() - start
    # Sampling speed can depend on training (when sequences end), so time a trained checkpoint if any.
    trained = checkpoint is not None and checkpoint.is_file()
    if trained:
        sampler = api.load(checkpoint, device="cpu")
    else:  # the untrained model, decoded as before without valency correction
        plain = domain.SampleConfig(n=config.sample.n, batch_size=config.sample.batch_size,
                                    temperature=config.sample.temperature)  # the domain's decoding options off
        untrained = dataclasses.replace(config, sample=plain)
        sampler = api.LoadedModel(name, model, spec, untrained, domain, state, {})
    start = time.perf_counter()
    decoded = sampler.sample(n_sample, seed=0)
    sample_seconds = time.perf_counter() - start
    return {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),  # not an EMA copy
        "batch_size": config.train.batch_size,
        "precision": precision,
        "train_tokens_per_s": tokens / train_seconds if tokens else None,
        f"train_{unit}_per_s": examples / train_seconds,
        "train_step_seconds": train_seconds / steps,
        "sample_n": n_sample,
        "sample_from": "trained checkpoint (seed 0)" if trained else "untrained model",
        "sample_decodable_fraction": sum(d is not None for d in decoded) / len(decoded),
        "sample_seconds": sample_seconds,
        f"sample_{unit}_per_s": n_sample / sample_seconds,
    }
