"""MOSES metrics: hand-computed values for the set metrics, filters and Tanimoto kernels; FCD and evaluate() sanity."""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors

from dgm_science.domains.molecules import metrics as M
from dgm_science.domains.molecules import properties as P

# Drug-like molecules: cores with two attachment points x substituents (two-ring cores give Murcko scaffolds).
_CORES = [
    "{0}c1ccc({1})cc1",
    "{0}c1ccc({1})nc1",
    "{0}c1ccc2cc({1})ccc2c1",
    "{0}c1ccc(-c2ccc({1})cc2)cc1",
    "{0}C1CCN(C(=O)c2ccc({1})cc2)CC1",
    "{0}c1ccc2[nH]c({1})nc2c1",
    "{0}c1ccc(Oc2ccc({1})cn2)cc1",
    "{0}c1cc(C(=O)Nc2ccccc2{1})on1",
]
_PREFIXES = ["C", "CO", "Cl", "FC(F)(F)", "CC(=O)N", "N#C"]
_SUFFIXES = ["C", "OC", "F", "C(=O)N", "S(C)(=O)=O", "CCO"]
DRUG_LIKE = [core.format(a, b) for core, a, b in itertools.product(_CORES, _PREFIXES, _SUFFIXES)]
CHAINS = ["C" * n + "Cl" for n in range(4, 40)] + ["Br" + "C" * n + "Br" for n in range(4, 40)] + [
    "C" * n + "O" for n in range(6, 40)
]


@pytest.fixture(scope="module")
def drug_like_stats() -> dict[str, np.ndarray]:
    return M.reference_statistics(DRUG_LIKE[::2])


# ------------------------------------------------------------------------------------------- set metrics


def test_canonical_smiles():
    assert M.canonical_smiles("OCC") == "CCO"
    assert M.canonical_smiles("C1CC") is None
    assert M.canonical_smiles(None) is None


def test_fraction_valid_counts_none_and_garbage():
    smiles = ["CCO", "c1ccccc1", None, "", "C1CC", "not a smiles", "C(C)(C)(C)(C)C"]
    assert M.fraction_valid(smiles) == pytest.approx(2 / 7)


def test_fraction_unique():
    canonical = ["CCO", "CCO", "CCN", "CCC"]
    assert M.fraction_unique(canonical) == pytest.approx(3 / 4)
    assert M.fraction_unique(canonical, k=2) == pytest.approx(1 / 2)
    with pytest.warns(UserWarning, match="unique@10"):
        assert M.fraction_unique(canonical, k=10) == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        M.fraction_unique(["CCO", None])


def test_novelty():
    assert M.novelty(["CCO", "CCO", "CCN", "CCC"], ["CCO", "CCCC"]) == pytest.approx(2 / 3)
    assert math.isnan(M.novelty([], {"CCO"}))


def test_cos_similarity_of_counters():
    ref, gen = Counter({"a": 1, "b": 2}), Counter({"b": 2, "c": 2})
    assert M.cos_similarity(ref, gen) == pytest.approx(4 / math.sqrt(5 * 8))
    assert M.cos_similarity(ref, Counter({"a": 2, "b": 4})) == pytest.approx(1.0)
    assert M.cos_similarity(ref, Counter({"z": 3})) == pytest.approx(0.0)
    assert math.isnan(M.cos_similarity(ref, Counter()))


def test_wasserstein():
    assert M.wasserstein([0.0, 1.0, 3.0], [5.0, 6.0, 8.0]) == pytest.approx(5.0)
    assert M.wasserstein([0.0, 1.0], [0.0, 2.0]) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------- Tanimoto kernels


def test_tanimoto_by_hand():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    expected = [[1 / 3, 1, 0, 0], [0, 0, 0, 1]]
    np.testing.assert_allclose(M.tanimoto(a, b), expected)


def test_snn_by_hand():
    gen = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    ref = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]])
    # gen0: max(1/2, 2/3, 0) = 2/3; gen1: max(0, 1/4, 1/2) = 1/2
    assert M.snn(gen, ref) == pytest.approx(7 / 12)


def test_snn_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    density = rng.uniform(0.0, 0.3, size=(300, 1))
    fps = (rng.random((300, 64)) < density).astype(np.uint8)
    fps[:3] = 0
    gen, ref = fps[:70], fps[70:]
    expected = M.tanimoto(gen, ref).max(1).mean()
    assert M.snn(gen, ref, gen_batch=16, ref_batch=37) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.int8, torch.float16, torch.float32])
def test_bit_products_are_exact_intersection_counts(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.random((37, 2048)) < 0.6, rng.random((53, 2048)) < 0.6  # counts above fp16's 2048 would not be
    expected = a.astype(np.int64) @ b.astype(np.int64).T
    products = M._bit_products(torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype))
    assert products.dtype == torch.float32 and (products.numpy() == expected).all()
    assert expected.max() > 256  # beyond bfloat16's exact integers: a rounding path would fail here


