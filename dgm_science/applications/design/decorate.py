"""Scaffold decoration (``dgm decorate``): molecules that contain a given scaffold and carry new
substituents only at its attachment points, the ``*`` dummy atoms of the scaffold SMILES.

Two routes, one per model that can be constrained exactly:

- **graph-diffusion** (DiGress): inpainting (``graph_diffusion.scaffold_inpainting``). The scaffold's
  atoms take the first node slots and each ``*`` an anchor slot: the first atom of its substituent,
  of a type the model draws, single-bonded to its scaffold atom. Clamped at every denoising step:
  the scaffold's atom types and bonds, the anchors' bonds to the scaffold, and "no bond" between
  the scaffold and every other new atom. So every scaffold atom without ``*`` gets no new
  neighbour, and one with ``*`` exactly one per ``*``. (Without anchors, the attachment atoms'
  bonds to every new atom left free, the QM9 model gave an attachment atom two substituents or a
  ring through it: 56 % (``C1CC1*``) and 67 % (``O=C(*)N*``) of its valid molecules retained the
  scaffold, 500 samples each, against 100 % and 98 % with anchors, at higher validity.) The
  number of atoms is drawn from the model's training sizes restricted to at least the scaffold's
  heavy atoms plus one per ``*``. The clamp (``DiscreteGraphDiffusion.sample``) is the clean
  scaffold by default: on the QM9 model it gave higher validity than RePaint's noised clamp,
  q(x_{t-1} | x_0 = scaffold), on both scaffolds and both seeds measured (1,000 samples each; seed
  0: 0.635 vs 0.599 for ``C1CC1*``, 0.864 vs 0.837 for ``O=C(*)N*``; seed 1: 0.631 vs 0.616, 0.840
  vs 0.810) at the same retention. The noised clamp keeps the denoiser's input in distribution,
  which may matter more where the scaffold is a larger part of the graph: ``--inpainting noised``.
- **smiles-arm**: template-constrained sampling (``AutoregressiveModel.sample_template``). The
  scaffold is written as a SMILES template whose tokens are forced; each ``*`` is a slot the model
  fills freely: a branch ``( ... )`` in the middle of the string (ended by the model's ``)`` at
  depth 0), or the rest of the molecule at its end (ended by <eos>). In a slot the model may not
  write a ring-bond digit that is open in the enclosing scaffold (it would bond the substituent to
  a scaffold atom), a ring-bond digit before its first atom (it would ring-bond the attachment
  atom), <eos> inside a branch, ``.`` or ``*``; a slot holds at least one atom, and closes every
  ring it opens before it ends (else a later scaffold digit would close it). A substituent does
  not start with a bond symbol other than ``-``: its bond to the scaffold is single.

The template: among the scaffold's SMILES rooted at each of its atoms (RDKit's canonical order
from that root, ``Chem.MolToSmiles(..., rootedAtAtom=i)``, so that every ``*``, a leaf, comes after
its atom), the one whose methyl-decorated form (each ``*`` written ``C``) the model finds most
likely, ties broken by the latest first ``*``. The models are trained on RDKit canonical SMILES, so
these spellings are the kind they know, and the score picks the root and ring order they
find most typical instead of guessing it.

**Scaffold retained** (both routes): the written molecule is valid and has a substructure match M
of the core (the scaffold with its ``*`` removed; RDKit's matching of atoms and bond orders, aromatic
bonds included) such that (a) M is induced: the molecule has no bond between two matched atoms that
the core lacks, and (b) every bond from a matched atom to an unmatched one is at an attachment atom,
at most as many as that atom has ``*``. **Attachments filled**: such a match with exactly as many,
i.e. every ``*`` carries a substituent. Both routes make every valid molecule retain the scaffold
with its attachments filled, each substituent single-bonded (as the scaffold's ``*`` must be),
except where RDKit perceives the scaffold's bonds differently once substituted: a ring closed
through the substituents, or an exocyclic C=O, that makes the scaffold's atoms aromatic (e.g.
``O=C(*)N*`` in a uracil: 2-3 % of the QM9 model's valid molecules).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem, rdBase
from tqdm.auto import tqdm

from dgm_science.applications.design.benchmarks import top_diversity
from dgm_science.utils import atomic_path

log = logging.getLogger("dgm")

ROUTES = ("smiles-arm", "graph-diffusion")
"""The models ``dgm decorate`` can constrain, each its own route."""
COLUMNS = ("smiles", "valid", "scaffold_retained", "attachments_filled", "route", "log_likelihood")
_RING_TOKEN = re.compile(r"^(%\d{2}|\d)$")
_ATOM_TOKEN = re.compile(r"^(\[[^\[\]*]+\]|Br|Cl|B|C|N|O|S|P|F|I|b|c|n|o|s|p)$")
_NOT_FIRST = ("=", "#", ":", "$", "(")
"""Tokens a substituent may not start with: its bond to the scaffold is single, as the ``*``'s."""
_MAX_MATCHES = 100_000


