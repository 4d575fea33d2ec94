"""Trains tiny models through the real Lightning Trainer and the project's training module,
samplers and loaders; ``tests/test_distributed.py`` runs it once in one process and once under
``strategy="ddp"`` on 2 CPU processes (Lightning launches the second by running this script
again), and compares the weights.

    python tests/distributed_worker.py --out DIR --devices 2 --batch 4 --steps 4
    python tests/distributed_worker.py --out DIR --devices 1 --batch 4 --steps 4 --reference

Every rank writes ``DIR/<model>.rank<r>.pt`` (the trained state dict) and
``DIR/<model>.rank<r>.gradient.pt`` (the first step's gradient). With ``--reference`` one process
writes ``DIR/<model>.accumulate[.gradient].pt`` (batch B/2, 2 micro-batches accumulated per step:
what 2 ranks compute) and ``DIR/<model>.single[.gradient].pt`` (batch B in one piece). With ``--api`` each
rank also runs ``api.train`` on tiny SMILES data into ``DIR/api`` and writes the files it opened
for writing there (from Python's audit events) to ``DIR/writes.rank<r>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402

# One model of each family: autoregressive, flows (one with dequantisation noise, one without any
# randomness in its loss), VAE, Gaussian diffusion (with its EMA copy), discrete diffusion.
MODELS = ("smiles-arm", "graph-flow", "ala2-flow", "seq-vae", "maze-diffuser", "graph-diffusion")
# graph-flow's ActNorm layers see dequantised data, whose noise 2 ranks draw for their halves
# separately: no single process reproduces their first-batch statistics, so every run of it keeps
# the default initialisation (ala2-flow, without noise, checks the ranks' shared initialisation).
NOISY_ACTNORM_INPUT = {"graph-flow"}
N_TRAIN, N_VALID = 36, 8  # the trajectory fixture has at most 45 windows


class RowsDataset(torch.utils.data.Dataset):
    """Examples = rows of a batch of equal-shape tensors; ``lengths`` makes the loaders bucket."""

    n_too_long = 0

    def __init__(self, batch: dict[str, torch.Tensor], rows: range, lengths: torch.Tensor | None = None) -> None:
        self.batch, self.rows = batch, list(rows)
        if lengths is not None:
            self.lengths = lengths[self.rows].tolist()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return self.rows[i]

    def collate(self, rows: list[int]) -> dict[str, torch.Tensor]:
        return {key: value[rows] for key, value in self.batch.items()}


def case(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]:
    """(tiny model config, domain state, batch of N_TRAIN + N_VALID examples, lengths or None)."""
    from tests.test_contract import fixtures_of

    if name not in MODELS:
        raise ValueError(f"no distributed test case for {name}")
    tiny, state, batch = fixtures_of(name).tiny_case(name, N_TRAIN + N_VALID)
    if name == "maze-diffuser":
        tiny = {**tiny, "ema_decay": 0.9}  # the moving average must stay in step across ranks too
    lengths = (batch["tokens"] != 0).sum(1) if "tokens" in batch else None  # pad id 0 in both vocabularies
    return tiny, state, {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}, lengths


def skip_actnorm_initialization(model: torch.nn.Module) -> None:
    """Keep ActNorm's default weights (identity) instead of its data-dependent initialisation."""
    from dgm_science.families.flows import ActNorm

    for module in model.modules():
        if isinstance(module, ActNorm):
            module.initialized.fill_(True)


def initialize_actnorm(model: torch.nn.Module, train_set: RowsDataset, global_batch: int) -> None:
    """ActNorm's data-dependent initialisation from the first step's whole global batch, which is
    what 2 ranks compute together (their statistics are all-reduced); accumulating micro-batches
    in one process would initialise from the first micro-batch alone."""
    from dgm_science.batching import RandomBatchSampler
    from dgm_science.families.flows import ActNorm

    if not any(isinstance(m, ActNorm) for m in model.modules()):
        return
    assert not hasattr(train_set, "lengths"), "the first global batch is the random sampler's"
    first = next(iter(RandomBatchSampler(len(train_set), global_batch, seed=0)))
    model.train()
    with torch.no_grad():
        model.loss(train_set.collate(first))
    assert all(bool(m.initialized) for m in model.modules() if isinstance(m, ActNorm))


