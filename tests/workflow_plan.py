"""The jobs a configuration plans, as text to diff: each job of ``snakemake --dry-run --printshellcmds`` as its
rule, wildcards, outputs, inputs, log, benchmark, priority, threads and shell command (job ids, reasons and
resources left out: the Slurm profile, not the plan, sizes a job). The committed plans under
``tests/data/workflow/`` are those of the default run, the paper config and every overlay; a refactor of the
rules that changes a job or a command fails tests/test_workflow.py until the plan is rewritten on purpose::

    python -m tests.workflow_plan --write     # after a change of the plan that is meant
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANS = ROOT / "tests/data/workflow"
CONFIG = ROOT / "workflows/config"
KEPT = ("wildcards", "output", "input", "log", "benchmark", "priority", "threads")


def overlay_stack(overlay: Path) -> list[str]:
    """The config files an overlay's header says it is run with (its ``--configfile`` line, continued)."""
    header = " ".join(line.lstrip("#").strip().rstrip("\\") for line in overlay.read_text().splitlines()
                      if line.startswith("#"))
    files = re.search(r"--configfile((?:\s+workflows/config/\S+\.yaml)+)", header)
    if files is None:
        raise ValueError(f"{overlay}: its header names no --configfile line")
    return files.group(1).split()


def configs() -> dict[str, list[str]]:
    """Plan name -> the config files of ``--configfile``: default, paper, and each overlay as its header runs it."""
    plans = {"default": ["workflows/config/default.yaml"], "paper": ["workflows/config/paper.yaml"]}
    for overlay in sorted((CONFIG / "overlays").glob("*.yaml")):
        plans[f"overlay-{overlay.stem}"] = overlay_stack(overlay)
    return plans


def dry_run(configfiles: list[str]) -> str:
    """stdout of the dry run (64 cores, so that each rule's declared threads show, as on a cluster node)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", "--printshellcmds", "--cores", "64", "--forceall",
         "--configfile", *configfiles],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"dry run of {configfiles} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def plan(stdout: str) -> str:
    """The jobs of a dry run's output, one paragraph each, sorted; comma-separated files sorted within a field."""
    jobs, job = [], None
    for line in stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            job = {"rule": line.split()[1].rstrip(":")}
            jobs.append(job)
        elif job is not None and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            if key in KEPT:
                job[key] = ", ".join(sorted(value.split(", "))) if key in ("output", "input", "log") else value
        elif job is not None and line.startswith("Shell command:"):
            job["shell"] = " ".join(line.removeprefix("Shell command:").split())
    paragraphs = ["\n".join(f"{key}: {job[key]}" for key in ("rule", *KEPT, "shell") if key in job) for job in jobs]
    return "\n\n".join(sorted(paragraphs)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the committed plans")
    parser.add_argument("names", nargs="*", help="plans to compute (default: all)")
    args = parser.parse_args()
    PLANS.mkdir(parents=True, exist_ok=True)
    for name, files in configs().items():
        if args.names and name not in args.names:
            continue
        text = plan(dry_run(files))
        path = PLANS / f"plan-{name}.txt"
        if args.write:
            path.write_text(text)
        same = path.is_file() and path.read_text() == text
        print(f"{name}: {text.count(chr(10) + chr(10)) + 1} jobs, {'same as' if same else 'DIFFERS from'} {path.name}")


if __name__ == "__main__":
    main()
