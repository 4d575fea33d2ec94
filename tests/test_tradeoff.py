"""The report's family trade-off table, on run folders written as the pipeline writes them."""

from __future__ import annotations

import json

import pytest
import torch

from dgm_science import checkpoint, registry
from dgm_science.cli import main, sampling_speed
from dgm_science.report import write_report
from dgm_science.tradeoff import _what_model, collect_cells, detail_table, family_table, relative_spread, seed_sd


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def _run(results, domain, dataset, model, seed, metrics, info, **files):
    run = results / domain / dataset / model / f"seed{seed}"
    _write(run / "metrics.json", metrics)
    checkpoint.save(run / "model.ckpt", domain=registry.get("model", model).domain, model_name=model, config={},
                    state_dict={}, domain_state={}, info=info)
    for name, payload in files.items():
        _write(run / f"{name}.json", payload)
    return run


ARM = {"family": "autoregressive", "likelihood": "exact", "representation": "no"}
VAE = {"family": "VAE", "likelihood": "bound", "representation": "yes: z ~ q(z | x)"}
GAN = {"family": "implicit (GAN)", "likelihood": "none", "representation": "no"}


@pytest.fixture()
def results(tmp_path):
    results = tmp_path / "results"
    for seed, js, bits, speed in ((0, 0.010, 0.90, 100.0), (1, 0.012, 0.92, 120.0), (2, 0.014, 0.94, 110.0)):
        _run(results, "sequences", "16s-v4", "seq-arm", seed, {"kmer_js_k3": js}, ARM,
             test_likelihood={"bits_per_residue": bits}, sampling={"samples_per_second": speed, "threads": 2},
             compression={"range_coded_bits_per_residue": bits - 0.05})
    _run(results, "sequences", "16s-v4", "seq-vae", 0, {"kmer_js_k3": 0.02}, VAE,
         test_likelihood={"bits_per_residue": 0.96, "latent": {"active_units": [14], "latent_dims": [32]}},
         sampling={"samples_per_second": 50.0, "threads": 1})
    for seed, fcd in ((0, 9.0), (1, 7.0)):  # seed 1's timing from before threads were recorded
        _run(results, "molecules", "qm9", "molgan", seed, {"FCD/Test": fcd}, GAN,
             sampling={"samples_per_second": 5000.0, **({"threads": 2} if seed == 0 else {})})
    _run(results, "molecules", "qm9", "graph-flow", 0, {"FCD/Test": 3.5},
         {"family": "normalizing flow", "likelihood": "bound", "representation": "yes: z = f(x), invertible",
          "typicality": {"mean": 7.8, "std": 1.2, "n": 2000}})
    # a predictor's run, at the depth of a generative one: not in the table
    _write(results / "prediction/qm9/hybrid-arm/seed0/metrics.json", {"FCD/Test": 1.0})
    return results


def test_cells_group_seeds_and_read_what_the_checkpoint_records(results):
    cells = {(c.dataset, c.model): c for c in collect_cells(results)}
    assert set(cells) == {("16s-v4", "seq-arm"), ("16s-v4", "seq-vae"), ("qm9", "molgan"), ("qm9", "graph-flow")}
    arm = cells["16s-v4", "seq-arm"]
    assert len(arm.runs) == 3 and arm.family == "autoregressive" and arm.headline[0] == "kmer_js_k3"
    assert relative_spread(arm.metric("kmer_js_k3")) == pytest.approx(0.002 / 0.012)
    assert relative_spread(cells["16s-v4", "seq-vae"].metric("kmer_js_k3")) is None  # one seed: no spread
    assert relative_spread(cells["qm9", "molgan"].metric("FCD/Test")) == pytest.approx(
        torch.tensor([9.0, 7.0]).std().item() / 8.0)


