"""The interfaces: every generative model implements ``GenerativeModel`` whatever its family or
domain, every registered model is a ``ModelSpec`` (its domain, config, batch fields and
capabilities, declared), a model with latents implements ``LatentVariableModel`` (and an encoder /
decoder pair ``Autoencoder``), and every scientific domain implements ``Domain``."""

from __future__ import annotations

import abc
import argparse
import dataclasses
import inspect
import math
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from dgm_science.config import SampleConfig
from dgm_science.resources import TrainResources


class GenerativeModel(nn.Module):
    """A model of p(x).

    ``loss(batch)`` is the training objective (a scalar to minimise); ``log_prob(batch)`` is the
    per-example log-likelihood in nats, shape ``(B,)`` (a lower bound where ``likelihood ==
    "bound"``); ``sample(n, generator=, condition=, temperature=)`` returns the family's raw
    output, which the domain decodes.
    """

    likelihood: ClassVar[Literal["exact", "bound", "unnormalized", "none"]] = "exact"
    """What ``log_prob`` is: exact, a lower bound, unnormalised (energy-based), or absent (a model
    with no density of x, whose ``log_prob`` raises)."""
    family: ClassVar[str] = ""
    """The family of the model table (``autoregressive``, ``normalizing flow``, ``VAE``, ...): what
    ``dgm train`` records in the checkpoint and the report's trade-off table groups by."""
    representation: ClassVar[str] = "no"
    """Whether the family gives a latent space, and which (``no``; ``yes: z ~ q(z|x)`` ...)."""
    partial_updates: ClassVar[bool] = False
    """A training step updates only some of the parameters (a GAN's critic or generator step), so
    distributed training must allow unused parameters."""

    def update_round(self) -> list[int]:
        """Optimisation steps (indices for ``set_training_step``) that together update every
        parameter: one step where ``partial_updates`` is false; a partial-update model lists one step
        of each kind (a GAN's critic steps and its generator step)."""
        return [0]

    def loss(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def log_prob(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        temperature: float | None = None,
    ) -> Any:  # pragma: no cover - interface
        """``n`` (> 0, else ValueError) raw samples the domain decodes, drawn with ``generator``;
        ``condition``: (n, ...) one per sample for conditional models; ``temperature``: how the
        family sharpens (< 1) or flattens (> 1) its sampler (softmax logits, prior or noise scale;
        1: the model's own distribution; None: the family's default; a family without such a knob,
        a GAN or Langevin chains, ignores it). Every family accepts all three
        (``LoadedModel.sample_table`` passes the sample block's ``temperature`` to every model)."""
        raise NotImplementedError

    def validation_loss(self, batch: Any) -> torch.Tensor:
        """Per-example value (B,) whose mean picks the best weights on the validation set: the
        negative log-likelihood (or -ELBO) by default."""
        return -self.log_prob(batch)

    def set_training_step(self, step: int) -> None:
        """Hook the trainer calls before each optimisation step (schedules such as KL annealing)."""

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        """Extra scalars of the last ``loss`` call that the trainer logs (e.g. reconstruction, KL)."""
        return {}


@runtime_checkable
class LatentVariableModel(Protocol):
    """A model with latent variables z whose posterior can be summarised per item (a VAE, one
    layer; a hierarchical VAE, L layers): what ``LoadedModel.latent_statistics`` reads."""

    def latent_terms(self, batch: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per latent layer E_q[z_l | x], (B, D_l), and the KL of each layer per example, (B, L) nats."""


@runtime_checkable
class Autoencoder(LatentVariableModel, Protocol):
    """A latent-variable model with an encoder q(z|x) and a decoder p(x|z) over one latent vector:
    what ``LoadedModel.encode`` / ``decode`` / ``interpolate`` use."""

    def encode(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x) parameters (mu, log_var), each (B, D)."""

    def decode(self, z: torch.Tensor, *, generator: torch.Generator | None = None, **kwargs: Any) -> Any:
        """Raw samples x ~ p(x|z) for latents z: (B, D) (``temperature`` among ``kwargs``)."""

    @staticmethod
    def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """A path of ``steps`` latents from z0 to z1: (D,) -> (steps, D)."""


class ModelSpec(abc.ABC):
    """A registry entry of ``@register("model", name)``: what the model is for and how to build it.

    A subclass declares ``domain``, ``Config``, ``batch_fields`` and ``train_resources`` and implements
    ``build``; the capability flags default to False. It is used as a class, never instantiated.
    ``registry.register`` rejects a model entry that is not a subclass or leaves one of these undeclared
    (``check``).
    """

    domain: ClassVar[str]
    """The registered ``Domain`` the model belongs to (its data, decoding, samples and metrics)."""
    Config: ClassVar[type]
    """The frozen dataclass of the model's hyper-parameters (the config's ``model:`` block)."""
    batch_fields: ClassVar[tuple[str, ...]]
    """The fields the domain puts in the model's batches (``tokens``, ``graph``, ``dense``, ``y`` ...)."""
    train_resources: ClassVar[TrainResources]
    """What one training job asks of a cluster (estimated seconds per step on one GPU, memory, GPUs): the
    workflow's train rules turn it into the job's Slurm runtime, ``mem_mb`` and ``gpu``."""
    predicts: ClassVar[bool] = False
    """A property predictor (the model also predicts properties y): configured in the ``prediction``
    block, not among a dataset's generative models."""
    implicit: ClassVar[bool] = False
    """An implicit model (a GAN): it samples but has no p(x) to score."""
    langevin: ClassVar[bool] = False
    """An energy-based model sampled by Langevin dynamics (an unnormalised log p(x))."""
    canvas: ClassVar[bool] = False
    """Sequences: the model reads a fixed-width canvas (residues, then <eos> and padding) instead of
    the causal <bos> ... <eos> layout."""

    training_only_keys: ClassVar[tuple[str, ...]] = ("dropout",)
    """Keys of ``Config`` that change how the model trains, not its parameters: a fine-tuning run
    (``train.init_from``) may set them apart from its prior's; any other model key must equal the prior's."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("domain", "Config", "batch_fields", "train_resources")

    @staticmethod
    @abc.abstractmethod
    def build(cfg: Any, state: dict[str, Any]) -> GenerativeModel:
        """The model of config ``cfg`` (a ``Config``) and the domain's fitted ``state``."""

    @staticmethod
    def check(spec: Any, name: str) -> None:
        """Raise TypeError unless ``spec`` is a concrete ModelSpec subclass with every declared
        attribute (what ``registry.register("model", name)`` calls)."""
        if not (isinstance(spec, type) and issubclass(spec, ModelSpec)):
            raise TypeError(f"model {name!r}: the registry entry {spec!r} is not a subclass of "
                            f"dgm_science.base.ModelSpec")
        missing = [attr for attr in ModelSpec.REQUIRED if not hasattr(spec, attr)]
        if missing:
            raise TypeError(f"model {name!r}: {spec.__qualname__} does not declare {', '.join(missing)} "
                            f"(every ModelSpec declares {', '.join(ModelSpec.REQUIRED)})")
        if not dataclasses.is_dataclass(spec.Config):
            raise TypeError(f"model {name!r}: {spec.__qualname__}.Config is not a dataclass")
        if not isinstance(spec.train_resources, TrainResources):
            raise TypeError(f"model {name!r}: {spec.__qualname__}.train_resources is not a TrainResources")
        if inspect.isabstract(spec):
            raise TypeError(f"model {name!r}: {spec.__qualname__} does not implement build(cfg, state)")


@dataclasses.dataclass
class Samples:
    """Drawn samples, row-aligned: the decoded ``items`` (None where a sample does not decode,
    kept and counted), log p(x) in nats (NaN where unscored), the out-of-distribution score
    (None: unknown), the domain's extra per-sample ``columns`` (labels, validity before repair ...)
    and per-item ``properties`` a search already computed (None: the writer computes them);
    ``seconds``: wall time of drawing them (``generate``, the model's sampler and decoding) and of
    scoring them (``score``: log p(x) and the ood score), where measured."""

    items: list[Any]
    log_likelihood: np.ndarray
    ood_score: np.ndarray | None = None
    columns: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    properties: list[dict[str, Any] | None] | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)


class Domain(abc.ABC):
    """A scientific domain: its data, how model output decodes into the field's objects, the
    field's sample files and metrics, its report section and the CLI options it adds.

    Domains are registered as classes (``@register("domain", name)``) and used without an
    instance. A subclass implements the abstract methods; the loops every domain needs (chunked
    log-likelihood, decoding, drawing and writing samples for ``dgm sample``) are written here once,
    with hooks (``scoring_order``, ``log_jacobian``, ``model_log_prob``) where a domain differs.
    """

    name: ClassVar[str]
    samples_file: ClassVar[str]
    SampleConfig: ClassVar[type[SampleConfig]] = SampleConfig
    """The dataclass of its models' ``sample:`` block: the generic settings, and those of the
    domain's own decoding (molecules: ``valency_correction``) in a subclass."""
    samples_in_folder: ClassVar[bool] = False
    """The samples are a folder (a Minari dataset), not a file."""
    """File name of a run's samples under ``results/{domain}/{dataset}/{model}/seed{seed}/``."""
    condition_options: ClassVar[tuple[str, ...]] = ()
    """Options of ``draw_conditions`` the user may fix for every sample (``dgm sample --label``)."""
    headline: ClassVar[tuple[str, str]] = ("", "")
    """The ``metrics.json`` key (and its label, with ↑ / ↓) whose spread over seeds the report's
    trade-off table shows as a family's training stability."""
    size_unit: ClassVar[str] = "item"
    """What ``item_sizes`` counts (heavy atom, residue, ...): the unit of a per-size likelihood."""
    headline_ratio_scale: ClassVar[bool] = False
    """Whether the headline metric is a ratio-scale quantity (a fraction, a distance or a divergence:
    non-negative, 0 meaning none), so that its sd over seeds may also be given relative to its mean; the
    trade-off table gives the sd in the metric's own unit always, the relative sd only when this is true."""

    @classmethod
    def headline_anchor(cls, dataset: str) -> tuple[str, float] | None:
        """The published value of ``headline`` on ``dataset`` that the report's summary sets beside ours:
        (who, value), on the same metric and split definition; None where no paper reports one."""
        return None

    @classmethod
    def summary_rows(cls, dataset: str, seed_dirs: list[Path]) -> list[tuple[str, list[Any], tuple[str, float] | None]]:
        """The rows the report's one-screen summary gives a model: (label, one value per seed that has it,
        published anchor on the same metric and protocol or None). By default the ``headline`` metric of each
        seed's ``metrics.json`` beside ``headline_anchor``; a domain whose headline a paper does not report adds
        the one it does (trajectories: the closed-loop score per evaluation protocol)."""
        from dgm_science.utils import read_json

        key, label = cls.headline
        values = [read_json(d / "metrics.json").get(key) for d in seed_dirs if (d / "metrics.json").is_file()]
        return [(label or key, values, cls.headline_anchor(dataset))]

    # ---------------------------------------------------------------- data and models

    @staticmethod
    @abc.abstractmethod
    def fit_state(data_dir: Path, spec: type[ModelSpec], model_cfg: Any) -> dict[str, Any]:
        """What the model needs beyond its weights (vocabulary, normalisation, size histogram),
        fitted on the prepared training data and stored in the checkpoint."""

    @staticmethod
    @abc.abstractmethod
    def datasets(data_dir: Path, spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]) -> tuple[Any, Any]:
        """Training and validation datasets; each has ``collate`` (and ``lengths`` for sequence data)."""

    @staticmethod
    @abc.abstractmethod
    def batch_of(items: Sequence[Any], spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """Model batch of the items the model can score, and their positions in ``items``."""

    @staticmethod
    @abc.abstractmethod
    def decode_table(raw: Any, state: dict[str, Any], **options: Any) -> tuple[list[Any], dict[str, list[Any]]]:
        """Model output -> the field's objects (None for an invalid sample) and extra per-sample
        columns."""

    @staticmethod
    @abc.abstractmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        """Size of each item (heavy atoms, residues, steps; NaN where unknown): the unit the
        typicality score and bits-per-unit normalise by."""

    # ---------------------------------------------------------------- samples and metrics

    @staticmethod
    @abc.abstractmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        """Write ``samples`` in the field's format (atomically, every drawn sample accounted for);
        returns the number of valid samples."""

    @staticmethod
    @abc.abstractmethod
    def read_samples(path: Path) -> Any:
        """The samples of a file ``write_samples`` wrote, in order."""

    @staticmethod
    @abc.abstractmethod
    def evaluate(samples_path: Path, reference_dir: Path, *, n_jobs: int = 1) -> dict[str, float]:
        """The field's metrics of a samples file against the prepared reference data."""

    # ---------------------------------------------------------------- optional, with defaults

    @staticmethod
    def typical_set(data_dir: Path, model_cfg: Any = None) -> Sequence[Any] | None:
        """Held-out items whose -log p(x) defines the model's typical set (of the data a model of
        ``model_cfg`` was trained on); None: no ood score."""
        return None

    @classmethod
    def reference(cls, data: Path, out: Path, *, n_jobs: int, max_items: int | None, seed: int) -> int:
        """Cache the reference statistics the metrics compare against; returns the items used."""
        raise ValueError(f"the {cls.name} domain has no reference statistics to cache")

    @classmethod
    def draw_conditions(cls, n: int, state: dict[str, Any], generator: torch.Generator | None = None,
                        **fixed: Any) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """Conditions of ``n`` samples (``fixed`` ones from ``condition_options``) and the options
        they give the decoder; unconditional domains: none."""
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: {cls.name} models take no condition")
        return None, {}

    @classmethod
    def add_sample_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Options the domain adds to ``dgm sample`` (conditions, decoding, filters); their values
        reach ``draw_samples`` and ``after_writing`` as ``options``, keyed by ``dest``."""

    @classmethod
    def add_prepare_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Options the domain's datasets add to ``dgm prepare`` (passed to a dataset's ``prepare``
        that takes them, an error for one that does not)."""

    # ---------------------------------------------------------------- loops written once

    @classmethod
    def decode(cls, raw: Any, state: dict[str, Any], **options: Any) -> list[Any]:
        """Model output -> the field's objects (None where invalid)."""
        return cls.decode_table(raw, state, **options)[0]

    @staticmethod
    def scoring_order(items: Sequence[Any]) -> Sequence[int]:
        """Order in which ``log_likelihood`` batches the items (e.g. by length, to pad little)."""
        return range(len(items))

    @staticmethod
    def log_jacobian(batch: dict[str, torch.Tensor], state: dict[str, Any]) -> np.ndarray | float:
        """log |det d(model space)/d(item space)| per batch row: what turns the model's density
        into the density of the items in the field's units (0: the model scores items as they are)."""
        return 0.0

    @staticmethod
    def model_log_prob(model: GenerativeModel, batch: dict[str, torch.Tensor],
                       generator: torch.Generator) -> torch.Tensor:
        """log p of one batch: (B,) nats (a bound for bound models)."""
        return model.log_prob(batch)

    @classmethod
    @torch.no_grad()
    def log_likelihood(cls, model: GenerativeModel, items: Sequence[Any], spec: type[ModelSpec], model_cfg: Any,
                       state: dict[str, Any], batch_size: int = 500) -> np.ndarray:
        """log p(x) in nats per item, in the field's units (an ELBO for bound models; the
        Monte-Carlo noise of a bound seeded, so scores are reproducible); NaN where the model
        cannot score an item, and everywhere for a model with no density (``likelihood ==
        "none"``: a GAN samples but does not score)."""
        out = np.full(len(items), math.nan)
        if model.likelihood == "none":
            return out
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(0)
        model.eval()
        order = list(cls.scoring_order(items))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch, keep = cls.batch_of([items[i] for i in chunk], spec, model_cfg, state)
            if batch is None:
                continue
            correction = cls.log_jacobian(batch, state)
            log_p = cls.model_log_prob(model, {k: v.to(device) for k, v in batch.items()}, generator)
            out[[chunk[k] for k in keep]] = log_p.double().cpu().numpy() - correction
        return out

    @classmethod
    def draw_samples(cls, loaded: Any, n: int, *, seed: int, temperature: float | None, batch_size: int | None,
                     n_jobs: int, progress: bool, options: dict[str, Any]) -> Samples:
        """``dgm sample``: ``n`` samples of a loaded model with their log-likelihood and ood score;
        ``options`` are the values of the domain's ``add_sample_arguments``."""
        start = time.perf_counter()
        items, columns = loaded.sample_table(n, seed=seed, temperature=temperature, batch_size=batch_size,
                                             progress=progress, **{k: v for k, v in options.items() if v is not None})
        drawn = time.perf_counter()
        log_likelihood = loaded.log_likelihood(items)
        ood_score = loaded.ood_score(log_likelihood, items)
        seconds = {"generate": drawn - start, "score": time.perf_counter() - drawn}
        return Samples(list(items), log_likelihood, ood_score, columns, seconds=seconds)

    @classmethod
    def after_writing(cls, samples: Samples, options: dict[str, Any]) -> None:
        """Extra outputs ``dgm sample``'s domain options ask for (an SDF, an image), after the samples."""

    @classmethod
    def check_samples_path(cls, path: Path) -> None:
        """Reject an output path whose suffix is not the domain's samples format."""
        suffix = Path(cls.samples_file).suffix
        if Path(path).suffix != suffix:
            raise ValueError(f"--out {path}: a {cls.name} model writes {suffix} samples")
        if not cls.samples_in_folder and Path(path).is_dir():
            raise ValueError(f"--out {path}: is a folder; give the file to write")
