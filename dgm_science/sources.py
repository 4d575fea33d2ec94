"""A user's own files as a dataset: the file kinds ("sources") each domain registers, and what every
kind shares (its options, the split, the report of rows that did not parse).

A config names a user dataset by a block with a ``source`` (``<domain>.<name>.source``)::

    molecules:
      my-series:
        source: {kind: smiles, path: data/actives.csv, smiles_column: smiles, split: scaffold}
        models: {smiles-arm: {...}}

``kind`` selects a class registered as ``register("source", kind)``; the block's other keys are that
class's ``Options`` (a frozen dataclass deriving from :class:`SourceOptions`: the JSON Schema of the
block is generated from it, as a model's is from its config). ``dgm prepare --source BLOCK --out DIR``
calls the class's ``prepare``, which reads the user's file(s) and writes the same prepared folder as
the domain's built-in datasets, so that train / sample / evaluate run on it
unchanged, plus ``prepare.json``: what was read, skipped (with the first line numbers), removed as
duplicate and written per split.

A source class declares::

    domain: str          # the registered domain (the prepared folder it writes, the models that train on it)
    Options: type        # SourceOptions subclass
    file_fields: tuple   # the option fields that name input files (the workflow's inputs)
    split_methods: tuple # the values ``split`` takes (the first is the default)

    @classmethod
    def prepare(cls, options, out_dir: Path, *, n_jobs: int) -> dict  # the prepare.json stats
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from dgm_science import config as config_lib
from dgm_science import registry
from dgm_science.config import bounded
from dgm_science.errors import DataError


@dataclass(frozen=True)
class SourceOptions:
    """A user dataset's files and split (what every file kind takes)."""

    kind: str
    """the file kind (`dgm models` lists them per domain)"""
    path: str | list[str]
    """the file (or files, read in order as one dataset), relative to the working directory"""
    split: str = "random"
    """how items are split into train / validation / test (the kinds' choices: random, scaffold, cluster ...)"""
    valid: float = bounded(0.1, exclusive_minimum=0.0)
    """validation share: a fraction (< 1) of the items, or a count (>= 1)"""
    test: float = bounded(0.1, exclusive_minimum=0.0)
    """test share: a fraction (< 1) of the items, or a count (>= 1)"""
    seed: int = bounded(0, minimum=0)
    """seed of the split"""

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in ([self.path] if isinstance(self.path, str) else self.path)]


