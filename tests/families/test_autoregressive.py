"""The autoregressive family's likelihood: right-padded batches go through the network packed (the padding costs
nothing) and give the padded batch's figures."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgm_science.backbones import CausalTransformer
from dgm_science.families.autoregressive import AutoregressiveModel

PAD, BOS, EOS, VOCAB = 0, 1, 2, 9


def _model() -> AutoregressiveModel:
    torch.manual_seed(0)
    network = CausalTransformer(VOCAB, d_model=16, n_layers=2, n_heads=2, max_length=16, dropout=0.0)
    return AutoregressiveModel(network, pad_id=PAD, bos_id=BOS, eos_id=EOS)


def _padded_reference(model: AutoregressiveModel, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log p and states of the whole padded batch, zero at padding (the unpacked computation)."""
    states = model.network.hidden(tokens[:, :-1])
    targets = tokens[:, 1:]
    log_p = -F.cross_entropy(model.network.head(states).transpose(1, 2).float(), targets, reduction="none")
    active = (targets != PAD)
    return log_p * active, states * active[..., None]


def test_right_padded_batches_run_packed_and_match_the_padded_computation_with_gradients(monkeypatch):
    model = _model()
    rows = [[3, 4, 5, 6, 7, 8, 3], [3], [4, 4, 5], []]
    tokens = torch.full((len(rows), 11), PAD)
    for i, row in enumerate(rows):
        tokens[i, : len(row) + 2] = torch.tensor([BOS, *row, EOS])
    packed_calls = []
    original = model.network.hidden_packed
    monkeypatch.setattr(model.network, "hidden_packed", lambda *a, **k: packed_calls.append(1) or original(*a, **k))
    log_p, states = model.token_log_probs_and_hidden({"tokens": tokens})
    want_log_p, want_states = _padded_reference(model, tokens)
    assert packed_calls == [1]
    assert torch.allclose(log_p, want_log_p, atol=1e-5) and torch.allclose(states, want_states, atol=1e-5)
    assert bool((log_p[0, 8:] == 0).all()) and bool((states[1, 2:] == 0).all())
    loss = model.loss({"tokens": tokens})
    assert torch.allclose(loss, -want_log_p.sum() / 15, atol=1e-6)  # 8 + 2 + 4 + 1 targets (x and <eos>)
    grads = torch.autograd.grad(model.log_prob({"tokens": tokens}).sum(), list(model.parameters()))
    want = torch.autograd.grad(want_log_p.sum(), list(model.parameters()))
    assert all(torch.allclose(g, w, atol=1e-5) for g, w in zip(grads, want))


def test_a_batch_with_padding_inside_a_row_takes_the_padded_path_and_is_unchanged(monkeypatch):
    model = _model()
    tokens = torch.tensor([[BOS, 3, PAD, 4, EOS], [BOS, 5, 6, EOS, PAD]])
    monkeypatch.setattr(model.network, "hidden_packed", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    log_p, states = model.token_log_probs_and_hidden({"tokens": tokens})
    want_log_p, _ = _padded_reference(model, tokens)
    assert torch.allclose(log_p, want_log_p, atol=1e-6)
    assert torch.allclose(model.log_prob({"tokens": tokens}), want_log_p.sum(1), atol=1e-6)
