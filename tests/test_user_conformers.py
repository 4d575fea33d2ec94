"""A user's 3D conformers (kind ``conformers``, dgm_science/domains/structures/conformer_sources.py): the element set comes
from the data and reaches the model, the split is by molecule, bad records are skipped and reported, each bad
file is one clear error through the real CLI, and the tutorial's commands run on the tiny shipped SDF."""

from __future__ import annotations

import gzip
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from dgm_science import cli, registry
from dgm_science.domains.structures import data as structure_data
from dgm_science.domains.structures import metrics as structure_metrics
from dgm_science.domains.structures.conformer_sources import ConformerOptions, prepare_conformers

HERE = Path(__file__).parent / "data/user/conformers"
TINY = HERE / "tiny.sdf"
TINY_ELEMENTS = ["H", "C", "N", "O", "F", "S", "Cl"]



def _prepare(tmp_path: Path, path: Path = TINY, **options) -> tuple[Path, dict]:
    out = tmp_path / "data"
    stats = prepare_conformers(ConformerOptions(kind="conformers", path=str(path), **options), out, n_jobs=1)
    return out, stats


def _dgm(argv: str, capsys) -> tuple[int, str]:
    """One ``dgm`` command line through the CLI's main (exit status, stderr)."""
    words = shlex.split(argv)
    assert words[0] == "dgm"
    status = cli.main(words[1:])
    return status, capsys.readouterr().err


def _good_records() -> list[str]:
    text = TINY.read_text()
    return [r + "$$$$\n" for r in text.split("$$$$\n")[:30]]


# ----------------------------------------------------------------------------- element set, split, skips


def test_the_element_set_comes_from_the_data_and_reaches_the_model(tmp_path):
    out, stats = _prepare(tmp_path)
    assert stats["elements"] == TINY_ELEMENTS  # chlorine and sulfur beside QM9's five, in the metrics' order
    train = structure_data.load_npz(out / "train.npz")
    assert structure_data.elements_of(train) == TINY_ELEMENTS
    # atom types index the data's elements: every S / Cl atom of the file is there
    symbols = {TINY_ELEMENTS[t] for t in train["atom_types"][train["atom_types"] >= 0]}
    assert {"S", "Cl"} <= symbols
    domain = registry.get("domain", "conformers")
    spec = registry.get("model", "qm9-edm")
    state = domain.fit_state(out, spec, spec.Config())
    assert state["elements"] == TINY_ELEMENTS and state["charges"] == [1, 6, 7, 8, 9, 16, 17]
    model = spec.build(spec.Config(hidden_dim=8, n_layers=1, diffusion_steps=10), state)
    assert model.n_types == len(TINY_ELEMENTS)
    # a molecule written with the data's symbols comes back as the model's batch with the data's indices
    item = (["Cl", "C", "S", "H"], np.eye(4, 3))
    batch, keep = domain.batch_of([item], spec, spec.Config(), state)
    assert keep == [0] and batch["atom_types"][0].tolist() == [6, 1, 5, 0]


def test_the_metrics_score_elements_beyond_qm9(tmp_path):
    out, _ = _prepare(tmp_path)
    positions, types, smiles = [], [], []
    for split in ("train", "valid", "test"):
        part = structure_data.load_npz(out / f"{split}.npz")
        for k, n in enumerate(part["n_atoms"]):
            positions.append(part["positions"][k, :n])
            types.append(structure_data.metric_types(part["atom_types"][k, :n], structure_data.elements_of(part)))
            smiles.append(str(part["smiles"][k]))
    chloro = [i for i, s in enumerate(smiles) if s == "CCCl"]
    thioether = [i for i, s in enumerate(smiles) if s == "CSC"]
    assert len(chloro) == 3 and len(thioether) == 3

    def score(index):
        items = [([structure_metrics.METRIC_ELEMENTS[t] for t in types[i]], positions[i]) for i in index]
        return structure_metrics.edm_metrics(*structure_data.items_to_arrays(items), train_smiles=set())

    # chloroethane: every atom stable under EDM's C-Cl length (177 pm + margin), valid, one molecule
    row = score(chloro)
    assert row["molecule_stability"] == 1.0 and row["validity"] == 1.0 and row["uniqueness"] == pytest.approx(1 / 3)
    # dimethyl sulfide: valid, but EDM's table allows sulfur 4 bonds only, so its S is unstable (as in EDM)
    row = score(thioether)
    assert row["validity"] == 1.0 and row["molecule_stability"] == 0.0
    assert row["atom_stability"] == pytest.approx(8 / 9)


