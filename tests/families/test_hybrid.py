"""The hybrid family: p(x, y) = p(y | x) p(x) on one network, and its discriminative twin."""

from __future__ import annotations

import math

import pytest
import torch

from dgm_science.backbones import CausalTransformer
from dgm_science.families.autoregressive import AutoregressiveModel
from dgm_science.families.hybrid import DiscriminativeRegressor, HybridModel, gaussian_nll

PAD, BOS, EOS, VOCAB = 0, 1, 2, 6


def _density(seed: int = 0) -> AutoregressiveModel:
    torch.manual_seed(seed)
    network = CausalTransformer(VOCAB, d_model=16, n_layers=1, n_heads=2, max_length=12, dropout=0.0)
    return AutoregressiveModel(network, pad_id=PAD, bos_id=BOS, eos_id=EOS)


def _batch(rows: list[list[int]], y: list[list[float]]) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows) + 2
    tokens = torch.full((len(rows), width), PAD)
    for i, row in enumerate(rows):
        tokens[i, : len(row) + 2] = torch.tensor([BOS, *row, EOS])
    return {"tokens": tokens, "y": torch.tensor(y, dtype=torch.float32)}


def test_log_prob_is_the_density_models_and_the_loss_adds_its_weighted_nll_per_token():
    model = HybridModel(_density(), 2, density_weight=0.5, head_hidden=8, dropout=0.0).eval()
    batch = _batch([[3, 4, 5], [3]], [[0.5, -1.0], [2.0, 0.0]])
    assert torch.equal(model.log_prob(batch), model.density.log_prob(batch))
    mean, variance = model.predict(batch)
    assert mean.shape == variance.shape == (2, 2) and bool((variance > 0).all())
    nll_y = gaussian_nll(batch["y"], mean, variance).mean()
    nll_x = -model.density.log_prob(batch).sum() / 6  # 4 + 2 predicted tokens (x and <eos>)
    assert torch.allclose(model.loss(batch), nll_y + 0.5 * nll_x, atol=1e-6)
    per_example = gaussian_nll(batch["y"], mean, variance).sum(1) - 0.5 * model.density.log_prob(batch) / torch.tensor(
        [4.0, 2.0])
    assert torch.allclose(model.validation_loss(batch), per_example, atol=1e-6)


def test_a_missing_target_contributes_nothing_to_the_loss_or_its_gradient():
    model = HybridModel(_density(), 2, density_weight=1.0, head_hidden=8, dropout=0.0)
    batch = _batch([[3, 4], [5, 5, 4]], [[0.3, math.nan], [1.0, -0.2]])
    loss = model.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    mean, variance = model.predict(batch)
    observed = gaussian_nll(batch["y"], mean, variance)[torch.isfinite(batch["y"])]
    nll_x = -model.density.log_prob(batch).sum() / 7
    assert torch.allclose(loss, observed.mean() + nll_x, atol=1e-5)


def test_the_regressor_has_no_density_and_says_so():
    model = DiscriminativeRegressor(_density(), 1, head_hidden=8, dropout=0.0)
    batch = _batch([[3, 4]], [[1.0]])
    assert model.likelihood == "none" and HybridModel.likelihood == "exact"
    with pytest.raises(TypeError, match="no p\\(x\\)"):
        model.log_prob(batch)
    with pytest.raises(TypeError, match="no p\\(x\\)"):
        model.sample(2)
    mean, variance = model.predict(batch)
    assert torch.allclose(model.loss(batch), gaussian_nll(batch["y"], mean, variance).mean())
    assert torch.allclose(model.validation_loss(batch), gaussian_nll(batch["y"], mean, variance).sum(1))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_hybrid_needs_a_positive_density_weight(bad):
    with pytest.raises(ValueError, match="density_weight"):
        HybridModel(_density(), 1, density_weight=bad)
    with pytest.raises(ValueError, match="target"):
        HybridModel(_density(), 0)


def test_training_learns_a_property_of_x_and_the_density_of_x():
    """y = the number of token 3 in x: the head must read the whole sequence; the hybrid must also
    learn p(x), so that sequences unlike its training data (token 5 never seen) get a lower log p."""
    generator = torch.Generator().manual_seed(0)
    rows = [torch.randint(3, 5, (int(n),), generator=generator).tolist()
            for n in torch.randint(2, 8, (256,), generator=generator)]
    batch = _batch(rows, [[float(r.count(3))] for r in rows])
    model = HybridModel(_density(1), 1, density_weight=1.0, head_hidden=32, dropout=0.0)
    before = model.loss(batch).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    model.eval()
    mean, _ = model.predict(batch)
    assert model.loss(batch).item() < before - 1.0
    assert (mean[:, 0] - batch["y"][:, 0]).abs().mean() < 0.5
    unseen = _batch([[5, 5, 5, 5]], [[0.0]])
    seen = _batch([[3, 4, 4, 3]], [[2.0]])
    assert model.log_prob(unseen).item() < model.log_prob(seen).item() - 5
