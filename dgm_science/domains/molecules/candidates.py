"""Candidate molecules for chemists: sample a model until enough valid, unique, novel molecules
within property ranges and free of structural alerts are found, score how typical each is under
the training distribution, and write them as CSV, SDF and a grid image.

The out-of-distribution score is the two-sided typicality test of Nalisnick et al. 2019
("Detecting out-of-distribution inputs to deep generative models using typicality") for one input:
|-log p(x) / n_atoms - mean| / std of the same over a held-out typical set
(``LoadedModel.ood_score``): per heavy atom, so that size alone does not decide typicality.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import torch
from rdkit import Chem
from tqdm.auto import tqdm

from dgm_science.domains.molecules.data import read_smiles
from dgm_science.domains.molecules.properties import (
    matches_structural_alert, canonical_smiles, map_molecules, mol_properties, parse_smiles, properties_table,
)
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

PROPERTIES = ("qed", "sa", "logp", "mw")
"""Molecular properties a candidate can be filtered and sorted by (``properties.mol_properties``)."""

SORT_KEYS = {"log_likelihood": True, "ood_score": False, "qed": True, "sa": False, "logp": False, "mw": False}
"""Sort keys and whether they sort high values first: most likely, most typical, most drug-like,
easiest to synthesize first; logP and MW low first."""

DEFAULT_DRAWS_PER_CANDIDATE = 50
MIN_ACCEPTANCE = 1 / DEFAULT_DRAWS_PER_CANDIDATE
MAX_ROUND = 20_000


@dataclasses.dataclass(frozen=True)
class PropertyRange:
    """An inclusive range ``low <= value <= high`` of a molecular property; a None bound is open."""

    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, text: str) -> "PropertyRange":
        """Parse "LO:HI", "LO:" or ":HI"; ValueError saying what is wrong otherwise."""
        parts = text.split(":")
        if len(parts) != 2:
            raise ValueError(f"range {text!r} is not LO:HI (one ':', e.g. 0.6: or 200:500)")
        bounds: list[float | None] = []
        for part, side in zip(parts, ("lower", "upper")):
            part = part.strip()
            if not part:
                bounds.append(None)
                continue
            try:
                value = float(part)
            except ValueError:
                raise ValueError(f"range {text!r}: {side} bound {part!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"range {text!r}: {side} bound must be a finite number")
            bounds.append(value)
        low, high = bounds
        if low is None and high is None:
            raise ValueError(f"range {text!r} has no bound; give LO:, :HI or LO:HI")
        if low is not None and high is not None and low > high:
            raise ValueError(f"range {text!r}: lower bound {low:g} is above upper bound {high:g}")
        return cls(low, high)

    def __contains__(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        return f"{'' if self.low is None else f'{self.low:g}'}:{'' if self.high is None else f'{self.high:g}'}"


@dataclasses.dataclass(frozen=True)
class CandidateCriteria:
    """What a kept molecule must be. ``unique`` (by canonical SMILES), ``novel`` (not in the
    training SMILES), property ``ranges`` and ``remove_alerts`` (MCF / PAINS) all imply valid."""

    valid: bool = False
    unique: bool = False
    novel: bool = False
    ranges: dict[str, PropertyRange] = dataclasses.field(default_factory=dict)
    remove_alerts: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ranges) - set(PROPERTIES))
        if unknown:
            raise ValueError(f"no property {', '.join(unknown)} to filter by; known: {', '.join(PROPERTIES)}")

    @property
    def active(self) -> bool:
        """True if any filter is asked for (a candidate search instead of plain sampling)."""
        return self.valid or self.unique or self.novel or bool(self.ranges) or self.remove_alerts

    def __str__(self) -> str:
        parts = [name for name in ("valid", "unique", "novel") if getattr(self, name)]
        parts += [f"{name} {rng}" for name, rng in self.ranges.items()]
        return ", ".join(parts + (["no structural alerts"] if self.remove_alerts else []))


@dataclasses.dataclass
class CandidateTable:
    """Sampled molecules, row-aligned with their properties (None: invalid), log-likelihood
    (nats, NaN where unscored), out-of-distribution score (None: unknown) and extra columns."""

    smiles: list[str | None]
    properties: list[dict[str, Any] | None]
    log_likelihood: np.ndarray
    ood_score: np.ndarray | None = None
    columns: dict[str, list[Any]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def n_valid(self) -> int:
        return sum(p is not None for p in self.properties)

    def values(self, key: str) -> np.ndarray:
        """(N,) float values of a sort key; NaN for invalid molecules or unknown scores."""
        if key == "log_likelihood":
            return np.asarray(self.log_likelihood, dtype=float)
        if key == "ood_score":
            return np.full(len(self), math.nan) if self.ood_score is None else np.asarray(self.ood_score, dtype=float)
        if key not in PROPERTIES:
            raise ValueError(f"cannot sort by {key!r}; known: {', '.join(SORT_KEYS)}")
        return np.array([math.nan if p is None else p[key] for p in self.properties], dtype=float)

    def take(self, index: Sequence[int]) -> "CandidateTable":
        """The rows at ``index``, in that order."""
        index = list(index)
        return CandidateTable(
            [self.smiles[i] for i in index],
            [self.properties[i] for i in index],
            np.asarray(self.log_likelihood, dtype=float)[index] if index else np.zeros(0),
            None if self.ood_score is None else (np.asarray(self.ood_score)[index] if index else np.zeros(0)),
            {name: [values[i] for i in index] for name, values in self.columns.items()},
        )

    def sorted_by(self, key: str) -> "CandidateTable":
        """Best first by ``key`` in its direction (``SORT_KEYS``); ties keep sampling order, NaN last."""
        if key not in SORT_KEYS:
            raise ValueError(f"cannot sort by {key!r}; known: {', '.join(SORT_KEYS)}")
        values = self.values(key)
        order = np.argsort(-values if SORT_KEYS[key] else values, kind="stable")
        return self.take(order.tolist())


@dataclasses.dataclass
class SearchReport:
    """Counts of a candidate search: samples drawn, how many passed each filter in the order they
    are applied (duplicates, training molecules ... removed), and candidates kept."""

    asked: int
    max_draws: int
    drawn: int = 0
    rounds: int = 0
    found: int = 0
    passed: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def hit_limit(self) -> bool:
        return self.found < self.asked

    def __str__(self) -> str:
        funnel = ", ".join(f"{stage} {count}" for stage, count in self.passed.items())
        return (f"{self.found} of {self.asked} candidates found in {self.drawn} draws ({self.rounds} rounds; "
                f"passing each filter in turn: {funnel})")


def has_structural_alert(mol: Chem.Mol) -> bool:
    """True if the molecule, hydrogens added, matches an MCF or PAINS SMARTS (``filters/mcf.csv``,
    ``filters/wehi_pains.csv``) - the structural-alert part of the MOSES filters."""
    return matches_structural_alert(Chem.AddHs(mol))


def _candidate_row(smiles: str, ranges: tuple[tuple[str, PropertyRange], ...], with_alerts: bool) -> dict[str, Any]:
    """Properties of one valid SMILES; its structural alert only if asked and within ``ranges``."""
    mol = parse_smiles(smiles)
    row: dict[str, Any] = {"smiles": Chem.MolToSmiles(mol), **mol_properties(mol), "structural_alert": None}
    if with_alerts and all(row[name] in rng for name, rng in ranges):
        row["structural_alert"] = has_structural_alert(mol)
    return row


def screen(
    smiles: Sequence[str | None],
    criteria: CandidateCriteria,
    *,
    seen: set[str],
    train: Collection[str] | None = None,
    n_jobs: int = 1,
) -> tuple[list[int], list[dict[str, Any]], dict[str, int]]:
    """Positions (in sampling order) of the SMILES passing ``criteria``, their property rows, and the
    number passing each filter in turn. ``seen`` holds the canonical SMILES of earlier rounds and is
    updated, so uniqueness holds across rounds; novelty compares the canonical and the sampled
    SMILES with the ``train`` strings as written (the MOSES novelty convention)."""
    if criteria.novel and train is None:
        raise ValueError("novelty needs the training SMILES")
    canonical = map_molecules(canonical_smiles, list(smiles))
    keep = [i for i, c in enumerate(canonical) if c is not None]
    counts = {"valid": len(keep)}
    if criteria.unique:
        fresh = []
        for i in keep:
            if canonical[i] not in seen:
                seen.add(canonical[i])
                fresh.append(i)
        keep = fresh
        counts["unique"] = len(keep)
    if criteria.novel:
        keep = [i for i in keep if canonical[i] not in train and smiles[i] not in train]
        counts["novel"] = len(keep)
    ranges = tuple(criteria.ranges.items())
    describe = functools.partial(_candidate_row, ranges=ranges, with_alerts=criteria.remove_alerts)
    rows = map_molecules(describe, [smiles[i] for i in keep], n_jobs=n_jobs)
    kept = list(zip(keep, rows))
    for name, rng in ranges:
        kept = [(i, row) for i, row in kept if row[name] in rng]
        counts[f"{name} {rng}"] = len(kept)
    if criteria.remove_alerts:
        kept = [(i, row) for i, row in kept if not row["structural_alert"]]
        counts["no structural alerts"] = len(kept)
    return [i for i, _ in kept], [row for _, row in kept], counts


def _round_size(missing: int, report: SearchReport, batch_size: int) -> int:
    """Samples to draw next: enough for the ``missing`` candidates at the acceptance rate so far
    (at least one batch, at most ``MAX_ROUND`` and the draws left)."""
    rate = max(report.found / report.drawn, MIN_ACCEPTANCE) if report.drawn else 1.0
    size = max(math.ceil(1.2 * missing / rate), batch_size)
    return min(size, max(MAX_ROUND, batch_size), report.max_draws - report.drawn)


def find_candidates(
    model: Any,
    n: int,
    criteria: CandidateCriteria,
    *,
    train: Collection[str] | None = None,
    seed: int = 0,
    max_draws: int | None = None,
    temperature: float | None = None,
    batch_size: int | None = None,
    n_jobs: int = 1,
    progress: bool = False,
    **decode_options: Any,
) -> tuple[CandidateTable, SearchReport]:
    """Draw from ``model`` (an ``api.LoadedModel``) in rounds, one seeded generator continuing
    across them, until ``n`` molecules pass ``criteria`` or ``max_draws`` (default 50 n) samples
    were drawn; the candidates in sampling order with their log-likelihood, and the counts."""
    if max_draws is None:
        max_draws = DEFAULT_DRAWS_PER_CANDIDATE * n
    batch_size = batch_size or model.config.sample.batch_size
    generator = torch.Generator(device=model.device).manual_seed(seed)
    report = SearchReport(asked=n, max_draws=max_draws)
    seen: set[str] = set()
    smiles: list[str | None] = []
    rows: list[dict[str, Any] | None] = []
    columns: dict[str, list[Any]] = {}
    with tqdm(total=n, desc="candidates", unit="mol", disable=not progress) as bar:
        while report.found < n and report.drawn < max_draws:
            size = _round_size(n - report.found, report, batch_size)
            items, extra = model.sample_table(size, generator=generator, temperature=temperature,
                                              batch_size=batch_size, **decode_options)
            keep, kept_rows, counts = screen(items, criteria, seen=seen, train=train, n_jobs=n_jobs)
            keep, kept_rows = keep[: n - report.found], kept_rows[: n - report.found]
            smiles += [items[i] for i in keep]
            rows += kept_rows
            for name, values in extra.items():
                columns.setdefault(name, []).extend(values[i] for i in keep)
            report.drawn += size
            report.rounds += 1
            report.found += len(keep)
            for stage, count in counts.items():
                report.passed[stage] = report.passed.get(stage, 0) + count
            bar.update(len(keep))
            bar.set_postfix(drawn=report.drawn)
            if not progress:
                log.info("round %d: %d drawn, %d of %d candidates", report.rounds, report.drawn, report.found, n)
    table = CandidateTable(smiles, rows, model.log_likelihood(smiles), columns=columns)
    return table, report


def score_samples(model: Any, items: Sequence[str | None], columns: dict[str, list[Any]] | None = None,
                  n_jobs: int = 1) -> CandidateTable:
    """Plain samples (invalid ones kept, in order) with their properties and log-likelihood."""
    properties = properties_table([s or "" for s in items], n_jobs=n_jobs)
    return CandidateTable(list(items), properties, model.log_likelihood(items), columns=dict(columns or {}))


def training_smiles(path: Path) -> frozenset[str]:
    """The training SMILES a novel molecule must not be among (one per line, e.g. train_all.smi)."""
    return frozenset(s for s in read_smiles(path) if s)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_sdf(path: Path, table: CandidateTable) -> int:
    """SDF of the valid molecules in table order, with 2D coordinates (``rdDepictor``) and the
    properties, log-likelihood, OOD score and extra columns as SD tags; written atomically.
    Returns the number of molecules written."""
    from rdkit.Chem import rdDepictor

    ood = table.values("ood_score")
    written = 0
    with atomic_path(path) as tmp:
        writer = Chem.SDWriter(str(tmp))
        for i, (smiles, row) in enumerate(zip(table.smiles, table.properties)):
            if row is None:
                continue
            mol = Chem.MolFromSmiles(smiles)
            rdDepictor.Compute2DCoords(mol)
            mol.SetProp("_Name", f"candidate_{i + 1}")
            mol.SetProp("smiles", smiles)
            for name in PROPERTIES:
                mol.SetProp(name, _format(float(row[name])))
            mol.SetProp("log_likelihood", _format(float(table.log_likelihood[i])))
            mol.SetProp("ood_score", _format(float(ood[i])))
            for name, values in table.columns.items():
                mol.SetProp(name, _format(values[i]))
            writer.write(mol)
            written += 1
        writer.close()
    return written


def write_grid_image(path: Path, table: CandidateTable, top: int = 24, per_row: int = 6,
                     legend_key: str | None = None) -> int:
    """PNG grid of the first ``top`` valid molecules in table order (sort the table first), each
    with its rank, QED, SA, log-likelihood and OOD score (and the extra column ``legend_key``);
    written atomically. Returns how many were drawn (0: nothing written)."""
    from rdkit.Chem import Draw

    ood = table.values("ood_score")
    mols, legends = [], []
    for i, (smiles, row) in enumerate(zip(table.smiles, table.properties)):
        if len(mols) == top:
            break
        if row is None:
            continue
        mols.append(Chem.MolFromSmiles(smiles))
        score = "-" if math.isnan(ood[i]) else f"{ood[i]:.2f}"
        log_p = "-" if math.isnan(table.log_likelihood[i]) else f"{table.log_likelihood[i]:.1f}"
        extra = f"  {legend_key} {float(table.columns[legend_key][i]):.3f}" if legend_key else ""
        legends.append(f"#{i + 1}{extra}  QED {row['qed']:.2f}  SA {row['sa']:.2f}\nlog p {log_p}  OOD {score}")
    if not mols:
        return 0
    image = Draw.MolsToGridImage(mols, molsPerRow=min(per_row, len(mols)), subImgSize=(300, 300), legends=legends)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return len(mols)


def randomized_smiles(smiles: Sequence[str], seed: int = 0) -> list[str]:
    """The same molecules written from a random starting atom and branch order (non-canonical
    SMILES), seeded per molecule; None-free input of valid SMILES."""
    return [Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(s), 1, randomSeed=seed + i)[0] for i, s in enumerate(smiles)]


def molecule_elements(smiles: str | None) -> frozenset[str] | None:
    """The element symbols of a molecule's atoms (explicit hydrogens included, implicit ones not);
    None where RDKit cannot parse the SMILES."""
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return None if mol is None else frozenset(atom.GetSymbol() for atom in mol.GetAtoms())


def is_charged(smiles: str | None) -> bool | None:
    """True if an atom of the molecule carries a formal charge (a zwitterion counts); None where
    RDKit cannot parse the SMILES."""
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return None if mol is None else any(atom.GetFormalCharge() for atom in mol.GetAtoms())


def made_of(smiles: Sequence[str], elements: Collection[str], *, neutral: bool = False,
            n_jobs: int = 1) -> list[str]:
    """The SMILES that parse and hold no element outside ``elements`` (and, if ``neutral``, no
    charged atom), in order: a set that shifts something other than the element set (or the
    charges) is first restricted to the elements (and charge states) the model saw."""
    allowed = frozenset(elements)
    found = map_molecules(molecule_elements, list(smiles), n_jobs=n_jobs)
    kept = [s for s, e in zip(smiles, found) if e is not None and e <= allowed]
    if neutral:
        kept = [s for s, charged in zip(kept, map_molecules(is_charged, kept, n_jobs=n_jobs)) if not charged]
    return kept


def set_composition(smiles: Sequence[str], n_jobs: int = 1) -> dict[str, Any]:
    """What a molecule set is made of, for stating a shift set beside its result: ``n`` molecules,
    ``unparsed`` of them RDKit cannot read, ``elements`` (symbol -> number of molecules holding
    it), ``element_set`` (sorted symbols), ``charged`` (molecules with a formally charged atom)
    and the heavy-atom count's min / median / max."""
    found = map_molecules(molecule_elements, list(smiles), n_jobs=n_jobs)
    charged = map_molecules(is_charged, list(smiles), n_jobs=n_jobs)
    sizes = [m.GetNumHeavyAtoms() for m in (parse_smiles(s) for s in smiles) if m is not None]
    counts: dict[str, int] = {}
    for elements in found:
        for symbol in elements or ():
            counts[symbol] = counts.get(symbol, 0) + 1
    return {"n": len(smiles), "unparsed": sum(e is None for e in found),
            "element_set": sorted(counts), "elements": dict(sorted(counts.items())),
            "charged": sum(bool(c) for c in charged),
            "heavy_atoms": ({"min": int(min(sizes)), "median": float(np.median(sizes)), "max": int(max(sizes))}
                            if sizes else None)}


