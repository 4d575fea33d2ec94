"""Chemistry code shared by the domains (molecules, structures): an RDKit map over a process pool.

A domain imports what it shares with another domain from here, never from the other domain's
package (tests/test_domain_imports.py checks)."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Callable, Sequence, TypeVar

from rdkit import rdBase
from tqdm.auto import tqdm

_T = TypeVar("_T")
_R = TypeVar("_R")

_worker_log_block: Any = None


def _init_worker() -> None:
    global _worker_log_block
    _worker_log_block = rdBase.BlockLogs()


POOL_START_SECONDS = 3.5
"""What a pool of workers costs before it maps anything: each worker imports the mapped function's module
(measured 3.0 to 3.6 s for two workers importing the molecules domain, with torch, on the 2-core development
machine)."""
POOL_MIN_ITEM_SECONDS = 1.5e-4
"""Below this much work per item a pool is no faster than the calling process: sending each item and its result
between processes costs about 5e-5 s (60,000 SMILES' element sets took 5.9 s on two workers against 3.4 s in
one process)."""
PROBE_ITEMS, PROBE_SECONDS = 200, 0.5
"""How much of the work ``map_molecules`` does in the calling process before deciding whether a pool pays."""


def _pool_pays(per_item: float, remaining: int, n_jobs: int) -> bool:
    """Whether ``remaining`` items of ``per_item`` seconds each finish sooner on ``n_jobs`` new workers than here:
    the time saved, per_item x remaining x (1 - 1 / n_jobs), must exceed the pool's start."""
    return per_item >= POOL_MIN_ITEM_SECONDS and per_item * remaining * (1 - 1 / n_jobs) > POOL_START_SECONDS


def map_molecules(
    function: Callable[[_T], _R],
    items: Sequence[_T],
    *,
    n_jobs: int = 1,
    progress: bool = False,
    desc: str = "molecules",
) -> list[_R]:
    """`[function(x) for x in items]` with RDKit logging silenced; over a process pool when n_jobs > 1 and the
    pool pays.

    The first items are mapped here, those after the first timed (up to ``PROBE_ITEMS`` of them or
    ``PROBE_SECONDS``); the rest go to ``n_jobs`` workers only if that saves more than a pool's start
    (``_pool_pays``), so that small or cheap maps (a few test molecules' element sets) do not wait seconds for
    workers to import torch. `function` must be picklable (module level or functools.partial of one). Order is
    preserved. Workers start with the "forkserver" method, so a calling script needs the `if __name__ ==
    "__main__":` guard.
    """
    n_items = len(items)
    results: list[_R] = []
    with tqdm(total=n_items, desc=desc, disable=not progress, unit="mol") as bar:
        with rdBase.BlockLogs():
            started = 0.0
            for item in items:
                results.append(function(item))
                bar.update()
                if n_jobs <= 1 or len(results) == n_items:
                    continue
                if len(results) == 1:  # timed from the second item: the first may pay a one-off set-up
                    started = time.perf_counter()
                    continue
                timed, elapsed = len(results) - 1, time.perf_counter() - started
                if timed >= PROBE_ITEMS or elapsed >= PROBE_SECONDS:
                    if _pool_pays(elapsed / timed, n_items - len(results), n_jobs):
                        break
                    n_jobs = 1  # decided: the rest here as well
        if len(results) == n_items:
            return results
        rest = items[len(results):]
        chunksize = max(1, min(512, len(rest) // (8 * n_jobs)))
        context = multiprocessing.get_context("forkserver")
        with context.Pool(n_jobs, initializer=_init_worker) as pool:
            for result in pool.imap(function, rest, chunksize=chunksize):
                results.append(result)
                bar.update()
    return results


def standardized(task: tuple[str, bool, bool], max_length: int) -> tuple[str | None, str | None, str]:
    """``(smiles, standardize, scaffold)`` -> (canonical SMILES or None, Bemis-Murcko scaffold SMILES or None,
    what happened: "" / "standardized" / the reason it failed). Standardising (RDKit's rdMolStandardize) keeps
    the largest organic fragment and neutralises charges. Defined here, not in the molecules domain, so that
    the workers of a user file's prepare import RDKit only (no torch)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    smiles, standardize, scaffold = task
    if not smiles:
        return None, None, "empty SMILES"
    if len(smiles) > max_length:
        return None, None, f"a SMILES of {len(smiles):,} characters"
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, None, f"RDKit cannot parse the SMILES {smiles[:40]!r}"
    note = ""
    if standardize:
        try:
            several = len(Chem.GetMolFrags(mol)) > 1
            parent = _CHOOSER.choose(mol) if several else mol
            charged = any(a.GetFormalCharge() for a in parent.GetAtoms())
            neutral = _UNCHARGER.uncharge(parent) if charged else parent
            Chem.SanitizeMol(neutral)
        except (ValueError, RuntimeError) as err:
            return None, None, f"standardisation failed ({err})"
        # only a salt or a charge that the Uncharger changed counts (a zwitterion or a nitro group stays)
        changed = several or (charged and Chem.MolToSmiles(neutral) != Chem.MolToSmiles(parent))
        note = "standardized" if changed else ""
        mol = neutral
    if mol.GetNumAtoms() == 0:
        return None, None, "no atoms"
    canonical = Chem.MolToSmiles(mol)
    group = MurckoScaffold.MurckoScaffoldSmiles(mol=mol) if scaffold else None
    return canonical, group, note


class _Lazy:
    def __init__(self, make: Any) -> None:
        self._make, self._value = make, None

    def __getattr__(self, name: str) -> Any:
        if self._value is None:
            self._value = self._make()
        return getattr(self._value, name)


def _chooser() -> Any:
    from rdkit.Chem.MolStandardize import rdMolStandardize

    return rdMolStandardize.LargestFragmentChooser(preferOrganic=True)


def _uncharger() -> Any:
    from rdkit.Chem.MolStandardize import rdMolStandardize

    return rdMolStandardize.Uncharger()


_CHOOSER, _UNCHARGER = _Lazy(_chooser), _Lazy(_uncharger)
