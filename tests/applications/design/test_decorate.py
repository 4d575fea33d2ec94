"""``dgm decorate``: scaffold decoration by inpainting (graph-diffusion) and template-constrained
sampling (smiles-arm); the guarantees each route gives, and its errors through the real CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from rdkit import Chem

from dgm_science import api, checkpoint, cli
from dgm_science.config import SampleConfig, TrainConfig, from_dict
from dgm_science.applications.design import decorate
from dgm_science.tokenizer import Tokenizer
from dgm_science.families.autoregressive import Slot
from dgm_science.registry import get

TWO_POINTS = "c1ccc(*)cc1*"
GROUPS = ["C", "O", "N", "F", "Cl", "Br", "CC", "OC", "C(=O)O", "C#N", "C(F)(F)F", "c2ccccc2", "N2CCOCC2", "C(=O)N",
          "S(C)(=O)=O", "CO"]
META = sorted({Chem.MolToSmiles(Chem.MolFromSmiles(f"c1cc({a})cc({b})c1")) for a in GROUPS for b in GROUPS})
"""136 meta-disubstituted benzenes: a tiny model learns them in seconds, so decorating TWO_POINTS
with it gives mostly valid molecules."""
TINY = {
    "graph-diffusion": {"hidden_dim": 16, "edge_dim": 8, "global_dim": 8, "n_layers": 1, "n_heads": 2,
                        "dropout": 0.0, "diffusion_steps": 8},
    "graph-vae": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 80, "latent_dim": 4,
                  "encoder_hidden": 16, "encoder_layers": 1},
}


def untrained_checkpoint(path, name, state):
    spec = get("model", name)
    cfg = from_dict(spec.Config, TINY[name], "m")
    torch.manual_seed(0)
    model = spec.build(cfg, state)
    checkpoint.save(path, domain="molecules", model_name=name,
                    config=api.RunConfig(cfg, TrainConfig(), SampleConfig(batch_size=64)).to_dict(),
                    state_dict=model.state_dict(), domain_state=state)
    return path


@pytest.fixture(scope="module")
def arm(tmp_path_factory, train_tiny_arm):
    """A tiny smiles-arm trained briefly on META."""
    path, _, _ = train_tiny_arm(tmp_path_factory.mktemp("arm"), META[:-16], META[-16:],
                                model={"d_model": 32, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "max_length": 100},
                                steps=300, lr=5e-3)
    return path


@pytest.fixture(scope="module")
def diffusion(tmp_path_factory, molecule_state):
    return untrained_checkpoint(tmp_path_factory.mktemp("gd") / "gd.ckpt", "graph-diffusion", molecule_state)


def test_retention_is_an_induced_match_with_substituents_only_at_attachment_points():
    meta = decorate.parse_scaffold(TWO_POINTS)  # 1,3-disubstituted benzene
    assert meta.attachments.count(1) == 2 and meta.heavy_atoms == 6
    check = {s: decorate.scaffold_retention(Chem.MolFromSmiles(s), meta) for s in
             ["Cc1cccc(CO)c1", "Cc1ccccc1", "Cc1ccccc1C", "Cc1ccc(C)cc1", "Cc1cc(C)cc(C)c1", "c1ccc2ccccc2c1",
              "CC1=CC=CC(C)C1"]}
    assert check == {"Cc1cccc(CO)c1": (True, True), "Cc1ccccc1": (True, False), "Cc1ccccc1C": (False, False),
                     "Cc1ccc(C)cc1": (False, False), "Cc1cc(C)cc(C)c1": (False, False),
                     "c1ccc2ccccc2c1": (False, False), "CC1=CC=CC(C)C1": (False, False)}
    one = decorate.parse_scaffold("C1CC1*")
    assert decorate.scaffold_retention(Chem.MolFromSmiles("OCC1CC1"), one) == (True, True)
    assert decorate.scaffold_retention(Chem.MolFromSmiles("CC1(C)CC1"), one) == (False, False)  # two at one '*'
    assert decorate.scaffold_retention(None, one) == (False, False)


def test_graph_route_keeps_every_clamped_entry(diffusion):
    loaded = api.load(diffusion, device="cpu")
    scaffold = decorate.parse_scaffold(TWO_POINTS)
    for clamp in ("noised", "clean"):
        plan = decorate.plan_decoration(loaded, scaffold, clamp=clamp)
        inpaint = plan.inpaint
        assert inpaint.min_nodes == 8 and int(inpaint.node_known.sum()) == 6
        _, raw = decorate.sample_raw(loaded, plan, 48, generator=torch.Generator().manual_seed(0), batch_size=24)
        for graphs in raw:
            mask = graphs.atoms > 0
            assert bool((mask.sum(1) >= inpaint.min_nodes).all())
            assert torch.equal(graphs.atoms[:, :6], plan.atoms.expand(len(graphs), 6))
            pair = mask.unsqueeze(2) & mask.unsqueeze(1)
            known = inpaint.edge_known & pair
            assert torch.equal(graphs.bonds[known], inpaint.edges.expand_as(graphs.bonds)[known])
            assert torch.equal(graphs.bonds[:, :6, :6], plan.bonds.expand(len(graphs), 6, 6))
            assert bool((graphs.bonds[:, :6, 8:] == 0).all())  # no scaffold bond but each '*' to its anchor
            assert int(graphs.bonds[:, :6, 6:8].sum()) == 2 * len(graphs)


def _walk(ids, program, grammar, eos):
    """Check one sampled row against its template: forced tokens in place, each slot's tokens free
    of its forbidden ids and not starting with a bond or ring digit (up to the row's end, for a row
    that ran out of length)."""
    position = 1
    for piece in [*program, *([] if isinstance(program[-1], Slot) else [eos])]:
        if position >= len(ids):
            return
        if not isinstance(piece, Slot):
            assert ids[position] == piece
            position += 1
            continue
        depth, written = 0, []
        while position < len(ids) and not (ids[position] == piece.end and depth == 0):
            token = ids[position]
            depth += (token == grammar.open_id) - (token == grammar.close_id)
            written.append(token)
            position += 1
        position += 1
        assert not set(written) & set(piece.forbidden)
        assert not written or written[0] not in grammar.before_content


def test_smiles_route_forces_the_template_and_retains_the_scaffold(arm, one_thread):
    loaded = api.load(arm, device="cpu")
    scaffold = decorate.parse_scaffold(TWO_POINTS)
    plan = decorate.plan_decoration(loaded, scaffold)
    tokenizer = Tokenizer.from_state(loaded.state["tokenizer"])
    assert Chem.MolToSmiles(Chem.MolFromSmiles(plan.template)) == Chem.MolToSmiles(scaffold.mol)
    open_rings, slots = set(), []  # the ring digits open in the template where each '*' is
    for token in tokenizer.split(plan.template):
        if token.isdigit():
            open_rings ^= {tokenizer.index[token]}
        elif token == "*":
            slots.append(open_rings.copy())
    program_slots = [p for p in plan.program if isinstance(p, Slot)]
    assert len(program_slots) == 2 and any(slots)
    assert all(rings <= set(p.forbidden) for rings, p in zip(slots, program_slots))

    result = decorate.decorate(loaded, scaffold, plan, 120, seed=0)
    rows = torch.cat(result.raw).tolist()
    assert len(rows) == 120
    for row in rows:
        _walk(row, plan.program, plan.grammar, tokenizer.eos_id)
    valid = [s for s in result.smiles if s is not None]
    assert len(valid) >= 60  # about 100 of 120
    assert all(r and f for s, r, f in zip(result.smiles, result.retained, result.filled) if s is not None)
    again = decorate.decorate(loaded, scaffold, plan, 120, seed=0)
    assert again.smiles == result.smiles
    with pytest.raises(ValueError, match="token '\\[Si\\]' is not in the vocabulary"):
        decorate.plan_decoration(loaded, decorate.parse_scaffold("C[Si]*"))


def test_cli_writes_rows_and_summary(arm, diffusion, tmp_path, capsys, one_thread):
    for name, ckpt in (("smiles-arm", arm), ("graph-diffusion", diffusion)):
        out = tmp_path / f"{name}.csv"
        code = cli.main(["decorate", "--checkpoint", str(ckpt), "--scaffold", TWO_POINTS, "-n", "30", "--seed", "3",
                         "--out", str(out), "--device", "cpu"])
        assert code == 0, capsys.readouterr().err
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 30 and list(rows[0]) == list(decorate.COLUMNS)
        assert {r["route"] for r in rows} == {name}
        assert all((r["smiles"] != "") == (r["valid"] == "1") for r in rows)
        assert all(r["scaffold_retained"] == "0" for r in rows if r["valid"] == "0")
        summary = json.loads(out.with_suffix(".json").read_text())
        assert summary["route"] == name and summary["n"] == 30 and summary["attachment_points"] == 2
        assert summary["validity"] == sum(r["valid"] == "1" for r in rows) / 30
    assert summary["min_atoms"] == 8 and summary["inpainting_clamp"] == "clean"


def test_errors_are_one_line_before_any_work(arm, diffusion, tmp_path, molecule_state):
    """Through the real ``dgm`` process: exit code 2 and one ``dgm: error:`` line naming the cause."""
    vae = untrained_checkpoint(tmp_path / "vae.ckpt", "graph-vae", molecule_state)
    long_chain = "C" * 120 + "*"
    cases = [
        (arm, "c1ccc(*", "cannot parse"),
        (diffusion, "c1ccccc1", "no attachment point"),
        (diffusion, "C[Si]*", "atom 'Si' is not among the atom types"),
        (arm, long_chain, "max_length=100"),
        (vae, TWO_POINTS, "supports smiles-arm and graph-diffusion checkpoints; this is a graph-vae model"),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0", DGLBACKEND="pytorch", OMP_NUM_THREADS="1")
    runs = [subprocess.Popen([sys.executable, "-m", "dgm_science.cli", "decorate", "--checkpoint", str(ckpt),
                              "--scaffold", scaffold, "-n", "5", "--out", str(tmp_path / f"out{i}.csv"),
                              "--device", "cpu", "--threads", "1"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, (ckpt, scaffold, _) in enumerate(cases)]
    for (_, scaffold, message), run in zip(cases, runs):
        _, err = run.communicate(timeout=300)
        errors = [line for line in err.splitlines() if line.startswith("dgm: error:")]
        assert run.returncode == 2 and len(errors) == 1 and message in errors[0], (scaffold, err[-2000:])
    assert not list(tmp_path.glob("out*"))
    with pytest.raises(ValueError, match="at most"):
        decorate.plan_decoration(api.load(diffusion, device="cpu"), decorate.parse_scaffold(long_chain))