@dataclasses.dataclass(frozen=True)
class Scaffold:
    """A scaffold SMILES with attachment points. ``mol``: the parsed scaffold with its dummy atoms
    (map numbers and isotopes cleared); ``core``: the scaffold without them (the substructure
    query; core atom i is the i-th non-dummy atom of ``mol``); ``attachments[i]``: how many ``*``
    core atom i carries."""

    text: str
    mol: Chem.Mol
    core: Chem.Mol
    attachments: tuple[int, ...]

    @property
    def heavy_atoms(self) -> int:
        return self.core.GetNumAtoms()

    @property
    def core_smiles(self) -> str:
        return Chem.MolToSmiles(self.core)


def parse_scaffold(text: str) -> Scaffold:
    """The scaffold of ``--scaffold``; ValueError (one line, naming it) when RDKit cannot parse it,
    it has no ``*``, a ``*`` is not bonded by a single bond to exactly one scaffold atom, or the
    scaffold without its ``*`` is not one connected fragment."""
    where = f"--scaffold {text!r}"
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(text) if text.strip() else None
    if mol is None:
        raise ValueError(f"{where}: RDKit cannot parse it as a SMILES")
    dummies = [a for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
    if not dummies:
        raise ValueError(f"{where} has no attachment point: mark where substituents go with '*' "
                         "(e.g. 'c1ccc(*)cc1*')")
    for atom in dummies:
        neighbours = atom.GetNeighbors()
        if len(neighbours) != 1 or neighbours[0].GetAtomicNum() == 0:
            raise ValueError(f"{where}: each '*' must be bonded to exactly one scaffold atom")
        if atom.GetBonds()[0].GetBondType() != Chem.BondType.SINGLE:
            raise ValueError(f"{where}: each '*' must be bonded by a single bond (substituents are single-bonded "
                             "to the scaffold)")
        atom.SetAtomMapNum(0)
        atom.SetIsotope(0)
    core_index = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() != 0]
    if not core_index:
        raise ValueError(f"{where} has no scaffold atom besides its '*'")
    attachments = tuple(sum(n.GetAtomicNum() == 0 for n in mol.GetAtomWithIdx(i).GetNeighbors()) for i in core_index)
    core = Chem.RWMol(mol)
    for atom in sorted((a.GetIdx() for a in dummies), reverse=True):
        core.RemoveAtom(atom)
    core = core.GetMol()
    core.UpdatePropertyCache(strict=False)
    if len(Chem.GetMolFrags(core)) != 1:
        raise ValueError(f"{where}: the scaffold without its '*' must be one connected fragment")
    return Scaffold(text, mol, core, attachments)


def scaffold_retention(mol: Chem.Mol | None, scaffold: Scaffold) -> tuple[bool, bool]:
    """(scaffold retained, attachments filled) of a molecule, as the module docstring defines them;
    (False, False) for None."""
    if mol is None:
        return False, False
    retained = False
    core_bonds = scaffold.core.GetNumBonds()
    for match in mol.GetSubstructMatches(scaffold.core, uniquify=False, maxMatches=_MAX_MATCHES):
        matched = set(match)
        bonds_within = sum(1 for b in mol.GetBonds() if b.GetBeginAtomIdx() in matched and b.GetEndAtomIdx() in matched)
        if bonds_within != core_bonds:
            continue
        exits = [sum(n.GetIdx() not in matched for n in mol.GetAtomWithIdx(a).GetNeighbors()) for a in match]
        if any(e > allowed for e, allowed in zip(exits, scaffold.attachments)):
            continue
        if all(e == allowed for e, allowed in zip(exits, scaffold.attachments)):
            return True, True
        retained = True
    return retained, False


# ----------------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True)
class GraphPlan:
    """graph-diffusion: the scaffold as known graph entries (``inpaint``) and its dense atoms
    ``(k,)`` and bonds ``(k, k)``."""

    inpaint: Any
    atoms: torch.Tensor
    bonds: torch.Tensor
    route: str = "graph-diffusion"

    def describe(self) -> dict[str, Any]:
        return {"inpainting_clamp": self.inpaint.clamp, "min_atoms": self.inpaint.min_nodes}


