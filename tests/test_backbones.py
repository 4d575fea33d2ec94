import pytest
import torch

from dgm_science.backbones import CausalTransformer


@pytest.mark.parametrize("condition_dim", [0, 3])
def test_cached_steps_match_the_full_causal_forward(condition_dim):
    torch.manual_seed(0)
    net = CausalTransformer(11, d_model=32, n_layers=2, n_heads=4, max_length=12, dropout=0.0,
                            condition_dim=condition_dim).eval()
    tokens = torch.randint(0, 11, (5, 9))
    condition = torch.randn(5, condition_dim) if condition_dim else None
    full = net(tokens, condition)
    cache = net.new_cache(5, net.head.weight)
    for t in range(9):
        step = net.step(tokens[:, t], cache, condition)
        assert torch.allclose(step, full[:, t], atol=1e-5)
    assert cache.length == 9


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    net = CausalTransformer(7, d_model=16, n_layers=1, n_heads=2, max_length=8, dropout=0.0).eval()
    a = torch.randint(0, 7, (2, 6))
    b = a.clone()
    b[:, 4:] = (b[:, 4:] + 1) % 7
    assert torch.allclose(net(a)[:, :4], net(b)[:, :4], atol=1e-6)
    assert not torch.allclose(net(a)[:, 4:], net(b)[:, 4:])


def test_length_limits_are_enforced():
    net = CausalTransformer(7, d_model=16, n_layers=1, n_heads=2, max_length=3)
    with pytest.raises(ValueError, match="max_length"):
        net(torch.zeros(1, 4, dtype=torch.long))
    cache = net.new_cache(1, net.head.weight)
    for _ in range(3):
        net.step(torch.zeros(1, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="max_length"):
        net.step(torch.zeros(1, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="divisible"):
        CausalTransformer(7, d_model=10, n_heads=3)


def test_cpu_bf16_autocast_keeps_attention_in_float32_and_matches_float32(monkeypatch):
    """Under CPU bfloat16 autocast (the design loop's bf16-mixed updates) the matmuls run in bf16 but attention
    gets float32 inputs (the fused CPU kernel's bf16 backward is ~6x slower); outputs and gradients stay close
    to float32's and causal."""
    import torch.nn.functional as F

    from dgm_science import backbones

    torch.manual_seed(0)
    net = CausalTransformer(11, d_model=32, n_layers=2, n_heads=4, max_length=16, dropout=0.0)
    tokens = torch.randint(0, 11, (6, 14))
    full = net(tokens)
    grads = torch.autograd.grad(full.logsumexp(-1).sum(), list(net.parameters()))
    seen, attention = [], F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append(q.dtype)
        return attention(q, k, v, **kwargs)

    monkeypatch.setattr(backbones.F, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = net(tokens)
    assert seen == [torch.float32, torch.float32] and mixed.dtype == torch.bfloat16
    assert torch.allclose(mixed.float(), full, atol=0.05, rtol=0.05)
    mixed_grads = torch.autograd.grad(mixed.float().logsumexp(-1).sum(), list(net.parameters()))
    cosine = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in grads]),
                                                   torch.cat([g.flatten() for g in mixed_grads]), dim=0)
    assert cosine > 0.99
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 11
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(changed)[:, :10], mixed[:, :10])


@pytest.mark.parametrize(("condition_dim", "group_rows"), [(0, 64), (3, 64), (3, 2)])
def test_packed_states_equal_the_padded_batch_at_each_rows_prefix_with_the_same_gradients(condition_dim, group_rows,
                                                                                          monkeypatch):
    """``hidden_packed`` runs the linear layers on the first ``lengths`` positions of each row only (the
    padding after them costs nothing) and gives ``hidden``'s states there, in the rows' order, and the same
    gradients, whether attention runs in one group or in groups of rows sorted by length."""
    from dgm_science import backbones

    monkeypatch.setattr(backbones, "PACKED_GROUP_ROWS", group_rows)
    torch.manual_seed(0)
    net = CausalTransformer(11, d_model=32, n_layers=2, n_heads=4, max_length=12, dropout=0.0,
                            condition_dim=condition_dim)
    tokens = torch.randint(0, 11, (5, 10))
    lengths = torch.tensor([10, 3, 0, 7, 1])
    condition = torch.randn(5, condition_dim) if condition_dim else None
    rows: list[int] = []
    hook = net.blocks[0].qkv.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    packed = net.hidden_packed(tokens, lengths, condition)
    hook.remove()
    assert rows == [int(lengths.sum())] and packed.shape == (int(lengths.sum()), 32)
    active = torch.arange(10) < lengths[:, None]
    padded = net.hidden(tokens, condition)[active]
    assert torch.allclose(packed, padded, atol=1e-5)
    weights = torch.randn_like(packed)
    grads = torch.autograd.grad((packed * weights).sum(), list(net.parameters()), allow_unused=True)
    expected = torch.autograd.grad((padded * weights).sum(), list(net.parameters()), allow_unused=True)
    for got, want in zip(grads, expected):
        assert (got is None) == (want is None)
        if got is not None:
            assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(TypeError, match="causal"):
        CausalTransformer(11, d_model=32, n_layers=1, n_heads=4, causal=False).hidden_packed(tokens, lengths)