def test_the_split_is_by_molecule(tmp_path):
    out, stats = _prepare(tmp_path, valid=2, test=2, seed=3)
    assert stats["molecules"] == 10 and stats["conformers"] == 30
    assert (stats["train_molecules"], stats["valid_molecules"], stats["test_molecules"]) == (6, 2, 2)
    keys = {split: list(structure_data.load_npz(out / f"{split}.npz")["smiles"]) for split in ("train", "valid", "test")}
    assert set(keys["train"]).isdisjoint(keys["valid"]) and set(keys["train"]).isdisjoint(keys["test"])
    assert set(keys["valid"]).isdisjoint(keys["test"])
    # every conformer of a molecule goes with it: three each
    assert all(keys[s].count(k) == 3 for s in keys for k in keys[s])
    assert (stats["train"], stats["valid"], stats["test"]) == (18, 6, 6)
    # the novelty reference holds the training molecules only
    reference = (out / "train_smiles.txt").read_text().split()
    assert len(reference) == 6
    # max_conformers keeps the first ones of each molecule
    _, capped = _prepare(tmp_path / "capped", max_conformers=1)
    assert capped["conformers"] == 10 and capped["conformers_dropped_max_conformers"] == 20


def test_scaffold_split_keeps_scaffolds_apart(tmp_path):
    records = _good_records()
    from rdkit import Chem
    from rdkit.Chem import AllChem

    extra = []
    for smiles in ("c1ccccc1O", "c1ccccc1N", "c1ccccc1C", "c1ccncc1C", "C1CCCC1N", "C1CCOC1"):  # 3 share benzene
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        extra.append(Chem.MolToMolBlock(mol) + "$$$$\n")  # RDKit leaves the title line empty: still read
    path = tmp_path / "rings.sdf"
    path.write_text("".join(records[:3] + records[-3:] + extra))  # ethanol, chlorocyclopropane and the rings
    out, stats = _prepare(tmp_path, path, split="scaffold", valid=1, test=1)
    assert stats["split"] == "scaffold" and stats["molecules"] == 8 and stats["scaffolds"] == 6
    from rdkit.Chem.Scaffolds import MurckoScaffold

    scaffolds = {split: {MurckoScaffold.MurckoScaffoldSmiles(s) for s in
                         structure_data.load_npz(out / f"{split}.npz")["smiles"]} for split in ("train", "valid", "test")}
    assert scaffolds["train"].isdisjoint(scaffolds["valid"] | scaffolds["test"])
    assert scaffolds["valid"].isdisjoint(scaffolds["test"])


def test_bad_records_are_skipped_counted_and_located(tmp_path):
    _, stats = _prepare(tmp_path)
    assert stats["read"] == 34 and stats["skipped"] == 4
    reasons = [(s["line"], s["reason"].split(" (")[0].split(":")[0]) for s in stats["skipped_first"]]
    text = TINY.read_text().splitlines()
    assert [text[line - 1] for line, _ in reasons] == ["2D record", "no hydrogens", "charged", "broken record"]
    assert [r for _, r in reasons] == ["2D coordinates", "no explicit hydrogens", "formal charge on atom 2",
                                       "RDKit cannot read the record"]
    _, kept = _prepare(tmp_path / "charged", keep_charged=True)
    assert kept["skipped"] == 3 and kept["molecules"] == 11
    _, small = _prepare(tmp_path / "small", max_atoms=9)
    assert small["max_atoms_in_data"] == 9 and small["molecules"] == 9 and any("too many atoms" in s["reason"] for s in small["skipped_first"])


def test_multi_frame_xyz_and_gzip_read_as_the_sdf(tmp_path):
    from rdkit import Chem

    frames = []
    for mol in Chem.SDMolSupplier(str(TINY), removeHs=False):
        if mol is None or mol.GetProp("_Name") in {"2D record", "no hydrogens", "charged"}:
            continue
        xyz = mol.GetConformer().GetPositions()
        frames.append(f"{mol.GetNumAtoms()}\n{mol.GetProp('_Name')}\n" + "".join(
            f"{a.GetSymbol()} {x:.5f} {y:.5f} {z:.5f}\n" for a, (x, y, z) in zip(mol.GetAtoms(), xyz)))
    frames.append("3\nwater without one H\nO 0 0 0\nH 0.96 0 0\nC 5 5 5\n")  # a methane carbon, no hydrogens
    path = tmp_path / "frames.xyz"
    path.write_text("".join(frames))
    out, xyz_stats = _prepare(tmp_path / "xyz", path)
    _, sdf_stats = _prepare(tmp_path / "sdf")
    assert xyz_stats["molecules"] == sdf_stats["molecules"] == 10 and xyz_stats["conformers"] == 30
    assert xyz_stats["elements"] == TINY_ELEMENTS and xyz_stats["skipped"] == 1
    # the same molecules: XYZ bonds come from the coordinates (rdDetermineBonds)
    keys = lambda d: sorted(k for s in ("train", "valid", "test") for k in structure_data.load_npz(d / f"{s}.npz")["smiles"])
    assert keys(out) == keys(tmp_path / "sdf" / "data")
    gz = tmp_path / "tiny.sdf.gz"
    gz.write_bytes(gzip.compress(TINY.read_bytes()))
    _, gz_stats = _prepare(tmp_path / "gz", gz)
    assert gz_stats["conformers"] == 30 and gz_stats["skipped"] == 4


