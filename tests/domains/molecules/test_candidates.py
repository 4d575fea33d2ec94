"""Candidate search (valid, unique, novel, property ranges, structural alerts), SDF / PNG output,
and the typicality OOD score telling other molecule distributions from the training one."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rdkit import Chem

from dgm_science import api
from dgm_science.domains.molecules.candidates import (
    CandidateCriteria, CandidateTable, PropertyRange, auroc, find_candidates, has_structural_alert, is_charged,
    made_of, molecule_elements, ood_auroc, randomized_smiles, screen, set_composition, shifted_factors,
    write_grid_image, write_sdf,
)
from dgm_science.domains.molecules.domain import MoleculeDomain
from dgm_science.domains.molecules.properties import canonical_smiles, mol_properties

ROOT = Path(__file__).resolve().parents[3]
QM9_SAMPLE = ROOT / "tests/data/qm9_sample.smi"

DRUG_LIKE = ["CC(=O)Nc1ccc(O)cc1", "Cc1ccc(S(=O)(=O)N2CCCC2)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
             "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1OC(=O)C"]
ALERTS = ["C=CC#N", "Oc1ccccc1O", "S=C1SC(=Cc2ccccc2)C(=O)N1"]  # MCF1, catechol, ene-rhodanine (PAINS)
TRAIN = ["CCO", "c1ccccc1"]
POOL = DRUG_LIKE + ALERTS + TRAIN + ["C1CC", "", "C(C)(C)(C)(C)C", "OC(=O)C(O)C(O)C(O)=O", "CC(=O)Oc1ccccc1C(=O)O"]


class PoolSampler:
    """Stands in for ``api.LoadedModel``: draws SMILES from a fixed pool with the generator it is
    given, reports the pool index as an extra column, and scores log p = -len(SMILES)."""

    device = torch.device("cpu")
    config = SimpleNamespace(sample=SimpleNamespace(batch_size=8))

    def __init__(self, pool):
        self.pool = pool
        self.generators = []

    def sample_table(self, n, *, generator, temperature=None, batch_size=None, **options):
        self.generators.append(generator)
        index = torch.randint(len(self.pool), (n,), generator=generator).tolist()
        return [self.pool[i] or None for i in index], {"pool_index": index}

    def log_likelihood(self, items):
        return -np.array([len(s) for s in items], dtype=float)


# ---- property ranges ------------------------------------------------------------------------


@pytest.mark.parametrize("text, low, high", [("0.6:", 0.6, None), (":4", None, 4.0), ("200:500", 200.0, 500.0),
                                             ("-1:5", -1.0, 5.0), (" 1 : 2 ", 1.0, 2.0), ("3:3", 3.0, 3.0)])
def test_property_range_parses_open_and_closed_bounds(text, low, high):
    assert PropertyRange.parse(text) == PropertyRange(low, high)


@pytest.mark.parametrize("text, reason", [("abc", "not LO:HI"), ("5:1", "lower bound 5 is above upper bound 1"),
                                          ("1:2:3", "not LO:HI"), (":", "no bound"), ("x:1", "'x' is not a number"),
                                          ("nan:1", "finite"), ("", "not LO:HI")])
def test_bad_property_range_says_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        PropertyRange.parse(text)


def test_property_range_is_inclusive():
    rng = PropertyRange.parse("200:500")
    assert 200 in rng and 500 in rng and 350.5 in rng
    assert 199.99 not in rng and 500.01 not in rng
    assert 1e9 in PropertyRange.parse("0.6:") and -1e9 in PropertyRange.parse(":4")
    assert str(PropertyRange.parse("0.6:")) == "0.6:" and str(PropertyRange.parse("-1:5")) == "-1:5"


def test_unknown_property_is_an_error():
    with pytest.raises(ValueError, match="toxicity"):
        CandidateCriteria(ranges={"toxicity": PropertyRange(0, 1)})


# ---- screening and search -------------------------------------------------------------------


def test_structural_alerts_are_the_mcf_and_pains_patterns():
    assert all(has_structural_alert(Chem.MolFromSmiles(s)) for s in ALERTS)
    assert not any(has_structural_alert(Chem.MolFromSmiles(s)) for s in DRUG_LIKE)


def test_screen_applies_each_filter_in_turn_and_counts():
    batch = [*DRUG_LIKE, "OC(C)=O", None, "C1CC", DRUG_LIKE[0], "CC(O)=O", "OCC", *ALERTS, "C"]
    criteria = CandidateCriteria(valid=True, unique=True, novel=True, ranges={"mw": PropertyRange(100, 300)},
                                 remove_alerts=True)
    seen = {canonical_smiles(DRUG_LIKE[1])}  # found in an earlier round
    keep, rows, counts = screen(batch, criteria, seen=seen, train={"CCO"})
    assert [batch[i] for i in keep] == [DRUG_LIKE[0], DRUG_LIKE[2], DRUG_LIKE[3], DRUG_LIKE[4]]
    # 15 drawn, 13 valid; unique drops the earlier round's molecule, the repeat of DRUG_LIKE[0] and
    # acetic acid written the second way; novel drops "OCC" (canonical CCO); MW 100..300 drops acetic
    # acid, acrylonitrile and methane; the alert filter drops catechol and the ene-rhodanine
    assert counts == {"valid": 13, "unique": 10, "novel": 9, "mw 100:300": 6, "no structural alerts": 4}
    assert [r["smiles"] for r in rows] == [canonical_smiles(batch[i]) for i in keep]
    assert all(100 <= r["mw"] <= 300 and r["structural_alert"] is False for r in rows)
    assert canonical_smiles("OC(C)=O") in seen


def test_search_keeps_only_molecules_passing_every_filter():
    sampler = PoolSampler(POOL)
    criteria = CandidateCriteria(unique=True, novel=True, ranges={"qed": PropertyRange.parse("0.5:"),
                                                                  "mw": PropertyRange.parse(":250")},
                                 remove_alerts=True)
    table, report = find_candidates(sampler, 4, criteria, train=set(TRAIN), seed=3, max_draws=500)
    assert len(table) == report.found == 4 and not report.hit_limit
    canonical = [canonical_smiles(s) for s in table.smiles]
    assert None not in canonical and len(set(canonical)) == 4
    assert not set(canonical) & {canonical_smiles(s) for s in TRAIN}
    for smiles, row in zip(table.smiles, table.properties):
        mol = Chem.MolFromSmiles(smiles)
        props = mol_properties(mol)
        assert props["qed"] >= 0.5 and props["mw"] <= 250 and not has_structural_alert(mol)
        assert row["qed"] == pytest.approx(props["qed"])
    # extra columns stay aligned with their molecules, log-likelihoods are the model's
    assert [POOL[i] for i in table.columns["pool_index"]] == table.smiles
    np.testing.assert_array_equal(table.log_likelihood, [-len(s) for s in table.smiles])
    assert report.drawn <= 500 and report.passed["valid"] <= report.drawn


def test_search_is_reproducible_and_draws_one_stream_across_rounds():
    criteria = CandidateCriteria(unique=True)
    sampler = PoolSampler(POOL)
    first, report = find_candidates(sampler, 8, criteria, seed=5, max_draws=1000, batch_size=2)
    assert report.rounds > 1, "the test needs several rounds"
    assert all(g is sampler.generators[0] for g in sampler.generators), "one generator continues across rounds"
    again, _ = find_candidates(PoolSampler(POOL), 8, criteria, seed=5, max_draws=1000, batch_size=2)
    other, _ = find_candidates(PoolSampler(POOL), 8, criteria, seed=6, max_draws=1000, batch_size=2)
    assert first.smiles == again.smiles and first.columns == again.columns
    assert first.smiles != other.smiles


def test_search_stops_at_the_draw_limit_with_what_it_found():
    sampler = PoolSampler(DRUG_LIKE + ["C1CC"])
    table, report = find_candidates(sampler, 20, CandidateCriteria(unique=True), seed=0, max_draws=30)
    assert report.hit_limit and report.drawn == 30 and report.found == len(table) == 5
    assert report.passed["unique"] == 5 and report.passed["valid"] <= 30
    assert "5 of 20 candidates found in 30 draws" in str(report)


def test_table_sorts_best_first_with_unknown_values_last():
    rows = [{"qed": q, "sa": 2.0, "logp": 0.0, "mw": 100.0} for q in (0.2, 0.9, 0.5)]
    table = CandidateTable(["A", "B", "C", None], [*rows, None], np.array([-3.0, -1.0, np.nan, -2.0]),
                           np.array([2.0, 0.1, np.nan, 1.0]), {"i": [0, 1, 2, 3]})
    assert table.sorted_by("qed").columns["i"] == [1, 2, 0, 3]
    assert table.sorted_by("log_likelihood").columns["i"] == [1, 3, 0, 2]
    assert table.sorted_by("ood_score").columns["i"] == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="toxicity"):
        table.sorted_by("toxicity")


# ---- output files -----------------------------------------------------------------------------


def _table():
    smiles = [DRUG_LIKE[0], None, DRUG_LIKE[2], DRUG_LIKE[3]]
    rows = [None if s is None else {"smiles": s, **mol_properties(Chem.MolFromSmiles(s))} for s in smiles]
    return CandidateTable(smiles, rows, np.array([-20.5, np.nan, -30.25, -25.0]), np.array([0.5, np.nan, 2.5, np.nan]),
                          {"valid_without_correction": [1, 0, 1, 0]})


def test_sdf_reads_back_with_2d_coordinates_and_tags(tmp_path):
    table = _table()
    assert write_sdf(tmp_path / "c.sdf", table) == 3
    mols = list(Chem.SDMolSupplier(str(tmp_path / "c.sdf")))
    assert [Chem.MolToSmiles(m) for m in mols] == [canonical_smiles(s) for s in table.smiles if s]
    for mol, i in zip(mols, [0, 2, 3]):
        conformer = mol.GetConformer()
        assert not conformer.Is3D()
        xy = conformer.GetPositions()[:, :2]
        assert np.ptp(xy, axis=0).min() > 0.5  # laid out in the plane, not all at the origin
        assert mol.GetProp("_Name") == f"candidate_{i + 1}"
        assert float(mol.GetProp("qed")) == pytest.approx(table.properties[i]["qed"], abs=1e-4)
        assert float(mol.GetProp("log_likelihood")) == table.log_likelihood[i]
        assert mol.GetProp("valid_without_correction") == ("1" if i != 3 else "0")
    assert float(mols[0].GetProp("ood_score")) == 0.5 and mols[2].GetProp("ood_score") == ""


def test_png_is_a_png_of_the_top_valid_molecules(tmp_path):
    assert write_grid_image(tmp_path / "c.png", _table(), top=2) == 2
    data = (tmp_path / "c.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_grid_image(tmp_path / "none.png", CandidateTable([None], [None], np.array([np.nan]))) == 0
    assert not (tmp_path / "none.png").exists()


# ---- AUROC and the typicality OOD score -------------------------------------------------------


def test_auroc_is_the_mann_whitney_probability():
    assert auroc([0, 1, 2], [3, 4]) == 1.0 and auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)
    pairs = (b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean()
    assert auroc(a, b) == pytest.approx(pairs)
    assert auroc([0.0, np.inf], [np.inf]) == 0.75
    with pytest.raises(ValueError, match="NaN"):
        auroc([np.nan], [1.0])


def test_typical_set_is_a_seeded_subset_of_validation_molecules(tmp_path, moses_smiles):
    (tmp_path / "valid.smi").write_text("\n".join(moses_smiles[:50]) + "\n\n")
    assert MoleculeDomain.typical_set(tmp_path) == moses_smiles[:50]
    subset = MoleculeDomain.typical_set(tmp_path, max_molecules=10, seed=1)
    assert len(subset) == 10 and set(subset) < set(moses_smiles[:50])
    assert subset == MoleculeDomain.typical_set(tmp_path, max_molecules=10, seed=1)
    assert subset == [s for s in moses_smiles[:50] if s in subset]  # file order kept


@pytest.fixture(scope="module")
def trained_arm(tmp_path_factory, moses_smiles, train_tiny_arm):
    """A tiny SMILES transformer trained briefly on 180 MOSES molecules (60 held for the typical set,
    60 held out as in-distribution test molecules); returns (checkpoint, data folder, info)."""
    return train_tiny_arm(tmp_path_factory.mktemp("ood"), moses_smiles[:180], moses_smiles[180:240],
                          model={"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.1, "max_length": 100},
                          steps=100, lr=3e-3)


def test_training_records_its_data_and_typical_set(trained_arm, one_thread):
    path, data, info = trained_arm
    assert info["data_dir"] == str(data)
    model = api.load(path, device="cpu")
    stats = model.typicality
    assert stats == info["typicality"] and stats["n"] == 60
    typical = MoleculeDomain.typical_set(data)
    nll = -model.log_likelihood(typical) / MoleculeDomain.item_sizes(typical)
    assert stats["mean"] == pytest.approx(nll.mean(), rel=1e-4) and stats["std"] == pytest.approx(nll.std(ddof=1),
                                                                                                  rel=1e-3)
    items = ["CCO", "c1ccccc1", "CCO"]  # 3 and 6 heavy atoms: the score is per heavy atom
    ll = np.array([-3 * stats["mean"], -6 * (stats["mean"] + 2 * stats["std"]), np.nan])
    np.testing.assert_allclose(model.ood_score(ll, items), [0.0, 2.0, np.nan], atol=1e-9)
    model.info = {}
    assert model.ood_score(ll, items) is None


def test_other_distributions_score_as_atypical(trained_arm, moses_smiles, one_thread):
    """Held-out MOSES molecules vs QM9 molecules and vs randomized SMILES of the same held-out
    molecules: the typicality score ranks the foreign ones as more atypical (AUROC well above 0.5),
    although QM9's short SMILES get a *higher* likelihood than MOSES ones (Nalisnick et al. 2019)."""
    model = api.load(trained_arm[0], device="cpu")
    held_out = moses_smiles[240:]
    qm9 = QM9_SAMPLE.read_text().split()
    randomized = randomized_smiles(held_out * 5, seed=0)  # five random writings of each molecule
    assert sum(r != s for r, s in zip(randomized, held_out * 5)) > 250
    vs_qm9 = ood_auroc(model, held_out, qm9)
    vs_randomized = ood_auroc(model, held_out, randomized)
    print(f"\nOOD AUROC, held-out MOSES vs QM9: {json.dumps(vs_qm9)}")
    print(f"OOD AUROC, held-out MOSES vs randomized SMILES: {json.dumps(vs_randomized)}")
    assert vs_qm9["auroc"] > 0.85 and vs_qm9["auroc_scorable"] > 0.85
    assert vs_qm9["auroc_negative_log_likelihood"] < 0.5  # -log p alone calls QM9 *more* typical
    assert vs_randomized["auroc"] > 0.7 and vs_randomized["auroc_scorable"] > 0.7


