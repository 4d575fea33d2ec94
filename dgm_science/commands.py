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
import contextlib
import dataclasses
import json
import math
import os
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
    """argparse type of a finite number > 0."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return value


MAX_SEED = 2**63 - 1


def seed(text: str) -> int:
    """argparse type of a seed: an integer in [0, 2^63 - 1] (what torch, NumPy and Python all take)."""
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2^63 - 1, got {value}")
    return value


def add_seed_argument(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--seed", type=seed, default=0, help=help)


def add_sampling_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    """``--temperature`` (the model's ``sample(temperature=)``) and ``--batch-size`` (``unit`` per batch)
    of a command that draws from a trained model."""
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="softmax temperature (default: the checkpoint's sample.temperature)")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"{unit} per batch")


def output_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup, *flags: str, kind: str = "file",
                    **kwargs: Any) -> argparse.Action:
    """An output path option. Before the command runs, ``check_paths`` refuses one that is an
    input of the same command, one under a file or in a folder that cannot be written, and (``kind``
    "file") an existing folder or ("folder") an existing file."""
    action = p.add_argument(*flags, type=Path, **kwargs)
    action.dgm_output = kind  # type: ignore[attr-defined]
    return action


def _flag(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Path]:
    """Refuse, before any work, outputs that would destroy an input or cannot be written: every
    option declared with :func:`output_argument`, against every other path-valued option. Returns
    the folders the outputs will create (the topmost missing one of each)."""
    outputs, inputs = [], []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, list) and not hasattr(action, "dgm_output"):  # several inputs (nargs="+")
            inputs.extend((action, item) for item in value if isinstance(item, Path))
        if not isinstance(value, Path):
            continue
        (outputs if hasattr(action, "dgm_output") else inputs).append((action, value))
    for i, (action, path) in enumerate(outputs):
        flag, kind = _flag(action), action.dgm_output  # type: ignore[attr-defined]
        if kind == "file" and path.is_dir():
            raise ValueError(f"{flag} {path}: is a folder; give the file to write")
        if kind == "folder" and path.exists() and not path.is_dir():
            raise ValueError(f"{flag} {path}: is a file; give a folder")
        ancestor = path.absolute().parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ValueError(f"{flag} {path}: {ancestor} is not a folder")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: folder {ancestor} is not writable")
        for other, other_path in [*inputs, *outputs[:i]]:
            if _same_file(path, other_path):
                role = "output" if hasattr(other, "dgm_output") else "input"
                raise ValueError(f"{flag} {path} is the same file as the {role} {_flag(other)} {other_path}: "
                                 f"it would be overwritten; write to another path")
    created = []
    for action, path in outputs:
        missing = None
        top = path.absolute() if action.dgm_output != "file" else path.absolute().parent  # type: ignore[attr-defined]
        for folder in [top, *top.parents]:
            if folder.exists():
                break
            missing = folder
        if missing is not None:
            created.append(missing)
    return created


def remove_empty_folders(top: Path) -> None:
    """Remove ``top`` and the folders under it that hold no file (what a failed command created)."""
    if not top.is_dir() or top.is_symlink():
        return
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only succeeds when empty


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def confirm_size(args: argparse.Namespace, option: str, value: float, *, limit: float, cannot: float | None = None,
                 what: str) -> None:
    """Refuse a request that cannot finish (``value`` > ``cannot``) and one past ``limit`` unless
    ``--yes`` was given: ``what`` says what it would cost."""
    if cannot is not None and value > cannot:
        raise ValueError(f"{option} {value:g}: {what}; the most this command can do is {cannot:g}")
    if value > limit and not getattr(args, "yes", False):
        raise ValueError(f"{option} {value:g}: {what}; pass --yes to run it anyway (more than {limit:g})")


def add_device_arguments(p: argparse.ArgumentParser, device_help: str = "auto, cpu, cuda, cuda:1 ...") -> None:
    """``--device`` and ``--threads`` of every command that loads a model."""
    p.add_argument("--device", default="auto", help=device_help)
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / infinite float replaced by null (JSON has no NaN: Python's
    ``NaN`` token is refused by every other JSON reader)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as sorted, indented, valid JSON (a metric that is undefined, e.g. the FCD of no
    valid molecule, is null), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n")