def shifted_factors(reference: dict[str, Any], shifted: dict[str, Any]) -> list[str]:
    """Which of the composition factors differ between two ``set_composition`` results:
    ``elements`` where the shifted set holds an element the reference does not, ``charges``
    where it holds charged molecules and the reference none, ``size`` where its heavy-atom range
    is not within the reference's. Representation (the same molecules written otherwise) shows in
    none; the caller names it."""
    factors = []
    if set(shifted["element_set"]) - set(reference["element_set"]):
        factors.append("elements")
    if shifted["charged"] and not reference["charged"]:
        factors.append("charges")
    a, b = reference["heavy_atoms"], shifted["heavy_atoms"]
    if a and b and (b["min"] < a["min"] or b["max"] > a["max"]):
        factors.append("size")
    return factors


def auroc(scores_in: Sequence[float], scores_out: Sequence[float]) -> float:
    """Area under the ROC curve for telling ``scores_out`` (positives) from ``scores_in`` by a
    higher score: the Mann-Whitney U statistic / (n_in n_out), ties counted half; 0.5 is chance."""
    from scipy.stats import rankdata

    negatives = np.asarray(scores_in, dtype=float)
    positives = np.asarray(scores_out, dtype=float)
    if not len(negatives) or not len(positives):
        raise ValueError("AUROC needs at least one score on each side")
    if np.isnan(negatives).any() or np.isnan(positives).any():
        raise ValueError("AUROC of NaN scores is undefined; drop or replace them first")
    ranks = rankdata(np.concatenate([negatives, positives]))
    n_out = len(positives)
    u = ranks[len(negatives):].sum() - n_out * (n_out + 1) / 2
    return float(u / (len(negatives) * n_out))


