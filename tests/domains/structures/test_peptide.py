"""ala2-flow and the peptide-md domain: torsion unrolling, exact densities, Cartesian likelihood,
DCD samples, Boltzmann-generator metrics, and training through api.train."""

from __future__ import annotations

import csv
import math

import mdtraj
import numpy as np
import pytest
import torch

from dgm_science.base import Samples
from dgm_science import api, registry
from dgm_science.config import from_dict
from dgm_science.domains.structures import md
from dgm_science.domains.structures import metrics as structure_metrics
from dgm_science.domains.structures import models as structure_models
from dgm_science.domains.structures.internal import TORSION_PHI, TORSION_PSI, TORSIONS, InternalCoordinates
from tests.domains.structures.fixtures_md import TINY_CONFIG, frames, prmtop_text, tiny_state_and_batch, write_prepared

SPEC = registry.get("model", "ala2-flow")
DOMAIN = registry.get("domain", "peptide-md")


@pytest.fixture(scope="module")
def state_and_batch():
    return tiny_state_and_batch(16)


def build(state, **overrides):
    torch.manual_seed(0)
    return SPEC.build(from_dict(SPEC.Config, {**TINY_CONFIG, **overrides}, "ala2-flow"), state)


def test_least_populated_angle_is_the_empty_region():
    rng = np.random.default_rng(0)
    torsions = np.stack([rng.normal(0.0, 0.3, 5000), rng.normal(math.pi - 0.1, 0.3, 5000)], axis=1)
    torsions = (torsions + math.pi) % (2 * math.pi) - math.pi
    cut = structure_models.least_populated_angles(torsions)
    assert abs(abs(cut[0]) - math.pi) < 0.3  # opposite the mode at 0
    assert abs(cut[1] + 0.1) < 0.6


def test_state_is_checkpoint_safe_and_torsions_avoid_the_data(state_and_batch):
    state, batch = state_and_batch
    torch.save(state, "/dev/null")  # plain types only: loads with weights_only=True
    assert set(state) >= {"z_matrix", "roots", "internal_mean", "internal_std", "torsion_cut", "prmtop",
                          "temperature_kelvin", "atom_names"}
    assert len(state["internal_mean"]) == 60 and len(state["torsion_cut"]) == 19
    assert state["prmtop"] == prmtop_text() and state["temperature_kelvin"] == 300.0
    model = build(state)
    y, _ = model.to_flow(batch["internal"])
    assert y.abs().max() < 8  # unrolled torsions of training data are not split across the cut


def test_log_prob_is_the_flow_density_with_the_exact_change_of_variables(state_and_batch):
    """log q(x) = log q_flow(y) + log|det dy/dx| with y = standardised (internal with logit-mapped
    unrolled torsions); the log-det is checked against autograd's full Jacobian."""
    state, batch = state_and_batch
    model = build(state).eval()
    y, log_det = model.to_flow(batch["internal"])
    torch.testing.assert_close(model.log_prob(batch), model.flow.log_prob(y) + log_det)
    x0 = batch["internal"][:2].double()
    model64 = build(state).double().eval()
    for x, expected in zip(x0, model64.to_flow(x0)[1]):
        jacobian = torch.autograd.functional.jacobian(lambda v: model64.to_flow(v[None])[0][0], x)
        assert abs(float(torch.linalg.slogdet(jacobian)[1] - expected)) < 1e-8
    shifted = batch["internal"].clone()
    shifted[:, TORSIONS] += 2 * math.pi  # the same torsions, another image: the same density
    torch.testing.assert_close(model.log_prob({"internal": shifted}), model.log_prob(batch), atol=1e-3, rtol=1e-5)
    back = model.from_flow(y)
    assert (back - batch["internal"]).abs().max() < 1e-4
    extreme = model.from_flow(torch.full((2, 60), 1e3) * torch.tensor([[1.0], [-1.0]]))
    assert torch.isfinite(extreme).all() and (extreme[:, TORSIONS].abs() <= math.pi + 1e-6).all()  # no leak


def test_loss_falls_log_prob_and_sampling_contract(state_and_batch):
    state, batch = state_and_batch
    model = build(state)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and np.mean(losses[-5:]) < losses[0] - 0.1
    model.eval()
    lp = model.log_prob(batch)
    assert lp.shape == (16,) and torch.isfinite(lp).all()
    assert type(model).likelihood == "exact"
    a = model.sample(7, generator=torch.Generator().manual_seed(3))
    b = model.sample(7, generator=torch.Generator().manual_seed(3))
    c = model.sample(7, generator=torch.Generator().manual_seed(4))
    assert a.shape == (7, 60) and torch.equal(a, b) and not torch.equal(a, c)
    assert (a[:, TORSIONS].abs() <= math.pi + 1e-6).all() and (a[:, :TORSIONS.start] > 0).all()
    cold = model.sample(3, generator=torch.Generator().manual_seed(3), temperature=0.0)
    torch.testing.assert_close(cold[0], cold[2])


