"""Frozen dataclasses built from YAML/JSON, checked strictly: an unknown key or a value of the
wrong type is an error that names the key."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type."""


_INT64 = 2**63
"""Integers must fit in 64 bits (what torch and numpy take)."""
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def _show(value: Any) -> str:
    """A short repr of a config value for an error message: bounded in length and depth (a YAML
    file can hold a huge string, a deeply nested or self-referencing alias)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT64:
        return f"an integer of {len(str(abs(value))) if abs(value) < 10**4000 else 'over 4000'} digits"
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails must not hide the config error
        return f"a {type(value).__name__}"


_BOUNDS = {"minimum": (lambda v, b: v >= b, ">="), "maximum": (lambda v, b: v <= b, "<="),
           "exclusiveMinimum": (lambda v, b: v > b, ">"), "exclusiveMaximum": (lambda v, b: v < b, "<")}


def bounded(default: Any, *, minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: float | None = None, exclusive_maximum: float | None = None,
            choices: tuple[Any, ...] | None = None) -> Any:
    """A config field with its allowed values, written once: ``from_dict`` enforces them and the
    generated JSON Schema (``dgm_science.schema``) states them."""
    schema = {"minimum": minimum, "maximum": maximum, "exclusiveMinimum": exclusive_minimum,
              "exclusiveMaximum": exclusive_maximum, "enum": list(choices) if choices is not None else None}
    metadata = {"schema": {k: v for k, v in schema.items() if v is not None}}
    if isinstance(default, list):  # a list's bounds hold for each item
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _check_bounds(value: Any, schema: dict[str, Any], where: str) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_bounds(item, schema, f"{where}[{i}]")
        return
    if "enum" in schema and value not in schema["enum"]:
        raise ConfigError(f"{where}: {_show(value)} is not one of {', '.join(map(str, schema['enum']))}")
    for key, (ok, sign) in _BOUNDS.items():
        if key in schema and isinstance(value, (int, float)) and not ok(value, schema[key]):
            raise ConfigError(f"{where}: {_show(value)} must be {sign} {schema[key]}")


def _check_devices(value: int | str, where: str) -> None:
    """Lightning's ``devices``: "auto", -1 (all), a count > 0, or device ids ("0,1", "[0, 1]")."""
    text = str(value).strip()
    if not (text in ("auto", "-1") or re.fullmatch(r"[1-9]\d*", text)
            or (isinstance(value, str) and re.fullmatch(r"\[?\s*\d+\s*(,\s*\d+\s*)*,?\s*\]?", text))):
        raise ConfigError(f"{where}: {_show(value)} is not auto, -1, a number of devices > 0 or a list of device "
                          f"ids such as \"0,1\"")


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
    snapshot_every_steps: int | None = bounded(None, minimum=1)
    """Also keep the model every this many optimisation steps as a loadable checkpoint
    ``<out dir>/train/snapshots/step<NNNNNNN>.ckpt`` (``dgm sample --checkpoint`` takes it; its
    ``info.global_step`` says when): a learning curve of any metric after training (null: none)."""
    accelerator: str = "auto"
    devices: Union[int, str] = dataclasses.field(default="auto", metadata={"check": _check_devices})
    num_nodes: int = bounded(1, minimum=1)
    strategy: str = "auto"
    precision: str = "auto"
    num_workers: int = bounded(0, minimum=0)
    keep_best: bool = False
    """Restore, at the end of training, the weights of the validation with the lowest NLL (early
    stopping for models that overfit small data, e.g. a flow on a few ns of MD)."""
    early_stopping_patience: int | None = bounded(None, minimum=1)
    """Stop training once this many validations in a row (every ``val_every_steps``) brought no lower
    validation NLL (null: train to ``max_steps``); with ``keep_best`` the weights of the best
    validation are kept."""
    init_from: str | None = None
    """Fine-tuning (transfer learning): a checkpoint of the same registered model (e.g.
    ``data/models/moses-smiles-arm/model.ckpt``) whose weights training starts from. Its domain state
    (the tokenizer's vocabulary) is kept; the model block is the prior's, and a model key given here
    must equal the prior's (but for those that only act in training, such as ``dropout``). Molecules
    with a token outside the prior's vocabulary are skipped and counted. The checkpoint written
    records the file's path and sha256 (``info.init_from``)."""


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """How many samples to draw for evaluation, and how. A domain whose decoding has options of its
    own declares a subclass as its ``Domain.SampleConfig`` (molecules: ``valency_correction``)."""

    n: int = bounded(10000, minimum=1)
    batch_size: int = bounded(1000, minimum=1)
    temperature: float = bounded(1.0, exclusive_minimum=0)
    """Passed to the model's ``sample`` (softmax, prior or noise scale; 1: the model's own distribution)."""

    def decode_options(self) -> dict[str, Any]:
        """Options of the domain's decoder (``Domain.decode_table``) this block sets, which
        ``dgm sample``'s flags override: none in the generic block."""
        return {}


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {_show(value)} is not {annotation}")
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {_show(value)}")
        return None
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if isinstance(value, int) and abs(value) >= _INT64:
            raise ConfigError(f"{where}: {_show(value)} is out of range")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        if abs(value) >= _INT64:
            raise ConfigError(f"{where}: {_show(value)} is out of range (a 64-bit integer)")
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {_show(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        (item,) = typing.get_args(annotation)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where}: unsupported annotation {annotation}")  # pragma: no cover


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data`` (None: all defaults); unknown keys and wrong types
    raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(_show(k) if not isinstance(k, str) else k for k in data if k not in names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in values:
            _check_bounds(values[f.name], f.metadata.get("schema", {}), f"{where}.{f.name}")
            if "check" in f.metadata:  # a field's own test, beyond type and range
                f.metadata["check"](values[f.name], f"{where}.{f.name}")
    return cls(**values)  # type: ignore[call-arg]


def _check_keys(data: Any, where: str, depth: int = 0, seen: set[int] | None = None) -> None:
    """Every mapping key a string (YAML also allows numbers, null, dates...): a non-string key
    would otherwise fail deep inside as a TypeError instead of naming the key. Each container is
    visited once (YAML aliases can share one many times over, or make it contain itself)."""
    seen = set() if seen is None else seen
    if not isinstance(data, (dict, list)) or id(data) in seen:
        return
    seen.add(id(data))
    if depth > 100:
        raise ConfigError(f"{where}: nested more than 100 levels deep")
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: the key {_show(key)} is not a string")
            _check_keys(value, f"{where}.{key}", depth + 1, seen)
    else:
        for i, value in enumerate(data):
            _check_keys(value, f"{where}[{i}]", depth + 1, seen)


def load_mapping(source: str | Path) -> dict[str, Any]:
    """A mapping from a YAML/JSON file path, or from an inline JSON object string."""
    text = str(source)
    if text.lstrip().startswith("{"):
        where = "inline config"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"inline config is not valid JSON: {err}") from None
        except (ValueError, RecursionError) as err:  # e.g. an integer of over 4300 digits, deep nesting
            raise ConfigError(f"inline config is not valid JSON: {type(err).__name__}: {str(err)[:200]}") from None
    else:
        path = Path(text)
        where = str(path)
        try:
            found = path.is_file()
            content = path.read_text(encoding="utf-8") if found else ""
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text ({err})") from None
        except (OSError, ValueError) as err:  # e.g. a name too long, a NUL byte
            raise ConfigError(f"{_show(text)}: config file cannot be read ({err.__class__.__name__}: "
                              f"{str(err)[:200]})") from None
        if not found:
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        except (ValueError, TypeError, RecursionError) as err:  # PyYAML's constructors, e.g. a huge integer
            raise ConfigError(f"{path}: not valid YAML: {type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{text if len(text) <= 200 else text[:200] + '...'}: expected a mapping at the top level")
    _check_keys(data, where)
    return data


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping with the same key twice (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise ConfigError(f"{key_node.start_mark.name}: line {key_node.start_mark.line + 1}: {key!r} is "
                              f"given twice in one block (first on line {seen[key] + 1}); a dataset, model or "
                              "key name must be unique")
        if isinstance(key, (str, int, float, bool)):
            seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def check_unique_keys(paths: list[str | Path]) -> None:
    """ConfigError naming the file and line of a key given twice in one mapping of a YAML config file."""
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
