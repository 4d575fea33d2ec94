"""The structures domain's two ``Domain`` classes: ``conformers`` (QM9 molecules in 3D: element
symbols and Cartesian coordinates; samples as SDF + XYZ; EDM's metrics and the data row, the same
metrics on real molecules) and ``peptide-md`` (alanine-dipeptide conformations from MD; samples as
DCD + PDB + CSV; Boltzmann-generator metrics). Both belong to the ``structures`` group of the
pipeline (``results/structures/{dataset}/...``) and report section."""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.base import Domain, ModelSpec, Samples
from dgm_science.commands import positive_int
from dgm_science.domains.structures import md, metrics
from dgm_science.domains.structures.data import (
    MAX_ATOMS, ConformerDataset, InternalCoordinateDataset, Item, _atomic_number, centre, elements_of,
    items_to_arrays, load_npz, metric_types, molecule_of, read_internal, topology_of,
)
from dgm_science.domains.structures.edm import Conformers
from dgm_science.domains.structures.internal import ATOM_NAMES, InternalCoordinates
from dgm_science.domains.structures.metrics import (
    ALA2_RAMACHANDRAN, backbone_torsions, evaluate_conformations, ramachandran_plot,
)
from dgm_science.domains.structures.models import TORSION_EPS, internal_coordinates, least_populated_angles
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path, csv_number

log = logging.getLogger(__name__)


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
    types = metric_types(data["atom_types"][idx], elements_of(data, str(split_path)))
    row = metrics.edm_metrics(data["positions"][idx], types, data["n_atoms"][idx],
                              train_smiles=_train_smiles(split_path.parent), n_jobs=n_jobs,
                              progress=sys.stderr.isatty())
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({**row, "source": str(split_path)}, indent=2))
    return row


def _train_smiles(data_dir: Path) -> set[str] | None:
    path = Path(data_dir) / "train_smiles.txt"
    return set(path.read_text().split()) if path.is_file() else None


