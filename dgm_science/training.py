"""One LightningModule for any GenerativeModel, and the Trainer factory.

Lightning owns the loop, devices (``accelerator: auto``), mixed precision, DDP / multi-node and
resumable checkpoints; this module only says what a step is.

Resuming is exact: a run killed at any step and resumed from ``last.ckpt`` logs the losses and ends
with the weights of the uninterrupted run (bit for bit on the CPU). The data order continues (the
loader's position is in the checkpoint, :class:`dgm_science.batching.ResumableDataLoader`), the random
draws of a step are seeded from the step, the learning rate depends on the step only, and the CSV
log is cut back on resume to the rows written before the checkpoint, so that the steps after it,
trained again, appear once.
"""

from __future__ import annotations

import csv
import inspect
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from dgm_science.base import GenerativeModel
from dgm_science.checkpoint import CheckpointError
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
    """Trains ``model.loss``; validates ``model.validation_loss`` (the per-example negative log-likelihood
    or -ELBO unless the model says otherwise).

    Before each training step torch's generators are seeded with :func:`step_seed` of (``seed``,
    step, global micro-batch index ``rank * accumulate + batch_idx % accumulate``): ranks draw
    different numbers for their different examples, and 2 ranks with batch B/2 draw for each half
    what one process accumulating the two halves draws."""

    def __init__(self, model: GenerativeModel, train_config: TrainConfig, seed: int = 0,
                 run: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.train_config = train_config
        self.seed = seed
        self.run = run

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        accumulate = self.trainer.accumulate_grad_batches
        micro_batch = self.global_rank * accumulate + batch_idx % accumulate
        torch.manual_seed(step_seed(self.seed, self.global_step, micro_batch))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        accumulate = self.trainer.accumulate_grad_batches
        if batch_idx % accumulate == 0:  # once per optimisation step (EMA updates)
            self.model.set_training_step(self.global_step)
        loss = self.model.loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {self.global_step}: {loss.item()}")
        size = _batch_size(batch)
        metrics = {"train/loss": loss, **{f"train/{k}": v for k, v in self.model.metrics_to_log().items()}}
        self.log("train/loss", loss, prog_bar=True, batch_size=size, logger=False)
        for name, value in metrics.items():
            if name != "train/loss":
                self.log(name, value, batch_size=size, logger=False)
        if (batch_idx + 1) % accumulate == 0 and self.logger is not None and self.trainer.is_global_zero:
            # The step's row goes to the CSV log now, not after on_train_batch_end as Lightning would:
            # a checkpoint saved at the end of this step then holds it (see on_save_checkpoint).
            row = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in metrics.items()}
            self.logger.log_metrics({**row, "epoch": self.current_epoch}, step=self.global_step)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write the CSV log's buffered rows and record how many there are: a resumed run cuts the
        log back to them and logs the later steps, which it trains again, once more."""
        if isinstance(self.logger, ResumableCSVLogger):
            checkpoint[LOG_ROWS_KEY] = self.logger.flush()
        if self.run is not None:
            checkpoint[RUN_KEY] = self.run

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        nll = self.model.validation_loss(batch)
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
            """Linear warm-up, then cosine decay to 10 % at ``max_steps``: a function of the step
            alone, so that a resumed run takes the learning rates of an uninterrupted one
            (``max_time_minutes`` is only a safety cap that stops the run)."""
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
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

    def state_dict(self) -> dict[str, Any]:  # in last.ckpt: a resumed run keeps the best so far
        return {"best_nll": self.best_nll, "best_step": self.best_step, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_nll, self.best_step, self.state = state["best_nll"], state["best_step"], state["state"]

    def restore(self, module: L.LightningModule) -> dict[str, float]:
        if self.state is None:
            return {}
        module.model.load_state_dict(self.state)
        log.info("restored the weights of step %d (val/nll %.4f)", self.best_step, self.best_nll)
        return {"best_step": self.best_step, "best_val_nll": self.best_nll}


LOG_ROWS_KEY = "dgm_log_rows"  # in last.ckpt: rows of metrics.csv written when it was saved
RUN_KEY = "dgm_run"  # in last.ckpt: what the run trains (model, its model / train config, seed, data)


class _LogWriter(ExperimentWriter):
    """Lightning's CSV writer that, instead of deleting an existing ``metrics.csv``, keeps its first
    ``keep_rows`` rows (a resumed run; a negative number ``-s``: the rows of the steps before ``s``,
    for a checkpoint that did not record its rows) and counts the rows written."""

    def __init__(self, log_dir: str, keep_rows: int | None) -> None:
        self._keep_rows = keep_rows
        super().__init__(log_dir)
        self.rows = 0
        path = Path(self.metrics_file_path)
        if keep_rows is None or not path.is_file():
            return
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            if keep_rows >= 0:
                rows = [row for _, row in zip(range(keep_rows), reader)]
            else:
                rows = [row for row in reader if row.get("step", "").isdigit() and int(row["step"]) < -keep_rows]
        if not keys:  # no header: nothing to keep
            path.unlink()
            return
        self.metrics_keys = keys
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.rows = len(rows)
        if len(rows) < keep_rows:  # (False for a negative keep_rows)
            log.warning("%s has %d rows, fewer than the %d of the checkpoint", path, len(rows), keep_rows)

    def _check_log_dir_exists(self) -> None:
        if self._keep_rows is None and os.path.isfile(self.metrics_file_path):  # a fresh run: a fresh log
            os.remove(self.metrics_file_path)

    def save(self) -> None:
        self.rows += len(self.metrics)
        super().save()


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger(work_dir, name="logs", version="")`` whose log a resumed run continues: it keeps
    the first ``keep_rows`` rows of ``metrics.csv`` (``None``: starts a new file)."""

    def __init__(self, save_dir: Path, keep_rows: int | None = None) -> None:
        super().__init__(save_dir, name="logs", version="")
        self._keep_rows = keep_rows

    @property
    @rank_zero_experiment
    def experiment(self) -> _LogWriter:  # type: ignore[override]
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _LogWriter(self.log_dir, self._keep_rows)
        return self._experiment

    def flush(self) -> int:
        """Write the buffered rows; how many rows the file has (0 off rank 0)."""
        if not isinstance(self._experiment, _LogWriter):
            return 0
        self._experiment.save()
        return self._experiment.rows