def ood_auroc(model: Any, smiles_in: Sequence[str], smiles_out: Sequence[str]) -> dict[str, float]:
    """How well the OOD score tells ``smiles_out`` from held-out in-distribution ``smiles_in``:
    ``auroc`` counts molecules the model cannot score (unknown token, too long, no graph) as
    maximally atypical, ``auroc_scorable`` leaves them out, ``auroc_negative_log_likelihood`` ranks
    by -log p alone (the one-sided test that typicality improves on)."""
    ll_in, ll_out = model.log_likelihood(list(smiles_in)), model.log_likelihood(list(smiles_out))
    ood_in, ood_out = model.ood_score(ll_in, list(smiles_in)), model.ood_score(ll_out, list(smiles_out))
    if ood_in is None:
        raise ValueError("the checkpoint has no typicality statistics (retrain it to record them)")
    scored_in, scored_out = ~np.isnan(ll_in), ~np.isnan(ll_out)
    if not scored_in.any():
        raise ValueError("the model scores none of the in-distribution molecules")
    # a model that can score none of the other set (atoms or sizes it has no place for) rejects
    # all of it: the AUROC counting them as atypical is 1, the scorable-only ones are undefined
    both = scored_out.any()
    return {
        "auroc": auroc(np.where(scored_in, ood_in, np.inf), np.where(scored_out, ood_out, np.inf)),
        "auroc_scorable": auroc(ood_in[scored_in], ood_out[scored_out]) if both else math.nan,
        "auroc_negative_log_likelihood": auroc(-ll_in[scored_in], -ll_out[scored_out]) if both else math.nan,
        "n_in": len(ll_in), "n_out": len(ll_out),
        "unscorable_in": int((~scored_in).sum()), "unscorable_out": int((~scored_out).sum()),
    }