def test_family_rows_in_the_table_order_with_measured_columns(results):
    rows = [[str(c) for c in cells] for _, cells in family_table(collect_cells(results)).rows]
    assert [r[0] for r in rows] == ["<b>autoregressive</b>", "<b>normalizing flow</b>", "<b>VAE</b>",
                                    "<b>implicit (GAN)</b>"]
    arm, flow, vae, gan = rows
    assert arm[2] == "exact"
    # the likelihood's spread is its sd in bits/residue, never a percentage of a log-density
    assert arm[3] == "seq-arm (16s-v4): sd 0.02 bits/residue (3 seeds)" and "%" not in arm[3]
    # the headline's sd in its own unit, and relative to its mean (the 3-mer JS is ratio-scale)
    assert arm[4] == "seq-arm (16s-v4): 3-mer JS ↓ sd 0.002 (3 seeds, 17 % of the mean)"
    # samples per second per domain and dataset, at the thread count the runs recorded
    assert arm[5] == "sequences/16s-v4, seq-arm: 110 ± 10.0 samples/s at 2 threads (3 seeds)"
    assert arm[6] == "0.870±0.020 bits/residue (range coder, bit-exact): seq-arm (16s-v4)"
    assert flow[7] == "yes: z = f(x), invertible" and flow[3] == flow[4] == "1 seed: no spread" and flow[5] == "–"
    assert vae[6] == "possible, not run (bits-back coding)"
    assert vae[5] == "sequences/16s-v4, seq-vae: 50.0 samples/s at 1 thread (1 seed)"
    assert gan[2] == "none" and gan[3] == "–"
    assert gan[4] == "molgan (qm9): FCD/Test ↓ sd 1.4 (2 seeds, 18 % of the mean)"
    assert gan[6] == "no (no density)"
    assert gan[5] == ("molecules/qm9, molgan: 5,000 samples/s at 2 threads (1 seed); "
                      "5,000 samples/s at threads not recorded (1 seed)")


def test_spreads_are_in_the_quantitys_unit_and_relative_only_on_a_ratio_scale(results, monkeypatch):
    """A continuous log-density's sd / mean depends on the coordinates' unit (ala2-flow's "0.03 %"): the
    table gives the sd in nats; a headline metric is relative only where its domain says it is ratio-scale."""
    for seed, nll in ((0, -125.7), (1, -125.6), (2, -125.8)):
        _run(results, "structures", "ala2", "ala2-flow", seed, {"kl_ramachandran": 0.3 + seed / 100},
             {"family": "normalizing flow", "likelihood": "exact", "representation": "yes", "best_val_nll": nll},
             sampling={"samples_per_second": 900.0 + seed, "threads": 1 + seed % 2})
    rows = {str(cells[0]): [str(c) for c in cells] for _, cells in family_table(collect_cells(results)).rows}
    flow = rows["<b>normalizing flow</b>"]
    assert flow[3] == "ala2-flow (ala2): sd 0.1 nats/example (3 seeds)"  # not 0.08 % of the mean
    assert seed_sd([-125.7, -125.6, -125.8]) == pytest.approx(0.1)
    # different thread counts are reported apart, never averaged together
    assert flow[5] == ("structures/ala2, ala2-flow: 901 ± 1.4 samples/s at 1 thread (2 seeds); "
                       "901 samples/s at 2 threads (1 seed)")
    sequences = registry.get("domain", registry.get("model", "seq-arm").domain)
    monkeypatch.setattr(sequences, "headline_ratio_scale", False)
    arm = [str(c) for c in family_table(collect_cells(results)).rows[0][1]]
    assert arm[4] == "seq-arm (16s-v4): 3-mer JS ↓ sd 0.002 (3 seeds)"


def test_held_out_likelihood_prefers_the_test_set_then_the_typical_set(results):
    rows = {str(cells[1]): [str(c) for c in cells] for _, cells in detail_table(collect_cells(results)).rows}
    assert rows["seq-arm (16s-v4)"][3] == "0.92 ± 0.02 bits/residue (3 seeds), test set"
    assert rows["graph-flow (qm9)"][3] == "7.8 nats/heavy atom (1 seed), validation, 2,000 items"
    assert rows["molgan (qm9)"][3] == "–"  # no density
    assert rows["seq-arm (16s-v4)"][4] == "3-mer JS ↓: 0.012 ± 0.002 (3 seeds, sd 17 % of the mean)"
    assert rows["seq-arm (16s-v4)"][5] == "110 ± 10.0 samples/s at 2 threads (3 seeds)"
    assert rows["seq-vae (16s-v4)"][7] == "yes: z ~ q(z | x); active units 14/32"  # dgm likelihood's count


