"""Library entry points: train a registered model, load a checkpoint, sample, score, encode.

>>> from dgm_science import api
>>> m = api.load("results/<domain>/<dataset>/<model>/seed0/model.ckpt")
>>> items = m.sample(100, seed=1)              # the domain's objects (None: an invalid sample)
>>> log_p = m.log_likelihood(items)            # nats per item
>>> z = m.encode(items[:2])                    # models with an encoder (base.Autoencoder: VAEs)
>>> path = m.interpolate(items[0], items[1], steps=5)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dgm_science import checkpoint, registry
from dgm_science.batching import LengthBucketBatchSampler, RandomBatchSampler, ResumableDataLoader, ShardedSampler
from dgm_science.base import Autoencoder, Domain, GenerativeModel, LatentVariableModel, ModelSpec
from dgm_science.config import ConfigError, SampleConfig, TrainConfig, as_dict, from_dict
from dgm_science.errors import DataError
from dgm_science.families.hierarchical_vae import active_units
from dgm_science.utils import seed_everything, unknown_summary
from dgm_science.wheels import sha256_of

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A model's whole config: its own hyper-parameters, training and sampling settings (the
    ``sample`` block is its domain's ``Domain.SampleConfig``)."""

    model: Any
    train: TrainConfig
    sample: SampleConfig

    @classmethod
    def parse(cls, model_name: str, data: dict[str, Any], where: str = "config") -> "RunConfig":
        spec = registry.get("model", model_name)
        unknown = sorted(set(data) - {"model", "train", "sample"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: model, sample, train")
        return cls(
            from_dict(spec.Config, data.get("model"), f"{where}.model"),
            from_dict(TrainConfig, data.get("train"), f"{where}.train"),
            from_dict(registry.get("domain", spec.domain).SampleConfig, data.get("sample"), f"{where}.sample"),
        )

    @classmethod
    def for_training(cls, model_name: str, data: dict[str, Any], where: str = "config") -> "RunConfig":
        """``parse`` for a training run: where ``train.init_from`` names a prior checkpoint, the model
        block is the prior's with the keys given here on top (``train`` checks them against the
        prior's), so that a fine-tuning config needs no copy of the prior's architecture."""
        train = data.get("train") if isinstance(data, dict) else None
        path = train.get("init_from") if isinstance(train, dict) else None
        if isinstance(path, str):
            prior = load_prior(path, model_name, where)
            given = data.get("model")
            if given is None or isinstance(given, dict):  # otherwise parse names the error
                data = {**data, "model": {**prior["config"]["model"], **(given or {})}}
        return cls.parse(model_name, data, where)

    def to_dict(self) -> dict[str, Any]:
        return {"model": as_dict(self.model), "train": as_dict(self.train), "sample": as_dict(self.sample)}


def load_prior(path: str | Path, model_name: str, where: str = "config") -> dict[str, Any]:
    """The checkpoint ``train.init_from`` names, read with ``weights_only=True``; ConfigError unless it
    holds the same registered model (a fine-tuned model keeps its prior's network and domain state)."""
    payload = checkpoint.load(path)
    if payload["model"] != model_name:
        raise ConfigError(f"{where}.train.init_from: {path} is a {payload['model']!r} checkpoint (domain "
                          f"{payload.get('domain')!r}), not {model_name!r}: fine-tuning starts from a checkpoint "
                          f"of the same registered model")
    return payload


def check_prior_config(spec: type[ModelSpec], model_cfg: Any, prior: dict[str, Any], path: str | Path) -> None:
    """ConfigError naming each model key that differs from the prior checkpoint's, but for the
    spec's ``training_only_keys`` (e.g. dropout): the network and vocabulary are the prior's."""
    prior_cfg = from_dict(spec.Config, _without_retired_keys(prior["model"], prior["config"]).get("model"),
                          f"{path}: config.model")
    differ = [f"model.{f.name}: {getattr(model_cfg, f.name)!r} here, {getattr(prior_cfg, f.name)!r} in the prior"
              for f in dataclasses.fields(spec.Config)
              if f.name not in spec.training_only_keys and getattr(model_cfg, f.name) != getattr(prior_cfg, f.name)]
    if differ:
        raise ConfigError(f"train.init_from: {path}: this config's model block does not match the prior's "
                          f"({'; '.join(differ)}): a fine-tuned model keeps its prior's architecture and "
                          f"vocabulary; leave these keys out (the prior's are used) or train from scratch without "
                          f"init_from")


@dataclasses.dataclass
class LoadedModel:
    """A trained model with everything needed to use it: spec, config, domain and its state."""

    name: str
    model: GenerativeModel
    spec: type[ModelSpec]
    config: RunConfig
    domain: type[Domain]
    state: dict[str, Any]
    info: dict[str, Any]
    path: Path | None = None
    """The checkpoint file it was loaded from."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def typicality(self) -> dict[str, float] | None:
        """Mean, std and size of -log p(x) per unit of size (``Domain.item_sizes``) over the
        held-out typical set recorded at training time; None for checkpoints without it."""
        stats = self.info.get("typicality")
        if not isinstance(stats, dict) or not stats.get("std", 0) > 0:
            return None
        return stats

    def ood_score(self, log_likelihood: np.ndarray, items: Sequence[Any]) -> np.ndarray | None:
        """Out-of-distribution score per item: |-log p(x) / size(x) - mean| / std over the typical
        set, the two-sided typicality test of Nalisnick et al. (2019) for one input, on the
        likelihood per unit of size (heavy atom, residue, step) so that size alone does not make an
        item (a)typical.
        NaN where log p is NaN; None when the checkpoint has no typicality statistics."""
        stats = self.typicality
        if stats is None:
            return None
        per_size = -np.asarray(log_likelihood, dtype=float) / self.domain.item_sizes(items)
        return np.abs(per_size - stats["mean"]) / stats["std"]

    def sample(
        self, n: int, *, seed: int = 0, temperature: float | None = None, batch_size: int | None = None,
        progress: bool = False, **decode_options: Any,
    ) -> list[Any]:
        """Decoded samples (None for an undecodable sample), drawn in batches with one seeded generator."""
        return self.sample_table(n, seed=seed, temperature=temperature, batch_size=batch_size, progress=progress,
                                 **decode_options)[0]

    @torch.no_grad()
    def sample_table(
        self, n: int, *, seed: int = 0, temperature: float | None = None, batch_size: int | None = None,
        progress: bool = False, generator: torch.Generator | None = None, **decode_options: Any,
    ) -> tuple[list[Any], dict[str, list[Any]]]:
        """Decoded samples and the domain's extra per-sample columns (e.g. validity without valency
        correction); ``decode_options`` go to the domain's decoder (``valency_correction=True``),
        by default those of the checkpoint's sample block (``SampleConfig.decode_options``: a
        molecules model's ``sample.valency_correction``). A ``generator`` (on the model's device) is
        continued instead of seeding a new one, so rounds of a search draw one reproducible stream.
        Conditional domains draw a condition per sample (a label for labelled sequences, a start
        and goal for trajectories), or take the domain's ``condition_options`` (``label``;
        ``start``, ``goal``) for all; labels come back as the ``label`` column."""
        if n <= 0:
            raise ValueError(f"-n must be a positive number of samples, got {n}")
        decode_options = {**self.config.sample.decode_options(), **decode_options}
        batch_size = batch_size or self.config.sample.batch_size
        temperature = self.config.sample.temperature if temperature is None else temperature
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        self.model.eval()
        out: list[Any] = []
        columns: dict[str, list[Any]] = {}
        with tqdm(total=n, desc="sample", disable=not progress, unit="sample") as bar:
            while len(out) < n:
                size = min(batch_size, n - len(out))
                options = dict(decode_options)
                wanted = {k: options.pop(k) for k in self.domain.condition_options if k in options}
                condition, drawn = self.domain.draw_conditions(size, self.state, generator, **wanted)
                options.update(drawn)
                kwargs = {} if condition is None else {"condition": condition.to(self.device)}
                raw = self.model.sample(size, generator=generator, temperature=temperature, **kwargs)
                items, extra = self.domain.decode_table(raw, self.state, **options)
                out.extend(items)
                for key, values in extra.items():
                    columns.setdefault(key, []).extend(values)
                bar.update(size)
        return out, columns

    def log_likelihood(self, items: Sequence[Any], batch_size: int = 500) -> np.ndarray:
        """log p(x) in nats per item (ELBO for bound models); NaN where the model cannot score it."""
        return self.domain.log_likelihood(self.model, items, self.spec, self.config.model, self.state, batch_size)

    def _vae(self) -> Autoencoder:
        if not isinstance(self.model, Autoencoder):
            raise TypeError(f"{self.name} is not a VAE: it has no encoder")
        return self.model

    @torch.no_grad()
    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        """Posterior means z = E q(z|x): (B, latent_dim); raises ValueError naming an unusable item."""
        vae = self._vae()
        batch, keep = self.domain.batch_of(items, self.spec, self.config.model, self.state)
        if batch is None or len(keep) != len(items):
            bad = [s for i, s in enumerate(items) if i not in set(keep)]
            raise ValueError(f"cannot encode {bad[:5]} (invalid, unknown tokens or too long)")
        vae.eval()
        mu, _ = vae.encode({k: v.to(self.device) for k, v in batch.items()})
        return mu

    @torch.no_grad()
    def decode(self, z: torch.Tensor, *, seed: int = 0, temperature: float | None = None) -> list[Any]:
        """Decode latents z: (B, latent_dim) into domain objects."""
        vae = self._vae()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        temperature = self.config.sample.temperature if temperature is None else temperature
        raw = vae.decode(z.to(self.device), generator=generator, temperature=temperature)
        return self.domain.decode(raw, self.state)

    @torch.no_grad()
    def latent_statistics(self, items: Sequence[Any], batch_size: int = 500) -> dict[str, Any] | None:
        """Of a latent-variable model (a VAE, one layer, or a hierarchical VAE) over ``items``: per
        latent layer its size, the active units (Var_x E_q[z_u | x] > 0.01, Burda et al. 2016: the
        units not collapsed to the prior) and the mean KL in nats per item. None for other models.
        The posterior samples of a hierarchical VAE's KL are seeded (0)."""
        model = self.model
        if not isinstance(model, LatentVariableModel):
            return None
        model.eval()
        means: list[list[torch.Tensor]] = []
        kls: list[torch.Tensor] = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(0)
            for start in range(0, len(items), batch_size):
                batch, _ = self.domain.batch_of(list(items[start:start + batch_size]), self.spec, self.config.model,
                                                self.state)
                if batch is None:
                    continue
                batch = {k: v.to(self.device) for k, v in batch.items()}
                layer_means, layer_kls = model.latent_terms(batch)
                means.append([m.cpu() for m in layer_means])
                kls.append(layer_kls.cpu())
        if not means:
            return None
        layers = [torch.cat([m[i] for m in means]) for i in range(len(means[0]))]
        kl = torch.cat(kls).double().mean(0)
        return {"layers": len(layers), "latent_dims": [int(m.shape[1]) for m in layers],
                "active_units": active_units(layers), "kl_nats": [float(v) for v in kl],
                "items": int(layers[0].shape[0])}

    def interpolate(self, start: Any, end: Any, steps: int = 8, *, seed: int = 0, temperature: float = 0.5) -> list[Any]:
        """Decode the spherical interpolation between the latents of ``start`` and ``end``."""
        z = self.encode([start, end])
        path = self._vae().interpolate(z[0], z[1], steps)
        return self.decode(path, seed=seed, temperature=temperature)


