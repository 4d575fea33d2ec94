"""Bench provenance: a bench script records the commit, command, config, date and machine of its run
(bench/timing.py's ``provenance``), and bench/result_tables.py carries them into docs/results files,
refusing a bench JSON that has none (the hand-typed timings of earlier releases)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from dgm_science.docs import current_commit, load_result

ROOT = Path(__file__).resolve().parents[1]


def bench_module(name: str):
    """A bench script as a module, with bench/ on the path as when it runs as a script."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / f"bench/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    return bench_module("result_tables")


@pytest.fixture(scope="module")
def molecules_run(tmp_path_factory, moses_smiles):
    """bench_molecules.py on the MOSES sample: smiles-arm, 1 timed step, 4 samples, one thread."""
    import torch

    tmp = tmp_path_factory.mktemp("bench")
    data = tmp / "data"
    data.mkdir()
    (data / "train.smi").write_text("\n".join(moses_smiles[:-40]) + "\n")
    (data / "valid.smi").write_text("\n".join(moses_smiles[-40:]) + "\n")
    out = tmp / "molecules_moses.json"
    argv = ["--dataset", "moses", "--models", "smiles-arm", "--data", str(data), "--results", str(tmp / "none"),
            "--steps", "1", "--sample", "4", "--threads", "1", "--out", str(out)]
    threads = torch.get_num_threads()
    try:
        bench_module("bench_molecules").main(argv)
    finally:
        torch.set_num_threads(threads)
    return out, argv


