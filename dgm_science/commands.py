"""``dgm`` subcommands as registered objects, so that a domain adds its own commands (``simulate``,
``compress`` ...) without the CLI knowing it, and the argument types every command shares.

Usage::

    def _arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, required=True)

    @command("simulate", "molecular dynamics with OpenMM", _arguments)
    def simulate(args: argparse.Namespace) -> None: ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from dgm_science.registry import register
from dgm_science.utils import atomic_path


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``dgm`` subcommand: its help, the function adding its arguments and the function running it."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    description: str | None = None


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None], *,
            description: str | None = None) -> Callable[[Callable[[argparse.Namespace], None]], Any]:
    """Decorator registering ``run(args)`` as the subcommand ``dgm name``."""

    def decorator(run: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
        register("command", name)(Command(name, help, arguments, run, description))
        return run

    return decorator


def positive_int(text: str) -> int:
    """argparse type of a count > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type of a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_device_arguments(p: argparse.ArgumentParser, device_help: str = "auto, cpu, cuda, cuda:1 ...") -> None:
    """``--device`` and ``--threads`` of every command that loads a model."""
    p.add_argument("--device", default="auto", help=device_help)
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as sorted, indented JSON, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
