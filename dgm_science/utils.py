"""Small shared helpers: seeding, atomic writes, logging setup, parallel maps."""

from __future__ import annotations

import contextlib
import contextvars
import glob
import json
import logging
import math
import os
import random
import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded with ``seed`` for sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux; elsewhere the
    set-and-restore of ``os.umask``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_JOURNAL: contextvars.ContextVar[list[tuple[Path, Path | None]] | None] = contextvars.ContextVar("journal", default=None)
"""The outputs written so far by the command running under :func:`all_or_nothing`: (output,
backup of what it replaced, or None where it was new)."""

STALE_SECONDS = 24 * 3600
"""A temp file of another machine (shared file system) is stale once this old."""


def _temp_prefix(path: Path) -> str:
    """Temp files of ``path`` are ``.<name>.<host>.<pid>.<random>.tmp`` (``.old`` for a replaced
    version kept until the command succeeds): hidden, beside the output, and naming the process
    that made them, so the next write of the same output removes those a killed run left."""
    return f".{path.name}.{socket.gethostname().replace('.', '-')}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files and folders an interrupted write of ``path`` left beside it: those
    of a process of this machine that no longer runs, and those of any machine older than a day."""
    host, now, removed = socket.gethostname().replace(".", "-"), time.time(), []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*"):
        parts = candidate.name[len(path.name) + 2:].split(".")
        if len(parts) != 4 or parts[3] not in ("tmp", "old") or not parts[1].isdigit():
            continue
        try:
            stale = (parts[0] == host and not _alive(int(parts[1]))) or now - candidate.lstat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if stale:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    candidate.unlink()
            removed.append(candidate)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _commit(tmp: Path, path: Path, durable: bool) -> None:
    """Put ``tmp`` in place of ``path``; under :func:`all_or_nothing` (unless ``durable``) keep
    what it replaces so that a later failure of the command can put it back."""
    journal = _JOURNAL.get()
    if journal is None or durable:
        if tmp.is_dir() and path.is_dir():
            old = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}.old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        return
    backup = None
    if path.exists() or path.is_symlink():
        backup = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}.old"
        os.replace(path, backup)
    journal.append((path, backup))
    os.replace(tmp, path)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Run a command so that its outputs are written all or none: every output committed by
    :func:`atomic_path` / :func:`atomic_dir` in the block is rolled back (the previous version put
    back, a new file removed) if the block raises; on success the previous versions are deleted.
    Writes marked ``durable`` (progress a resumed run continues from) are kept either way."""
    journal: list[tuple[Path, Path | None]] = []
    token = _JOURNAL.set(journal)
    try:
        yield
    except BaseException:
        for path, backup in reversed(journal):
            with contextlib.suppress(OSError):
                _remove(path)
                if backup is not None:
                    os.replace(backup, path)
        raise
    else:
        for _, backup in journal:
            if backup is not None:
                _remove(backup)
    finally:
        _JOURNAL.reset(token)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds,
    so an interrupted write (Ctrl-C, crash) never leaves a half file. Temp files a killed run left
    for ``path`` are removed first; the file gets the permissions the umask gives (not mkstemp's
    0600). Under :func:`all_or_nothing` the write is undone if the command fails later, unless
    ``durable``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs are shared files
    os.close(fd)
    try:
        yield Path(tmp)
        _commit(Path(tmp), path, durable)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in for ``path`` (replacing any old one)
    only if the block succeeds, so an interrupted write never leaves a half folder."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        _commit(tmp, path, durable=False)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def private_tempdir(prefix: str = "dgm-") -> Iterator[Path]:
    """Send the block's temporary files to a fresh folder inside the temp folder, and remove that
    folder, with whatever was left in it, when the block ends (returns, raises, or is interrupted).

    For libraries that never delete their temp files: PyG writes ``torch_geometric...propagate_*.py``
    for every message-passing class it first builds, gymnasium-robotics ``ant_maze<time>.xml`` for
    every maze env (``make_env`` removes those itself). For the block, ``tempfile.tempdir`` and
    ``TMPDIR`` (inherited by child processes) name the private folder; both are restored afterwards.
    They are process-wide: wrap a whole command, from the main thread (as ``dgm`` does). Multiprocessing's
    own folder (``pymp-*``, which it removes at exit, after this block) is made first, outside it."""
    import multiprocessing.util

    multiprocessing.util.get_temp_dir()
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


def show_progress() -> bool:
    """Progress bars on a terminal; plain log lines when stderr is a file (Snakemake logs)."""
    return sys.stderr.isatty()


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def set_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op threads (Snakemake's ``threads``); default: all cores."""
    if threads:
        torch.set_num_threads(threads)


def csv_number(value: float, *, keep_inf: bool = False) -> str:
    """A number for a samples CSV: 6 significant digits; empty where not finite (``inf`` kept
    as ``inf`` with ``keep_inf``, e.g. an energy that overflowed)."""
    if math.isfinite(value):
        return f"{value:.6g}"
    return "inf" if keep_inf and value == math.inf else ""


def read_json(path: str | Path) -> Any:
    """The JSON value of ``path`` (text, never unpickled); DataError naming the file when it is
    not UTF-8 JSON (e.g. pickled bytes planted under a .json name)."""
    from dgm_science.errors import DataError

    try:
        return json.loads(Path(path).read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(f"{path}: not a readable JSON file ({type(err).__name__}: {err})") from None


def unknown_summary(tokens: dict[str, int], limit: int = 10) -> str:
    """``'I' x11, '[C@@H]' x1``: the ``limit`` most frequent of ``tokens`` (token -> occurrences), for a
    message about tokens outside a vocabulary."""
    ranked = sorted(tokens.items(), key=lambda item: (-item[1], item[0]))
    more = len(ranked) - limit
    return ", ".join(f"{t!r} x{n}" for t, n in ranked[:limit]) + (f" and {more} more" if more > 0 else "")
