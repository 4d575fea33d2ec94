"""One LightningModule for any GenerativeModel, and the Trainer factory.

Lightning owns the loop, devices (``accelerator: auto``), mixed precision, DDP / multi-node and
resumable checkpoints; this module only says what a step is.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from dgm_science.base import GenerativeModel
from dgm_science.batching import LengthBucketBatchSampler
from dgm_science.config import TrainConfig

log = logging.getLogger(__name__)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
    return 1


class GenerativeLightningModule(L.LightningModule):
    """Trains ``model.loss``; validates the per-example negative log-likelihood (or -ELBO)."""

    def __init__(self, model: GenerativeModel, train_config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.train_config = train_config
        self._fit_started: float | None = None

    def on_train_start(self) -> None:
        self._fit_started = time.monotonic()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
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
            fused=True,  # one kernel for all parameters, on CPU and CUDA alike
        )

        def schedule(step: int) -> float:
            """Linear warm-up, then cosine decay to 10 % over whichever budget ends first:
            ``max_steps`` or ``max_time_minutes`` (so a time-boxed run still anneals)."""
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            if cfg.max_time_minutes is not None and self._fit_started is not None:
                elapsed = time.monotonic() - self._fit_started
                progress = max(progress, elapsed / (60 * cfg.max_time_minutes))
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


def make_trainer(cfg: TrainConfig, work_dir: Path, *, progress: bool, shards_itself: bool = False,
                 extra_callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """Trainer with CSV logs (loss per step) and a resumable ``last.ckpt`` under ``work_dir``."""
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
        val_check_interval=cfg.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.val_batches,
        gradient_clip_val=cfg.grad_clip,
        logger=CSVLogger(work_dir, name="logs", version=""),
        callbacks=callbacks,
        log_every_n_steps=1,  # loss per step in the CSV log
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        # A LengthBucketBatchSampler shards across ranks itself; plain loaders get Lightning's.
        use_distributed_sampler=not shards_itself,
        deterministic=False,
    )


def fit(
    model: GenerativeModel,
    cfg: TrainConfig,
    train_loader: Any,
    val_loader: Any,
    work_dir: Path,
    *,
    progress: bool,
) -> dict[str, Any]:
    """Train, resuming from ``work_dir/checkpoints/last.ckpt`` if a killed run left one."""
    module = GenerativeLightningModule(model, cfg)
    shards_itself = isinstance(getattr(train_loader, "batch_sampler", None), LengthBucketBatchSampler)
    keep_best = KeepBest() if cfg.keep_best else None
    trainer = make_trainer(cfg, work_dir, progress=progress, shards_itself=shards_itself,
                           extra_callbacks=[keep_best] if keep_best else None)
    last = work_dir / "checkpoints" / "last.ckpt"
    resume = str(last) if last.is_file() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = keep_best.restore(module) if keep_best else {}
    return {"global_step": trainer.global_step, "resumed_from": resume, **metrics, **best}
