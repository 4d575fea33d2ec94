"""Benchmark: MOSES data preparation at full scale (1,584,663 training molecules): wall time and
peak memory of each step (prepare, featurize, dense, reference) and of a training process's data.
Writes bench/results/moses_full.json.

Each step runs as its own ``dgm`` process; its peak memory is the largest sum of the resident set
sizes of the process and all its descendants (the worker pool), sampled every 0.2 s, beside
``/usr/bin/time -v``'s maximum resident set of the largest single process. Resident sets count
the pages of memory-mapped files a process touched, so the tree sum is an upper bound; the
training-data steps also report their anonymous (``RssAnon``) and file-backed (``RssFile``)
resident memory: the mapped pages are clean page cache the kernel can drop, not the process's own.

    dgm fetch moses --out /tmp/moses/raw
    python bench/bench_moses_full.py --raw /tmp/moses/raw --work /tmp/moses/work --jobs 2
    python bench/bench_moses_full.py ... --steps featurize --max-molecules 100000 --label before \\
        --code /path/to/older/checkout   # the same step with another version of the package

Not a test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from timing import brief, provenance, shown_path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("prepare", "featurize", "featurize_valid", "dense", "reference_test", "reference_test_scaffolds",
         "train_data_graph", "train_data_dense")
SAMPLE_EVERY_S = 0.2

TRAIN_DATA_SCRIPT = """
import sys, time
from pathlib import Path
import torch, yaml
from torch.utils.data import DataLoader
from dgm_science import api, registry
def memory():  # resident MB: all, anonymous (the process's own data), file-backed (mapped file pages, reclaimable)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(status[k].split()[0]) // 1024 for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
data, model, n_batches, config_path = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
models = yaml.safe_load(config_path.read_text())["molecules"]["moses"]["models"]
config = api.RunConfig.parse(model, models[model])
spec = registry.get("model", model)
domain = registry.get("domain", spec.domain)
start = time.perf_counter()
state = domain.fit_state(data, spec, config.model)
train_set, valid_set = domain.datasets(data, spec, config.model, state)
opened = time.perf_counter() - start
at_open = memory()
loader = DataLoader(train_set, batch_size=config.train.batch_size, shuffle=True, collate_fn=train_set.collate,
                    generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
for i, batch in enumerate(loader):
    if i + 1 == n_batches:
        break
at_end = memory()
print(f"RESULT n_train={len(train_set)} open_s={opened:.1f} iterate_s={time.perf_counter() - start:.1f} "
      f"batches={n_batches} batch_size={config.train.batch_size} rss_open_mb={at_open['VmRSS']} "
      f"anon_open_mb={at_open['RssAnon']} file_open_mb={at_open['RssFile']} rss_end_mb={at_end['VmRSS']} "
      f"anon_end_mb={at_end['RssAnon']} file_end_mb={at_end['RssFile']} peak_rss_mb={at_end['VmHWM']}", flush=True)
"""


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> dict:
    """Run ``cmd`` in ``cwd`` under ``/usr/bin/time -v``; wall time, peak process-tree RSS, time's max RSS."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak = 0
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd)
        root = psutil.Process(proc.pid)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(root))
                stop.wait(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        stop.set()
        sampler.join()
        wall = time.perf_counter() - start
    text = log_path.read_text()
    max_rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    shown = ["python -c TRAIN_DATA_SCRIPT", *cmd[3:]] if cmd[1] == "-c" else cmd[2:] if cmd[1] == "-m" else cmd
    result = {"cmd": " ".join(shown), "rc": rc, "wall_s": round(wall, 1),
              "peak_tree_rss_mb": round(peak / 2**20), "max_rss_largest_process_mb":
              round(int(max_rss.group(1)) / 1024) if max_rss else None}
    found = re.search(r"^RESULT (.*)$", text, re.M)
    if found:
        result["detail"] = dict(kv.split("=", 1) for kv in found.group(1).split())
    if rc != 0:
        result["log_tail"] = text[-2000:]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="folder written by `dgm fetch moses`")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the prepared data")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of each step")
    parser.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS)
    parser.add_argument("--train-size", type=int, default=None, help="prepare: training subset (default: all)")
    parser.add_argument("--max-molecules", type=int, default=None,
                        help="featurize / dense / reference: the first N molecules only (default: all)")
    parser.add_argument("--graph-file", default="graphs_{split}.npz", help="featurize output name in --work")
    parser.add_argument("--batches", type=int, default=200, help="train_data_*: batches to iterate")
    parser.add_argument("--config", type=Path, default=ROOT / "workflows/config/paper.yaml",
                        help="model configs of train_data_* (batch size, tokenizer)")
    parser.add_argument("--code", type=Path, default=None,
                        help="run the steps with the dgm_science package under this folder (e.g. an older "
                             "checkout) instead of the installed one")
    parser.add_argument("--label", default="after", help="key of these figures in the results file")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/moses_full.json")
    args = parser.parse_args(argv)

    env = {**os.environ, "DGLBACKEND": "pytorch", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    if args.code is not None:
        env["PYTHONPATH"] = str(args.code)
    dgm = [sys.executable, "-m", "dgm_science.cli"]
    data, logs = args.work / "data", args.work / "logs"
    limit = [] if args.max_molecules is None else ["--max-molecules", str(args.max_molecules)]
    commands = {
        "prepare": [*dgm, "prepare", "moses", "--raw", str(args.raw), "--out", str(data), "--seed", "0",
                    *([] if args.train_size is None else ["--train-size", str(args.train_size)])],
        "featurize": [*dgm, "featurize", "--smiles", str(data / "train.smi"),
                      "--out", str(data / args.graph_file.format(split="train")), *limit],
        "featurize_valid": [*dgm, "featurize", "--smiles", str(data / "valid.smi"),
                            "--out", str(data / args.graph_file.format(split="valid"))],
        "dense": [*dgm, "dense", "--data", str(data), "--out", str(data / "dense.npz"), *limit],
        "reference_test": [*dgm, "reference", "--domain", "molecules", "--data", str(args.raw / "test.csv.gz"),
                           "--out", str(data / "ref_test.npz"), *limit],
        "reference_test_scaffolds": [*dgm, "reference", "--domain", "molecules", "--data",
                                     str(args.raw / "test_scaffolds.csv.gz"), "--out", str(data / "ref_test_scaffolds.npz"), *limit],
        "train_data_graph": [sys.executable, "-c", TRAIN_DATA_SCRIPT, str(data), "graph-vae", str(args.batches),
                             str(args.config)],
        "train_data_dense": [sys.executable, "-c", TRAIN_DATA_SCRIPT, str(data), "graph-diffusion",
                             str(args.batches), str(args.config)],
    }
    code = "this checkout" if args.code is None else f"the package under --code {args.code}, not this checkout"
    made = provenance(__file__, argv, f"{shown_path(args.config)} (train_data_*: batch size, tokenizer); "
                      f"{args.jobs} worker processes; steps run {code}", threads="1 per process (OMP_NUM_THREADS=1)",
                      arguments=args)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results["provenance"] = made
    results.setdefault("machine", {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30),
                                   "python": platform.python_version()})
    figures = results.setdefault(args.label, {})
    for step in args.steps:
        cmd = commands[step]
        if not step.startswith("train_data"):
            cmd = [*cmd, "--jobs", str(args.jobs)]
        print(f"[{args.label}] {step}", flush=True)
        # run outside the repository, so that --code (PYTHONPATH) decides which package is imported
        result = measure(cmd, logs / f"{args.label}_{step}.log", env, cwd=args.work)
        result.update(jobs=args.jobs, train_size=args.train_size, max_molecules=args.max_molecules,
                      provenance=brief(made))  # steps of other runs and labels keep theirs
        figures[step] = result
        print(json.dumps(result, indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
