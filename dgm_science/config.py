"""Frozen dataclasses built from YAML/JSON, checked strictly: an unknown key or a value of the
wrong type is an error that names the key."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type."""


_BOUNDS = {"minimum": (lambda v, b: v >= b, ">="), "maximum": (lambda v, b: v <= b, "<="),
           "exclusiveMinimum": (lambda v, b: v > b, ">"), "exclusiveMaximum": (lambda v, b: v < b, "<")}


def bounded(default: Any, *, minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: float | None = None, exclusive_maximum: float | None = None,
            choices: tuple[Any, ...] | None = None) -> Any:
    """A config field with its allowed values, written once: ``from_dict`` enforces them and the
    generated JSON Schema (``dgm_science.schema``) states them."""
    schema = {"minimum": minimum, "maximum": maximum, "exclusiveMinimum": exclusive_minimum,
              "exclusiveMaximum": exclusive_maximum, "enum": list(choices) if choices is not None else None}
    return dataclasses.field(default=default, metadata={"schema": {k: v for k, v in schema.items() if v is not None}})


def _check_bounds(value: Any, schema: dict[str, Any], where: str) -> None:
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, schema['enum']))}")
    for key, (ok, sign) in _BOUNDS.items():
        if key in schema and isinstance(value, (int, float)) and not ok(value, schema[key]):
            raise ConfigError(f"{where}: {value!r} must be {sign} {schema[key]}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and hardware settings for the Lightning Trainer."""

    batch_size: int = bounded(128, minimum=1)
    lr: float = bounded(1e-3, exclusive_minimum=0)
    weight_decay: float = bounded(0.0, minimum=0)
    warmup_steps: int = bounded(100, minimum=0)
    max_steps: int = bounded(1000, minimum=1)
    max_time_minutes: float | None = bounded(None, exclusive_minimum=0)
    val_every_steps: int = bounded(250, minimum=1)
    val_batches: int = bounded(20, minimum=1)
    grad_clip: float = bounded(1.0, minimum=0)
    checkpoint_every_steps: int = bounded(200, minimum=1)
    accelerator: str = "auto"
    devices: Union[int, str] = "auto"
    num_nodes: int = bounded(1, minimum=1)
    strategy: str = "auto"
    precision: str = "auto"
    num_workers: int = bounded(0, minimum=0)
    keep_best: bool = False
    """Restore, at the end of training, the weights of the validation with the lowest NLL (early
    stopping for models that overfit small data, e.g. a flow on a few ns of MD)."""


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """How many molecules/sequences to draw for evaluation, and how."""

    n: int = bounded(10000, minimum=1)
    batch_size: int = bounded(1000, minimum=1)
    temperature: float = bounded(1.0, exclusive_minimum=0)
    valency_correction: bool = False
    """Molecular graphs: repair over-bonded atoms (MoFlow) before the SMILES is written; the
    validity before repair is kept in the ``valid_without_correction`` column."""


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not {annotation}")
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where}: unsupported annotation {annotation}")  # pragma: no cover


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in values:
            _check_bounds(values[f.name], f.metadata.get("schema", {}), f"{where}.{f.name}")
    return cls(**values)  # type: ignore[call-arg]


def load_mapping(source: str | Path) -> dict[str, Any]:
    """A mapping from a YAML/JSON file path, or from an inline JSON object string."""
    text = str(source)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"inline config is not valid JSON: {err}") from None
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return data


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