@dataclasses.dataclass(frozen=True)
class SmilesPlan:
    """smiles-arm: the template SMILES, its program (forced token ids and ``Slot``s), the grammar of
    the slots, and the template's score (log p of its methyl-decorated form)."""

    template: str
    program: tuple[Any, ...]
    grammar: Any
    score: float
    route: str = "smiles-arm"

    def describe(self) -> dict[str, Any]:
        return {"template": self.template, "template_methyl_log_likelihood": self.score}


def plan_decoration(loaded: Any, scaffold: Scaffold, *, clamp: str = "clean") -> GraphPlan | SmilesPlan:
    """How ``loaded`` decorates ``scaffold``; ValueError, before any sampling, for a model of
    another kind and for a scaffold the model cannot represent or has no room for."""
    if loaded.name not in ROUTES:
        raise ValueError(f"{loaded.path}: dgm decorate supports smiles-arm and graph-diffusion checkpoints; this "
                         f"is a {loaded.name} model")
    if loaded.name == "graph-diffusion":
        return _graph_plan(loaded, scaffold, clamp)
    return _smiles_plan(loaded, scaffold)


def _graph_plan(loaded: Any, scaffold: Scaffold, clamp: str) -> GraphPlan:
    from dgm_science.domains.molecules.dense import BOND_ORDERS, atom_token
    from dgm_science.domains.molecules.graph_diffusion import scaffold_inpainting

    state = loaded.state
    atom_types, max_atoms = list(state["atom_types"]), int(state["max_atoms"])
    kekule = Chem.Mol(scaffold.mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    core_index = [a.GetIdx() for a in kekule.GetAtoms() if a.GetAtomicNum() != 0]
    position = {i: p for p, i in enumerate(core_index)}
    atoms = []
    for i in core_index:
        atom = kekule.GetAtomWithIdx(i)
        token = atom_token(atom)
        if token not in atom_types:
            raise ValueError(f"--scaffold {scaffold.text!r}: atom {token!r} is not among the atom types of "
                             f"{loaded.path} ({', '.join(atom_types)})")
        if atom.GetNumRadicalElectrons():
            raise ValueError(f"--scaffold {scaffold.text!r}: atom {token!r} is a radical, which the dense graphs of "
                             f"{loaded.path} cannot hold")
        atoms.append(atom_types.index(token) + 1)
    k, m = len(atoms), sum(scaffold.attachments)
    if k + m > max_atoms:
        raise ValueError(f"--scaffold {scaffold.text!r} has {k} heavy atoms and {m} attachment points: {loaded.path} "
                         f"makes molecules of at most {max_atoms} atoms")
    sizes = np.asarray(state["num_atoms_distribution"], dtype=float)
    if not sizes[k + m:].sum() > 0:
        raise ValueError(f"--scaffold {scaffold.text!r} needs molecules of at least {k + m} atoms; {loaded.path} never "
                         "made any (its training sizes)")
    bonds = torch.zeros(k, k, dtype=torch.long)
    for bond in kekule.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if i in position and j in position:
            bonds[position[i], position[j]] = bonds[position[j], position[i]] = BOND_ORDERS.index(bond.GetBondType())
    atoms_t = torch.tensor(atoms)
    inpaint = scaffold_inpainting(atoms_t, bonds, torch.tensor(scaffold.attachments), max_atoms, clamp=clamp)
    return GraphPlan(inpaint, atoms_t, bonds)


def smiles_spellings(scaffold: Scaffold) -> list[str]:
    """The scaffold's SMILES rooted at each of its atoms (RDKit canonical order from that root),
    without repeats, in atom order."""
    spellings: list[str] = []
    for atom in scaffold.mol.GetAtoms():
        if atom.GetAtomicNum() != 0:
            text = Chem.MolToSmiles(scaffold.mol, rootedAtAtom=atom.GetIdx())
            if text not in spellings:
                spellings.append(text)
    return spellings


def _smiles_plan(loaded: Any, scaffold: Scaffold) -> SmilesPlan:
    from dgm_science.tokenizer import Tokenizer
    from dgm_science.families.autoregressive import SlotGrammar

    tokenizer = Tokenizer.from_state(loaded.state["tokenizer"])
    if tokenizer.kind != "smiles":
        raise ValueError(f"{loaded.path}: a smiles-arm over {tokenizer.kind.upper()} tokens; dgm decorate needs "
                         "SMILES tokens to write the scaffold as a template")
    index = tokenizer.index
    candidates, missing = [], None
    for text in smiles_spellings(scaffold):
        tokens = tokenizer.split(text)
        unknown = [t for t in tokens if t != "*" and t not in index]
        if unknown:
            missing = missing or unknown[0]
            continue
        candidates.append((text, tokens))
    if not candidates:
        raise ValueError(f"--scaffold {scaffold.text!r}: token {missing!r} is not in the vocabulary of {loaded.path}")
    rings = tuple(i for t, i in index.items() if _RING_TOKEN.match(t))
    grammar = SlotGrammar(
        open_id=index.get("("), close_id=index.get(")"), paired=rings,
        content=tuple(i for t, i in index.items() if _ATOM_TOKEN.match(t)),
        before_content=rings + tuple(i for t, i in index.items() if t in _NOT_FIRST),
    )
    max_length = loaded.config.model.max_length
    plans = [_program(text, tokens, tokenizer, grammar) for text, tokens in candidates]
    shortest = min(needed for _, needed in plans)
    if shortest > max_length:
        raise ValueError(f"--scaffold {scaffold.text!r}: its template needs at least {shortest} tokens with one-atom "
                         f"substituents; {loaded.path} writes at most max_length={max_length}")
    scores = _methyl_scores(loaded, [tokens for _, tokens in candidates], tokenizer)
    best = max(range(len(candidates)),
               key=lambda i: (plans[i][1] <= max_length, scores[i], candidates[i][1].index("*")))
    return SmilesPlan(candidates[best][0], tuple(plans[best][0]), grammar, float(scores[best]))


def _program(text: str, tokens: list[str], tokenizer: Any, grammar: Any) -> tuple[list[Any], int]:
    """(forced token ids and slots of a template, the fewest tokens a sample takes: <bos>, forced
    tokens, one atom and the end of each slot, <eos>)."""
    from dgm_science.families.autoregressive import Slot

    index = tokenizer.index
    always = tuple(sorted({tokenizer.unk_id, *(i for t, i in index.items() if t == "." or "*" in t)}))
    program: list[Any] = []
    open_rings: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token != "*":
            if _RING_TOKEN.match(token):
                open_rings ^= {token}
            program.append(index[token])
            i += 1
            continue
        forbidden = always + tuple(index[r] for r in sorted(open_rings) if r in index)
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if following is None:
            program.append(Slot(tokenizer.eos_id, forbidden))
        elif following == ")" and grammar.close_id is not None:
            program.append(Slot(grammar.close_id, forbidden))
            i += 1
        else:
            raise ValueError(f"template {text!r}: a '*' followed by {following!r}")
        i += 1
    slots = sum(1 for p in program if isinstance(p, Slot))
    ends_with_eos = isinstance(program[-1], Slot) and program[-1].end == tokenizer.eos_id
    return program, 1 + (len(program) - slots) + 2 * slots + (0 if ends_with_eos else 1)


@torch.no_grad()
def _methyl_scores(loaded: Any, spellings: list[list[str]], tokenizer: Any) -> np.ndarray:
    """log p of each template spelling with every ``*`` written ``C`` (as spelled, not canonical)."""
    if "C" not in tokenizer.index:
        return np.zeros(len(spellings))
    ids = [[tokenizer.bos_id] + [tokenizer.index["C" if t == "*" else t] for t in tokens] + [tokenizer.eos_id]
           for tokens in spellings]
    width = min(max(len(x) for x in ids), loaded.config.model.max_length)
    batch = torch.full((len(ids), width), tokenizer.pad_id, dtype=torch.long)
    for row, x in enumerate(ids):
        batch[row, :min(len(x), width)] = torch.tensor(x[:width])
    loaded.model.eval()
    return loaded.model.log_prob({"tokens": batch.to(loaded.device)}).double().cpu().numpy()


# ----------------------------------------------------------------------------- sampling


@dataclasses.dataclass
class Decorations:
    """Decorated molecules in sampling order: canonical SMILES (None: invalid), the retention
    flags, log-likelihood (nats; NaN where none) and the raw model output of each batch."""

    route: str
    smiles: list[str | None]
    retained: list[bool]
    filled: list[bool]
    log_likelihood: np.ndarray
    raw: list[Any]
    seconds: float


def sample_raw(loaded: Any, plan: GraphPlan | SmilesPlan, n: int, *, generator: torch.Generator,
               temperature: float | None = None, batch_size: int | None = None,
               progress: bool = False) -> tuple[list[str | None], list[Any]]:
    """``n`` decorated samples: their SMILES as decoded (None: invalid) and the raw model output per
    batch (``DenseGraphs`` or token ids (B, L))."""
    from dgm_science.domains.molecules.dense import decode_dense
    from dgm_science.tokenizer import Tokenizer

    batch_size = batch_size or loaded.config.sample.batch_size
    temperature = loaded.config.sample.temperature if temperature is None else temperature
    loaded.model.eval()
    smiles: list[str | None] = []
    raw: list[Any] = []
    with tqdm(total=n, desc="decorate", disable=not progress, unit="molecule") as bar:
        while len(smiles) < n:
            size = min(batch_size, n - len(smiles))
            if isinstance(plan, GraphPlan):
                graphs = loaded.model.sample(size, generator=generator, temperature=temperature, inpaint=plan.inpaint)
                decoded, _ = decode_dense(graphs, loaded.state["atom_types"],
                                          valency_correction=loaded.config.sample.valency_correction)
                raw.append(graphs)
            else:
                tokens = loaded.model.sample_template(size, plan.program, plan.grammar, generator=generator,
                                                      temperature=temperature)
                tokenizer = Tokenizer.from_state(loaded.state["tokenizer"])
                decoded = [tokenizer.decode(row) for row in tokens.tolist()]
                raw.append(tokens.cpu())
            smiles.extend(decoded)
            bar.update(size)
    return smiles, raw


def decorate(loaded: Any, scaffold: Scaffold, plan: GraphPlan | SmilesPlan, n: int, *, seed: int,
             temperature: float | None = None, batch_size: int | None = None, progress: bool = False) -> Decorations:
    """``n`` molecules decorating ``scaffold`` (one seeded stream: same seed, same molecules), with
    canonical SMILES, retention flags and the model's log-likelihood of each valid molecule (log p
    of its canonical SMILES for smiles-arm; the ELBO of its graph for graph-diffusion)."""
    from dgm_science.domains.molecules.properties import parse_smiles

    start = time.perf_counter()
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    decoded, raw = sample_raw(loaded, plan, n, generator=generator, temperature=temperature, batch_size=batch_size,
                              progress=progress)
    with rdBase.BlockLogs():  # invalid samples are counted, not logged one by one
        mols = [parse_smiles(s) for s in decoded]
    smiles = [None if m is None else Chem.MolToSmiles(m) for m in mols]
    flags = [scaffold_retention(m, scaffold) for m in mols]
    log_likelihood = loaded.log_likelihood(smiles)
    return Decorations(plan.route, smiles, [r for r, _ in flags], [f for _, f in flags], log_likelihood, raw,
                       time.perf_counter() - start)


def summarize(result: Decorations) -> dict[str, Any]:
    """Validity (valid / n); scaffold retention and attachments filled (fractions of the valid);
    uniqueness and internal diversity of the valid retained molecules; mean log-likelihood."""
    n = len(result.smiles)
    valid = [s for s in result.smiles if s is not None]
    kept = [s for s, r in zip(result.smiles, result.retained) if r and s is not None]
    finite = result.log_likelihood[np.isfinite(result.log_likelihood)]
    return {
        "route": result.route, "n": n, "n_valid": len(valid), "n_retained": len(kept),
        "validity": len(valid) / n if n else math.nan,
        "scaffold_retention": len(kept) / len(valid) if valid else math.nan,
        "attachments_filled": sum(result.filled) / len(valid) if valid else math.nan,
        "uniqueness": len(set(kept)) / len(kept) if kept else math.nan,
        "n_unique_retained": len(set(kept)),
        "internal_diversity": top_diversity(kept),  # PMO / TDC definition, as dgm optimize reports
        "mean_log_likelihood": float(finite.mean()) if len(finite) else math.nan,
        "seconds": result.seconds,
    }


def write_decorations(path: Path, result: Decorations) -> None:
    """CSV, one row per sample in sampling order: ``smiles`` (canonical, empty if invalid),
    ``valid``, ``scaffold_retained``, ``attachments_filled`` (0/1), ``route``, ``log_likelihood``
    (nats, empty where none); written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for s, kept, filled, ll in zip(result.smiles, result.retained, result.filled, result.log_likelihood):
            writer.writerow([s or "", int(s is not None), int(kept), int(filled), result.route,
                             "" if not math.isfinite(ll) else f"{ll:.4f}"])
