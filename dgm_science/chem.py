"""Chemistry code shared by the domains (molecules, structures): an RDKit map over a process pool.

A domain imports what it shares with another domain from here, never from the other domain's
package (tests/test_domain_imports.py checks)."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Sequence, TypeVar

from rdkit import rdBase
from tqdm.auto import tqdm

_T = TypeVar("_T")
_R = TypeVar("_R")

_worker_log_block: Any = None


def _init_worker() -> None:
    global _worker_log_block
    _worker_log_block = rdBase.BlockLogs()


def map_molecules(
    function: Callable[[_T], _R],
    items: Sequence[_T],
    *,
    n_jobs: int = 1,
    progress: bool = False,
    desc: str = "molecules",
) -> list[_R]:
    """`[function(x) for x in items]` with RDKit logging silenced, over a process pool when n_jobs > 1.

    `function` must be picklable (module level or functools.partial of one). Order is preserved. Workers
    start with the "forkserver" method, so a calling script needs the `if __name__ == "__main__":` guard.
    """
    n_items = len(items)
    if n_jobs <= 1 or n_items < 2 * n_jobs:
        with rdBase.BlockLogs():
            iterator = tqdm(items, total=n_items, desc=desc, disable=not progress, unit="mol")
            return [function(item) for item in iterator]
    chunksize = max(1, min(512, n_items // (8 * n_jobs)))
    context = multiprocessing.get_context("forkserver")
    with context.Pool(n_jobs, initializer=_init_worker) as pool:
        iterator = pool.imap(function, items, chunksize=chunksize)
        return list(tqdm(iterator, total=n_items, desc=desc, disable=not progress, unit="mol"))
