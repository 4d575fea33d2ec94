"""map_molecules: the same list as a plain map, and a process pool only where it pays."""

from __future__ import annotations

import functools

import pytest

from dgm_science import chem

SMILES = ["CCO", "c1ccccc1", "not a smiles", "CC(=O)N", "[NH4+]", "C1CC1"] * 9


def _tasks() -> list[tuple[str, bool, bool]]:
    return [(s, True, True) for s in SMILES]


def test_a_small_cheap_map_starts_no_pool(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for 54 cheap items")

    monkeypatch.setattr(chem.multiprocessing, "get_context", no_pool)
    function = functools.partial(chem.standardized, max_length=200)
    assert chem.map_molecules(function, _tasks(), n_jobs=2) == [function(t) for t in _tasks()]


def test_work_that_pays_goes_to_the_pool_in_order(monkeypatch):
    started = []
    get_context = chem.multiprocessing.get_context

    def spy(method):
        started.append(method)
        return get_context(method)

    monkeypatch.setattr(chem.multiprocessing, "get_context", spy)
    monkeypatch.setattr(chem, "POOL_START_SECONDS", 0.0)
    monkeypatch.setattr(chem, "POOL_MIN_ITEM_SECONDS", 0.0)
    monkeypatch.setattr(chem, "PROBE_ITEMS", 5)
    function = functools.partial(chem.standardized, max_length=200)
    mapped = chem.map_molecules(function, _tasks(), n_jobs=2)
    assert started == ["forkserver"]
    assert mapped == [function(t) for t in _tasks()] and mapped[2][2] and mapped[0][0] == "CCO"


@pytest.mark.parametrize("per_item, remaining, n_jobs, pays", [
    (5e-5, 10_000_000, 2, False),  # cheaper than sending the item to a worker
    (1e-3, 1_000, 2, False),  # 1 s of work: the pool's start costs more
    (1e-3, 100_000, 2, True),  # 100 s of work: half of it saved
    (1e-3, 100_000, 1, False),  # one worker saves nothing
])
def test_a_pool_pays_only_for_enough_work_per_item_and_in_all(per_item, remaining, n_jobs, pays):
    assert chem._pool_pays(per_item, remaining, n_jobs) is pays