def test_search_on_a_trained_model_is_reproducible(trained_arm, one_thread):
    model = api.load(trained_arm[0], device="cpu")
    criteria = CandidateCriteria(valid=True, unique=True)
    first, report = find_candidates(model, 3, criteria, seed=1, max_draws=3000, batch_size=500)
    again, _ = find_candidates(model, 3, criteria, seed=1, max_draws=3000, batch_size=500)
    assert first.smiles == again.smiles and len(first) == 3 and report.found == 3
    assert len({canonical_smiles(s) for s in first.smiles}) == 3
    assert np.isfinite(first.log_likelihood).all()


def test_a_shift_set_is_stated_by_its_composition_and_the_factors_it_changes(moses_smiles):
    """MOSES molecules against QM9 ones: the raw set shifts both elements and size; restricted to
    the QM9 molecules' elements it shifts size only; randomized SMILES shift neither."""
    qm9 = QM9_SAMPLE.read_text().split()
    reference = set_composition(qm9)
    assert reference["element_set"] == ["C", "F", "N", "O"] and reference["n"] == len(qm9)
    assert reference["elements"]["C"] == sum("C" in molecule_elements(s) for s in qm9)
    assert 1 <= reference["heavy_atoms"]["min"] and reference["heavy_atoms"]["max"] == 9
    assert shifted_factors(reference, set_composition(moses_smiles)) == ["elements", "size"]
    kept = made_of(moses_smiles, ["C", "N", "O"])
    assert kept and kept == [s for s in moses_smiles if molecule_elements(s) <= {"C", "N", "O"}]
    assert any("F" in molecule_elements(s) and molecule_elements(s) <= {"C", "N", "O", "F"} for s in moses_smiles)
    assert shifted_factors(set_composition(qm9), set_composition(made_of(moses_smiles, ["C", "N", "O", "F"]))) == [
        "size"]
    assert shifted_factors(reference, set_composition(randomized_smiles(qm9, seed=0))) == []
    fluorine = [s for s in qm9 if "F" in molecule_elements(s)]
    without = set_composition([s for s in qm9 if "F" not in molecule_elements(s)])
    assert fluorine and shifted_factors(without, set_composition(fluorine)) == ["elements"]
    assert made_of(["C1CC", "CCS"], ["C"]) == [] and molecule_elements("C1CC") is None
    assert set_composition(["C1CC"]) == {"n": 1, "unparsed": 1, "element_set": [], "elements": {}, "charged": 0,
                                         "heavy_atoms": None}
    zwitterion, neutral = "[NH3+]CC(=O)[O-]", "NCC(=O)O"  # glycine, as QM9 writes some of its molecules
    assert is_charged(zwitterion) and not is_charged(neutral) and is_charged("C1CC") is None
    assert made_of([zwitterion, neutral], ["C", "N", "O"]) == [zwitterion, neutral]
    assert made_of([zwitterion, neutral], ["C", "N", "O"], neutral=True) == [neutral]
    assert set_composition([zwitterion, neutral])["charged"] == 1
    assert shifted_factors(set_composition([neutral]), set_composition([zwitterion])) == ["charges"]
    assert shifted_factors(set_composition([zwitterion]), set_composition([neutral])) == []