def test_the_cpu_multiplies_fingerprints_in_int8():
    assert M._matmul_dtype(torch.device("cpu"), 2048) == torch.int8
    assert M._matmul_dtype(torch.device("cuda"), 2048) == torch.float16
    assert M._matmul_dtype(torch.device("cuda"), 4096) == torch.float32


def test_internal_diversity():
    fp = P.morgan_fingerprint(Chem.MolFromSmiles("CCOc1ccccc1"))
    assert M.internal_diversity(np.stack([fp, fp]), 1) == pytest.approx(0.0, abs=1e-7)
    fps = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    # T = [[1, 1/3], [1/3, 1]]
    assert M.internal_diversity(fps, 1) == pytest.approx(1 / 3)
    assert M.internal_diversity(fps, 2) == pytest.approx(1 - math.sqrt(5 / 9))


def test_morgan_fingerprint_matches_legacy_api():
    from rdkit.Chem import AllChem

    for smiles in DRUG_LIKE[::37] + ["C", "[Na+].[Cl-]"]:
        mol = Chem.MolFromSmiles(smiles)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            legacy = np.array(AllChem.GetMorganFingerprintAsBitVect(mol, 2, nBits=1024), dtype=np.uint8)
        np.testing.assert_array_equal(P.morgan_fingerprint(mol), legacy)


# ---------------------------------------------------------------------------- properties and filters


def test_mol_properties_match_rdkit():
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    props = P.mol_properties(mol)
    assert set(props) == {"qed", "sa", "logp", "mw"}
    assert props["logp"] == Crippen.MolLogP(mol)
    assert props["qed"] == QED.qed(mol)
    assert props["mw"] == pytest.approx(Descriptors.MolWt(mol)) == pytest.approx(151.165, abs=1e-3)
    assert 1.0 <= props["sa"] <= 10.0


def test_scaffold_needs_two_rings():
    assert P.murcko_scaffold(Chem.MolFromSmiles("Cc1ccccc1")) is None
    assert P.murcko_scaffold(Chem.MolFromSmiles("CCc1ccc(Cc2ccccc2)cc1")) == "c1ccc(Cc2ccccc2)cc1"


@pytest.mark.parametrize(
    ("smiles", "passes"),
    [
        ("CCOc1ccccc1", True),
        ("CC(=O)Nc1ccc(O)cc1", True),
        ("S=C1SC(=Cc2ccccc2)C(=O)N1", False),  # PAINS ene_rhod
        ("Oc1ccccc1O", False),  # PAINS catechol
        ("C=CC#N", False),  # MCF1 Michael acceptor
        ("C[N+](C)(C)C", False),  # charged
        ("CC(=O)[O-]", False),  # charged
        ("CCP", False),  # atom outside C N S O F Cl Br H
        ("C1CCCCCCC1", False),  # ring of 8 atoms
        (None, False),
    ],
)
def test_passes_filters(smiles, passes):
    assert P.passes_filters(smiles) is passes


def test_fraction_passes_filters():
    assert M.fraction_passes_filters(["CCOc1ccccc1", "Oc1ccccc1O", "C[N+](C)(C)C"]) == pytest.approx(1 / 3)


def test_filter_screening_is_exact():
    """Pattern-fingerprint screening must give the same answer as matching every SMARTS (molsets)."""
    patterns, _ = P.filter_patterns()
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    smiles = [line.split()[0] for line in path.read_text().splitlines()[:300]]
    mols = [m for m in map(P.parse_smiles, smiles) if m is not None]
    n_hits = 0
    for mol in mols:
        with_h = Chem.AddHs(mol)
        brute = any(with_h.HasSubstructMatch(p) for p in patterns)
        assert P.matches_structural_alert(with_h) == brute, Chem.MolToSmiles(mol)
        n_hits += brute
    assert n_hits > 20


def test_properties_table_parallel_matches_serial():
    smiles = DRUG_LIKE[:30] + [None, "C1CC"]
    serial = P.properties_table(smiles, n_jobs=1)
    assert serial[-1] is None and serial[-2] is None
    assert serial[0]["smiles"] == M.canonical_smiles(smiles[0])
    assert P.properties_table(smiles, n_jobs=2) == serial


# ---------------------------------------------------------------------------------- reference statistics