def train_case(name: str, out: Path, *, devices: int, batch: int, steps: int, accumulate: int) -> dict[str, Any]:
    from dgm_science import api, registry
    from dgm_science.config import TrainConfig, from_dict
    from dgm_science.training import fit

    tiny, state, data, lengths = case(name)
    spec = registry.get("model", name)
    torch.manual_seed(0)
    model = spec.build(from_dict(spec.Config, tiny, name), state)
    cfg = TrainConfig(batch_size=batch, lr=3e-3, warmup_steps=1, max_steps=steps, val_every_steps=steps,
                      val_batches=2, grad_clip=1.0, checkpoint_every_steps=10_000, accelerator="cpu",
                      devices=devices, strategy="ddp" if devices > 1 else "auto", precision="32-true")
    train_set = RowsDataset(data, range(N_TRAIN), lengths)
    val_set = RowsDataset(data, range(N_TRAIN, N_TRAIN + N_VALID))
    train_loader, val_loader = api.data_loaders(train_set, val_set, cfg, seed=0, accumulate_grad_batches=accumulate)
    if name in NOISY_ACTNORM_INPUT:
        skip_actnorm_initialization(model)
    elif accumulate > 1:
        initialize_actnorm(model, train_set, batch * accumulate)
    first = FirstGradient()
    result = fit(model, cfg, train_loader, val_loader, out / f"{name}.{devices}x{batch}x{accumulate}",
                 progress=False, seed=0, accumulate_grad_batches=accumulate, callbacks=[first])
    return result | {"state_dict": model.state_dict(), "gradient": first.gradient,
                     "validated_examples": first.validated_examples}


class FirstGradient(L.Callback):
    """The gradient of the first optimisation step (after DDP's all-reduce, before clipping), and
    how many validation examples this rank scored."""

    def __init__(self) -> None:
        self.gradient: dict[str, torch.Tensor] = {}
        self.validated_examples = 0  # by this rank

    def on_validation_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self.validated_examples += len(next(iter(batch.values())))

    def on_before_optimizer_step(self, trainer: L.Trainer, module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step == 0:
            self.gradient = {name: p.grad.detach().clone() for name, p in module.model.named_parameters()
                             if p.grad is not None}


def record_writes(root: Path) -> list[str]:
    """Paths under ``root`` this process opens for writing, creates or renames onto (audit events)."""
    written: list[str] = []
    root_text = str(root.resolve()) + os.sep

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
            path, mode, flags = args[0], args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and os.path.abspath(path).startswith(root_text):
                written.append(os.path.abspath(path))
        elif event in ("os.rename", "os.replace") and len(args) > 1:
            if os.path.abspath(args[1]).startswith(root_text):
                written.append(os.path.abspath(args[1]))

    sys.addaudithook(hook)
    return written


def train_api(out: Path, devices: int) -> dict[str, Any]:
    from dgm_science import api

    smiles = (ROOT / "tests/data/moses_sample.smi").read_text().split()
    data = out / "api-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.smi").write_text("\n".join(smiles[:200]) + "\n")
    (data / "valid.smi").write_text("\n".join(smiles[200:240]) + "\n")
    config = api.RunConfig.parse("smiles-arm", {
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.0, "max_length": 90},
        # a time budget that is not reached: the ranks follow rank 0's clock in the cosine schedule
        "train": {"batch_size": 8, "max_steps": 4, "warmup_steps": 2, "val_every_steps": 2, "val_batches": 2,
                  "checkpoint_every_steps": 2, "max_time_minutes": 30.0, "accelerator": "cpu", "devices": devices,
                  "strategy": "ddp" if devices > 1 else "auto"},
    })
    return api.train("smiles-arm", data, config, seed=0, out=out / "api" / "model.ckpt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True, help="per-device batch size (B/2)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--api", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    written = record_writes(args.out / "api") if args.api else None
    summary: dict[str, Any] = {}
    for name in args.models.split(","):
        if args.reference:
            # what 2 ranks of batch B/2 compute, in one process: 2 micro-batches of B/2 per step; batch B
            for tag, batch, accumulate in (("accumulate", args.batch, 2), ("single", args.batch * 2, 1)):
                result = train_case(name, args.out, devices=1, batch=batch, steps=args.steps, accumulate=accumulate)
                torch.save(result.pop("state_dict"), args.out / f"{name}.{tag}.pt")
                torch.save(result.pop("gradient"), args.out / f"{name}.{tag}.gradient.pt")
                summary[f"{name}.{tag}"] = result
        else:
            result = train_case(name, args.out, devices=args.devices, batch=args.batch, steps=args.steps,
                                accumulate=1)
            torch.save(result.pop("state_dict"), args.out / f"{name}.rank{result['global_rank']}.pt")
            torch.save(result.pop("gradient"), args.out / f"{name}.rank{result['global_rank']}.gradient.pt")
            summary[name] = result
    rank = int(os.environ.get("LOCAL_RANK", 0))
    if args.api:
        info = train_api(args.out, args.devices)
        rank = info["global_rank"]
        summary["api"] = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
        (args.out / f"writes.rank{rank}.json").write_text(json.dumps(sorted(set(written))))
    (args.out / f"summary.rank{rank}.json").write_text(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
