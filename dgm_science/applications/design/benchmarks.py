"""Goal-directed benchmark tasks (GuacaMol v2, PMO) scored by GuacaMol's own code, and the run-level scores of both.

Tasks: the twenty goal-directed benchmarks of GuacaMol v2 (Brown et al. 2019, J. Chem. Inf. Model. 59:1096;
``guacamol.benchmark_suites.goal_directed_suite_v2``) and PMO's two further RDKit tasks ``qed`` and
``isomers_c7h8n2o2`` (Gao et al. 2022, "Sample efficiency matters", NeurIPS Datasets and Benchmarks). Names are
PMO's where PMO has the task. Each task's scoring function and top-x contribution specification come from the
``guacamol`` package itself (through ``dgm_science.compat.guacamol``); PMO's TDC oracles reimplement the same
functions. PMO's drd2, gsk3b and jnk3 need classifier files downloaded at run time and are not supported.

Run-level scores:

- ``guacamol_assess``: GuacaMol's benchmark score of the molecules a generator returns, as
  ``GoalDirectedBenchmark.assess_model`` computes it (stereo-free canonicalisation, deduplication, the task's
  objective, zeros for missing molecules, ``compute_global_score``); ``guacamol_score`` is its last step.
- ``pmo_auc_top10``: PMO's area under the top-10-average vs oracle-calls curve (mol_opt ``top_auc``).
- ``top_diversity``: PMO's "diversity" of a set (TDC ``Evaluator('Diversity')``).
"""

from __future__ import annotations

import functools
import heapq
from typing import Any, Sequence

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator

from dgm_science.compat.guacamol import import_guacamol

# name -> the `name` GuacaMol gives the benchmark, in the order of goal_directed_suite_v2()
_GUACAMOL_V2 = {
    "celecoxib_rediscovery": "Celecoxib rediscovery",
    "troglitazone_rediscovery": "Troglitazone rediscovery",
    "thiothixene_rediscovery": "Thiothixene rediscovery",
    "aripiprazole_similarity": "Aripiprazole similarity",
    "albuterol_similarity": "Albuterol similarity",
    "mestranol_similarity": "Mestranol similarity",
    "isomers_c11h24": "C11H24",
    "isomers_c9h10n2o2pf2cl": "C9H10N2O2PF2Cl",
    "median1": "Median molecules 1",
    "median2": "Median molecules 2",
    "osimertinib_mpo": "Osimertinib MPO",
    "fexofenadine_mpo": "Fexofenadine MPO",
    "ranolazine_mpo": "Ranolazine MPO",
    "perindopril_mpo": "Perindopril MPO",
    "amlodipine_mpo": "Amlodipine MPO",
    "sitagliptin_mpo": "Sitagliptin MPO",
    "zaleplon_mpo": "Zaleplon MPO",
    "valsartan_smarts": "Valsartan SMARTS",
    "deco_hop": "Deco Hop",
    "scaffold_hop": "Scaffold Hop",
}
GUACAMOL_V2_TASKS: tuple[str, ...] = tuple(_GUACAMOL_V2)
"""The twenty GuacaMol v2 goal-directed tasks, in the suite's order."""

PMO_EXTRA_TASKS: tuple[str, ...] = ("qed", "isomers_c7h8n2o2")
TASKS: tuple[str, ...] = GUACAMOL_V2_TASKS + PMO_EXTRA_TASKS
"""Every supported task: GuacaMol v2's twenty, then PMO's ``qed`` and ``isomers_c7h8n2o2``."""

PMO_UNSUPPORTED_TASKS: tuple[str, ...] = ("drd2", "gsk3b", "jnk3")
PMO_TASKS: tuple[str, ...] = tuple(
    sorted(set(TASKS) - {"aripiprazole_similarity", "isomers_c11h24"})
)
"""PMO's 23 tasks less the three classifier oracles (``PMO_UNSUPPORTED_TASKS``): 20, sorted by name."""

NAMESPACES: dict[str, tuple[str, ...]] = {"guacamol": GUACAMOL_V2_TASKS, "pmo": PMO_TASKS}
"""Builtin objective names are ``<namespace>:<task>``: ``guacamol:`` the v2 suite, ``pmo:`` PMO's tasks."""

UNSUPPORTED_MESSAGE = (
    "PMO's {task} oracle is a classifier whose model file TDC downloads at run time; it is not supported "
    "(supported tasks: {tasks})"
)

DIVERSITY_RADIUS = 2
DIVERSITY_BITS = 2048