def test_log_prob_under_bf16_autocast_stays_float32(state_and_batch):
    state, batch = state_and_batch
    model = build(state).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = model.log_prob(batch)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, model.log_prob(batch))


def test_energy_term_trains_through_openmm_forces(state_and_batch):
    state, batch = state_and_batch
    model = build(state, energy_weight=1.0, energy_samples=8)
    model.train()
    loss = model.loss(batch)
    assert torch.isfinite(loss) and "reverse_kl" in model.metrics_to_log()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    kl = model.reverse_kl(4, generator=torch.Generator().manual_seed(0))
    assert kl.shape == (4,) and torch.isfinite(kl).all()


def test_cartesian_log_likelihood_includes_the_jacobian_and_is_rigid_invariant(state_and_batch):
    state, _ = state_and_batch
    model = build(state).eval()
    xyz = frames()[:6].astype(np.float64)
    log_q = DOMAIN.log_likelihood(model, list(xyz), SPEC, None, state)
    z = InternalCoordinates()
    internal = z.to_internal(torch.from_numpy(xyz))
    with torch.no_grad():
        expected = model.log_prob({"internal": internal}).double() - z.log_det_jacobian(internal)
    np.testing.assert_allclose(log_q, expected.numpy(), rtol=1e-6)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    moved = xyz @ rotation.T + 1.5
    np.testing.assert_allclose(DOMAIN.log_likelihood(model, list(moved), SPEC, None, state), log_q, rtol=1e-5)
    bad = xyz[0].copy()
    bad[2, 1] = np.inf
    assert np.isnan(DOMAIN.log_likelihood(model, [bad, xyz[1]], SPEC, None, state)[0])


