"""qm9-graph-conformer, p(G) p(x | G): the graph's edge features, SMILES -> graphs, the denoiser's symmetries and
its use of the graph, the bound's decomposition, samples (an unparseable string is an empty molecule) and the
domain's batches (bonds perceived from positions, graph strings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgm_science.tokenizer import Tokenizer
from dgm_science.domains.structures import edm, graph_conformers as gc, metrics

from tests.domains.structures import fixtures_qm9 as fixtures

pytestmark = pytest.mark.usefixtures("one_thread")

ELEMENTS = ["H", "C", "N", "O", "F"]


def _batch(n: int = 8) -> dict[str, torch.Tensor]:
    _, batch = fixtures.tiny_state_and_batch(n)
    orders = metrics.bond_orders(batch["positions"].numpy(), batch["atom_types"].numpy(), batch["n_atoms"].numpy())
    return {**batch, "bonds": torch.from_numpy(orders.astype(np.int64))}


def _table() -> np.ndarray:
    data = fixtures.sample_arrays()
    return gc.bond_length_table(data["positions"], np.clip(data["atom_types"], 0, None), data["n_atoms"], 5)


def _model(**overrides) -> gc.GraphThenConformers:
    data = fixtures.sample_arrays()
    smiles = [s for s in gc.heavy_atom_smiles([str(s) for s in data["smiles"]]) if s]
    cfg = gc.GraphConformerConfig(**{"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 40, "hidden_dim": 16,
                                     "egnn_layers": 2, "diffusion_steps": 20, "sampling_steps": 10, "ema_decay": 0.0,
                                     **overrides})
    torch.manual_seed(0)
    return gc.GraphThenConformers(cfg, Tokenizer.fit("smiles", smiles), ELEMENTS, 29, _table().tolist())


def test_edge_attributes_mark_bond_orders_and_the_pairs_two_and_three_bonds_apart():
    # H-C#C-C(=O)... as a path 0-1-2-3-4 with orders 1, 3, 1, 2 and a fifth atom of padding
    bonds = torch.zeros(1, 6, 6, dtype=torch.long)
    for i, j, o in [(0, 1, 1), (1, 2, 3), (2, 3, 1), (3, 4, 2)]:
        bonds[0, i, j] = bonds[0, j, i] = o
    mask = torch.tensor([[True] * 5 + [False]])
    attr = gc.edge_attributes(bonds, mask)[0]
    assert attr[1, 2].tolist() == [0, 0, 1, 0, 0] and attr[3, 4].tolist() == [0, 1, 0, 0, 0]
    assert attr[0, 2].tolist() == [0, 0, 0, 1, 0] and attr[0, 3].tolist() == [0, 0, 0, 0, 1]
    assert attr[0, 4].sum() == 0 and attr[:, 5].sum() == 0 and attr[5].sum() == 0
    assert torch.equal(attr, attr.transpose(0, 1)) and attr.diagonal(dim1=0, dim2=1).sum() == 0


def test_graphs_of_smiles_add_hydrogens_kekulize_and_reject_what_the_model_cannot_place():
    graphs, ok = gc.graphs_of_smiles(["CCO", "c1ccoc1", "[NH4+]", "CCCl", "C1CC", None, "C" * 30],
                                     ELEMENTS, 29)
    assert ok.tolist() == [True, True, False, False, False, False, False]
    assert graphs.n_atoms.tolist()[:2] == [9, 9] and graphs.n_atoms[2:].sum() == 0
    ethanol = graphs.bonds[0, :9, :9]
    assert int((ethanol > 0).sum()) == 2 * 8 and int(ethanol.max()) == 1
    furan = graphs.bonds[1, :9, :9]
    assert int((furan == 2).sum()) == 2 * 2 and int((furan == 1).sum()) == 2 * 7  # Kekulé: 2 double bonds
    heavy = graphs.atom_types[0, :9]
    assert sorted(heavy.tolist()) == [0] * 6 + [1, 1, 3]


def test_bond_length_table_reads_the_training_bonds():
    table = _table()
    assert 1.05 < table[0, 1, 1] < 1.12 and table[0, 1, 1] == table[1, 0, 1]  # C-H
    assert 1.48 < table[1, 1, 1] < 1.58 and 1.15 < table[1, 1, 3] < 1.25  # C-C, C#C
    assert table[:, :, 0].sum() == 0 and table[4, 4, 1] == 0  # no F-F bond in the data


def test_denoiser_is_e3_and_permutation_equivariant_and_reads_the_graph():
    torch.manual_seed(0)
    net = gc.GraphConformerDenoiser(5, 32, 3, torch.from_numpy(_table()).float()).double()
    for layer in net.layers:
        torch.nn.init.normal_(layer.coord_mlp[-1].weight, std=0.3)
    batch = _batch(6)
    model = gc.ConformerDiffusion(5, hidden_dim=8, n_layers=1, steps=10, sampling_steps=None, precision=1e-4,
                                  ema_decay=0.0, position_norm=1.0)
    (x,), layout = model.encode(batch)
    x = x.double()
    t = torch.rand(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = net(x, t, *layout.context)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    moved = (x @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)) * layout.spaces[0].mask.double()
    assert eps.abs().max() > 1e-2
    assert torch.allclose(net(moved, t, *layout.context), eps @ q.T, atol=1e-9)
    n0 = int(batch["n_atoms"][0])
    perm = torch.arange(x.shape[1])
    perm[:n0] = torch.randperm(n0, generator=torch.Generator().manual_seed(3))
    permuted = {**batch, "positions": batch["positions"].clone(), "atom_types": batch["atom_types"].clone(),
                "bonds": batch["bonds"].clone()}
    permuted["positions"][0] = batch["positions"][0, perm]
    permuted["atom_types"][0] = batch["atom_types"][0, perm]
    permuted["bonds"][0] = batch["bonds"][0][perm][:, perm]
    (x2,), layout2 = model.encode(permuted)
    eps2 = net(x2.double(), t, *layout2.context)
    assert torch.allclose(eps2[0], eps[0, perm], atol=1e-9) and torch.allclose(eps2[1:], eps[1:], atol=1e-12)
    # the graph is an input: the same positions with one bond order changed move the prediction
    edited = {**batch, "bonds": batch["bonds"].clone()}
    i, j = (batch["bonds"][0] == 1).nonzero()[0].tolist()
    edited["bonds"][0, i, j] = edited["bonds"][0, j, i] = 2
    (_,), layout3 = model.encode(edited)
    eps3 = net(x, t, *layout3.context)
    assert (eps3[0] - eps[0]).abs().max() > 1e-6 and torch.allclose(eps3[1:], eps[1:], atol=1e-12)


def test_low_noise_fraction_draws_that_share_of_t_from_the_lowest_tenth():
    model = _model(diffusion_steps=100, low_noise_fraction=0.75).conformer_model
    torch.manual_seed(0)
    t = model.training_times(20000, torch.device("cpu"))
    assert t.min() == 0 and t.max() == 100
    assert abs(float((t <= 10).float().mean()) - (0.75 + 0.25 * 11 / 101)) < 0.01


def test_log_prob_is_the_graph_models_plus_the_positions_bound_and_the_loss_falls():
    model = _model()
    batch = _batch(8)
    strings = gc.heavy_atom_smiles(metrics.molecules_smiles(batch["positions"].numpy(), batch["atom_types"].numpy(),
                                                            batch["n_atoms"].numpy()))
    batch["tokens"], too_long = model.tokenizer.encode_batch(strings, 40)
    assert too_long == 0
    model.eval()
    g = torch.Generator().manual_seed(0)
    total = model.log_prob(batch, generator=g)
    graph = model.graph_model.log_prob({"tokens": batch["tokens"]})
    positions = model.conformer_model.log_prob(batch, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(total, graph + positions) and (graph < 0).all() and torch.isfinite(positions).all()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert set(model.metrics_to_log()) == {"graph_nll_per_token", "positions_loss"}


def test_samples_place_every_parsed_graph_and_leave_the_rest_empty(monkeypatch):
    model = _model().eval()
    strings = ["CCO", "C1CC", "c1ccoc1", "CCCCCCCCCCCCCC", "OC=O"]  # an unclosed ring; 44 atoms > 29
    rows, _ = model.tokenizer.encode_batch(strings, 40)
    monkeypatch.setattr(model.graph_model, "sample", lambda n, **kw: rows[:n])
    out = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, edm.Conformers) and out.positions.shape[:2] == (5, 9)
    assert out.n_atoms.tolist() == [9, 0, 9, 0, 5]
    mask = torch.arange(out.positions.shape[1])[None, :] < out.n_atoms[:, None]
    assert (out.atom_types[~mask] == -1).all() and (out.positions[~mask] == 0).all()
    assert sorted(out.atom_types[4, :5].tolist()) == [0, 0, 1, 3, 3]
    placed = out.positions[[0, 2, 4]].double().sum(1) / out.n_atoms[[0, 2, 4]][:, None]
    assert placed.abs().max() < 1e-4 and out.positions[0, :9].abs().max() > 0.1
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(u, v) for u, v in zip(out, again))


def test_a_users_conformers_train_sample_evaluate_and_score_through_the_cli(tmp_path, capsys):
    """The whole chain on the tiny shipped SDF (H, C, N, O, F, S, Cl): the state carries the vocabulary and the
    bond lengths of the data's elements, the CLI trains, samples and evaluates, and the domain scores molecules."""
    import json
    import shlex

    from dgm_science import api, cli, registry
    from dgm_science.domains.structures.conformer_sources import ConformerOptions, prepare_conformers
    from dgm_science.domains.structures.data import load_npz

    sdf = fixtures.SAMPLE.parent / "user/conformers/tiny.sdf"
    data = tmp_path / "data"
    prepare_conformers(ConformerOptions(kind="conformers", path=str(sdf)), data, n_jobs=1)
    spec, domain = registry.get("model", "qm9-graph-conformer"), registry.get("domain", "conformers")
    state = domain.fit_state(data, spec, spec.Config(max_length=60))
    elements = state["elements"]
    assert {"S", "Cl"} <= set(elements) and "tokenizer" in state
    table = np.array(state["bond_lengths"])
    c, s = elements.index("C"), elements.index("S")
    assert table.shape == (len(elements), len(elements), 4) and 1.7 < table[c, s, 1] < 1.9
    config = {"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 60, "hidden_dim": 8,
                        "egnn_layers": 1, "diffusion_steps": 10, "sampling_steps": 5},
              "train": {"batch_size": 8, "max_steps": 6, "val_every_steps": 3, "val_batches": 1},
              "sample": {"n": 12, "batch_size": 6}}
    run = tmp_path / "run"
    for argv in (f"dgm train --model qm9-graph-conformer --data {data} --config '{json.dumps(config)}' --seed 0 "
                 f"--out {run}/model.ckpt --threads 1",
                 f"dgm sample --checkpoint {run}/model.ckpt -n 12 --out {run}/samples.sdf --seed 0 --threads 1",
                 f"dgm evaluate --domain conformers --samples {run}/samples.sdf --checkpoint {run}/model.ckpt "
                 f"--reference {data} --out {run}/metrics.json"):
        assert cli.main(shlex.split(argv)[1:]) == 0, capsys.readouterr().err
    out = json.loads((run / "metrics.json").read_text())
    assert out["n_samples"] == 12 and 0 <= out["molecule_stability"] <= out["validity"] + 1e-9
    loaded = api.load(run / "model.ckpt", device="cpu")
    test = load_npz(data / "test.npz")
    items = [([elements[t] for t in test["atom_types"][k, :n]], test["positions"][k, :n].astype(np.float64))
             for k, n in enumerate(test["n_atoms"].tolist())]
    batch, keep = domain.batch_of(items + [None, (["C", "C"], np.zeros((2, 3)))], spec, loaded.config.model,
                                  loaded.state)
    assert keep and max(keep) < len(items) and batch["tokens"].shape[0] == len(keep)
    assert torch.isfinite(loaded.model.eval().log_prob(batch, generator=torch.Generator().manual_seed(0))).all()
