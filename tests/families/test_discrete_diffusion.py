"""DiGress-style discrete graph diffusion: transitions, posterior, bound, sampling, training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.families.discrete_diffusion import (
    CategoricalGraphs, DiscreteGraphDiffusion, cosine_beta_schedule_discrete, sample_categorical,
)

NODE_M = [0.6, 0.3, 0.1]
EDGE_M = [0.7, 0.2, 0.1]


class TinyDenoiser(nn.Module):
    """A small learnable denoiser: per-node / per-pair linear maps of (class, time, degree)."""

    def __init__(self, kx: int, ke: int) -> None:
        super().__init__()
        self.node = nn.Linear(kx + 2, kx)
        self.edge = nn.Linear(ke + 1, ke)

    def forward(self, nodes, edges, node_mask, time):
        degree = edges[..., 1:].sum((-2, -1)).unsqueeze(-1)
        node_logits = self.node(torch.cat([nodes, degree, time[:, None, None].expand(*nodes.shape[:2], 1)], -1))
        edge_logits = self.edge(torch.cat([edges, time[:, None, None, None].expand(*edges.shape[:3], 1)], -1))
        return node_logits, 0.5 * (edge_logits + edge_logits.transpose(1, 2))


class Oracle(nn.Module):
    """A denoiser that knows the clean graph: logits 1e4 on the true classes."""

    def __init__(self, clean: CategoricalGraphs, kx: int, ke: int) -> None:
        super().__init__()
        self.clean, self.kx, self.ke = clean, kx, ke
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, nodes, edges, node_mask, time):
        return 1e4 * F.one_hot(self.clean.nodes, self.kx).float(), 1e4 * F.one_hot(self.clean.edges, self.ke).float()


def random_graphs(b: int, n: int, kx: int, ke: int, seed: int = 0, sizes: list[int] | None = None) -> CategoricalGraphs:
    g = torch.Generator().manual_seed(seed)
    sizes_t = torch.tensor(sizes) if sizes is not None else torch.randint(1, n + 1, (b,), generator=g)
    mask = torch.arange(n) < sizes_t[:, None]
    nodes = torch.randint(0, kx, (b, n), generator=g) * mask
    upper = torch.randint(0, ke, (b, n, n), generator=g).triu(1)
    pair = mask[:, :, None] & mask[:, None, :]
    edges = (upper + upper.transpose(1, 2)) * pair
    return CategoricalGraphs(nodes, edges, mask)


def family(steps: int = 10, n: int = 5, denoiser: nn.Module | None = None, **kw) -> DiscreteGraphDiffusion:
    sizes = torch.ones(n + 1)
    sizes[0] = 0
    return DiscreteGraphDiffusion(denoiser or TinyDenoiser(3, 3), NODE_M, EDGE_M, sizes, steps=steps, **kw)


# -- (a) forward noising ---------------------------------------------------------------------------


def test_schedule_is_digress_cosine():
    betas = cosine_beta_schedule_discrete(100)
    assert betas.shape == (101,) and (betas[:-1] > 0).all() and (betas <= 1).all()
    model = family(steps=100)
    ab = model.node_transition.alpha_bars.double()
    assert ab[0] == 1 and (ab[1:] < ab[:-1]).all()
    expected = torch.cumprod(1 - betas[1:].clamp(max=0.9999), 0)
    assert torch.allclose(ab[1:], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["node_transition", "edge_transition"])
def test_cumulative_transition_is_product_of_steps_and_ends_at_marginals(kind):
    model = family(steps=30)
    transition = getattr(model, kind)
    m = transition.marginals
    product = torch.eye(3)
    for t in range(1, 31):
        step = transition.step_matrix(torch.tensor([t]))[0]
        assert torch.allclose(step.sum(1), torch.ones(3), atol=1e-6)
        product = product @ step
        qbar = transition.cumulative_matrix(torch.tensor([t]))[0]
        assert torch.allclose(qbar, product, atol=1e-5), t
        assert torch.allclose(qbar.sum(1), torch.ones(3), atol=1e-6)
        x0 = torch.eye(3)[None]
        assert torch.allclose(transition.forward_probs(x0, torch.tensor([t])), x0 @ qbar, atol=1e-6)
    assert torch.allclose(product, m.expand(3, 3), atol=1e-3)


def test_noised_class_frequencies_match_q_xt_given_x0():
    model = family(steps=20, n=6)
    clean = random_graphs(4000, 6, 3, 3, seed=1)
    t = torch.full((4000,), 7)
    noisy = model.noise(clean, t, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy.edges, noisy.edges.transpose(1, 2))
    assert (noisy.edges.diagonal(dim1=1, dim2=2) == 0).all()
    pair = clean.node_mask[:, :, None] & clean.node_mask[:, None, :]
    assert (noisy.nodes[~clean.node_mask] == 0).all() and (noisy.edges[~pair] == 0).all()
    upper = pair & torch.ones(6, 6, dtype=torch.bool).triu(1)
    for transition, x0, xt, where in (
        (model.node_transition, clean.nodes, noisy.nodes, clean.node_mask),
        (model.edge_transition, clean.edges, noisy.edges, upper),
    ):
        qbar = transition.cumulative_matrix(torch.tensor([7]))[0]
        for c in range(3):
            sel = where & (x0 == c)
            count = int(sel.sum())
            assert count > 500
            freq = torch.bincount(xt[sel], minlength=3).double() / count
            sigma = (qbar[c].double() * (1 - qbar[c].double()) / count).sqrt()
            assert ((freq - qbar[c].double()).abs() <= 5 * sigma + 1e-9).all(), (c, freq, qbar[c])


def test_sample_categorical_frequencies():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3, 0.0]).expand(20000, 6)
    draws = sample_categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=6).double() / 20000
    assert freq[0] == freq[2] == freq[5] == 0 and torch.allclose(freq, probs[0].double(), atol=0.015)
    unnormalised = sample_categorical(3 * probs[:5], torch.Generator().manual_seed(1))
    assert ((unnormalised == 1) | (unnormalised == 3) | (unnormalised == 4)).all()


# -- (b) posterior ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [2, 5, 9])
def test_posterior_is_bayes_rule(t):
    model = family(steps=10)
    transition = model.node_transition
    q_t = transition.step_matrix(torch.tensor([t]))[0].double()
    qbar_prev = transition.cumulative_matrix(torch.tensor([t - 1]))[0].double()
    eye = torch.eye(3)
    for c, i in itertools.product(range(3), range(3)):
        joint = torch.tensor([qbar_prev[c, j] * q_t[j, i] for j in range(3)])
        by_hand = joint / joint.sum()
        got = transition.posterior(eye[i][None], eye[c][None], torch.tensor([t]))[0].double()
        assert torch.allclose(got.sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6)
        assert (got >= 0).all()
        assert torch.allclose(got, by_hand, atol=1e-5), (c, i, got, by_hand)


def test_reverse_step_is_the_posterior_mixture_over_predicted_x0():
    model = family(steps=10)
    transition = model.edge_transition
    t = torch.tensor([4])
    eye = torch.eye(3)
    x0_probs = torch.tensor([[0.2, 0.5, 0.3]])
    for i in range(3):
        xt = eye[i][None]
        q_t = transition.step_matrix(t)[0]
        qbar_t = transition.cumulative_matrix(t)[0]
        evidence_ok = all(qbar_t[c, i] > 0 for c in range(3))
        assert evidence_ok
        mixture = sum(x0_probs[0, c] * transition.posterior(xt, eye[c][None], t)[0] for c in range(3))
        got = transition.reverse_probs(xt, x0_probs, t)[0]
        assert torch.allclose(got, mixture, atol=1e-6) and torch.isclose(got.sum(), torch.tensor(1.0))
        assert q_t.shape == (3, 3)
    at_one = transition.reverse_probs(eye[1][None], x0_probs, torch.tensor([1]))[0]
    assert torch.allclose(at_one, x0_probs[0], atol=1e-6)


# -- (c) the bound ---------------------------------------------------------------------------------


def test_perfect_denoiser_has_zero_step_kl_and_bound_below_log_pn():
    clean = random_graphs(32, 5, 3, 3, seed=3)
    model = family(steps=50, denoiser=Oracle(clean, 3, 3), elbo_samples=3)
    for t in (2, 10, 25, 50):
        kl = model.kl_step(clean, torch.full((32,), t))
        assert kl.abs().max() < 1e-4, (t, kl)
    terms = model.elbo_terms(clean)
    assert terms["reconstruction"].abs().max() < 1e-4
    assert (terms["kl_prior"] >= 0).all() and terms["kl_prior"].max() < 1e-2
    lp = model.log_prob(clean)
    assert lp.shape == (32,) and torch.isfinite(lp).all() and (lp < 0).all()
    assert (lp <= terms["log_num_nodes"] + 1e-6).all()
    assert torch.allclose(terms["log_num_nodes"], torch.full((32,), math.log(1 / 5)))


def test_imperfect_denoiser_pays_positive_kl():
    clean = random_graphs(16, 5, 3, 3, seed=4)
    model = family(steps=50)
    kl = model.kl_step(clean, torch.full((16,), 20))
    assert (kl >= 0).all() and kl.sum() > 0
    lp = model.log_prob(clean)
    assert (lp < model.log_num_nodes(clean.node_mask)).all()


def _exact_log_likelihoods(model: DiscreteGraphDiffusion, n: int) -> dict[tuple, float]:
    """log p(G_0) of every graph with n nodes, by summing the reverse chain over all G_1..G_T."""
    states = [(nodes, edges) for nodes in itertools.product(range(3), repeat=n)
              for edges in itertools.product(range(3), repeat=n * (n - 1) // 2)]
    rows, cols = torch.triu_indices(n, n, offset=1)

    def graphs_of(batch):
        nodes = torch.tensor([s[0] for s in batch])
        edges = torch.zeros(len(batch), n, n, dtype=torch.long)
        edges[:, rows, cols] = torch.tensor([s[1] for s in batch])
        return CategoricalGraphs(nodes, edges + edges.transpose(1, 2), torch.ones(len(batch), n, dtype=torch.bool))

    graphs = graphs_of(states)
    onehot_nodes, onehot_edges, _ = model._one_hot(graphs)
    upper_onehot = onehot_edges[:, rows, cols]

    def joint(node_probs, upper_probs):
        """P(state' | state) = prod over nodes and upper pairs: (S, S')."""
        p = torch.ones(len(states), len(states), dtype=torch.float64)
        for v in range(n):
            p = p * (node_probs[:, v].double() @ onehot_nodes[:, v].double().T)
        for e in range(len(rows)):
            p = p * (upper_probs[:, e].double() @ upper_onehot[:, e].double().T)
        return p

    node_m, edge_m = model.node_transition.marginals, model.edge_transition.marginals
    marginal = joint(node_m.expand(len(states), n, 3), edge_m.expand(len(states), len(rows), 3))[0]
    with torch.no_grad():
        for step in range(model.steps, 0, -1):
            t = torch.full((len(states),), step)
            node_logits, edge_logits = model.predict(graphs, t)
            node_probs = model.node_transition.reverse_probs(onehot_nodes, node_logits.softmax(-1), t)
            edge_probs = model.edge_transition.reverse_probs(onehot_edges, edge_logits.softmax(-1), t)
            marginal = marginal @ joint(node_probs, edge_probs[:, rows, cols])
    return {s: math.log(p) for s, p in zip(states, marginal.tolist())}


def test_bound_is_below_the_exact_likelihood_and_the_model_is_normalised():
    torch.manual_seed(0)
    sizes = torch.tensor([0.0, 0.0, 1.0])
    model = DiscreteGraphDiffusion(TinyDenoiser(3, 3), NODE_M, EDGE_M, sizes, steps=4, elbo_samples=1)
    exact = _exact_log_likelihoods(model, 2)
    assert abs(sum(math.exp(v) for v in exact.values()) - 1.0) < 1e-5
    for nodes, edges in [((0, 0), (0,)), ((1, 2), (1,)), ((2, 2), (2,))]:
        e = torch.zeros(2, 2, dtype=torch.long)
        e[0, 1] = e[1, 0] = edges[0]
        graph = CategoricalGraphs(torch.tensor([nodes]).repeat(3000, 1), e.repeat(3000, 1, 1),
                                  torch.ones(3000, 2, dtype=torch.bool))
        with torch.no_grad():
            estimates = model.log_prob(graph).double()
        bound, stderr = estimates.mean().item(), estimates.std().item() / math.sqrt(3000)
        assert bound <= exact[(nodes, edges)] + 4 * stderr, (nodes, edges, bound, exact[(nodes, edges)])


# -- (d) sampling ------------------------------------------------------------------------------------


def test_family_samples_are_seeded_symmetric_and_masked():
    torch.manual_seed(0)
    model = family(steps=8, n=6)
    a = model.sample(50, generator=torch.Generator().manual_seed(3))
    b = model.sample(50, generator=torch.Generator().manual_seed(3))
    c = model.sample(50, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.nodes, b.nodes) and torch.equal(a.edges, b.edges)
    assert not (torch.equal(a.nodes, c.nodes) and torch.equal(a.edges, c.edges))
    assert torch.equal(a.edges, a.edges.transpose(1, 2)) and (a.edges.diagonal(dim1=1, dim2=2) == 0).all()
    pair = a.node_mask[:, :, None] & a.node_mask[:, None, :]
    assert (a.edges[~pair] == 0).all() and (a.nodes[~a.node_mask] == 0).all()
    assert (a.node_mask.sum(1) >= 1).all()
    model.sample(3)
    model.sample(3, temperature=0.5)
    with pytest.raises(ValueError):
        model.sample(0)
    with pytest.raises(ValueError):
        model.sample(2, condition=torch.zeros(2, 1))


def test_size_distribution_is_sampled():
    model = DiscreteGraphDiffusion(TinyDenoiser(3, 3), NODE_M, EDGE_M, [0.0, 0.0, 0.25, 0.0, 0.75], steps=2)
    sizes = model.sample_num_nodes(8000, torch.Generator().manual_seed(0))
    freq = torch.bincount(sizes, minlength=5).double() / 8000
    assert freq[0] == freq[1] == freq[3] == 0 and abs(freq[4] - 0.75) < 0.03


def molecule_model(molecule_state, **overrides):
    from dgm_science import registry
    from dgm_science.config import from_dict

    spec = registry.get("model", "graph-diffusion")
    cfg = {"hidden_dim": 32, "edge_dim": 16, "global_dim": 16, "n_layers": 2, "n_heads": 4, "dropout": 0.0,
           "diffusion_steps": 20, **overrides}
    torch.manual_seed(0)
    return spec.build(from_dict(spec.Config, cfg, "graph-diffusion"), molecule_state)


def test_molecule_samples_are_dense_graphs(molecule_state):
    from dgm_science.domains.molecules.dense import DenseGraphs, decode_dense

    model = molecule_model(molecule_state).eval()
    a = model.sample(12, generator=torch.Generator().manual_seed(5))
    b = model.sample(12, generator=torch.Generator().manual_seed(5))
    c = model.sample(12, generator=torch.Generator().manual_seed(6))
    assert isinstance(a, DenseGraphs)
    assert torch.equal(a.atoms, b.atoms) and torch.equal(a.bonds, b.bonds)
    assert not (torch.equal(a.atoms, c.atoms) and torch.equal(a.bonds, c.bonds))
    n = molecule_state["max_atoms"]
    assert a.atoms.shape == (12, n) and a.bonds.shape == (12, n, n)
    assert a.atoms.dtype == a.bonds.dtype == torch.long
    assert torch.equal(a.bonds, a.bonds.transpose(1, 2)) and (a.bonds.diagonal(dim1=1, dim2=2) == 0).all()
    real = a.atoms > 0
    assert (real.long().diff(dim=1) <= 0).all(), "real atoms come first"
    assert (a.atoms <= len(molecule_state["atom_types"])).all() and (a.bonds <= 3).all()
    assert (a.bonds[~(real[:, :, None] & real[:, None, :])] == 0).all()
    smiles, _ = decode_dense(a, molecule_state["atom_types"])
    assert len(smiles) == 12


def test_cycle_counts_match_brute_force():
    from dgm_science.domains.molecules.graph_diffusion import cycle_counts

    g = torch.Generator().manual_seed(0)
    n = 7
    for _ in range(15):
        upper = (torch.rand(n, n, generator=g) < 0.45).float().triu(1)
        a = upper + upper.T
        cycles = {k: set() for k in range(3, 7)}
        for k in range(3, 7):
            for path in itertools.permutations(range(n), k):
                if all(a[path[i], path[(i + 1) % k]] for i in range(k)):
                    cycles[k].add(frozenset(frozenset((path[i], path[(i + 1) % k])) for i in range(k)))
        per_node, per_graph = cycle_counts(a[None])
        expected_graph = torch.tensor([float(len(cycles[k])) for k in range(3, 7)])
        expected_node = torch.tensor([[float(sum(any(v in e for e in c) for c in cycles[k])) for k in (3, 4, 5)]
                                      for v in range(n)])
        assert torch.allclose(per_graph[0], expected_graph), (per_graph, expected_graph)
        assert torch.allclose(per_node[0], expected_node)


# -- (e) training ------------------------------------------------------------------------------------


def test_padding_is_ignored_by_the_loss():
    model = family(steps=10, n=5)
    clean = random_graphs(8, 5, 3, 3, seed=6, sizes=[2, 3, 5, 1, 4, 3, 2, 5])
    garbage_nodes = clean.nodes.masked_fill(~clean.node_mask, 2)
    pair = clean.node_mask[:, :, None] & clean.node_mask[:, None, :]
    garbage_edges = clean.edges.masked_fill(~pair, 1)
    torch.manual_seed(7)
    a = model.loss(clean)
    torch.manual_seed(7)
    b = model.loss(CategoricalGraphs(garbage_nodes, garbage_edges, clean.node_mask))
    assert torch.equal(a, b)


def test_loss_falls_and_bound_rises_on_real_molecules(moses_smiles, molecule_state):
    from dgm_science.domains.molecules.dense import smiles_to_dense_batch

    model = molecule_model(molecule_state, diffusion_steps=50)
    batch, keep = smiles_to_dense_batch(moses_smiles[:32], molecule_state["atom_types"], molecule_state["max_atoms"])
    assert len(keep) == 32

    @torch.no_grad()
    def evaluate():
        torch.manual_seed(123)
        loss = sum(model.loss(batch).item() for _ in range(8)) / 8
        return loss, model.log_prob(batch).mean().item()

    loss_before, bound_before = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(1)
    for _ in range(60):
        loss = model.loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss_after, bound_after = evaluate()
    assert loss_after < 0.6 * loss_before, (loss_before, loss_after)
    assert bound_after > bound_before, (bound_before, bound_after)
    model.eval()
    lp = model.log_prob(batch)
    assert lp.shape == (32,) and torch.isfinite(lp).all() and (lp < 0).all()