class Source:
    """Base of a registered file kind (see the module's doc)."""

    domain: str = ""
    Options: type[SourceOptions] = SourceOptions
    file_fields: tuple[str, ...] = ("path",)
    split_methods: tuple[str, ...] = ("random",)

    @classmethod
    def files(cls, options: SourceOptions) -> list[str]:
        """Every input file the options name (the workflow's inputs of the prepare job)."""
        found: list[str] = []
        for name in cls.file_fields:
            value = getattr(options, name)
            if value is None:
                continue
            found.extend([value] if isinstance(value, str) else list(value))
        return found

    @classmethod
    def prepare(cls, options: SourceOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        raise NotImplementedError


def parse_block(block: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A source block given as a dict, inline JSON / YAML or a YAML / JSON file."""
    if isinstance(block, dict):
        return block
    text = str(block)
    if not text.lstrip().startswith("{") and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise config_lib.ConfigError(f"--source: not JSON or YAML ({err})") from None
    if not isinstance(parsed, dict):
        raise config_lib.ConfigError(f"--source: a block {{kind: ..., path: ...}} is needed, got {parsed!r:.80}")
    return parsed


def load(block: str | Path | dict[str, Any], where: str = "source") -> tuple[type[Source], SourceOptions]:
    """The registered kind and its checked options of a source block (ConfigError names a bad key)."""
    data = parse_block(block)
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise config_lib.ConfigError(f"{where}.kind: missing; one of {', '.join(kinds())}")
    try:
        cls = registry.get("source", kind)
    except KeyError as err:
        raise config_lib.ConfigError(f"{where}.kind: {err.args[0]}") from None
    options = config_lib.from_dict(cls.Options, data, where)
    if options.split not in cls.split_methods:
        raise config_lib.ConfigError(f"{where}.split: {options.split!r}; kind {kind} splits by "
                                     f"{', '.join(cls.split_methods)}")
    for path in options.paths:
        if not path.exists():
            raise DataError(f"{path}: file not found ({where}.path)")
    return cls, options


def kinds(domain: str | None = None) -> list[str]:
    """The registered file kinds (of ``domain``)."""
    return [k for k in registry.names("source") if domain is None or registry.get("source", k).domain == domain]


# ----------------------------------------------------------------------------- the split

MIN_PER_SPLIT = 1
"""Each of train, validation and test holds at least this many items."""


def split_sizes(n: int, valid: float, test: float, where: str, unit: str = "items") -> tuple[int, int, int]:
    """(train, valid, test) counts of ``n`` items for shares given as fractions (< 1) or counts;
    DataError when a split would be empty, naming the minimum."""
    def count(share: float) -> int:
        return int(share) if share >= 1 else max(MIN_PER_SPLIT, int(round(share * n)))

    n_valid, n_test = count(valid), count(test)
    n_train = n - n_valid - n_test
    if n_train < MIN_PER_SPLIT:
        minimum = 3 * MIN_PER_SPLIT if valid < 1 and test < 1 else int(valid >= 1) * n_valid + int(test >= 1) * n_test + 1
        raise DataError(f"{where}: {n} {unit} are too few to split into train / validation / test "
                        f"(valid={valid:g}, test={test:g}; at least {max(minimum, 3 * MIN_PER_SPLIT)} {unit} needed)")
    return n_train, n_valid, n_test


def random_split(n: int, valid: float, test: float, seed: int, where: str, unit: str = "items") -> dict[str, np.ndarray]:
    """Seeded random split of ``n`` items: split name -> sorted indices."""
    n_train, n_valid, n_test = split_sizes(n, valid, test, where, unit)
    order = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(order[:n_train]), "valid": np.sort(order[n_train:n_train + n_valid]),
            "test": np.sort(order[n_train + n_valid:])}


def group_split(groups: Sequence[Any], valid: float, test: float, seed: int, where: str,
                unit: str = "items") -> dict[str, np.ndarray]:
    """Split items so that every group (a Bemis-Murcko scaffold, an identity cluster) lies in one split:
    the balanced scaffold split of chemprop (Yang et al. 2019): groups larger than half the validation or
    test size go to train first, the others in a seeded random order; each group then fills train, then
    validation, then test up to their sizes. Split name -> sorted indices."""
    n = len(groups)
    n_train, n_valid, n_test = split_sizes(n, valid, test, where, unit)
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    sets = list(members.values())
    if len(sets) < 3:
        raise DataError(f"{where}: {n} {unit} form {len(sets)} group(s); a grouped split needs at least 3 "
                        "(split: random instead)")
    big = [s for s in sets if len(s) > n_valid / 2 or len(s) > n_test / 2]
    small = [s for s in sets if not (len(s) > n_valid / 2 or len(s) > n_test / 2)]
    rng = np.random.default_rng(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    out: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for s in big + small:
        # a group larger than the training split still goes there (chemprop would send it to test)
        if len(out["train"]) + len(s) <= n_train or not out["train"]:
            out["train"].extend(s)
        elif len(out["valid"]) + len(s) <= n_valid:
            out["valid"].extend(s)
        else:
            out["test"].extend(s)
    for name in ("valid", "test"):  # a split left empty takes the smallest group of the largest split of several
        if out[name]:
            continue
        donors = [k for k in ("train", "valid", "test") if len({groups[i] for i in out[k]}) >= 2]
        if not donors:
            raise DataError(f"{where}: one group holds most {unit}; no grouped split leaves every split "
                            "non-empty (split: random instead)")
        donor = max(donors, key=lambda k: len(out[k]))
        by_group: dict[Any, list[int]] = {}
        for i in out[donor]:
            by_group.setdefault(groups[i], []).append(i)
        smallest = min(by_group.values(), key=len)
        out[donor] = [i for i in out[donor] if groups[i] != groups[smallest[0]]]
        out[name] = smallest
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


# ----------------------------------------------------------------------------- parse report


class SkipLog:
    """Rows (records, frames) that did not parse: counted, with the first few line numbers and reasons."""

    SHOWN = 10

    def __init__(self, where: str, unit: str = "rows") -> None:
        self.where, self.unit = where, unit
        self.count = 0
        self.first: list[tuple[int, str]] = []

    def skip(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.first) < self.SHOWN:
            self.first.append((int(line), reason))

    def extend(self, skipped: Iterable[tuple[int, str]]) -> None:
        for line, reason in skipped:
            self.skip(line, reason)

    def check(self, read: int) -> None:
        """DataError when nothing was read or every row was skipped; a warning line otherwise."""
        if read == 0:
            raise DataError(f"{self.where}: empty (no {self.unit})")
        if self.count >= read:
            raise DataError(f"{self.where}: none of the {read:,} {self.unit} parse ({self.lines()})")

    def lines(self) -> str:
        shown = "; ".join(f"line {line}: {reason}" for line, reason in self.first)
        more = f"; ... {self.count - len(self.first):,} more" if self.count > len(self.first) else ""
        return shown + more

    def as_dict(self) -> dict[str, Any]:
        return {"skipped": self.count, "skipped_first": [{"line": line, "reason": reason}
                                                         for line, reason in self.first]}


def write_stats(out_dir: Path, stats: dict[str, Any]) -> None:
    """prepare.json, atomically."""
    from dgm_science.utils import atomic_path

    with atomic_path(Path(out_dir) / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(type(value).__name__)
