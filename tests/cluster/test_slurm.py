"""A tiny end-to-end config through the SLURM profile on a real single-node Slurm.

tests/cluster/slurm.sh starts slurmctld, slurmd and munged on this machine (installing Debian's
packages if missing); the pipeline of tests/cluster/tiny-slurm.yaml (every rule of tests/data/tiny.yaml, which
tests/test_pipeline.py runs locally, in 52 jobs instead of 83: one model per dataset) runs with ``--profile
workflows/profiles/slurm`` plus the small overlay in tests/cluster/profile (the local partition, no GPUs, one CPU
per job, squeue for status), from the raw inputs to the report; every job must have gone through Slurm. A train
rule given the profile's multi-device recipe runs one DDP process per Slurm task. The daemons are stopped by the
PIDs the script recorded, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.workflow_fixtures import ROOT, copy_workflow, run_snakemake, write_raw_inputs

pytestmark = pytest.mark.cluster
SCRIPT = ROOT / "tests/cluster/slurm.sh"
PROFILES = ["--profile", str(ROOT / "workflows/profiles/slurm"), "--profile", str(ROOT / "tests/cluster/profile")]
CONFIG = ROOT / "tests/cluster/tiny-slurm.yaml"
# Its runs: 3 molecules, 2 structures, 1 sequences, 1 trajectories model.
RUNS = 7


@pytest.fixture(scope="module")
def slurm_conf():
    """A running single-node Slurm; yields its slurm.conf, stops its daemons afterwards."""
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd needs root")
    # under /tmp (world-searchable): the munge user must reach its socket in the state folder
    state = Path(tempfile.mkdtemp(prefix="dgm-slurm-", dir="/tmp"))
    try:
        subprocess.run([str(SCRIPT), "start", str(state)], check=True, timeout=1200)
        yield state / "slurm.conf"
    finally:
        subprocess.run([str(SCRIPT), "stop", str(state)], timeout=300)
        shutil.rmtree(state, ignore_errors=True)


def job_latencies(log: str) -> dict[str, float]:
    """Seconds from submission to Snakemake seeing the job finished, per Snakemake job id, from the
    main log's ``[timestamp]`` lines, ``Job N has been submitted`` and ``Finished jobid: N``."""
    now, submitted, latency = None, {}, {}
    for line in log.splitlines():
        stamp = re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line.strip())
        if stamp:
            now = datetime.strptime(stamp.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.search(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line):
            submitted[m.group(1)] = now
        elif (m := re.search(r"Finished jobid: (\d+)", line)) and m.group(1) in submitted:
            latency[m.group(1)] = (now - submitted[m.group(1)]).total_seconds()
    return latency


def job_elapsed(job_ids) -> dict[str, float]:
    """Seconds from start to end of each finished Slurm job (``scontrol show job``; MinJobAge keeps them)."""
    elapsed = {}
    for job_id in job_ids:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        times = dict(re.findall(r"\b(StartTime|EndTime)=(\S+)", shown))
        if len(times) == 2 and "Unknown" not in times.values():
            start, end = (datetime.fromisoformat(times[k]) for k in ("StartTime", "EndTime"))
            elapsed[job_id] = (end - start).total_seconds()
    return elapsed


@pytest.fixture()
def workdir():
    """A fresh folder outside pytest's rotated temporary folders (a run takes minutes)."""
    work = Path(tempfile.mkdtemp(prefix="dgm-slurm-work-"))
    yield work
    shutil.rmtree(work, ignore_errors=True)


def test_tiny_pipeline_runs_through_slurm(slurm_conf, workdir, moses_smiles, monkeypatch):
    work = workdir
    copy_workflow(work, CONFIG)
    write_raw_inputs(work, {"train": moses_smiles[:260], "test": moses_smiles[260:],
                            "test_scaffolds": moses_smiles[200:]}, {"16s-v4": 120})
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    start = time.monotonic()
    result = run_snakemake(work, [CONFIG.name], *PROFILES, timeout=3000)
    wall = time.monotonic() - start
    log = result.stdout + result.stderr

    # the figures for the README first: jobs, wall time, the scheduler's share of each job
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    latency = job_latencies(log)
    command_seconds = sum(float(p.read_text().splitlines()[1].split("\t")[0])
                          for p in work.glob("benchmarks/**/*.tsv"))
    jobs = max(len(submitted), 1)
    # per job: submission to Snakemake seeing it done, less its command (includes time queued);
    # and the CPU-slot time the run spent beyond its commands (2 one-CPU jobs at a time)
    overhead = (sum(latency.values()) - command_seconds) / jobs
    slot_overhead = (wall * os.cpu_count() - command_seconds) / jobs
    # inside each job: its start to its end (Slurm's clock) less its command: the job step's own work
    # (Snakemake starting, reading the workflow, checking the outputs), what the workflow's parse costs
    elapsed = job_elapsed(submitted.values())
    in_job = (sum(elapsed.values()) - command_seconds) / max(len(elapsed), 1)
    print(f"\nslurm: {len(submitted)} Slurm jobs in {wall:.0f} s wall; their commands took {command_seconds:.0f} s "
          f"in all; submission to completion seen {sum(latency.values()):.0f} s in all: {overhead:.1f} s per "
          f"job beyond its command; {slot_overhead:.1f} CPU-slot seconds per job beyond the commands; "
          f"{len(elapsed)} jobs ran {sum(elapsed.values()):.0f} s from start to end: {in_job:.1f} s per job "
          f"inside the job beyond its command")
    assert result.returncode == 0, log[-8000:]

    report = (work / "results/report.html").read_text()
    assert "smiles-arm" in report and "Robot trajectories" in report
    metrics = sorted(work.glob("results/*/*/*/seed0/metrics.json"))
    assert len(metrics) == RUNS, metrics
    assert all(isinstance(json.loads(p.read_text()), dict) for p in metrics)

    # every job but the target rule `all` (no command, run by Snakemake itself) was a Slurm job:
    # one SLURM job id per Snakemake job, and a Slurm log for each
    done = re.search(r"(\d+) of (\d+) steps \(100%\) done", log)
    assert done, log[-3000:]
    local = re.findall(r"^localrule (\w+):", log, flags=re.M)
    assert local == ["all"], local
    assert len(submitted) == int(done.group(2)) - 1 and len(set(submitted.values())) == len(submitted)
    assert len(latency) == len(submitted)
    slurm_logs = list((work / ".snakemake/slurm_logs").rglob("*.log"))
    assert {p.stem for p in slurm_logs} >= set(submitted.values())
    rules = {p.relative_to(work / ".snakemake/slurm_logs").parts[0] for p in slurm_logs}
    for rule in ("molecules_train", "structures_train", "sequences_train", "trajectories_train", "report"):
        assert f"rule_{rule}" in rules


def test_train_rule_runs_one_process_per_slurm_task(slurm_conf, workdir, monkeypatch):
    """The profile's multi-device recipe (`mpi: srun`, `tasks: 2`, `nodes: 1` on a train rule)
    through the real Slurm: one Slurm job with 2 tasks, each a DDP rank (gloo on the CPU)."""
    work = workdir
    copy_workflow(work, ROOT / "tests/data/tiny.yaml")
    (work / "ddp.yaml").write_text(
        "trajectories:\n  pointmaze-umaze:\n    models:\n      traj-arm:\n"
        "        train: {devices: 2, accelerator: cpu, strategy: ddp}\n")
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    target = "results/trajectories/pointmaze-umaze/traj-arm/seed0/model.ckpt"
    # the target right after a single-valued option (a list option would swallow it)
    # (--set-resources replaces the test profile's entry of the rule: its GPU-less size is given again)
    result = run_snakemake(work, ["tiny.yaml", "ddp.yaml"], *PROFILES, target, "--set-resources",
                           "trajectories_train:mpi=srun", "trajectories_train:tasks=2", "trajectories_train:nodes=1",
                           "trajectories_train:gpu=0", "trajectories_train:mem_mb=1500", "trajectories_train:runtime=30",
                           timeout=1200)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert "srun --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 dgm train" in log
    assert len(re.findall(r"has been submitted with SLURM jobid", log)) == 3  # collect, prepare, train
    train_log = (work / "logs/trajectories/pointmaze-umaze/traj-arm/seed0/train.log").read_text()
    assert "MEMBER: 1/2" in train_log and "MEMBER: 2/2" in train_log
    assert '"world_size": 2' in train_log
    assert (work / target).is_file()