def typicality_statistics(log_likelihood: np.ndarray, sizes: np.ndarray) -> dict[str, float] | None:
    """Mean and standard deviation of -log p(x) / size(x) (nats per unit of ``Domain.item_sizes``) over
    a held-out typical set, ignoring items the model cannot score (Nalisnick et al. 2019); None
    with fewer than two scored items."""
    nll = -np.asarray(log_likelihood, dtype=float) / np.asarray(sizes, dtype=float)
    nll = nll[np.isfinite(nll)]
    if len(nll) < 2 or not np.std(nll) > 0:
        return None
    return {"mean": float(np.mean(nll)), "std": float(np.std(nll, ddof=1)), "n": int(len(nll))}


def _typical_set_statistics(
    domain: type[Domain], model: GenerativeModel, spec: type[ModelSpec], config: RunConfig, state: dict[str, Any], data_dir: Path
) -> dict[str, float] | None:
    """Typicality statistics of the trained model on the domain's held-out typical set (validation
    data), for the out-of-distribution score of samples; None where the domain has no typical set."""
    items = domain.typical_set(data_dir, config.model)
    if items is None or model.likelihood == "none":
        return None
    if config.train.accelerator != "cpu" and torch.cuda.is_available():
        model.to("cuda")
    log_likelihood = domain.log_likelihood(model, items, spec, config.model, state, config.sample.batch_size)
    stats = typicality_statistics(log_likelihood, domain.item_sizes(items))
    if stats is None:
        log.warning("typical set of %d items: fewer than two scored; samples will have no ood_score", len(items))
    else:
        log.info("typical set: -log p = %.3f +- %.3f nats per unit of size over %d items", stats["mean"],
                 stats["std"], stats["n"])
    return stats