class _LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing ``last.ckpt`` every ``every_n_train_steps``; at a step followed by
    a validation it saves once, after the validation, so that no checkpoint lies between a step and
    its validation (Lightning would skip that validation on resume)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._save_after_validation = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0:
            loop = trainer.fit_loop
            try:  # Lightning's own test of whether a validation follows this batch (private API)
                validates = (not loop.epoch_loop._should_accumulate() and loop._data_fetcher is not None
                             and bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher)))
            except (AttributeError, TypeError):  # another Lightning version: save now, as ModelCheckpoint
                validates = False
            if validates:
                self._save_after_validation = True
                return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._save_after_validation and not self._should_skip_saving_checkpoint(trainer):
            self._save_after_validation = False
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        super().on_validation_end(trainer, pl_module)


class Snapshots(L.Callback):
    """Every ``every`` optimisation steps (global step > 0, rank 0), ``save(path, step)`` writes the
    model to ``directory / f"step{step:07d}.ckpt"`` (``train.snapshot_every_steps``): the points of
    a learning curve, evaluated after training."""

    def __init__(self, every: int, directory: Path, save: Any) -> None:
        super().__init__()
        self.every = every
        self.directory = Path(directory)
        self.save = save

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step <= 0 or step % self.every or not trainer.is_global_zero:
            return
        path = self.directory / f"step{step:07d}.ckpt"
        if path.is_file():  # one batch end per step (accumulation: several; a resumed run: again)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.save(path, step)


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing a temporary file renamed onto the checkpoint: a run
    killed while it saves leaves the previous ``last.ckpt`` whole, not half a new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        target = Path(path)
        part = target.with_name(target.name + ".part")
        super().save_checkpoint(checkpoint, part, storage_options)
        os.replace(part, target)