@functools.lru_cache(maxsize=1)
def _suite_v2() -> dict[str, Any]:
    suites = import_guacamol("benchmark_suites")
    benchmarks = suites.goal_directed_suite_v2()
    if [b.name for b in benchmarks] != list(_GUACAMOL_V2.values()):
        raise RuntimeError(f"guacamol's goal_directed_suite_v2 is not the v2 suite this module maps: "
                           f"{[b.name for b in benchmarks]}")
    return dict(zip(_GUACAMOL_V2, benchmarks))


@functools.lru_cache(maxsize=None)
def task_benchmark(task: str) -> Any:
    """GuacaMol's ``GoalDirectedBenchmark`` of a task: ``.objective`` (a ScoringFunction with ``score_list``)
    and ``.contribution_specification`` (the top-x counts and weights). KeyError for an unknown task."""
    if task in _GUACAMOL_V2:
        return _suite_v2()[task]
    standard = import_guacamol("standard_benchmarks")
    if task == "qed":
        return standard.qed_benchmark()
    if task == "isomers_c7h8n2o2":
        return standard.isomers_c7h8n2o2()
    raise KeyError(task)


def unknown_task_message(task: str, namespace: str | None = None) -> str:
    """Why ``task`` cannot be used (in ``namespace`` when given): unsupported, misplaced or unknown."""
    if task in PMO_UNSUPPORTED_TASKS:
        return UNSUPPORTED_MESSAGE.format(task=task, tasks=", ".join(TASKS))
    if namespace is not None and task in TASKS:
        other = [f"{name}:{task}" for name, tasks in NAMESPACES.items() if task in tasks]
        return f"{task!r} is not a {namespace} task" + (f" (it is {' and '.join(other)})" if other else "")
    known = NAMESPACES[namespace] if namespace is not None else TASKS
    return f"unknown task {task!r}; one of {', '.join(known)}"


def contribution_weights(task: str) -> list[tuple[int, float]]:
    """The task's GuacaMol score specification: (top count, weight) pairs, e.g. [(1, 1.0), (10, 1.0), (100, 1.0)]."""
    if task not in TASKS:
        raise ValueError(unknown_task_message(task))
    specification = task_benchmark(task).contribution_specification
    return [(int(count), float(weight)) for count, weight in specification.contributions]


def molecules_needed(task: str) -> int:
    """How many distinct molecules GuacaMol asks a generator for on this task: the largest top count."""
    return max(count for count, _ in contribution_weights(task))


def guacamol_assess(task: str, molecules: Sequence[str]) -> dict[str, Any]:
    """GuacaMol's benchmark score of the molecules a generator returns for ``task``, as
    ``GoalDirectedBenchmark.assess_model`` (guacamol 0.5.5) computes it from what ``generate_optimized_molecules``
    returned (asked for ``molecules_needed(task)`` of them: 1 to 250; Brown et al. 2019):

    1. ``canonicalize_list(molecules, include_stereocenters=False)``: canonical SMILES without stereochemistry,
       invalid SMILES dropped, repeats (e.g. two stereoisomers of one molecule) kept once;
    2. those distinct molecules scored by the task's objective (``score_list``, GuacaMol's own code);
    3. one score of 0 for each molecule missing from ``molecules_needed(task)``;
    4. ``compute_global_score``: for each (top count x, weight w) the mean of the x best scores, weighted by w.

    Returns ``score``, ``molecules`` (distinct stereo-free molecules scored), ``needed`` and ``top_x`` (each
    top-x mean, GuacaMol's ``top_{x}`` metadata).
    """
    needed = molecules_needed(task)
    chemistry = import_guacamol("utils.chemistry")
    contributions = import_guacamol("goal_directed_score_contributions")
    with rdBase.BlockLogs():
        distinct = chemistry.canonicalize_list(list(molecules), include_stereocenters=False)
        scores = [float(s) for s in task_benchmark(task).objective.score_list(distinct)]
    scores += [0.0] * max(0, needed - len(distinct))
    global_score, top_x = contributions.compute_global_score(task_benchmark(task).contribution_specification, scores)
    return {"score": float(global_score), "molecules": len(distinct), "needed": needed,
            "top_x": {key: float(value) for key, value in top_x.items()}}