# ----------------------------------------------------------------------------- bad files: one error each, via the CLI


def _bad(tmp_path: Path, name: str, text: str, capsys, **options) -> str:
    path = tmp_path / name
    path.write_text(text)
    block = json.dumps({"kind": "conformers", "path": str(path), **options})
    out = tmp_path / "out"
    status, err = _dgm(f"dgm prepare --source {shlex.quote(block)} --out {out}", capsys)
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("dgm: error:")]
    assert len(lines) == 1, err
    assert not out.exists() or not any(out.iterdir())  # nothing written
    return lines[0]


def test_each_bad_file_is_one_clear_error_through_the_cli(tmp_path, capsys):
    records = _good_records()
    assert _bad(tmp_path, "empty.sdf", "", capsys).endswith("empty.sdf: empty file (no SD records)")
    assert "empty.xyz: empty file (no XYZ frames)" in _bad(tmp_path, "empty.xyz", "\n\n", capsys)
    from rdkit import Chem

    message = _bad(tmp_path, "junk.sdf", "junk\n$$$$\nmore junk\n$$$$\n", capsys)
    assert message.endswith("none of the 2 records is usable, all for one reason: RDKit cannot read the record "
                            "(lines 1, 3)")
    mixed = "junk\n$$$$\n" + Chem.MolToMolBlock(Chem.MolFromSmiles("CCO")) + "$$$$\n"
    message = _bad(tmp_path, "mixed.sdf", mixed, capsys)
    assert message.endswith("none of the 2 records parse (line 1: RDKit cannot read the record; line 3: 2D "
                            "coordinates (every z is 0): a 3D conformer is needed (embed it first, e.g. RDKit "
                            "EmbedMolecule))")

    heavy = "".join(Chem.MolToMolBlock(Chem.RemoveHs(m)) + "$$$$\n"
                    for m in Chem.SDMolSupplier(str(TINY), removeHs=False) if m is not None)
    message = _bad(tmp_path, "heavy.sdf", heavy, capsys)
    assert "no record has explicit hydrogens" in message and "Chem.AddHs(mol, addCoords=True)" in message
    flat = "".join(Chem.MolToMolBlock(Chem.MolFromSmiles(smi)) + "$$$$\n" for smi in ("CCO", "CCN", "CCC", "CCCl"))
    message = _bad(tmp_path, "flat.sdf", flat, capsys)  # 2D (no coordinates given: RDKit writes z = 0)
    assert "none of the 4 records is usable, all for one reason: 2D coordinates (every z is 0)" in message
    assert "(lines 1, " in message
    message = _bad(tmp_path, "two.sdf", "".join(records[:6]), capsys)  # 2 molecules x 3 conformers
    assert "2 molecules (distinct canonical SMILES) are too few to split" in message and "at least 3" in message
    message = _bad(tmp_path, "tiny.pdb", "ATOM\n", capsys)
    assert "unknown conformer file format '.pdb'" in message
    message = _bad(tmp_path, "ok.sdf", "".join(records), capsys, split="cluster")
    assert "split" in message and "random, scaffold" in message


# ----------------------------------------------------------------------------- the tutorial



def test_a_split_file_with_foreign_elements_is_refused(tmp_path):
    from dgm_science.errors import DataError

    out, _ = _prepare(tmp_path)
    data = dict(np.load(out / "train.npz"))
    for elements, match in ((["H", "C", "Xx"], "not distinct symbols"), (["H", "C"], "atom type 6 beyond the 2")):
        bad = tmp_path / "bad"
        bad.mkdir(exist_ok=True)
        np.savez(bad / "train.npz", **{**data, "elements": np.array(elements)})
        spec = registry.get("model", "qm9-edm")
        with pytest.raises(DataError, match=match):
            registry.get("domain", "conformers").fit_state(bad, spec, spec.Config())