@register("domain", "conformers")
class ConformerDomain(Domain):
    """3D molecules (element symbols + Cartesian coordinates) with hydrogens: QM9's, or a user's conformers."""

    name = "conformers"
    headline = ("molecule_stability", "mol. stable ↑")
    headline_ratio_scale = True
    size_unit = "atom"
    samples_file = "samples.sdf"

    @classmethod
    def headline_anchor(cls, dataset: str) -> tuple[str, float] | None:
        """EDM's molecule stability on QM9 with hydrogens (Hoogeboom et al. 2022, Table 2)."""
        from dgm_science.domains.structures.report import PUBLISHED_QM9_3D

        if dataset == "qm9-3d":
            return "EDM (GPU, 3,000 epochs)", PUBLISHED_QM9_3D["EDM"][1]["molecule_stability"]
        return None

    @staticmethod
    def fit_state(data_dir: Path, spec: type[ModelSpec], model_cfg: Any) -> dict[str, Any]:
        """Elements (the training file's: QM9's H, C, N, O, F, or a user dataset's ``elements``), their
        atomic numbers, the histogram of molecule sizes over train (index = atom count, the distribution
        p(N) samples are drawn from; at least QM9's 29) and the largest size."""
        data = load_npz(Path(data_dir) / "train.npz")
        elements = elements_of(data, str(Path(data_dir) / "train.npz"))
        counts = np.bincount(data["n_atoms"].astype(np.int64), minlength=MAX_ATOMS + 1)
        state = {"elements": elements, "charges": [_atomic_number(e) for e in elements],
                 "n_atoms_histogram": [float(c) for c in counts], "max_atoms": int(len(counts) - 1)}
        if "bonds" in spec.batch_fields:  # a model of positions given the graph (graph_conformers.py)
            from dgm_science.domains.structures.graph_conformers import bond_length_table

            types = metric_types(data["atom_types"], elements)
            table = bond_length_table(data["positions"], np.where(types < 0, 0, types), data["n_atoms"],
                                      len(metrics.METRIC_ELEMENTS))
            lookup = metrics.types_of(elements)
            state["bond_lengths"] = table[np.ix_(lookup, lookup)].round(5).tolist()
        if "tokens" in spec.batch_fields:  # a graph model's vocabulary
            from dgm_science.domains.structures.graph_conformers import fit_tokenizer

            state["tokenizer"] = fit_tokenizer(Path(data_dir), model_cfg.tokenizer)
        return state

    @staticmethod
    def datasets(data_dir: Path, spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[ConformerDataset, ConformerDataset]:
        """Train and validation molecules; with the ``bonds`` field their perceived bond orders, with ``tokens``
        the split's graph strings (``graph_conformers.graph_strings``)."""
        out = []
        for split in ("train", "valid"):
            tokens = None
            if "tokens" in spec.batch_fields:
                from dgm_science.domains.structures.graph_conformers import graph_strings, token_rows

                tokens = token_rows(graph_strings(Path(data_dir), split), state["tokenizer"], model_cfg.max_length)
            out.append(ConformerDataset(Path(data_dir) / f"{split}.npz", bonds="bonds" in spec.batch_fields,
                                        elements=state["elements"], tokens=tokens))
        return out[0], out[1]

    @staticmethod
    def decode_table(raw: Conformers, state: dict[str, Any]) -> tuple[list[Item], dict[str, list[Any]]]:
        """Sampled batch -> items (element symbols, positions (n, 3) Angstrom); no extra columns."""
        elements = state["elements"]
        positions = raw.positions.detach().float().cpu().numpy()
        types = raw.atom_types.cpu().numpy()
        items = [([elements[t] for t in types[k, :n]], positions[k, :n].astype(np.float64))
                 for k, n in enumerate(raw.n_atoms.cpu().tolist())]
        return items, {}

    @staticmethod
    def batch_of(items: Sequence[Item | None], spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """Model batch (positions centred) of the items the model can score - every atom of a known
        element, at most ``max_atoms`` atoms - and their positions in ``items``."""
        lookup = {e: i for i, e in enumerate(state["elements"])}
        keep = [i for i, item in enumerate(items) if item is not None and 0 < len(item[0]) <= state["max_atoms"]
                and all(s in lookup for s in item[0])]
        if not keep:
            return None, []
        positions, types, n_atoms = items_to_arrays([items[i] for i in keep], elements=state["elements"])
        positions = centre(positions, n_atoms)
        batch = {"positions": torch.from_numpy(positions), "atom_types": torch.from_numpy(types).clamp(min=0),
                 "n_atoms": torch.from_numpy(n_atoms)}
        if "tokens" in getattr(spec, "batch_fields", ()):  # p(G) p(x | G): molecules whose perceived graph is one
            from dgm_science.domains.structures.graph_conformers import perceived_graphs

            orders, tokens, ok = perceived_graphs(positions, metric_types(types, state["elements"]), n_atoms,
                                                  state["tokenizer"], model_cfg.max_length)
            if not ok.any():
                return None, []
            rows = torch.from_numpy(np.flatnonzero(ok))
            batch = {key: value[rows] for key, value in batch.items()}
            batch["bonds"], batch["tokens"] = torch.from_numpy(orders[ok].astype(np.int64)), tokens
            keep = [keep[i] for i in rows.tolist()]
        return batch, keep

    @staticmethod
    def model_log_prob(model: Any, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """EDM's variational lower bound on log p(x, h, N) in nats per molecule, one t per molecule
        drawn from ``generator`` (seeded by the loop) so that the estimate is reproducible."""
        return model.log_prob(batch, generator=generator)

    @staticmethod
    def item_sizes(items: Sequence[Item | None]) -> np.ndarray:
        """Number of atoms per molecule (NaN for None)."""
        return np.array([len(it[0]) if it is not None and len(it[0]) else math.nan for it in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        """Write the samples as SDF (``path``; 3D coordinates, the bonds EDM's tables perceive where
        RDKit sanitizes the molecule, atoms only otherwise; SD tags valid, atom_stable,
        molecule_stable, log_likelihood) and as a multi-molecule XYZ file with the same stem.
        Every sample is written, invalid ones too. Returns the number of valid molecules.
        ``n_jobs`` and ``state`` are the CLI's common arguments; writing needs neither (1,000
        molecules take ~0.3 s, and items carry their element symbols)."""
        from rdkit import Chem, rdBase
        from rdkit.Geometry import Point3D

        path = Path(path)
        items, log_likelihood = samples.items, samples.log_likelihood
        positions, types, n_atoms = items_to_arrays(items)
        fraction, mol_stable, orders = metrics.per_molecule(positions, types, n_atoms)
        n_valid = 0
        xyz_lines: list[str] = []
        with atomic_path(path) as tmp, rdBase.BlockLogs():
            writer = Chem.SDWriter(str(tmp))
            writer.SetKekulize(False)
            for k, (symbols, xyz) in enumerate(items):
                n = len(symbols)
                known = not math.isnan(fraction[k])  # known elements, finite coordinates
                mol = metrics.build_molecule(types[k, :n], orders[k, :n, :n]) if known else None
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
    def reference(data: Path, out: Path, *, n_jobs: int, max_items: int | None, seed: int) -> int:
        """The data row (``dgm reference``): ``data_row`` of the split file ``data`` into ``out``;
        returns the number of molecules scored."""
        return int(data_row(data, out, max_molecules=max_items, seed=seed, n_jobs=n_jobs)["n_samples"])

    @classmethod
    def evaluate(cls, samples_path: Path, reference_dir: Path, *, n_jobs: int) -> dict[str, float]:
        """EDM's metrics of the samples (atom / molecule stability, validity, uniqueness, V x U, and
        novelty against ``reference_dir/train_smiles.txt`` when present)."""
        items = cls.read_samples(samples_path)
        if not items:
            raise DataError(f"{samples_path}: no molecules")
        positions, types, n_atoms = items_to_arrays(items)
        out = metrics.edm_metrics(positions, types, n_atoms, train_smiles=_train_smiles(Path(reference_dir)),
                                  n_jobs=n_jobs, progress=sys.stderr.isatty())
        cls._learning_curve(Path(samples_path).parent, out)
        return out

    @staticmethod
    def _learning_curve(run_dir: Path, final: dict[str, float]) -> None:
        """When the run kept snapshots (``train.snapshot_every_steps``): ``learning_curve.json`` / ``.png``
        beside the samples, ``curve.CURVE_SAMPLES`` molecules per snapshot and the final model's samples."""
        from dgm_science import checkpoint
        from dgm_science.domains.structures import curve

        model_path = run_dir / "model.ckpt"
        if not curve.snapshots(run_dir) or not model_path.is_file():
            return
        info = checkpoint.load(model_path)
        points = curve.run_curve(run_dir, final, int(info["info"]["global_step"]))
        if points:
            curve.write_curve(points, run_dir, f"{info['model']}: EDM's metrics of samples against training steps "
                                               f"({curve.CURVE_SAMPLES} samples per snapshot, "
                                               f"{points[-1]['samples']} at the end)")


@register("domain", "peptide-md")
class PeptideDomain(Domain):
    """Conformations of one molecule from MD (alanine dipeptide, or a user's trajectory: ``sources.py``):
    items are (n_atoms, 3) float64 Cartesian arrays in nm."""

    name = "peptide-md"
    headline = ("kl_ramachandran", "KL Ramachandran ↓")
    headline_ratio_scale = True
    size_unit = "atom"
    samples_file = "samples.dcd"

    @classmethod
    def add_prepare_arguments(cls, group: Any) -> None:
        group.add_argument("--test-size", type=positive_int, default=None,
                           help="MD trajectories: the last N frames are the test set (default: 20%%)")

    @staticmethod
    def fit_state(data_dir: Path, spec: type[ModelSpec], model_cfg: Any) -> dict[str, Any]:
        """Z-matrix, torsion cut points and standardisation (training frames), the energy (prmtop text
        or a user dataset's serialized OpenMM System, None without a force field), temperature, atom
        names, backbone (phi, psi) quartets and (user datasets) the topology PDB: everything needed to
        rebuild and score the model."""
        data_dir = Path(data_dir)
        molecule = molecule_of(data_dir)
        z = InternalCoordinates(tuple(map(tuple, molecule["z_matrix"])), tuple(molecule["roots"]))
        internal = read_internal(data_dir, "train", z).numpy()
        torsions = z.torsions
        cut = least_populated_angles(internal[:, torsions])
        fraction = np.clip(np.remainder(internal[:, torsions] - cut, 2 * math.pi) / (2 * math.pi), TORSION_EPS,
                           1 - TORSION_EPS)
        features = np.concatenate([internal[:, : torsions.start], np.log(fraction) - np.log1p(-fraction)], axis=1)
        state = {
            "z_matrix": [list(row) for row in z.z_matrix], "roots": list(z.roots),
            "internal_mean": features.mean(0).tolist(),
            "internal_std": np.maximum(features.std(0), 1e-6).tolist(),
            "torsion_cut": cut.tolist(),
            "prmtop": molecule["prmtop"],
            "temperature_kelvin": molecule["temperature_kelvin"],
            "atom_names": list(molecule["atom_names"]),
        }
        if molecule["prmtop"] is None:  # a user trajectory (alanine dipeptide's state keeps its keys)
            state.update({"openmm_system": molecule["openmm_system"], "ramachandran": molecule["ramachandran"],
                          "topology_pdb": (data_dir / md.TOPOLOGY).read_text()})
        return state

    @staticmethod
    def datasets(data_dir: Path, spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[InternalCoordinateDataset, InternalCoordinateDataset]:
        z = internal_coordinates(state)
        return (InternalCoordinateDataset(read_internal(data_dir, "train", z)),
                InternalCoordinateDataset(read_internal(data_dir, "valid", z)))

    @staticmethod
    def decode_table(raw: torch.Tensor, state: dict[str, Any], **options: Any) -> tuple[list[np.ndarray], dict]:
        """Internal coordinates (B, 3N - 6) -> Cartesian (N, 3) nm arrays in the canonical frame."""
        xyz, _ = internal_coordinates(state).to_cartesian(raw.detach().double().cpu())
        return list(xyz.numpy()), {}

    @staticmethod
    def batch_of(items: Sequence[np.ndarray | None], spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """{"internal": (B, 3N - 6)} of the items with finite (N, 3) coordinates, and their positions."""
        n_atoms = len(state.get("atom_names", ATOM_NAMES))
        keep = [i for i, x in enumerate(items) if x is not None and np.shape(x) == (n_atoms, 3)
                and np.isfinite(x).all()]
        if not keep:
            return None, []
        xyz = torch.from_numpy(np.stack([np.asarray(items[i], dtype=np.float64) for i in keep]))
        return {"internal": internal_coordinates(state).to_internal(xyz)}, keep

    @staticmethod
    def log_jacobian(batch: dict[str, torch.Tensor], state: dict[str, Any]) -> np.ndarray:
        """log |det d(Cartesian)/d(internal)|: the flow's density of internal coordinates becomes
        log q(x) of Cartesian conformations (over the 3N - 6 canonical-frame coordinates in nm)."""
        return internal_coordinates(state).log_det_jacobian(batch["internal"]).numpy()

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        return np.array([len(x) if x is not None else math.nan for x in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        """``path`` (.dcd) with ``samples.pdb`` (topology, first finite sample) and ``samples.csv``
        (log_likelihood, reduced energy u = U/kT when ``state`` gives a force field, phi and psi of
        the first backbone pair in degrees: empty without a backbone) beside it, all written atomically. Non-finite samples (a flow's rare overflow) are
        kept as NaN frames, counted by ``evaluate``. Returns the number of finite samples."""
        import mdtraj

        path = Path(path)
        if path.suffix != ".dcd":
            raise ValueError(f"{path}: MD samples are written as .dcd")
        items, log_likelihood = samples.items, samples.log_likelihood
        xyz = np.stack([np.asarray(x, dtype=np.float64) for x in items])
        finite = np.isfinite(xyz).all(axis=(1, 2))
        pairs = ALA2_RAMACHANDRAN if state is None else state.get("ramachandran", ALA2_RAMACHANDRAN)
        torsions = np.full((len(xyz), 2), math.nan)
        if pairs:
            with np.errstate(invalid="ignore"):
                torsions = np.degrees(backbone_torsions(xyz, pairs[0]))
        energy = np.full(len(xyz), math.nan)
        potential = md.state_energy(state) if state is not None else None
        if potential is not None:
            energy = potential.reduced(xyz)
        topology = topology_of(state)
        trajectory = mdtraj.Trajectory(xyz.astype(np.float32), topology)
        with atomic_path(path) as tmp:
            trajectory.save_dcd(str(tmp), force_overwrite=True)
        first = int(np.argmax(finite)) if finite.any() else None
        with atomic_path(path.with_suffix(".pdb")) as tmp:
            model = trajectory[first] if first is not None else mdtraj.Trajectory(
                np.zeros((1, topology.n_atoms, 3)), trajectory.topology)
            model.save_pdb(str(tmp), force_overwrite=True)
        with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "log_likelihood", "reduced_energy", "phi", "psi"])
            for i in range(len(xyz)):
                values = (log_likelihood[i], energy[i], torsions[i, 0], torsions[i, 1])
                writer.writerow([i, *(csv_number(v, keep_inf=True) for v in values)])
        return int(finite.sum())

    @staticmethod
    def read_samples(path: Path, topology_path: Path | None = None) -> np.ndarray:
        """Sampled conformations (N, n_atoms, 3) nm of a samples DCD (topology: its .pdb beside it)."""
        path = Path(path)
        return md.load_frames(path, topology_path or path.with_suffix(".pdb"), allow_nonfinite=True)

    @staticmethod
    def evaluate(samples_path: Path, reference_dir: Path, *, n_jobs: int = 1) -> dict[str, float]:
        """Boltzmann-generator metrics of the samples against the held-out test frames, the same
        for the training frames (``data_*``, the finite-data floor), and ``ramachandran.png``
        beside the samples (see ``evaluate_conformations``): alanine dipeptide's, or a user trajectory's
        molecule (its Z-matrix, first backbone pair; energies only with a force field)."""
        samples_path, reference_dir = Path(samples_path), Path(reference_dir)
        topology = reference_dir / md.TOPOLOGY
        samples = md.load_frames(samples_path, topology, allow_nonfinite=True)
        log_q = _read_log_likelihood(samples_path.with_suffix(".csv"), len(samples))
        test = md.load_frames(reference_dir / "test.dcd", topology)
        train = md.load_frames(reference_dir / "train.dcd", topology)
        molecule = molecule_of(reference_dir)
        temperature = molecule["temperature_kelvin"]
        user = molecule["prmtop"] is None
        energy = (md.PotentialEnergy(molecule["prmtop"], temperature) if not user else
                  md.system_energy(molecule["openmm_system"], temperature) if molecule["openmm_system"] else None)
        if energy is None:
            log.warning("%s: no force field (source.force_field / prmtop): energy metrics skipped", reference_dir)
        z = InternalCoordinates(tuple(map(tuple, molecule["z_matrix"])), tuple(molecule["roots"]))
        pairs = molecule["ramachandran"] if user else None
        metrics = evaluate_conformations(samples, log_q, test, energy, z, pairs)
        data = evaluate_conformations(train, None, test, energy, z, pairs)
        metrics.update({f"data_{k}": v for k, v in data.items()})
        if pairs is None or pairs:
            first = (pairs or ALA2_RAMACHANDRAN)[0]
            residue = "" if pairs is None else f" ({molecule['atom_names'][first[0][2]].split(':')[0]})"
            ramachandran_plot(test, samples, samples_path.parent / "ramachandran.png", pair=first, label=residue)
        return metrics




def _read_log_likelihood(path: Path, n: int) -> np.ndarray | None:
    """The ``log_likelihood`` column of ``write_samples``' CSV (NaN where empty); None if no file."""
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != n or (rows and "log_likelihood" not in rows[0]):
        raise DataError(f"{path}: expected {n} rows with a log_likelihood column, got {len(rows)}")
    return np.array([float(r["log_likelihood"]) if r["log_likelihood"] else math.nan for r in rows])
