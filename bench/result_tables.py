"""Result files of the bench figures: turns a ``bench/results/*.json`` (written by a bench script, with
the ``provenance`` that ``timing.provenance`` records) into the tables ``docs/benchmarks.md`` shows, as
result files under ``docs/results/bench/`` (``title``, ``provenance``, ``columns``, ``rows``, ``notes``;
see ``dgm_science/docs.py``), the commit, command, config, date and machine carried over unchanged. A
bench JSON without provenance (written before the scripts recorded it) is refused: re-run the bench.

The script that wrote a JSON (``provenance.script``) picks its tables; each table is written as
``<out-dir>/<json name>[_<part>].json``. Parts of a JSON merged from several runs (the models of
``bench_molecules.py``, the sections of ``bench_design.py``, the steps of ``bench_moses_full.py``) carry
their own provenance; a table of several runs lists each distinct commit, command, config and date.

    python bench/result_tables.py bench/results/molecules_qm9.json bench/results/offline_rl.json \\
        [--out-dir docs/results/bench]

``snakemake`` makes one result file of the Snakemake ``benchmark:`` files of a pipeline run (wall seconds,
peak memory, CPU seconds of each rule's job), which record no provenance: the command and config of the
run are given, and the commit defaults to that of the git checkout the run's folder is in:

    python bench/result_tables.py snakemake --benchmarks /tmp/run33/benchmarks --glob 'molecules/*/*/seed*/train.tsv' \\
        --command 'make run' --config workflows/config/default.yaml --title '...' --out snakemake_train.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # ood_tables.py, beside this file, also when imported by a test

from dgm_science.docs import PROVENANCE_KEYS, load_result  # noqa: E402
from dgm_science.utils import atomic_path  # noqa: E402

OUT_DIR = ROOT / "docs/results/bench"


class BenchResultError(ValueError):
    """A bench JSON that cannot back a result file: no provenance, or not a bench output this knows."""


@dataclasses.dataclass
class Table:
    """One result file's content, before provenance: ``parts`` are the bench JSON's entries whose own
    provenance the table rests on (``None``: the JSON's top-level provenance)."""

    part: str
    title: str
    columns: list[str]
    rows: list[list]
    notes: list[str] = dataclasses.field(default_factory=list)
    parts: list[dict] | None = None


def r(value: Any, digits: int = 1) -> Any:
    """A measured number rounded for a table; ``None`` and non-numbers as they are."""
    return round(float(value), digits) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def unit_of(timing: dict) -> str:
    """The throughput unit of one ``timing.time_model`` result: ``molecules`` from ``train_molecules_per_s``."""
    keys = [k for k in timing if k.startswith("train_") and k.endswith("_per_s") and k != "train_tokens_per_s"]
    if len(keys) != 1:
        raise BenchResultError(f"a model's figures name no single train_<unit>_per_s: {sorted(timing)}")
    return keys[0].removeprefix("train_").removesuffix("_per_s")


def model_table(bench: dict, part: str, title: str, threads: Any, per_model: bool = False) -> Table:
    """Training and sampling throughput of each model timed by ``timing.time_model``."""
    rows, unit = [], "items"
    for name, timing in bench["models"].items():
        unit = unit_of(timing)
        sampled = timing.get(f"sample_{unit}_per_s", timing.get("plans_per_s"))
        rows.append([name, timing["parameters"], timing["batch_size"], timing["precision"],
                     bench.get("threads", threads), r(timing[f"train_{unit}_per_s"]),
                     r(timing["train_tokens_per_s"], 0),
                     r(1000 * timing["train_step_seconds"], 2) if "train_step_seconds" in timing else None,
                     timing["sample_n"], timing["sample_from"], r(timing["sample_seconds"], 2), r(sampled),
                     r(timing["sample_decodable_fraction"], 4)])
    columns = ["model", "parameters", "batch size", "precision", "torch threads", f"train {unit}/s", "train tokens/s",
               "ms per train step", "sampled", "sampled from", "sampling seconds", f"sampled {unit}/s",
               "decodable fraction"]
    return Table(part, title, columns, rows, parts=list(bench["models"].values()) if per_model else None)


def dataset_of(bench: dict, path: Path) -> str:
    return bench["provenance"].get("arguments", {}).get("dataset") or path.stem.split("_", 1)[-1]


def molecules(bench: dict, path: Path) -> list[Table]:
    dataset = dataset_of(bench, path)
    return [model_table(bench, "", f"Molecule models ({dataset}, quick sizes): training and sampling throughput",
                        None, per_model=True)]


def structures(bench: dict, path: Path) -> list[Table]:
    dataset = dataset_of(bench, path)
    tables = [model_table(bench, "", f"3D-structure models ({dataset}, quick sizes): training and sampling "
                                     "throughput", None)]
    if bench.get("md"):
        tables.append(Table("md", "Alanine-dipeptide MD of `dgm simulate` (OBC2, 1 fs, a frame per 0.1 ps): ns/day "
                                  "per OpenMM platform and thread count",
                            ["platform", "threads", "picoseconds", "ns/day"],
                            [[m["platform"], m["threads"] or "1 (Reference)", m["picoseconds"], r(m["ns_per_day"], 0)]
                             for m in bench["md"]]))
    return tables


def sequences(bench: dict, path: Path) -> list[Table]:
    dataset = dataset_of(bench, path)
    tables = [model_table(bench, "", f"Sequence models ({dataset}, quick sizes): training and sampling throughput",
                          None)]
    if bench.get("compression"):
        c = bench["compression"]
        tables.append(Table("compression", f"Lossless compression of the {dataset} test FASTA with the trained "
                                           "seq-arm, beside gzip -9 and xz -9",
                            ["records", "input bytes", "output bytes", "bits per residue", "gzip -9 bits per residue",
                             "xz -9 bits per residue", "compress seconds", "decompress seconds", "compress MB/s",
                             "decompress MB/s"],
                            [[c["records"], c["input_bytes"], c["output_bytes"], r(c["bits_per_residue"], 3),
                              r(c["gzip9_bits_per_residue"], 3), r(c["xz9_bits_per_residue"], 3),
                              r(c["compress_seconds"], 2), r(c["decompress_seconds"], 2),
                              r(c["compress_mb_per_s"], 3), r(c["decompress_mb_per_s"], 3)]]))
    n = bench["novelty"]
    tables.append(Table("novelty", f"Novelty aligner ({dataset}): nearest-training identity of validation sequences",
                        ["queries", "references", "processes", "seconds", "queries/s", "mean identity"],
                        [[n["queries"], n["references"], n["jobs"], r(n["seconds"], 2), r(n["queries_per_s"]),
                          r(n["mean_identity"], 4)]]))
    return tables


def trajectories(bench: dict, path: Path) -> list[Table]:
    dataset = dataset_of(bench, path)
    table = model_table(bench, "", f"Trajectory models ({dataset}, quick sizes): training windows/s, plans/s and "
                                   "the closed loop (environments in lockstep)", None)
    table.columns[table.columns.index("sampled windows/s")] = "plans/s"
    table.columns += ["closed-loop episodes", "re-plan every", "closed-loop env steps/s", "closed-loop success rate"]
    for row, timing in zip(table.rows, bench["models"].values()):
        loop = timing.get("closed_loop") or {}
        row += [loop.get("episodes"), loop.get("replan_every"), r(loop.get("env_steps_per_s"), 0),
                r(loop.get("success_rate"), 3)]
    return [table]


def trajectories_data(bench: dict, path: Path) -> list[Table]:
    rows = [[maze, r(m["random"]["steps_per_s"], 0), r(m["collect"]["steps_per_s"], 0), m["collect"]["episodes"],
             m["collect"]["noise"], r(m["collect"]["minari_write_s"], 3), r(m["collect"]["minari_mb"], 2),
             r(m["evaluate"]["success_rate"], 3), r(m["evaluate"]["mean_steps_to_goal"])]
            for maze, m in bench["mazes"].items()]
    return [Table("", "PointMaze data generation, one core: raw env steps/s (random actions), expert collection "
                      "steps/s (BFS + PD, continuing episodes), the Minari write, and the noiseless expert",
                  ["maze", "random env steps/s", "expert collect steps/s", "collect episodes", "collect noise",
                   "Minari write seconds", "Minari MB", "expert success rate", "expert mean steps to goal"], rows)]


def offline_rl(bench: dict, path: Path) -> list[Table]:
    s = bench["synthetic"]
    return [
        Table("updates", f"Offline RL minibatch updates/s (batch {bench['batch_size']}, two 256-unit layers, "
                         f"{bench['transitions']:,} expert transitions)",
              ["algorithm", "torch threads", "updates timed", "updates/s"],
              [[u["algo"], u["threads"], u["updates"], r(u["updates_per_s"])] for u in bench["updates"]]),
        Table("synthetic", "Synthetic transitions: trajectory-model plans sampled and executed in MuJoCo, and the "
                           "two-sample test", ["checkpoint", "plans", "transitions", "sampling seconds",
                                               "execution seconds", "sampled transitions/s", "executed transitions/s",
                                               "end-to-end transitions/s", "two-sample test seconds",
                                               "AUROC executed vs expert"],
              [[s["checkpoint"], s["plans"], s["transitions"], r(s["sample_seconds"], 2), r(s["execute_seconds"], 2),
                r(s["sampled_transitions_per_s"], 0), r(s["executed_transitions_per_s"], 0),
                r(s["synthetic_transitions_per_s"], 0), r(s["two_sample_seconds"], 2), r(s["auroc_executed"], 4)]]),
    ]


def predict(bench: dict, path: Path) -> list[Table]:
    rows = []
    for key, run in bench["runs"].items():
        name, threads = key.split("/threads")
        rows.append([name, int(threads), run["members"], run["density"], run["molecules"], run["scored"],
                     r(run["seconds"], 3), r(run["molecules_per_second"])])
    return [Table("", f"Property prediction (`dgm predict`'s work) of {bench['n']:,} QM9 test molecules, batches of "
                      f"{bench['batch_size']}", ["predictor", "torch threads", "members", "log p(x)", "molecules",
                                                 "scored", "seconds", "molecules/s"], rows)]


def design(bench: dict, path: Path) -> list[Table]:
    tables = []
    if "scoring" in bench:
        s = bench["scoring"]
        tables.append(Table("scoring", f"Scoring calls/s of {s['objective']} on {s['n']:,} distinct SMILES, per "
                                       "number of scoring processes",
                            ["processes", "calls", "seconds", "calls/s", f"calls/s in batches of {s['rl_batch']}",
                             "cached rows/s", "pool start-up seconds", "valid fraction"],
                            [[int(jobs), j["calls"], j["seconds"], j["calls_per_second"],
                              j["rl_batches_calls_per_second"], j["cached_rows_per_second"], j["first_batch_seconds"],
                              j["valid_fraction"]] for jobs, j in s["jobs"].items()],
                            notes=[f"load average (1, 5, 15 min) before: {s['machine_before']['load_average_1_5_15']}, "
                                   f"after: {s['machine_after']['load_average_1_5_15']}"], parts=[s]))
        tables.append(Table("components", f"Cost per molecule of each component of {s['objective']}, one process",
                            ["component", "ms per molecule"],
                            [[name, ms] for name, ms in s["component_ms_per_molecule"].items()], parts=[s]))
    if "task" in bench:
        t = bench["task"]
        rows = []
        for method, m in t["methods"].items():
            per_step = m.get("seconds_per_step") or {}
            rows.append([method, m.get("precision"), r(m["seconds"]), m["calls"], m["steps"],
                         r(m["calls_per_second"]),
                         ", ".join(f"{k} {v:.2f}" for k, v in per_step.items()) or None, r(m["top1"], 4),
                         r(m["pmo_auc_top10"], 4), r(m["guacamol_score"], 4)])
        tables.append(Table("task", f"Whole `dgm optimize` runs on {t['task']} at {t['budget']:,} calls "
                                    f"({t['threads']} torch threads and scoring processes)",
                            ["method", "update precision", "wall seconds", "calls", "steps", "calls/s",
                             "seconds per step", "top-1", "PMO AUC top-10", "GuacaMol score"], rows, parts=[t]))
    if "update" in bench:
        u = bench["update"]
        tables.append(Table("update", f"One Augmented Memory update's likelihoods: {u['rows']} randomized SMILES "
                                      f"(longest {u['length']} tokens, {u['real_token_fraction']:.0%} of the padded "
                                      f"batch real tokens), {u['threads']} torch threads, median of {u['repeats']} "
                                      "interleaved repeats",
                            ["layout", "agent forward + backward (s)", "prior forward (s)"],
                            [[name, m["agent_forward_backward_seconds"], m["prior_forward_seconds"]]
                             for name, m in u["modes"].items()],
                            notes=[f"CPU: {u['machine_before'].get('cpu', 'not recorded')}"], parts=[u]))
    return tables


def metrics(bench: dict, path: Path) -> list[Table]:
    sanity = ("valid", "novelty", "FCD/Test", "FCD/TestSF", "SNN/Test", "Frag/Test", "Scaf/Test", "IntDiv1", "Filters")
    stages = ("rdkit", "chemnet", "snn", "intdiv")
    tables = [Table("evaluate", "MOSES metrics of 10k-molecule sets against cached Test / TestSF statistics: "
                                "wall time, its main stages, and the sanity values (Test sample: FCD/Test near 0, "
                                "novelty 1; train sample: novelty near 0; unrelated chains: far)",
                    ["set", "wall seconds", *(f"{s} seconds" for s in stages), *sanity],
                    [[name, e["wall_s"], *(e["stage_s"].get(s) for s in stages),
                      *(r(e["metrics"].get(k), 4) for k in sanity)] for name, e in bench["evaluate"].items()],
                    notes=[f"{bench['n_jobs']} processes on {bench['device']}"])]
    computed = {name: ref for name, ref in bench["reference_statistics"].items() if "wall_s" in ref}
    if computed:
        tables.append(Table("reference", "Reference statistics (ChemNet, fingerprints, fragments, scaffolds) of the "
                                         "full MOSES Test / TestSF", ["set", "molecules", "wall seconds"],
                            [[name, ref["n_molecules"], ref["wall_s"]] for name, ref in computed.items()]))
    return tables


def moses_full(bench: dict, path: Path) -> list[Table]:
    rows, parts = [], []
    for label, steps in bench.items():
        if not isinstance(steps, dict) or label in ("machine", "provenance"):
            continue
        for step, s in steps.items():
            if isinstance(s, dict) and "cmd" in s:  # a step the script ran (not an estimate written beside them)
                rows.append([label, step, s["jobs"], s.get("max_molecules") or "all", s["rc"], s["wall_s"],
                             s["peak_tree_rss_mb"], s["max_rss_largest_process_mb"]])
                parts.append(s)
    return [Table("", "MOSES preparation at full scale: wall time and peak memory of each step",
                  ["code", "step", "processes", "molecules", "exit code", "wall seconds", "peak process-tree RSS MB",
                   "largest process max RSS MB"], rows, parts=parts)]


def ood(bench: dict, path: Path) -> list[Table]:
    from ood_tables import bench_rows

    columns, rows = bench_rows(path)
    return [Table("", "Typicality OOD score of trained molecule models: AUROC against each shifted set", columns,
                  rows)]


def gpu(bench: dict, path: Path) -> list[Table]:
    rows = [[key, run.get("parameters"), run.get("batch_size"), run.get("precision"), run.get("steps"),
             r(run.get("train_examples_per_s")), r(run.get("train_tokens_per_s"), 0),
             r(run.get("peak_gpu_memory_gib"), 2),
             run.get("loss_falls"), r(run.get("sample_decodable_fraction"), 4), run.get("error")]
            for key, run in bench["runs"].items()]
    return [Table("", f"Paper-size models on {bench['device']}: a short fixed training budget and sampling",
                  ["dataset/model", "parameters", "batch size", "precision", "steps", "train examples/s",
                   "train tokens/s", "peak GPU memory GiB", "loss falls", "decodable fraction", "error"], rows)]


def already_a_table(bench: dict, path: Path) -> list[Table]:
    """A bench that writes its result file's shape itself (title, columns, rows, notes beside its provenance)."""
    return [Table("", bench["title"], bench["columns"], bench["rows"], list(bench.get("notes", [])))]


TABLES: dict[str, Callable[[dict, Path], list[Table]]] = {
    "bench_molecules": molecules, "bench_structures": structures, "bench_sequences": sequences,
    "bench_trajectories": trajectories, "bench_trajectories_data": trajectories_data,
    "bench_offline_rl": offline_rl, "bench_predict": predict, "bench_design": design, "bench_metrics": metrics,
    "bench_moses_full": moses_full, "bench_ood": ood, "gpu_check": gpu,
    "bench_prepare_smiles": already_a_table,
}
"""The tables of each bench script's output, by the script's name."""


def checked(record: Any, where: str) -> dict:
    """``record`` as a provenance with every key a result file needs, and a known commit."""
    if not isinstance(record, dict):
        raise BenchResultError(f"{where}: no provenance (written before the bench scripts recorded their commit, "
                               "command and config); re-run the bench to make one")
    missing = [key for key in PROVENANCE_KEYS if not str(record.get(key) or "").strip()]
    if missing:
        raise BenchResultError(f"{where}: provenance lacks {', '.join(missing)}")
    if str(record["commit"]).startswith("unknown"):
        raise BenchResultError(f"{where}: commit {record['commit']!r}; a figure needs the commit of the code that ran")
    return record


def merged(records: list[dict]) -> dict:
    """One provenance of several runs: each key's distinct values, in order, joined."""
    out = {}
    for key in PROVENANCE_KEYS:
        values = list(dict.fromkeys(str(record[key]) for record in records))
        out[key] = values[0] if len(values) == 1 else ("; " if key in ("command", "config") else ", ").join(values)
    return out


def convert(path: Path) -> dict[str, dict]:
    """Every result file of one bench JSON, by file name (``<json name>[_<part>].json``)."""
    try:
        bench = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BenchResultError(f"{path}: line {err.lineno} column {err.colno}: {err.msg}") from err
    if not isinstance(bench, dict):
        raise BenchResultError(f"{path}: a bench result is a JSON object")
    top = checked(bench.get("provenance"), str(path))
    script = Path(str(top.get("script") or top["command"].split()[1])).stem
    if script not in TABLES:
        raise BenchResultError(f"{path}: written by {script}, which has no tables here (known: {', '.join(TABLES)})")
    out = {}
    for table in TABLES[script](bench, path):
        if table.parts is None:
            made = merged([top])
        else:
            made = merged([checked(part.get("provenance"), f"{path}: {table.part or 'a part'} of an earlier run")
                           for part in table.parts])
        result = {"title": table.title, "provenance": made, "columns": table.columns, "rows": table.rows}
        if table.notes:
            result["notes"] = table.notes
        out[f"{path.stem}_{table.part}.json" if table.part else f"{path.stem}.json"] = result
    return out


def snakemake_table(benchmarks: Path, pattern: str, *, title: str, command: str, config: str,
                    commit: str | None = None, machine: str | None = None) -> dict:
    """A result file of a run's Snakemake benchmark files ``benchmarks/<pattern>`` (one TSV per job:
    a header line, then one line per repeat): one row per file and repeat."""
    from timing import machine_words

    from dgm_science.docs import BENCHMARK_FIELDS, ResultFileError, current_commit, read_benchmarks

    try:
        runs = read_benchmarks(benchmarks, pattern)
    except ResultFileError as err:
        raise BenchResultError(str(err)) from err
    rows = [[job, *(value[key] for key in BENCHMARK_FIELDS)] for job, value in runs]
    files = sorted(benchmarks.glob(pattern))
    if commit is None:
        try:
            commit = current_commit(benchmarks.resolve().parent)
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            raise BenchResultError(f"{benchmarks}: not in a git checkout ({err}); give --commit") from err
    from datetime import date

    return {"title": title, "provenance": checked({"commit": commit, "command": command, "config": config,
                                                   "date": date.fromtimestamp(files[-1].stat().st_mtime).isoformat(),
                                                   "machine": machine or machine_words()}, str(benchmarks)),
            "columns": ["job", *BENCHMARK_FIELDS.values()], "rows": rows}


def snakemake_main(argv: list[str]) -> int:
    """``python bench/result_tables.py snakemake``: a run's Snakemake benchmark files as one result file."""
    parser = argparse.ArgumentParser(prog="python bench/result_tables.py snakemake", description=snakemake_main.__doc__)
    parser.add_argument("--benchmarks", type=Path, required=True, help="the run's benchmarks/ folder")
    parser.add_argument("--glob", default="**/*.tsv", help="the files under it, e.g. 'molecules/*/*/seed*/train.tsv'")
    parser.add_argument("--title", required=True)
    parser.add_argument("--command", required=True, help="the command that made the run, e.g. 'make run'")
    parser.add_argument("--config", required=True, help="the run's config files")
    parser.add_argument("--commit", default=None, help="default: that of the git checkout holding --benchmarks")
    parser.add_argument("--machine", default=None, help="default: this machine (CPU cores, GPU)")
    parser.add_argument("--out", required=True, help="the result file, relative to --out-dir")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="default: docs/results/bench")
    args = parser.parse_args(argv)
    try:
        data = snakemake_table(args.benchmarks, args.glob, title=args.title, command=args.command,
                               config=args.config, commit=args.commit, machine=args.machine)
    except BenchResultError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write(args.out_dir, {args.out: data})
    return 0


def write(out_dir: Path, results: dict[str, dict]) -> None:
    """Each result file under ``out_dir``, checked as dgm_science.docs reads it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in results.items():
        with atomic_path(out_dir / name) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False) + "\n")
        load_result(name, out_dir)
        print(f"wrote {out_dir / name} ({len(data['rows'])} rows)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["snakemake"]:
        return snakemake_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="bench/results/*.json written by the bench scripts")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="default: docs/results/bench")
    args = parser.parse_args(argv)
    try:
        results = {name: data for path in args.inputs for name, data in convert(path).items()}
    except BenchResultError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write(args.out_dir, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
