"""EDM's stability / validity metrics: the vectorised bond perception equals EDM's scalar
``get_bond_order``, and real QM9 molecules come out stable and valid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from dgm_science.domains.structures import metrics as structure_metrics

_spec = importlib.util.spec_from_file_location("fixtures_qm9", Path(__file__).with_name("fixtures_qm9.py"))
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


def edm_get_bond_order(atom1: str, atom2: str, distance: float) -> int:
    """EDM's ``bond_analyze.get_bond_order`` transcribed (distance in Angstrom)."""
    distance = 100 * distance
    m1, m2, m3 = structure_metrics.MARGINS_PM
    if distance < structure_metrics.SINGLE_BOND_PM[atom1][atom2] + m1:
        if atom2 in structure_metrics.DOUBLE_BOND_PM.get(atom1, {}):
            if distance < structure_metrics.DOUBLE_BOND_PM[atom1][atom2] + m2:
                if atom2 in structure_metrics.TRIPLE_BOND_PM.get(atom1, {}):
                    if distance < structure_metrics.TRIPLE_BOND_PM[atom1][atom2] + m3:
                        return 3
                return 2
        return 1
    return 0


def test_tables_are_edms():
    assert structure_metrics.MARGINS_PM == (10, 5, 3)
    assert structure_metrics.SINGLE_BOND_PM["C"]["H"] == 109 and structure_metrics.DOUBLE_BOND_PM["C"]["O"] == 120
    assert structure_metrics.TRIPLE_BOND_PM["N"]["C"] == 116 and {e: structure_metrics.ALLOWED_VALENCY[e] for e in structure_metrics.ELEMENTS} == {
        "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,)}
    assert structure_metrics.ALLOWED_VALENCY["P"] == (3, 5) and structure_metrics.SINGLE_BOND_PM["C"]["Cl"] == 177
    for table in (structure_metrics.SINGLE_BOND_PM, structure_metrics.DOUBLE_BOND_PM, structure_metrics.TRIPLE_BOND_PM):
        for a, row in table.items():
            for b, length in row.items():
                assert table[b][a] == length


def test_vectorised_bond_orders_equal_edms_scalar_rule():
    rng = np.random.default_rng(0)
    b, n = 30, 7
    positions = rng.uniform(0, 2.2, size=(b, n, 3)) * np.array([1.0, 0.3, 0.3])
    types = rng.integers(0, 5, size=(b, n))
    n_atoms = rng.integers(2, n + 1, size=b)
    orders = structure_metrics.bond_orders(positions, types, n_atoms)
    seen = set()
    for k in range(b):
        for i in range(n):
            for j in range(n):
                if i == j or i >= n_atoms[k] or j >= n_atoms[k]:
                    assert orders[k, i, j] == 0
                    continue
                d = float(np.linalg.norm(positions[k, i] - positions[k, j]))
                expected = edm_get_bond_order(structure_metrics.ELEMENTS[types[k, i]], structure_metrics.ELEMENTS[types[k, j]], d)
                assert orders[k, i, j] == expected
                seen.add(expected)
    assert seen == {0, 1, 2, 3}


def test_hand_built_molecules():
    # ethyne H-C#C-H on a line: triple bond, all atoms stable; stretched to 1.30 A it is a double bond
    def ethyne(cc: float):
        x = np.array([-cc / 2 - 1.06, -cc / 2, cc / 2, cc / 2 + 1.06])
        pos = np.zeros((1, 4, 3))
        pos[0, :, 0] = x
        return pos, np.array([[0, 1, 1, 0]]), np.array([4])

    n_stable, stable = structure_metrics.stability(*ethyne(1.20))
    assert n_stable.tolist() == [4] and stable.tolist() == [True]
    n_stable, stable = structure_metrics.stability(*ethyne(1.30))
    assert n_stable.tolist() == [2] and stable.tolist() == [False]  # the carbons have valency 3
    smiles = structure_metrics.molecules_smiles(*ethyne(1.20))
    assert smiles == ["[H]C#C[H]"]


def test_real_qm9_molecules_are_stable_and_valid():
    data = fixtures.sample_arrays()
    metrics = structure_metrics.edm_metrics(data["positions"], data["atom_types"], data["n_atoms"])
    assert metrics["atom_stability"] > 0.98 and metrics["molecule_stability"] > 0.85
    assert metrics["validity"] > 0.9 and metrics["uniqueness"] == 1.0
    assert metrics["n_samples"] == 48
    # scrambled molecules are neither
    rng = np.random.default_rng(0)
    noisy = data["positions"] + rng.normal(scale=0.5, size=data["positions"].shape)
    bad = structure_metrics.edm_metrics(noisy, data["atom_types"], data["n_atoms"])
    assert bad["molecule_stability"] < 0.1 and bad["atom_stability"] < 0.8


def test_invalid_and_unknown_samples_are_counted_not_dropped():
    data = fixtures.sample_arrays()
    positions, types, n_atoms = data["positions"][:4], data["atom_types"][:4].astype(np.int64), data["n_atoms"][:4]
    types = types.copy()
    types[1, 0] = -1  # an element outside H, C, N, O, F
    far = positions.copy()
    far[2] *= 3.0  # no bonds: every atom unstable, RDKit still sanitizes the isolated atoms
    metrics = structure_metrics.edm_metrics(far, types, n_atoms, train_smiles=set())
    assert metrics["n_samples"] == 4
    assert metrics["molecule_stability"] <= 0.5
    assert metrics["validity"] <= 0.75  # the unknown-element molecule is invalid
    assert metrics["novelty"] == 1.0
    fraction, stable, _ = structure_metrics.per_molecule(far, types, n_atoms)
    assert np.isnan(fraction[1]) and not stable[1] and fraction[2] == 0.0
    duplicated = structure_metrics.edm_metrics(np.repeat(positions[:1], 3, 0), types[[0, 0, 0]], n_atoms[[0, 0, 0]],
                                       train_smiles=set())
    assert abs(duplicated["uniqueness"] - 1 / 3) < 1e-9 and abs(duplicated["validity_times_uniqueness"] - 1 / 3) < 1e-9


def test_diverged_samples_with_non_finite_coordinates_are_invalid():
    data = fixtures.sample_arrays()
    positions = data["positions"][:3].astype(np.float64)
    positions[1, 0, 0] = np.nan
    positions[2, 1, 2] = np.inf
    metrics = structure_metrics.edm_metrics(positions, data["atom_types"][:3], data["n_atoms"][:3])
    assert metrics["validity"] <= 1 / 3 and metrics["molecule_stability"] <= 1 / 3
    fraction, stable, _ = structure_metrics.per_molecule(positions, data["atom_types"][:3], data["n_atoms"][:3])
    assert np.isnan(fraction[1:]).all() and not stable[1:].any()
