"""The GPU runbook's model check (bench/gpu_check.py) on the CPU: a paper-size model trains a few
steps on real molecules, samples, and the JSON it writes carries the figures and the CPU bench
figures beside them, so the runbook works the day a GPU is lent."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "bench"))  # as when run as a script: its helpers (timing.py) sit beside it
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_smiles_arm_trains_and_samples_on_cpu(tmp_path, moses_smiles, gpu_check, one_thread):
    data = tmp_path / "molecules/moses/data"
    data.mkdir(parents=True)
    (data / "train.smi").write_text("\n".join(moses_smiles[:200]) + "\n")
    (data / "valid.smi").write_text("\n".join(moses_smiles[200:240]) + "\n")
    out = tmp_path / "gpu_molecules.json"
    code = gpu_check.main(["--domain", "molecules", "--datasets", "moses", "--models", "smiles-arm",
                           "--resources", str(tmp_path), "--device", "cpu", "--max-steps", "3",
                           "--batch-size", "8", "--sample", "4", "--out", str(out)])
    assert code in (0, 1)  # 1: the loss did not fall in 3 steps, which the runbook reports as a failure
    result = json.loads(out.read_text())
    run = result["runs"]["moses/smiles-arm"]
    assert run["steps"] == 3 and run["batch_size"] == 8 and run["precision"] == "32-true"
    assert run["parameters"] > 20_000_000  # the paper size (d 512, 8 layers), not the quick one
    assert math.isfinite(run["loss_first"]) and math.isfinite(run["loss_last"])
    assert run["train_examples_per_s"] > 0 and run["sample_n"] == 4
    assert 0.0 <= run["sample_decodable_fraction"] <= 1.0
    assert run["loss_falls"] == (run["loss_last"] < run["loss_first"]) and code == (0 if run["loss_falls"] else 1)
    assert run["cpu_bench"]["train_molecules_per_s"] > 0  # bench/results/molecules_moses.json beside it
    made = result["provenance"]
    assert made["command"].startswith("python bench/gpu_check.py --domain molecules --datasets moses")
    assert made["config"].startswith("workflows/config/paper.yaml: molecules models at their paper sizes")
