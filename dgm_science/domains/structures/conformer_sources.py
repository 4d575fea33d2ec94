"""A user's 3D conformers as a dataset (kind ``conformers``): SD files (``.sdf`` / ``.sd`` / ``.mol``, gzipped or
not) and multi-frame XYZ files (``.xyz``, gzipped or not) with the user's own 3D coordinates and explicit
hydrogens, prepared into the files qm9-3d's prepare writes (``train.npz`` / ``valid.npz`` / ``test.npz``,
``train_smiles.txt``, ``prepare.json``), so that qm9-edm trains, samples and is evaluated on them unchanged.

Differences from qm9-3d, all recorded in the files: the element set is the data's (the ``elements`` array of
every split file: atom types index into it; the model's one-hot and its state follow it), chosen among the
elements the metrics have EDM's bond lengths and valencies for (GEOM-drugs': H, B, C, N, O, F, Al, Si, P, S,
Cl, As, Br, I, Hg, Bi); several conformers of one molecule (as SD files of conformer ensembles hold) are
separate training items, but the split is BY MOLECULE (its canonical SMILES without hydrogens or stereo, or
its Bemis-Murcko scaffold), so no molecule lies in two splits; and the split's shares count molecules.

A record is skipped (counted, first lines reported) when RDKit cannot read it, it has no 3D coordinates (a 2D
SD record: every z is 0), hydrogens are missing (an atom with implicit hydrogens; for XYZ, a frame whose bond
orders cannot be assigned), it carries a formal charge (EDM's features have none; ``keep_charged`` keeps it),
an element outside the set above, or more than ``max_atoms`` atoms. A file in which no record has explicit
hydrogens is an error, not a dataset of skips.
"""

from __future__ import annotations

import gzip
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgm_science.chem import map_molecules
from dgm_science.config import bounded
from dgm_science.domains.structures import metrics
from dgm_science.domains.structures.data import centre
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.sources import SkipLog, Source, SourceOptions, group_split, random_split, write_stats
from dgm_science.utils import all_or_nothing, atomic_path

log = logging.getLogger(__name__)

SDF_SUFFIXES = (".sdf", ".sd", ".mol")
XYZ_SUFFIXES = (".xyz",)

NO_HYDROGENS = "no explicit hydrogens"
"""The start of the skip reason of a record without hydrogens (a file of only such records is an error)."""
AFTER_HYDROGENS = ("formal charge", "too many atoms", "no canonical SMILES")
"""The starts of the skip reasons checked after the hydrogens (such a record has them)."""


@dataclass(frozen=True)
class ConformerOptions(SourceOptions):
    """3D conformers with explicit hydrogens from SD (.sdf / .sdf.gz) or multi-frame XYZ (.xyz) files."""

    split: str = "random"
    """random: molecules (canonical SMILES) at random, scaffold: by Bemis-Murcko scaffold; either way every
    conformer of a molecule lies in the split of its molecule, and valid / test count molecules"""
    max_conformers: int | None = bounded(None, minimum=1)
    """keep at most this many conformers per molecule (the first ones in the file; null: all)"""
    max_atoms: int | None = bounded(None, minimum=2)
    """skip molecules with more atoms than this (hydrogens included; EDM's cost grows with atoms squared)"""
    keep_charged: bool = False
    """keep records with formal charges (skipped by default: EDM's atom features carry no charge, and the
    stability metric's valencies are those of neutral atoms)"""


# ----------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    try:
        raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")
        with raw:
            return raw.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in SDF_SUFFIXES:
        return "sdf"
    if last in XYZ_SUFFIXES:
        return "xyz"
    raise DataError(f"{path}: unknown conformer file format {last or '(no suffix)'!r} (kind conformers reads "
                    f"{', '.join(SDF_SUFFIXES + XYZ_SUFFIXES)}, optionally gzipped)")