def test_reference_statistics_round_trip(tmp_path, drug_like_stats):
    stats = drug_like_stats
    n = len(DRUG_LIKE[::2])
    assert stats["morgan_fps_packed"].shape == (n, 128)
    assert stats["fcd_mu"].shape == (512,) and stats["fcd_sigma"].shape == (512, 512)
    assert stats["fragment_counts"].sum() > n and stats["scaffold_counts"].sum() > 0
    assert all(stats[name].shape == (n,) for name in ("logP", "SA", "QED", "MW"))
    path = tmp_path / "ref.npz"
    M.save_reference(path, stats)
    loaded = M.load_reference(path)
    assert set(loaded) == set(stats)
    for key, value in stats.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_reference_statistics_rejects_invalid():
    with pytest.raises(ValueError, match="#1"):
        M.reference_statistics(["CCO", "C1CC", "CCN"])


# ----------------------------------------------------------------------------------------------- FCD


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_fcd_from_stats_agrees_with_scipy_sqrtm():
    from fcd.utils import calculate_frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 16)), rng.normal(loc=0.3, size=(40, 16)) @ rng.normal(size=(16, 16))
    stats_a = (a.mean(0), np.cov(a, rowvar=False))
    stats_b = (b.mean(0), np.cov(b, rowvar=False))
    expected = calculate_frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1])
    assert M.fcd_from_stats(*stats_a, *stats_b) == pytest.approx(expected, rel=1e-8)


def test_fcd_self_near_zero_and_unrelated_far(drug_like_stats):
    mu, sigma = drug_like_stats["fcd_mu"], drug_like_stats["fcd_sigma"]
    assert abs(M.fcd_from_stats(mu, sigma, mu, sigma)) < 1e-4  # sigma has rank 71 < 512
    other_half = M.chemnet_activations(DRUG_LIKE[1::2])
    chains = M.chemnet_activations(CHAINS)
    fcd_same_distribution = M.fcd_from_stats(other_half.mean(0), np.cov(other_half, rowvar=False), mu, sigma)
    fcd_unrelated = M.fcd_from_stats(chains.mean(0), np.cov(chains, rowvar=False), mu, sigma)
    assert fcd_unrelated > 30 and fcd_unrelated > 3 * fcd_same_distribution  # 61 vs 16 with ~72 molecules


def test_chemnet_long_smiles_keep_standard_padding_for_the_rest():
    short = M.chemnet_activations(["CCO", "c1ccccc1"])
    with pytest.warns(UserWarning, match="longer than 349"):
        mixed = M.chemnet_activations(["CCO", "C" * 400, "c1ccccc1"])
    np.testing.assert_allclose(mixed[[0, 2]], short, rtol=1e-5, atol=1e-6)
    assert np.isfinite(mixed).all()


# ------------------------------------------------------------------------------------------------ evaluate


def test_evaluate_returns_all_moses_keys(drug_like_stats):
    generated = DRUG_LIKE[1::2] + DRUG_LIKE[1:20:2] + CHAINS[:40] + [None, "C1CC", ""]
    test_scaffolds_stats = M.reference_statistics(DRUG_LIKE[:100])
    with pytest.warns(UserWarning, match="unique@10000"):
        result = M.evaluate(
            generated,
            train={M.canonical_smiles(s) for s in DRUG_LIKE[1:40]},
            test_stats=drug_like_stats,
            test_scaffolds_stats=test_scaffolds_stats,
            k=(100, 10000),
        )
    names = ["valid", "unique@100", "unique@10000", "novelty"]
    names += [f"{m}/{ref}" for m in ("FCD", "SNN", "Frag", "Scaf") for ref in ("Test", "TestSF")]
    names += ["IntDiv1", "IntDiv2", "Filters", "logP", "SA", "QED", "MW", "n_generated", "n_valid"]
    assert all(name in result for name in names)
    assert all(math.isfinite(value) for value in result.values())
    n_valid = len(generated) - 3
    assert result["n_generated"] == len(generated) and result["n_valid"] == n_valid
    assert result["valid"] == pytest.approx(M.fraction_valid(generated))
    assert result["unique@100"] == 1.0
    assert result["unique@10000"] == pytest.approx((n_valid - 10) / n_valid)
    assert result["unique@10000_n"] == n_valid
    assert result["Filters"] == pytest.approx(M.fraction_passes_filters(generated[:-3]))
    assert 0 < result["novelty"] < 1 and 0 < result["IntDiv2"] < result["IntDiv1"] < 1


@pytest.mark.filterwarnings("ignore:unique@:UserWarning", "ignore:FCD needs:UserWarning")
def test_evaluate_without_valid_molecules_reports_nan(drug_like_stats):
    with pytest.warns(UserWarning, match="no valid molecule"):
        result = M.evaluate(
            [None, "C1CC", "xyz"], train=set(), test_stats=drug_like_stats, test_scaffolds_stats=drug_like_stats
        )
    assert result["valid"] == 0.0 and result["n_generated"] == 3 and result["n_valid"] == 0
    assert all(math.isnan(result[name]) for name in ("unique@1000", "novelty", "FCD/Test", "SNN/TestSF", "MW"))