def guacamol_score(task: str, scores_sorted_desc: Sequence[float]) -> float:
    """GuacaMol's benchmark score of a run from the scores of its distinct molecules (best first).

    As ``GoalDirectedBenchmark.assess_model`` (guacamol 0.5.5): the generator returns ``molecules_needed(task)``
    molecules; they are canonicalised without stereocentres, deduplicated and scored; missing ones count as
    zeros; then ``compute_global_score``: for each (top count x, weight w) of the specification the mean of the
    x best scores, and the w-weighted mean of those means. Pass the scores of distinct (stereo-free canonical)
    molecules; more than needed is fine (only the best count), fewer are padded with zeros.
    """
    scores = np.asarray(list(scores_sorted_desc), dtype=float).ravel()
    if not np.all(np.isfinite(scores)):
        raise ValueError("guacamol_score: the scores must be finite")
    needed = molecules_needed(task)
    padded = sorted(scores.tolist(), reverse=True)[:needed]
    padded += [0.0] * (needed - len(padded))
    contributions = import_guacamol("goal_directed_score_contributions")
    specification = task_benchmark(task).contribution_specification
    global_score, _ = contributions.compute_global_score(specification, padded)
    return float(global_score)


def pmo_auc(call_scores: Sequence[float], top_n: int, budget: int = 10000, freq: int = 100) -> float:
    """PMO's AUC of the top-``top_n`` average against oracle calls, normalised by the budget (in [0, 1]).

    The definition of mol_opt's ``top_auc(buffer, top_n, finish=True, freq_log, max_oracle_calls)`` (Gao et al.
    2022): with n calls made and ``y(m)`` the mean of the ``top_n`` best scores among the first m calls (of
    fewer when fewer were made), the trapezoid rule over the points m = freq, 2 freq, ... below n and then n
    itself, starting from (0, 0); a run that stops before the budget keeps its final ``y(n)`` up to the budget
    (PMO's ``finish`` behaviour); the area is divided by the budget. ``call_scores[i]`` is the score of the
    (i+1)-th call. Calls past the budget are ignored (mol_opt's buffer may exceed its budget by one).
    """
    if top_n < 1 or budget < 1 or freq < 1:
        raise ValueError(f"pmo_auc: top_n, budget and freq must be >= 1 (got {top_n}, {budget}, {freq})")
    scores = np.asarray(list(call_scores), dtype=float).ravel()[:budget]
    if not np.all(np.isfinite(scores)):
        raise ValueError("pmo_auc: the scores must be finite")
    n = len(scores)
    if n == 0:
        return 0.0
    best: list[float] = []  # a min-heap of the top_n best scores so far
    area = previous = 0.0
    called = 0
    checkpoints = set(range(freq, n, freq))
    for m, score in enumerate(scores.tolist(), start=1):
        if len(best) < top_n:
            heapq.heappush(best, score)
        elif score > best[0]:
            heapq.heapreplace(best, score)
        if m in checkpoints:
            current = sum(best) / len(best)
            area += freq * (current + previous) / 2
            previous, called = current, m
    final = sum(best) / len(best)
    area += (n - called) * (final + previous) / 2
    area += (budget - n) * final
    return float(area / budget)


def pmo_auc_top10(call_scores: Sequence[float], budget: int = 10000, freq: int = 100) -> float:
    """PMO's main metric, AUC top-10 (``pmo_auc`` with top_n = 10): ``call_scores`` in call order."""
    return pmo_auc(call_scores, 10, budget=budget, freq=freq)


@functools.lru_cache(maxsize=1)
def _diversity_generator() -> Any:
    return rdFingerprintGenerator.GetMorganGenerator(radius=DIVERSITY_RADIUS, fpSize=DIVERSITY_BITS)


def top_diversity(smiles: Sequence[str | None]) -> float:
    """Internal diversity of a set of molecules as PMO reports it for the top 100 (TDC ``Evaluator('Diversity')``).

    The distinct valid molecules (isomeric canonical SMILES; invalid ones dropped), their Morgan bit vectors
    (radius 2, 2,048 bits, no chirality), and the mean Tanimoto distance 1 - T(a, b) over all unordered pairs.
    A set of fewer than two distinct molecules has diversity 0 (TDC returns NaN).
    """
    canonical: set[str] = set()
    for text in smiles:
        mol = Chem.MolFromSmiles(text) if isinstance(text, str) and text else None
        if mol is not None:
            canonical.add(Chem.MolToSmiles(mol, isomericSmiles=True))
    if len(canonical) < 2:
        return 0.0
    generator = _diversity_generator()
    fingerprints = [generator.GetFingerprint(Chem.MolFromSmiles(text)) for text in sorted(canonical)]
    total = 0.0
    for i in range(1, len(fingerprints)):
        total += float(np.sum(DataStructs.BulkTanimotoSimilarity(fingerprints[i], fingerprints[:i])))
    pairs = len(fingerprints) * (len(fingerprints) - 1) / 2
    return float(1.0 - total / pairs)