def test_decode_write_and_read_samples(tmp_path, state_and_batch):
    state, batch = state_and_batch
    items, extra = DOMAIN.decode_table(batch["internal"][:5], state)
    assert extra == {} and len(items) == 5 and items[0].shape == (22, 3)
    torch.testing.assert_close(InternalCoordinates().to_internal(torch.from_numpy(np.stack(items)))[:, :TORSIONS.start],
                               batch["internal"][:5, :TORSIONS.start].double(), atol=1e-5, rtol=0)
    log_q = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    n = DOMAIN.write_samples(tmp_path / "samples.dcd", Samples(items, log_q), state=state)
    assert n == 5
    trajectory = mdtraj.load(str(tmp_path / "samples.dcd"), top=str(tmp_path / "samples.pdb"))
    np.testing.assert_allclose(trajectory.xyz, np.stack(items), atol=1e-5)
    with open(tmp_path / "samples.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["log_likelihood"] for r in rows][:3] == ["1", "2", ""]
    u = md.PotentialEnergy(prmtop_text(), 300.0).reduced(np.stack(items))
    np.testing.assert_allclose([float(r["reduced_energy"]) for r in rows], u, rtol=1e-4)
    phi = np.degrees(mdtraj.compute_phi(trajectory)[1][:, 0])
    np.testing.assert_allclose([float(r["phi"]) for r in rows], phi, atol=1e-3)
    np.testing.assert_allclose(DOMAIN.read_samples(tmp_path / "samples.dcd"), trajectory.xyz, atol=1e-6)


def test_histogram_kl_and_kish_ess():
    rng = np.random.default_rng(0)
    a = rng.uniform(-math.pi, math.pi, (2000, 2))
    assert structure_metrics.histogram_kl(a, a, 60) == pytest.approx(0.0, abs=1e-12)
    shifted = (a[:, :1] * 0.3)
    assert structure_metrics.histogram_kl(shifted, a[:, :1], 60) > 0.5
    assert structure_metrics.kish_ess_fraction(np.full(10, 3.0)) == pytest.approx(1.0)
    assert structure_metrics.kish_ess_fraction(np.array([1000.0, 0.0, 0.0, 0.0])) == pytest.approx(0.25)
    assert structure_metrics.kish_ess_fraction(np.array([0.0, -np.inf, np.nan, 0.0])) == pytest.approx(0.5)


def test_evaluate_conformations_is_perfect_for_the_data_itself():
    xyz = frames().astype(np.float64)
    energy = md.PotentialEnergy(prmtop_text(), 300.0)
    u = energy.reduced(xyz)
    metrics = structure_metrics.evaluate_conformations(xyz, -u, xyz, energy)
    for key in ("kl_ramachandran", "kl_phi", "kl_psi", "kl_torsions_max", "energy_w1", "energy_above_data_max",
                "bond_length_deviation_mean"):
        assert metrics[key] == pytest.approx(0.0, abs=1e-9) or key == "bond_length_deviation_mean"
    assert 0 < metrics["bond_length_deviation_mean"] < 0.01  # thermal spread of bond lengths, nm
    assert metrics["ess_fraction"] == pytest.approx(1.0)
    assert metrics["energy_in_test_range"] == 1.0
    worse = structure_metrics.evaluate_conformations(xyz[:150], None, xyz[150:], energy)
    assert worse["kl_ramachandran"] > 0 and "ess_fraction" not in worse


def test_train_sample_write_evaluate_end_to_end(tmp_path):
    data = write_prepared(tmp_path / "data")
    config = api.RunConfig.parse("ala2-flow", {
        "model": TINY_CONFIG,
        "train": {"batch_size": 32, "max_steps": 6, "val_every_steps": 3, "val_batches": 1, "warmup_steps": 1,
                  "checkpoint_every_steps": 100, "accelerator": "cpu"},
        "sample": {"n": 50, "batch_size": 25}})
    info = api.train("ala2-flow", data, config, seed=0, out=tmp_path / "run" / "model.ckpt")
    assert info["train_examples"] == 200 and info["valid_examples"] == 40
    loaded = api.load(tmp_path / "run" / "model.ckpt", device="cpu")
    items = loaded.sample(50, seed=1)
    assert len(items) == 50 and all(x.shape == (22, 3) for x in items)
    np.testing.assert_array_equal(np.stack(loaded.sample(50, seed=1)), np.stack(items))
    log_q = loaded.log_likelihood(items)
    assert np.isfinite(log_q).all()
    samples = tmp_path / "run" / loaded.domain.samples_file
    loaded.domain.write_samples(samples, Samples(items, log_q), state=loaded.state)
    metrics = DOMAIN.evaluate(samples, data, n_jobs=1)
    assert metrics["n_samples"] == 50 and 0 < metrics["ess_fraction"] <= 1
    assert metrics["data_kl_ramachandran"] >= 0 and "data_ess_fraction" not in metrics
    assert (tmp_path / "run" / "ramachandran.png").stat().st_size > 1000
    assert torch.is_tensor(loaded.model.sample(2)) and loaded.model.sample(2).shape == (2, 60)
    assert TORSION_PHI == 0 and TORSION_PSI == 1


def test_nonfinite_samples_are_written_and_counted_not_dropped(tmp_path):
    xyz = frames()[:4].astype(np.float64)
    xyz[0] = np.nan  # a flow sample that overflowed
    DOMAIN.write_samples(tmp_path / "samples.dcd", Samples(list(xyz), np.array([np.nan, 1.0, 2.0, 3.0])))
    back = DOMAIN.read_samples(tmp_path / "samples.dcd")
    assert back.shape == (4, 22, 3) and np.isnan(back[0]).all() and np.isfinite(back[1:]).all()
    energy = md.PotentialEnergy(prmtop_text(), 300.0)
    metrics = structure_metrics.evaluate_conformations(back, np.array([np.nan, 1.0, 2.0, 3.0]), frames()[100:], energy)
    assert metrics["nonfinite_fraction"] == 0.25 and metrics["energy_above_data_max"] >= 0.25
    assert metrics["energy_in_test_range"] <= 0.75
    assert metrics["n_samples"] == 4 and 0 < metrics["ess_fraction"] <= 0.75


def test_ala2_ebm_energy_is_periodic_in_the_torsions_and_its_chains_stay_on_the_circle(state_and_batch):
    """The flow-based EBM on internal coordinates: E = -log q - g is unchanged by a full turn of any
    torsion (the base unrolls torsions at a cut, g sees their sine and cosine), its MH + MALA chains
    (moving in the flow's latent space) give torsions in (-pi, pi] and finite bonds, and it states
    its cost per sample."""
    from tests.domains.structures.fixtures_md import TINY_EBM_CONFIG

    state, batch = state_and_batch
    spec = registry.get("model", "ala2-ebm")
    torch.manual_seed(0)
    model = spec.build(from_dict(spec.Config, {**TINY_EBM_CONFIG, "sweeps": 4}, "ala2-ebm"), state)
    model.loss(batch).backward()  # initialises the flow's ActNorm on data
    x = batch["internal"].float()
    torsions = InternalCoordinates(tuple(map(tuple, state["z_matrix"])), tuple(state["roots"])).torsions
    turned = x.clone()
    turned[:, torsions] += 2 * math.pi * torch.tensor([1.0, -1.0] * 100)[: turned[:, torsions].shape[1]]
    with torch.no_grad():
        assert torch.allclose(model.log_prob({"internal": turned}), model.log_prob({"internal": x}), atol=1e-3)
        assert torch.allclose(model.log_prob({"internal": x}), model.base_log_prob(x) + model.g(x))
    samples = model.sample(64, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (64, x.shape[1]) and torch.isfinite(samples).all()
    assert bool((samples[:, torsions] > -math.pi).all() and (samples[:, torsions] <= math.pi).all())
    info = model.sampler_info()
    assert info["energy_evaluations_per_sample"] == 4 * (1 + info["mala_steps"])
    assert 0 < info["acceptance_independence"] <= 1 and 0 < info["acceptance_mala"] <= 1
    trace = model.chains(8, 10, every=5, generator=torch.Generator().manual_seed(0))
    assert trace.shape == (2, 8, x.shape[1])