def sdf_records(path: Path) -> list[tuple[int, str]]:
    """(first line, molblock text) of every record of an SD file; DataError if empty."""
    text = _read_bytes(path)
    if not text.strip():
        raise DataError(f"{path}: empty file (no SD records)")
    out = []
    line = 1
    records = text.split(b"$$$$")
    if not records[-1].strip():
        records = records[:-1]
    for k, record in enumerate(records):
        # a record starts on the line after "$$$$"; its first line (the title) may be empty, so strip only the
        # line break that ends "$$$$"
        body = record[2:] if k and record.startswith(b"\r\n") else record[1:] if k and record.startswith(b"\n") \
            else record
        start = line + (k > 0)
        line += record.count(b"\n")
        out.append((start, body.split(b"\n>")[0].decode("utf-8", "replace")))
    return out


def xyz_records(path: Path) -> list[tuple[int, str]]:
    """(first line, XYZ block) of every frame of a multi-frame XYZ file; a malformed count line ends the file
    with one skipped record (it cannot be resynchronised)."""
    raw = _read_bytes(path)
    if not raw.strip():
        raise DataError(f"{path}: empty file (no XYZ frames)")
    lines = raw.decode("utf-8", "replace").splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            out.append((i + 1, f"BAD:line {i + 1}: the atom count {lines[i].strip()[:20]!r} is not an integer; "
                                "the rest of the file is not read"))
            break
        block = lines[i: i + n + 2]
        out.append((i + 1, "\n".join(block) + "\n"))
        i += n + 2
    return out


@dataclass(frozen=True)
class Parsed:
    """One conformer: element symbols, positions (n, 3) Angstrom, the molecule's key and scaffold."""

    symbols: tuple[str, ...]
    positions: np.ndarray
    key: str
    scaffold: str


def parse_record(task: tuple[str, str, bool, int | None]) -> Parsed | str:
    """``(format, text, keep_charged, max_atoms)`` -> the conformer, or the reason it is skipped."""
    from rdkit import Chem

    fmt, text, keep_charged, max_atoms = task
    if text.startswith("BAD:"):
        return text[4:]
    if fmt == "sdf":
        mol = Chem.MolFromMolBlock(text, sanitize=True, removeHs=False)
        if mol is None:
            return "RDKit cannot read the record"
    else:
        mol = _xyz_molecule(text)
        if isinstance(mol, str):
            return mol
    if mol.GetNumAtoms() == 0:
        return "no atoms"
    if mol.GetNumConformers() == 0:
        return "no coordinates"
    xyz = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    if mol.GetNumAtoms() > 1 and np.allclose(xyz[:, 2], 0.0):
        return "2D coordinates (every z is 0): a 3D conformer is needed (embed it first, e.g. RDKit EmbedMolecule)"
    if not np.isfinite(xyz).all():
        return "non-finite coordinates"
    symbols = tuple(a.GetSymbol() for a in mol.GetAtoms())
    unknown = sorted(set(symbols) - set(metrics.METRIC_ELEMENTS))
    if unknown:
        return (f"element {', '.join(unknown)} outside the elements the metrics know "
                f"({', '.join(metrics.METRIC_ELEMENTS)})")
    implicit = sum(a.GetNumImplicitHs() for a in mol.GetAtoms())
    if implicit:
        return f"{NO_HYDROGENS} ({implicit} implicit; add them with 3D coordinates, e.g. Chem.AddHs(mol, addCoords=True))"
    charged = [a.GetIdx() + 1 for a in mol.GetAtoms() if a.GetFormalCharge()]
    if charged and not keep_charged:
        return f"formal charge on atom {charged[0]} (source.keep_charged: true keeps charged records)"
    if max_atoms is not None and len(symbols) > max_atoms:
        return f"too many atoms: {len(symbols)} > max_atoms {max_atoms}"
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        heavy = Chem.RemoveHs(mol)
        key = Chem.MolToSmiles(heavy, isomericSmiles=False)
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=heavy)
    except (ValueError, RuntimeError) as err:
        return f"no canonical SMILES ({str(err).strip().splitlines()[0][:80] if str(err).strip() else type(err).__name__})"
    return Parsed(symbols, xyz, key, scaffold)