def verify_resume_checkpoint(path: Path) -> dict[str, Any]:
    """Load a Lightning ``last.ckpt`` with ``weights_only=True`` (tensors and plain containers only:
    a file that would run code when unpickled is refused, not run) and check it is a training
    checkpoint; one CheckpointError naming the file and what to do otherwise."""
    advice = ("delete it (or move it aside) to start the training afresh, or pass fresh=True "
              "(`dgm train --fresh`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():  # e.g. "pickle data was truncated"
            raise CheckpointError(f"{path}: cannot resume from this checkpoint: it is corrupt or truncated "
                                  f"(UnpicklingError: {str(err)[:200]}); {advice}") from None
        # what weights_only refuses: classes and functions to call
        raise CheckpointError(f"{path}: refusing to resume from this checkpoint: it holds objects other than "
                              f"tensors and plain data, which could run code when loaded (nothing was run); "
                              f"{advice}") from None
    except Exception as err:  # truncated zip archives, bad records, ...: all mean the same here
        text = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        reason = f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__
        raise CheckpointError(f"{path}: cannot resume from this checkpoint: it is corrupt or truncated "
                              f"({reason}); {advice}") from None
    if not isinstance(payload, dict) or not {"state_dict", "global_step", "loops"} <= set(payload):
        raise CheckpointError(f"{path}: cannot resume from this file, it is not a Lightning training checkpoint; "
                              f"{advice}")
    return payload


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
                 extra_callbacks: list[L.Callback] | None = None, accumulate_grad_batches: int = 1,
                 keep_log_rows: int | None = None, partial_updates: bool = False) -> L.Trainer:
    """Trainer with CSV logs (loss per step) and a resumable ``last.ckpt`` under ``work_dir``.

    ``shards_itself``: the loaders' samplers split the data across ranks themselves (the samplers of
    :mod:`dgm_science.batching`), so Lightning must not put a DistributedSampler on top.
    ``keep_log_rows``: a resumed run's CSV log keeps that many rows of the existing one.
    ``partial_updates``: the model updates only some of its parameters at a step (a GAN's critic or
    generator): DDP must then find the unused ones (``strategy: auto`` only)."""
    checkpoint = _LastCheckpoint(
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
        strategy=("ddp_find_unused_parameters_true" if partial_updates and cfg.strategy == "auto"
                  and requested_processes(cfg) > 1 else cfg.strategy),
        precision=resolve_precision(cfg),
        max_steps=cfg.max_steps,
        max_epochs=-1,
        max_time=max_time,
        val_check_interval=cfg.val_every_steps * accumulate_grad_batches,  # in batches, not steps
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.val_batches,
        gradient_clip_val=cfg.grad_clip,
        accumulate_grad_batches=accumulate_grad_batches,
        logger=ResumableCSVLogger(work_dir, keep_rows=keep_log_rows),  # writes on rank 0 only
        plugins=[_AtomicCheckpointIO()],
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
    fresh: bool = False,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, resuming from ``work_dir/checkpoints/last.ckpt`` if a killed run left one (exactly: see
    the module docstring); ``fresh``: move such a file aside to ``last.ckpt.ignored`` and start anew.
    A ``last.ckpt`` that is corrupt or would run code when loaded raises CheckpointError. ``run``
    (plain data: the model, its config, seed, data) is stored in ``last.ckpt``; one written by a run
    with another ``run`` (e.g. Snakemake retraining after a config change) is moved aside, not
    resumed.

    ``hit_time_cap`` in the result: training stopped at ``max_time_minutes`` before ``max_steps``.

    Under DDP every rank returns; ``global_rank`` and ``world_size`` in the result say which one
    this is (only rank 0 should write outputs). Loaders either all shard themselves (samplers of
    :mod:`dgm_science.batching`) or none does (Lightning then adds DistributedSamplers).
    ``accumulate_grad_batches`` micro-batches make one optimisation step."""
    shards = {_shards_itself(train_loader), _shards_itself(val_loader)}
    if len(shards) > 1:
        raise ValueError("the training and validation loaders must both shard across ranks themselves or both not")
    check_slurm_tasks(cfg)
    last = work_dir / "checkpoints" / "last.ckpt"
    keep_log_rows = None
    if not fresh and last.is_file():
        payload = verify_resume_checkpoint(last)
        previous = payload.get(RUN_KEY)
        if run is not None and previous is None:  # an older dgm-science: what it trained is unknown
            log.warning("%s does not record what it trains (an older dgm-science wrote it): not resumed; "
                        "training starts afresh", last)
            fresh = True
        elif run is not None and previous != run:
            changed = sorted(k for k in {*previous, *run} if previous.get(k) != run.get(k))
            log.warning("%s is of a run with another %s: not resumed; training starts afresh", last,
                        ", ".join(changed))
            fresh = True
        else:
            # rows of the CSV log written when it was saved; a checkpoint of an older version of this
            # code did not record them: keep the rows of the steps before it
            keep_log_rows = int(payload.get(LOG_ROWS_KEY, -int(payload["global_step"])))
        del payload
    if fresh and last.is_file() and rank_zero_only.rank == 0:  # ranks started together (srun) must not race
        aside = last.with_name(last.name + ".ignored")
        os.replace(last, aside)
        log.info("fresh start: moved %s aside to %s", last, aside)
    resume = str(last) if not fresh and last.is_file() else None
    if resume:
        log.info("resuming from %s", resume)
    module = GenerativeLightningModule(model, cfg, seed=seed, run=run)
    keep_best = KeepBest() if cfg.keep_best else None
    # patience counted in validations (every val_every_steps), checked after each (not at epoch ends)
    stopper = (EarlyStopping(monitor="val/nll", mode="min", patience=cfg.early_stopping_patience,
                             check_on_train_epoch_end=False)
               if cfg.early_stopping_patience is not None else None)
    trainer = make_trainer(cfg, work_dir, progress=progress, shards_itself=shards.pop(),
                           extra_callbacks=[*(callbacks or []), *([keep_best] if keep_best else []),
                                            *([stopper] if stopper else [])],
                           accumulate_grad_batches=accumulate_grad_batches, keep_log_rows=keep_log_rows,
                           partial_updates=model.partial_updates)
    # verified above with weights_only=True; Lightning >= 2.5 loads it so too (older: torch's default)
    safe = {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume, **safe)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = keep_best.restore(module) if keep_best else {}
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    hit_time_cap = bool(timer is not None and trainer.global_step < cfg.max_steps and timer.time_remaining() <= 0)
    stopped_early = ({"stopped_early": bool(stopper.wait_count >= stopper.patience
                                            and trainer.global_step < cfg.max_steps)} if stopper else {})
    return {"global_step": trainer.global_step, "resumed_from": resume, "global_rank": trainer.global_rank,
            "world_size": trainer.world_size, "hit_time_cap": hit_time_cap, **stopped_early, **metrics, **best}