def test_a_bench_records_its_commit_command_config_and_machine(molecules_run):
    out, argv = molecules_run
    made = json.loads(out.read_text())["provenance"]
    assert made["command"] == "python bench/bench_molecules.py " + " ".join(argv)
    # the commit of this tree, -dirty only when code (not recorded results) differs from it
    assert made["commit"].removesuffix("-dirty") == current_commit().removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", made["commit"])
    assert made["config"] == "workflows/config/default.yaml: molecules.moses.models (smiles-arm), their quick sizes"
    assert made["settings"]["models"]["smiles-arm"]["model"]["d_model"] == 128  # the model config read
    assert made["arguments"]["steps"] == 1 and made["arguments"]["threads"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", made["date"])
    assert made["machine"].startswith(f"{made['host']['cpus']} CPU cores") and made["machine"].endswith("threads: 1")


def test_the_converter_carries_the_provenance_into_a_result_file(molecules_run, tables, tmp_path):
    out, _ = molecules_run
    bench = json.loads(out.read_text())
    assert tables.main([str(out), "--out-dir", str(tmp_path)]) == 0
    result = load_result("molecules_moses.json", tmp_path)  # the shape dgm_science.docs checks
    assert result["provenance"] == {key: bench["provenance"][key]
                                    for key in ("commit", "command", "config", "date", "machine")}
    row = dict(zip(result["columns"], result["rows"][0]))
    figures = bench["models"]["smiles-arm"]
    assert row["model"] == "smiles-arm" and row["parameters"] == figures["parameters"] and row["sampled"] == 4
    assert row["train molecules/s"] == round(figures["train_molecules_per_s"], 1) > 0
    assert row["sampled from"] == "untrained model"


def test_a_bench_json_without_provenance_is_refused(tables, tmp_path):
    legacy = tmp_path / "molecules_qm9.json"  # the shape of the earlier releases' files
    legacy.write_text(json.dumps({"machine": "x86_64", "threads": 2, "models": {"graph-flow": {
        "parameters": 1, "batch_size": 256, "precision": "32-true", "train_tokens_per_s": None,
        "train_molecules_per_s": 1554.1, "sample_n": 10, "sample_from": "untrained model",
        "sample_decodable_fraction": 1.0, "sample_seconds": 1.0, "sample_molecules_per_s": 10.0}}}))
    with pytest.raises(tables.BenchResultError, match=r"molecules_qm9\.json: no provenance"):
        tables.convert(legacy)
    assert tables.main([str(legacy), "--out-dir", str(tmp_path / "docs")]) == 2
    assert not (tmp_path / "docs").exists()


def test_a_merged_part_without_provenance_or_with_an_unknown_commit_is_refused(molecules_run, tables, tmp_path):
    out, _ = molecules_run
    bench = json.loads(out.read_text())
    old = {**bench["models"]["smiles-arm"]}
    del old["provenance"]  # a model's figures kept from a run before provenance was recorded
    bench["models"]["graph-vae"] = old
    merged = tmp_path / "molecules_moses.json"
    merged.write_text(json.dumps(bench))
    with pytest.raises(tables.BenchResultError, match="of an earlier run: no provenance"):
        tables.convert(merged)
    bench["models"]["graph-vae"]["provenance"] = {**bench["provenance"], "commit": "unknown (not a git checkout)"}
    merged.write_text(json.dumps(bench))
    with pytest.raises(tables.BenchResultError, match="a figure needs the commit"):
        tables.convert(merged)


def test_parts_of_several_runs_list_each_command(tables):
    runs = [{"commit": "abc1234", "command": "python bench/a.py --x 1", "config": "c", "date": "2026-12-06",
             "machine": "2 CPU cores, no GPU"},
            {"commit": "def5678", "command": "python bench/a.py --x 2", "config": "c", "date": "2026-12-06",
             "machine": "2 CPU cores, no GPU"}]
    made = tables.merged(runs)
    assert made["commit"] == "abc1234, def5678"
    assert made["command"] == "python bench/a.py --x 1; python bench/a.py --x 2" and made["config"] == "c"


def test_every_bench_script_that_writes_figures_has_tables(tables):
    scripts = {p.stem for p in (ROOT / "bench").glob("bench_*.py")} | {"gpu_check"}
    assert scripts == set(tables.TABLES)
    for script in scripts:  # and records provenance through the shared helper
        assert "provenance(__file__, argv" in (ROOT / f"bench/{script}.py").read_text(), script


SCRIPT_OF = {"molecules": "bench_molecules", "structures": "bench_structures", "sequences": "bench_sequences",
             "trajectories_pointmaze": "bench_trajectories", "trajectories_data": "bench_trajectories_data",
             "offline_rl": "bench_offline_rl", "predict": "bench_predict", "design": "bench_design",
             "metrics": "bench_metrics", "moses_full": "bench_moses_full", "ood": "bench_ood", "gpu": "gpu_check"}


@pytest.mark.parametrize("path", sorted((ROOT / "bench/results").glob("*.json")), ids=lambda p: p.stem)
def test_the_tables_read_every_committed_bench_json_once_it_has_provenance(path, tables, tmp_path):
    """The committed figures' shapes (made before provenance was recorded) convert once a provenance is
    given, to every part merged from separate runs; each table has rows as wide as its columns."""
    script = next(script for prefix, script in SCRIPT_OF.items() if path.stem.startswith(prefix))
    made = {"commit": "abc1234", "command": f"python bench/{script}.py", "config": "c", "date": "2026-12-06",
            "machine": "2 CPU cores, no GPU", "script": f"bench/{script}.py"}
    bench = json.loads(path.read_text())
    bench["provenance"] = made
    for part in [*bench.get("models", {}).values(), bench.get("scoring"), bench.get("task"), bench.get("update"),
                 *[step for label in bench.values() if isinstance(label, dict) for step in label.values()
                   if isinstance(step, dict) and "cmd" in step]]:  # bench_moses_full's steps
        if isinstance(part, dict):
            part["provenance"] = made
    copy = tmp_path / path.name
    copy.write_text(json.dumps(bench))
    results = tables.convert(copy)
    assert results and all(result["rows"] for result in results.values())
    for name, result in results.items():
        assert result["provenance"] == {key: made[key] for key in ("commit", "command", "config", "date", "machine")}
        (tmp_path / name).write_text(json.dumps(result))
        load_result(name, tmp_path)


def test_snakemake_benchmark_files_become_a_result_file_with_the_given_provenance(tables, tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for model, seconds in (("hybrid-arm", "53.20"), ("regressor-arm", "55.90")):
        path = tmp_path / "benchmarks/prediction" / model / "seed0/train.tsv"
        path.parent.mkdir(parents=True)
        path.write_text(header + f"{seconds}\t0:00:53\t812.5\t2000\t700\t710\t0\t1.2\t98.1\tNA\n")
    (tmp_path / "benchmarks/prediction/fetch.tsv").write_text(header + "1.0\t0:00:01\tNA\tNA\tNA\tNA\t0\t0\t1\t0.5\n")
    argv = ["snakemake", "--benchmarks", str(tmp_path / "benchmarks"), "--glob", "prediction/*/seed*/train.tsv",
            "--title", "training jobs", "--command", "make run", "--config", "default.yaml + prediction.yaml"]
    # outside a git checkout the commit cannot be found: refused, not guessed
    assert tables.main([*argv, "--out", "t.json", "--out-dir", str(tmp_path / "docs")]) == 2
    assert tables.main([*argv, "--commit", "abc1234", "--out", "t.json", "--out-dir", str(tmp_path / "docs")]) == 0
    result = load_result("t.json", tmp_path / "docs")
    assert result["rows"] == [["prediction/hybrid-arm/seed0/train", 53.2, 812.5, None, 98.1],
                              ["prediction/regressor-arm/seed0/train", 55.9, 812.5, None, 98.1]]
    assert result["provenance"]["commit"] == "abc1234" and result["provenance"]["command"] == "make run"
    assert result["provenance"]["config"] == "default.yaml + prediction.yaml"
    (tmp_path / "benchmarks/prediction/hybrid-arm/seed0/train.tsv").write_text("not a benchmark\n1\n")
    with pytest.raises(tables.BenchResultError, match="not a Snakemake benchmark header"):
        tables.snakemake_table(tmp_path / "benchmarks", "prediction/*/seed*/train.tsv", title="t", command="c",
                               config="c", commit="abc1234")


def test_the_design_ablation_reuses_the_runs_its_result_file_records_and_reruns_nothing(tmp_path, monkeypatch):
    """The ablation grid grows across sessions whose work folders are gone: a run the result file records at the
    same budget is taken from it (no ``dgm optimize`` started); another budget's records are not reused."""
    ablation = bench_module("design_ablation")
    out = tmp_path / "ablation.json"
    run = {"arm": "graph-ga", "task": "albuterol_similarity", "seed": 1, "auc": 0.9, "calls": 10000,
           "wall_seconds": 100.0, "commit": "abc1234", "cpu": "some CPU"}
    out.write_text(json.dumps({"budget": 10000, "runs": [run], "provenance": {"commit": "abc1234"}}))
    started = []
    monkeypatch.setattr(ablation.subprocess, "run", lambda *a, **k: started.append(a))
    recorded = ablation.recorded_runs(out, 10000)
    assert ablation.one_run(tmp_path / "work", "graph-ga", "albuterol_similarity", 1, 10000, False, recorded) == run
    older = {**run, "seed": 0}
    del older["commit"]
    out.write_text(json.dumps({"budget": 10000, "runs": [older], "provenance": {"commit": "abc1234 and def5678"}}))
    assert ablation.recorded_runs(out, 10000)[("graph-ga", "albuterol_similarity", 0)]["commit"] == (
        "ablation.json: abc1234 and def5678")
    assert started == []
    assert ablation.recorded_runs(out, 1000) == {}
    assert ablation.one_run(tmp_path / "work", "graph-ga", "albuterol_similarity", 2, 10000, True, recorded) is None