def _build(name: str, config: RunConfig, state: dict[str, Any]
           ) -> tuple[type[ModelSpec], type[Domain], GenerativeModel]:
    spec = registry.get("model", name)
    domain = registry.get("domain", spec.domain)
    return spec, domain, spec.build(config.model, state)


RETIRED_SAMPLE_KEYS: dict[str, Any] = {"valency_correction": False}
"""Keys the generic ``sample`` block had before they moved into a domain's ``SampleConfig``, with
the value that did nothing: a checkpoint written before records them for every model."""


def _without_retired_keys(model_name: str, config: Any) -> Any:
    """A checkpoint's config without the ``RETIRED_SAMPLE_KEYS`` its domain's sample block lacks,
    where they hold their inert value (any other value is left for ``RunConfig.parse`` to reject)."""
    sample = config.get("sample") if isinstance(config, dict) else None
    if not isinstance(sample, dict):
        return config
    known = {f.name for f in dataclasses.fields(registry.get("domain", registry.get("model", model_name).domain)
                                                   .SampleConfig)}
    retired = {k for k, inert in RETIRED_SAMPLE_KEYS.items()
               if k not in known and k in sample and sample[k] is inert}
    return {**config, "sample": {k: v for k, v in sample.items() if k not in retired}} if retired else config