def test_the_report_ends_with_the_trade_off_section(tmp_path):
    results, out = tmp_path / "results", tmp_path / "report.html"
    _run(results, "structures", "ala2", "ala2-flow", 0, {"kl_ramachandran": 0.3},
         {"family": "normalizing flow", "likelihood": "exact", "representation": "yes", "best_val_nll": -125.7})
    write_report(results, out)
    page = out.read_text()
    assert page.index('<h2 id="3d-structures">3D structures</h2>') < page.index('<h2 id="the-families-compared-trade-offs-measured">')
    assert "-125.7 nats/example (1 seed), validation batches" in page


def test_sampling_speed_counts_generation_not_scoring():
    speed = sampling_speed(100, 90, {"generate": 2.0, "score": 8.0}, 11.0)
    assert speed["samples_per_second"] == 50.0 and speed["timed"] == "generate" and speed["valid"] == 90
    filtered = sampling_speed(100, 90, {}, 4.0)  # a filtered search: the whole command
    assert filtered["samples_per_second"] == 25.0 and filtered["timed"] == "total"


def test_a_trained_checkpoint_says_its_family_and_sample_timing_is_written_when_asked(tmp_path, moses_smiles,
                                                                                       train_tiny_arm, one_thread):
    path, _, info = train_tiny_arm(tmp_path, moses_smiles[:200], moses_smiles[200:240],
                                   model={"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 90}, steps=2,
                                   lr=1e-3)
    assert (info["family"], info["likelihood"], info["representation"]) == ("autoregressive", "exact", "no")
    assert _what_model(path.parent) == ("autoregressive", "exact", "no")
    payload = checkpoint.load(path)  # a checkpoint from before the family was recorded: the class tells
    older = {k: v for k, v in payload["info"].items() if k not in ("family", "likelihood", "representation")}
    checkpoint.save(tmp_path / "old/model.ckpt", domain=payload["domain"], model_name=payload["model"],
                    config=payload["config"], state_dict=payload["state_dict"], domain_state=payload["domain_state"],
                    info=older)
    assert _what_model(tmp_path / "old") == ("autoregressive", "exact", "no")
    assert main(["sample", "--checkpoint", str(path), "-n", "4", "--out", str(tmp_path / "a.csv")]) == 0
    assert not list(tmp_path.glob("*.json"))
    assert main(["sample", "--checkpoint", str(path), "-n", "4", "--out", str(tmp_path / "s.csv"),
                 "--timing", str(tmp_path / "t.json")]) == 0
    timing = json.loads((tmp_path / "t.json").read_text())
    assert timing["samples"] == 4 and timing["samples_per_second"] > 0 and timing["timed"] == "generate"
    assert timing["threads"] == torch.get_num_threads()  # the trade-off table labels each speed with it
    assert timing["score_seconds"] > 0 and timing["total_seconds"] >= timing["generate_seconds"] + timing[
        "score_seconds"]


def test_the_latent_space_shows_each_layers_active_units_from_likelihood_or_else_from_evaluate(tmp_path):
    """Every run counts its active units (dgm evaluate's metrics.json latent, validation split), so the
    table shows them where dgm likelihood did not run; per layer where there are several."""
    results = tmp_path / "results"
    hvae = {"family": "hierarchical VAE", "likelihood": "bound", "representation": "yes: z_1..z_L ~ q(z_l | z_>l, x)"}
    latent = {"active_units": [3, 0, 5], "latent_dims": [16, 16, 16]}
    _run(results, "sequences", "16s-v4", "seq-hvae", 0, {"kmer_js_k3": 0.02, "latent": latent}, hvae)
    _run(results, "sequences", "16s-v4", "seq-hvae", 1, {"kmer_js_k3": 0.02, "latent": latent | {"active_units": [1, 2, 3]}},
         hvae)
    rows = {str(cells[1]): [str(c) for c in cells] for _, cells in detail_table(collect_cells(results)).rows}
    assert rows["seq-hvae (16s-v4)"][7].endswith("active units 8/48 (3 + 0 + 5), 6/48 (1 + 2 + 3)")
    # dgm likelihood's test-split count wins where it ran
    _write(results / "sequences/16s-v4/seq-hvae/seed0/test_likelihood.json",
           {"bits_per_residue": 0.9, "latent": latent | {"active_units": [16, 16, 16]}})
    rows = {str(cells[1]): [str(c) for c in cells] for _, cells in detail_table(collect_cells(results)).rows}
    assert rows["seq-hvae (16s-v4)"][7].endswith("active units 48/48 (16 + 16 + 16)")