def test_bench_ood_writes_aurocs(trained_arm, moses_smiles, tmp_path, one_thread, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when run as a script: its helpers (timing.py) sit beside it
    spec = importlib.util.spec_from_file_location("bench_ood", ROOT / "bench/bench_ood.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    held_out = tmp_path / "held_out.smi"
    held_out.write_text("\n".join(moses_smiles[240:]) + "\n")
    out = tmp_path / "ood.json"
    bench.main([str(trained_arm[0]), "--in-distribution", str(held_out), "--ood", f"qm9={QM9_SAMPLE}",
                "--max-molecules", "100", "--out", str(out), "--device", "cpu"])
    result = json.loads(out.read_text())
    run = result["checkpoints"][str(trained_arm[0])]
    assert set(run["sets"]) == {"qm9", "randomized_smiles"}
    assert run["sets"]["qm9"]["n_out"] == 100 and run["sets"]["qm9"]["n_in"] == 60
    assert all(0.0 <= s["auroc"] <= 1.0 and math.isfinite(s["auroc"]) for s in run["sets"].values())
    assert run["typicality"]["n"] == 60
    sets = result["sets"]
    assert sets["in_distribution"]["n"] == 60 and sets["qm9"]["composition"]["n"] == 100
    assert set(sets["qm9"]["composition"]["element_set"]) <= set(sets["in_distribution"]["element_set"])
    assert sets["qm9"]["restricted_to_elements"] == sets["in_distribution"]["element_set"]
    assert sets["in_distribution"]["charged"] == 0 and sets["qm9"]["restricted_to_neutral"]
    assert sets["qm9"]["composition"]["charged"] == 0
    assert (sets["qm9"]["shift"], sets["qm9"]["differs_in"]) == ("source", ["size"])
    assert (sets["randomized_smiles"]["shift"], sets["randomized_smiles"]["differs_in"]) == ("representation", [])
    assert sets["randomized_smiles"]["composition"]["elements"] == sets["in_distribution"]["elements"]