def load(path: str | Path, device: str = "auto") -> LoadedModel:
    """Rebuild a model from a self-describing checkpoint."""
    payload = checkpoint.load(path)
    config = RunConfig.parse(payload["model"], _without_retired_keys(payload["model"], payload["config"]),
                             where=f"{path}: config")
    spec, domain, model = _build(payload["model"], config, payload["domain_state"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise checkpoint.CheckpointError(f"{path}: weights do not fit the model they describe ({err})") from None
    model.to(resolve_device(device)).eval()
    return LoadedModel(payload["model"], model, spec, config, domain, payload["domain_state"], payload["info"],
                       Path(path))


def data_loaders(train_set: Any, val_set: Any, cfg: TrainConfig, *, seed: int,
                 accumulate_grad_batches: int = 1) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders whose samplers shard across distributed ranks themselves
    (:mod:`dgm_science.batching`): every rank gets the same number of batches of disjoint data
    (length-bucketed for sequence data, to avoid padding), and validation is split over the ranks.
    The training loader is resumable: a resumed run continues its data order where the checkpoint
    left it."""
    if len(train_set) < cfg.batch_size:
        raise ValueError(f"the training set has {len(train_set)} examples, fewer than train.batch_size "
                         f"{cfg.batch_size}: lower the batch size")
    loader_args = {"collate_fn": train_set.collate, "num_workers": cfg.num_workers,
                   "persistent_workers": cfg.num_workers > 0}
    lengths = getattr(train_set, "lengths", None)  # sequence data: bucket by length to avoid padding
    if lengths is not None:
        sampler: Any = LengthBucketBatchSampler(lengths, cfg.batch_size, seed=seed,
                                                accumulate=accumulate_grad_batches)
    else:
        sampler = RandomBatchSampler(len(train_set), cfg.batch_size, seed=seed, accumulate=accumulate_grad_batches)
    train_loader = ResumableDataLoader(train_set, batch_sampler=sampler, **loader_args)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, sampler=ShardedSampler(len(val_set)), **loader_args)
    return train_loader, val_loader


def train(
    model_name: str, data_dir: Path, config: RunConfig, *, seed: int, out: Path, progress: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train ``model_name`` on prepared data; write the checkpoint ``out``. Lightning's resumable
    checkpoints and CSV logs go to ``out.parent / "train"``: a killed run is resumed exactly from
    its ``last.ckpt`` (``fresh``: move that file aside and start anew; a corrupt or unsafe one raises
    ``checkpoint.CheckpointError``). ``info["hit_time_cap"]``: ``max_time_minutes`` stopped the run
    before ``max_steps``.

    Under distributed training every rank runs this; only rank 0 computes the typicality
    statistics and writes ``out`` (Lightning's checkpoints and logs are rank-0 only too); the other
    ranks return their result (``global_rank`` > 0) without writing anything."""
    from dgm_science.training import check_slurm_tasks, fit

    check_slurm_tasks(config.train)  # before the data is read: a wrong Slurm job fails at once
    spec = registry.get("model", model_name)
    domain = registry.get("domain", spec.domain)
    seed_everything(seed)
    cfg = config.train
    prior = None
    if cfg.init_from is not None:  # fine-tuning: the prior's domain state (vocabulary) and weights
        prior = load_prior(cfg.init_from, model_name)
        check_prior_config(spec, config.model, prior, cfg.init_from)
        state = prior["domain_state"]
    else:
        state = domain.fit_state(data_dir, spec, config.model)
    spec, domain, model = _build(model_name, config, state)
    init_from = None
    if prior is not None:
        try:
            model.load_state_dict(prior["state_dict"])
        except RuntimeError as err:
            raise checkpoint.CheckpointError(f"{cfg.init_from}: its weights do not fit the model of this config "
                                             f"({str(err).splitlines()[0][:300]})") from None
        init_from = {"path": str(cfg.init_from), "sha256": sha256_of(Path(cfg.init_from)), "model": prior["model"],
                     "prior_data_dir": prior["info"].get("data_dir"), "prior_seed": prior["info"].get("seed"),
                     "prior_steps": prior["info"].get("global_step"),
                     "prior_init_from": prior["info"].get("init_from")}
        log.info("fine-tuning from %s (sha256 %s)", cfg.init_from, init_from["sha256"][:12])
        del prior
    train_set, val_set = domain.datasets(data_dir, spec, config.model, state)
    unknown = {"train": getattr(train_set, "n_unknown", 0), "valid": getattr(val_set, "n_unknown", 0)}
    if unknown["train"] and len(train_set) < cfg.batch_size:
        raise DataError(f"{data_dir}: {unknown['train']} training molecules have a token outside the vocabulary "
                        f"of {cfg.init_from or 'the model'} ({unknown_summary(train_set.unknown_tokens)}): "
                        f"{len(train_set)} are left, fewer than train.batch_size {cfg.batch_size}")
    train_loader, val_loader = data_loaders(train_set, val_set, cfg, seed=seed)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)  # not an EMA copy
    log.info("%s: %d parameters, %d training / %d validation examples", model_name, n_params, len(train_set),
             len(val_set))
    start = time.perf_counter()
    run = {"model": model_name, "config": {"model": as_dict(config.model), "train": as_dict(cfg)}, "seed": seed,
           "data": str(Path(data_dir).resolve())}  # what a resumable checkpoint must match
    if init_from is not None:
        run["init_from_sha256"] = init_from["sha256"]
    callbacks = []
    if cfg.snapshot_every_steps is not None:  # a learning curve's checkpoints
        from dgm_science.training import Snapshots

        def snapshot(path: Path, step: int) -> None:
            checkpoint.save(path, domain=spec.domain, model_name=model_name, config=config.to_dict(),
                            state_dict=model.state_dict(), domain_state=state,
                            info={"seed": seed, "global_step": step, "snapshot": True, "parameters": n_params,
                                  "train_seconds": time.perf_counter() - start, "data_dir": str(data_dir),
                                  "family": model.family, "likelihood": model.likelihood,
                                  "representation": model.representation})

        callbacks.append(Snapshots(cfg.snapshot_every_steps, out.parent / "train" / "snapshots", snapshot))
    result = fit(model, cfg, train_loader, val_loader, out.parent / "train", progress=progress, seed=seed,
                 fresh=fresh, run=run, callbacks=callbacks)
    wall = time.perf_counter() - start
    examples = result["global_step"] * cfg.batch_size * result["world_size"]
    info = {
        "seed": seed, "parameters": n_params, "train_examples": len(train_set), "valid_examples": len(val_set),
        "dropped_too_long": train_set.n_too_long, "train_seconds": wall,
        **({"skipped_unknown_tokens": {**unknown, "tokens": dict(getattr(train_set, "unknown_tokens", Counter())
                                                    + getattr(val_set, "unknown_tokens", Counter()))}}
           if any(unknown.values()) else {}),
        **({"init_from": init_from} if init_from is not None else {}),
        "examples_per_second": examples / wall if wall > 0 else 0.0, **result,
        "data_dir": str(data_dir),
        # what the model is, for the report's trade-off table (the class is not rebuilt to ask)
        "family": model.family, "likelihood": model.likelihood, "representation": model.representation,
    }
    if result["global_rank"] != 0:
        return info
    typicality = _typical_set_statistics(domain, model, spec, config, state, Path(data_dir))
    if typicality is not None:
        info["typicality"] = typicality
    checkpoint.save(out, domain=spec.domain, model_name=model_name, config=config.to_dict(),
                    state_dict=model.state_dict(), domain_state=state, info=info)
    return info
