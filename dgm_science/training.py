"""One LightningModule for any GenerativeModel, and the Trainer factory.

Lightning owns the loop, devices (``accelerator: auto``), mixed precision, DDP / multi-node and
resumable checkpoints; this module only says what a step is.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from dgm_science.base import GenerativeModel
from dgm_science.config import TrainConfig

log = logging.getLogger(__name__)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
    return 1


def step_seed(seed: int, step: int, micro_batch: int) -> int:
    """The seed of the random draws (noise, diffusion times, dropout) of one micro-batch: a
    function of (run seed, optimisation step, global micro-batch index), so that a run draws the
    same numbers however its global batch is split over ranks and accumulation, and a resumed run
    the numbers an uninterrupted one would have."""
    return int(np.random.SeedSequence([seed, step, micro_batch]).generate_state(1, np.uint64)[0] >> 1)


class GenerativeLightningModule(L.LightningModule):
    """Trains ``model.loss``; validates the per-example negative log-likelihood (or -ELBO).

    Before each training step torch's generators are seeded with :func:`step_seed` of (``seed``,
    step, global micro-batch index ``rank * accumulate + batch_idx % accumulate``): ranks draw
    different numbers for their different examples, and 2 ranks with batch B/2 draw for each half
    what one process accumulating the two halves draws."""

    def __init__(self, model: GenerativeModel, train_config: TrainConfig, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.train_config = train_config
        self.seed = seed
        self._fit_started: float | None = None
        self._elapsed = 0.0  # seconds since the fit started, the same on every rank (time-boxed schedule)

    def on_train_start(self) -> None:
        self._fit_started = time.monotonic()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        accumulate = self.trainer.accumulate_grad_batches
        micro_batch = self.global_rank * accumulate + batch_idx % accumulate
        torch.manual_seed(step_seed(self.seed, self.global_step, micro_batch))
        if self.train_config.max_time_minutes is not None and self._fit_started is not None:
            # rank 0's clock: every rank must take the same learning rate
            self._elapsed = float(self.trainer.strategy.broadcast(time.monotonic() - self._fit_started, src=0))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if batch_idx % self.trainer.accumulate_grad_batches == 0:  # once per optimisation step (EMA updates)
            self.model.set_training_step(self.global_step)
        loss = self.model.loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {self.global_step}: {loss.item()}")
        size = _batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in self.model.metrics_to_log().items():
            self.log(f"train/{name}", value, batch_size=size)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        nll = -self.model.log_prob(batch)
        self.log("val/nll", nll.mean(), prog_bar=True, sync_dist=True, batch_size=_batch_size(batch))

    def configure_optimizers(self) -> Any:
        cfg = self.train_config
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.98),
            # one kernel for all parameters; Lightning cannot clip the gradients of a fused optimizer
            # under mixed precision (it unscales them itself), so bf16-mixed / 16-mixed runs unfused
            fused=not resolve_precision(cfg).endswith("-mixed"),
        )

        def schedule(step: int) -> float:
            """Linear warm-up, then cosine decay to 10 % over whichever budget ends first:
            ``max_steps`` or ``max_time_minutes`` (so a time-boxed run still anneals)."""
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            if cfg.max_time_minutes is not None:
                progress = max(progress, self._elapsed / (60 * cfg.max_time_minutes))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def resolve_precision(cfg: TrainConfig) -> str:
    """``auto``: bf16 mixed precision on a CUDA GPU that supports it, 32-bit otherwise."""
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported() and cfg.accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed"
    return "32-true"


class KeepBest(L.Callback):
    """Keeps a copy of the model weights of the validation with the lowest ``val/nll`` (since
    this process started); ``restore`` puts them back."""

    def __init__(self) -> None:
        self.best_nll = math.inf
        self.best_step = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        nll = trainer.callback_metrics.get("val/nll")
        if nll is not None and float(nll) < self.best_nll:
            self.best_nll, self.best_step = float(nll), trainer.global_step
            self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}

    def restore(self, module: L.LightningModule) -> dict[str, float]:
        if self.state is None:
            return {}
        module.model.load_state_dict(self.state)
        log.info("restored the weights of step %d (val/nll %.4f)", self.best_step, self.best_nll)
        return {"best_step": self.best_step, "best_val_nll": self.best_nll}


class SlurmTasksError(RuntimeError):
    """A Slurm job started a different number of tasks than the training asks for processes."""


def requested_processes(cfg: TrainConfig) -> int:
    """How many training processes (devices x nodes) the config asks for, as Lightning counts
    them: ``devices: auto`` is every visible GPU where one is used, else 1; ``-1`` every GPU; a
    list such as ``"0,1"`` its length."""
    gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    devices = cfg.devices
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            count = torch.cuda.device_count() if gpu else 1
        elif "," in text or text.startswith("["):
            count = len([d for d in text.strip("[]").split(",") if d.strip()])
        else:
            try:
                count = int(text)
            except ValueError:
                raise ValueError(f"train.devices: {devices!r} is not auto, a number or a list of device ids") from None
    else:
        count = devices
    if count == -1:
        count = torch.cuda.device_count() if gpu else (os.cpu_count() or 1)
    return max(1, count) * cfg.num_nodes


def check_slurm_tasks(cfg: TrainConfig, environ: dict[str, str] | None = None) -> None:
    """Inside a Slurm job (``SLURM_JOB_ID`` or ``SLURM_NTASKS`` set, not an interactive ``bash`` /
    ``interactive`` shell), Lightning's SLURM environment runs one training process per Slurm task
    and does not start more; a config asking for more (or fewer) processes than the job's tasks
    would silently train with the wrong number. Raise one error that says how to ask for them."""
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env and "SLURM_NTASKS" not in env:
        return
    if env.get("SLURM_JOB_NAME") in ("bash", "interactive"):  # Lightning launches processes itself there
        return
    tasks = int(env.get("SLURM_NTASKS", "1"))
    wanted = requested_processes(cfg)
    if wanted != tasks:
        per_node = wanted // cfg.num_nodes
        raise SlurmTasksError(
            f"train.devices={cfg.devices!r} x train.num_nodes={cfg.num_nodes} asks for {wanted} training processes, "
            f"but this Slurm job (SLURM_JOB_ID={env.get('SLURM_JOB_ID', '?')}) started {tasks} task(s): Lightning runs "
            f"one process per Slurm task. Ask Slurm for one task per device (sbatch --nodes={cfg.num_nodes} "
            f"--ntasks-per-node={per_node} --gpus-per-node={per_node}, every task seeing the node's GPUs, and "
            f"launch with `srun dgm train ...`; in a Snakemake Slurm profile, as many tasks as GPUs for the rule), "
            f"or set train.devices to {tasks // max(1, cfg.num_nodes) or 1}.")


def make_trainer(cfg: TrainConfig, work_dir: Path, *, progress: bool, shards_itself: bool = False,
                 extra_callbacks: list[L.Callback] | None = None, accumulate_grad_batches: int = 1) -> L.Trainer:
    """Trainer with CSV logs (loss per step) and a resumable ``last.ckpt`` under ``work_dir``.

    ``shards_itself``: the loaders' samplers split the data across ranks themselves (the samplers of
    :mod:`dgm_science.batching`), so Lightning must not put a DistributedSampler on top."""
    checkpoint = ModelCheckpoint(
        dirpath=work_dir / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=cfg.checkpoint_every_steps,
    )
    callbacks: list[L.Callback] = [checkpoint, *(extra_callbacks or [])]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    max_time = None
    if cfg.max_time_minutes is not None:
        max_time = {"minutes": cfg.max_time_minutes}
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=resolve_precision(cfg),
        max_steps=cfg.max_steps,
        max_epochs=-1,
        max_time=max_time,
        val_check_interval=cfg.val_every_steps * accumulate_grad_batches,  # in batches, not steps
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.val_batches,
        gradient_clip_val=cfg.grad_clip,
        accumulate_grad_batches=accumulate_grad_batches,
        logger=CSVLogger(work_dir, name="logs", version=""),  # writes on rank 0 only
        callbacks=callbacks,
        log_every_n_steps=1,  # loss per step in the CSV log
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=not shards_itself,
        deterministic=False,
    )


def _shards_itself(loader: Any) -> bool:
    return any(getattr(getattr(loader, attribute, None), "shards_across_ranks", False)
               for attribute in ("batch_sampler", "sampler"))


def fit(
    model: GenerativeModel,
    cfg: TrainConfig,
    train_loader: Any,
    val_loader: Any,
    work_dir: Path,
    *,
    progress: bool,
    seed: int = 0,
    accumulate_grad_batches: int = 1,
    callbacks: list[L.Callback] | None = None,
) -> dict[str, Any]:
    """Train, resuming from ``work_dir/checkpoints/last.ckpt`` if a killed run left one.

    Under DDP every rank returns; ``global_rank`` and ``world_size`` in the result say which one
    this is (only rank 0 should write outputs). Loaders either all shard themselves (samplers of
    :mod:`dgm_science.batching`) or none does (Lightning then adds DistributedSamplers).
    ``accumulate_grad_batches`` micro-batches make one optimisation step."""
    shards = {_shards_itself(train_loader), _shards_itself(val_loader)}
    if len(shards) > 1:
        raise ValueError("the training and validation loaders must both shard across ranks themselves or both not")
    check_slurm_tasks(cfg)
    module = GenerativeLightningModule(model, cfg, seed=seed)
    keep_best = KeepBest() if cfg.keep_best else None
    trainer = make_trainer(cfg, work_dir, progress=progress, shards_itself=shards.pop(),
                           extra_callbacks=[*(callbacks or []), *([keep_best] if keep_best else [])],
                           accumulate_grad_batches=accumulate_grad_batches)
    last = work_dir / "checkpoints" / "last.ckpt"
    resume = str(last) if last.is_file() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = keep_best.restore(module) if keep_best else {}
    return {"global_step": trainer.global_step, "resumed_from": resume, "global_rank": trainer.global_rank,
            "world_size": trainer.world_size, **metrics, **best}