def _xyz_molecule(text: str) -> Any:
    """An XYZ frame as an RDKit molecule with bonds and bond orders assigned from the coordinates
    (``rdDetermineBonds``, neutral), or the reason it fails."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    lines = text.splitlines()
    n = int(lines[0].split()[0])
    if len(lines) < n + 2:
        return f"{n} atoms announced, {max(len(lines) - 2, 0)} atom lines present"
    table = Chem.GetPeriodicTable()
    rows = []
    for k, row in enumerate(lines[2: n + 2]):
        fields = row.split()
        try:
            symbol = table.GetElementSymbol(int(fields[0])) if fields[0].isdigit() else fields[0].capitalize()
            rows.append(f"{symbol} {float(fields[1])} {float(fields[2])} {float(fields[3])}")
        except (IndexError, ValueError, RuntimeError):
            return f"atom line {k + 1} is not 'element x y z'"
    mol = Chem.MolFromXYZBlock(f"{n}\n\n" + "\n".join(rows) + "\n")
    if mol is None:
        return "RDKit cannot read the frame (an unknown element symbol?)"
    if not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        return f"{NO_HYDROGENS} (no H atom in the frame)"
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=0)
    except (ValueError, RuntimeError) as err:
        return (f"bond orders cannot be assigned from the coordinates (hydrogens missing or a charged molecule?): "
                f"{str(err).strip().splitlines()[0][:80] if str(err).strip() else type(err).__name__}")
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return f"{NO_HYDROGENS} (a radical after bond perception)"
    return mol


# ----------------------------------------------------------------------------- prepare


def prepare_conformers(options: ConformerOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
    """Read every file of ``options``, parse each record over ``n_jobs`` processes, group conformers by
    molecule, split the molecules, and write qm9-3d's prepared files (see the module's doc)."""
    paths = options.paths
    where = ", ".join(map(str, paths))
    tasks: list[tuple[str, str, bool, int | None]] = []
    origin: list[tuple[int, int]] = []
    for f, path in enumerate(paths):
        fmt = _format(path)
        records = sdf_records(path) if fmt == "sdf" else xyz_records(path)
        tasks.extend((fmt, text, options.keep_charged, options.max_atoms) for _, text in records)
        origin.extend((f, line) for line, _ in records)
    skips = SkipLog(where, "records")
    results = map_molecules(parse_record, tasks, n_jobs=n_jobs, progress=sys.stderr.isatty(), desc="conformers")
    kept: list[Parsed] = []
    no_h = 0
    for (f, line), result in zip(origin, results):
        if isinstance(result, str):
            no_h += result.startswith(NO_HYDROGENS)
            skips.skip(line, f"{paths[f].name}: {result}" if len(paths) > 1 else result)
        else:
            kept.append(result)
    read = len(tasks)
    with_h = sum(isinstance(r, str) and r.startswith(AFTER_HYDROGENS) for r in results) + len(kept)
    if no_h and not with_h:
        raise DataError(f"{where}: no record has explicit hydrogens ({no_h:,} of {read:,} lack them; 3D conformer "
                        "models need every atom with its coordinates: add hydrogens with 3D coordinates first, e.g. "
                        "RDKit Chem.AddHs(mol, addCoords=True) or obabel -h)")
    reasons = {r for r in results if isinstance(r, str)}
    if read and not kept and len(reasons) == 1:  # one cause for every record (a 2D file, ...): say it once
        lines = ", ".join(str(line) for line, _ in skips.first)
        raise DataError(f"{where}: none of the {read:,} records is usable, all for one reason: {reasons.pop()} "
                        f"(lines {lines}{', ...' if skips.count > len(skips.first) else ''})")
    skips.check(read)

    molecules: dict[str, int] = {}
    scaffolds: list[str] = []
    members: list[list[int]] = []
    dropped_conformers = 0
    for i, item in enumerate(kept):
        m = molecules.get(item.key)
        if m is None:
            molecules[item.key] = m = len(members)
            members.append([])
            scaffolds.append(item.scaffold)
        if options.max_conformers is not None and len(members[m]) >= options.max_conformers:
            dropped_conformers += 1
            continue
        members[m].append(i)
    unit = "molecules (distinct canonical SMILES)"
    if options.split == "scaffold":
        by_molecule = group_split(scaffolds, options.valid, options.test, options.seed, where, unit)
    else:
        by_molecule = random_split(len(members), options.valid, options.test, options.seed, where, unit)
    present = {s for item in kept for s in item.symbols}
    elements = [e for e in metrics.METRIC_ELEMENTS if e in present]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {
        "source": [str(p) for p in paths], "kind": options.kind, "read": read, "skipped": skips.count,
        "skipped_first": skips.as_dict()["skipped_first"], "conformers": sum(map(len, members)),
        "conformers_dropped_max_conformers": dropped_conformers, "molecules": len(members),
        "elements": elements, "split": options.split, "seed": options.seed,
        "scaffolds": len(set(scaffolds)) if options.split == "scaffold" else None,
        "max_atoms_in_data": max(len(item.symbols) for item in kept),
    }
    with all_or_nothing():
        train_items: list[Parsed] = []
        for name, mol_index in by_molecule.items():
            idx = [i for m in mol_index for i in members[m]]
            items = [kept[i] for i in idx]
            if name == "train":
                train_items = items
            part = _arrays(items, elements)
            part["index"] = np.asarray(idx, dtype=np.int32)
            with atomic_path(out_dir / f"{name}.npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **part)
            stats[name] = len(idx)
            stats[f"{name}_molecules"] = int(len(mol_index))
        arrays = _arrays(train_items, list(metrics.METRIC_ELEMENTS))
        smiles = metrics.molecules_smiles(arrays["positions"], arrays["atom_types"].astype(np.int64),
                                          arrays["n_atoms"].astype(np.int64), n_jobs=n_jobs,
                                          progress=sys.stderr.isatty())
        unique = sorted({s for s in smiles if s is not None})
        with atomic_path(out_dir / "train_smiles.txt") as tmp:
            tmp.write_text("".join(f"{s}\n" for s in unique))
        stats["train_smiles_unique"] = len(unique)
        stats["train_reference_valid"] = sum(s is not None for s in smiles) / max(len(smiles), 1)
        write_stats(out_dir, stats)
    if skips.count:
        log.warning("%s: %d of %d records skipped (%s)", where, skips.count, read, skips.lines())
    log.info("prepared %s: %d conformers of %d molecules, elements %s; train %d / valid %d / test %d conformers",
             where, stats["conformers"], len(members), " ".join(elements), stats["train"], stats["valid"],
             stats["test"])
    return stats


def _arrays(items: list[Parsed], elements: list[str]) -> dict[str, np.ndarray]:
    """Padded split arrays as qm9-3d's: n_atoms (M,), atom_types (M, N) indices into ``elements`` (-1 at
    padding), positions (M, N, 3) float32 centred, smiles (M,) the molecule's key, elements (E,)."""
    lookup = {e: i for i, e in enumerate(elements)}
    n_atoms = np.array([len(it.symbols) for it in items], dtype=np.int32)
    n = max(int(n_atoms.max(initial=0)), 1)
    types = np.full((len(items), n), -1, dtype=np.int8)
    positions = np.zeros((len(items), n, 3), dtype=np.float32)
    for k, it in enumerate(items):
        types[k, : len(it.symbols)] = [lookup[s] for s in it.symbols]
        positions[k, : len(it.symbols)] = it.positions
    return {"n_atoms": n_atoms, "atom_types": types, "positions": centre(positions, n_atoms),
            "smiles": np.array([it.key for it in items], dtype=str), "elements": np.array(elements, dtype=str)}


@register("source", "conformers")
class ConformerFile(Source):
    """3D conformers with explicit hydrogens (.sdf / .sdf.gz / multi-frame .xyz), split by molecule."""

    domain = "conformers"
    Options = ConformerOptions
    split_methods = ("random", "scaffold")

    @classmethod
    def prepare(cls, options: ConformerOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        return prepare_conformers(options, out_dir, n_jobs=n_jobs)
