"""Nothing the project reads from disk is unpickled with arbitrary globals.

For each file type a ``dgm`` command reads, a code-executing pickle (its ``__reduce__`` runs
``os.system("touch <marker>")``) is planted under the file's real name, as raw pickle bytes, as a
``torch.save``'d file and, for ``.npz`` files, as ``np.savez`` of object arrays (which need
pickle); the real command then runs on it (``dgm_science.cli.main``, one case through
``python -m dgm_science.cli``). It must exit with code 2 and one ``dgm: error:`` line naming the
file, and the marker must not exist. ``test_payloads_are_live`` checks that each payload does
run when it is unpickled the unsafe way, so a passing case means the reader refused it.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
MARKER = "PWNED"


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def plant(path: Path, variant: str, marker: Path, members: tuple[str, ...] = ("data",)) -> None:
    """Write the payload to ``path`` (its exact name; np.savez gets a handle so no suffix is added)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.rmtree(path)
    payload = Payload(marker)
    if variant == "pickle":
        path.write_bytes(pickle.dumps(payload))
    elif variant == "torch":
        torch.save(payload, path)
    elif variant == "torch-checkpoint":  # a checkpoint-shaped dict with the payload inside
        from dgm_science.checkpoint import FORMAT

        torch.save({"format": FORMAT, "format_version": 1, "state_dict": {}, "info": payload}, path)
    elif variant == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, **{name: np.array([payload, 1], dtype=object) for name in members})
    else:
        raise AssertionError(variant)


# ------------------------------------------------------------------------------------ shared inputs


def _smiles(n: int = 40) -> list[str]:
    return DATA.joinpath("moses_sample.smi").read_text().split()[:n]


def _molecule_data(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    smiles = _smiles()
    for name in ("train.smi", "valid.smi", "train_all.smi"):
        (data / name).write_text("\n".join(smiles) + "\n")
    return data


@pytest.fixture(scope="module")
def minari_raw(tmp_path_factory) -> Path:
    """A real raw folder of `dgm collect` (2 short expert U-Maze episodes as a Minari dataset)."""
    from dgm_science.domains.trajectories.expert import write_expert_dataset

    root = tmp_path_factory.mktemp("minari") / "raw"
    write_expert_dataset(root, "umaze", episodes=2, episode_steps=10, seed=0)
    return root


@pytest.fixture(scope="module")
def sequence_data(tmp_path_factory) -> Path:
    """A real prepared 16S V4 folder (60 records)."""
    from dgm_science import registry
    from tests.domains.sequences.fixtures import write_raw

    root = tmp_path_factory.mktemp("sequences")
    raw = write_raw(root / "raw", "16s-v4", 60)
    registry.get("dataset", "16s-v4").prepare(raw, root / "data")
    return root / "data"


@pytest.fixture(scope="module")
def seq_checkpoint(tmp_path_factory, sequence_data) -> Path:
    """A real (untrained) tiny seq-arm checkpoint, for the commands that read a file with a model."""
    from dgm_science import checkpoint, registry
    from dgm_science.api import RunConfig
    from tests.domains.sequences.fixtures import TINY_CONFIGS

    config = RunConfig.parse("seq-arm", {"model": TINY_CONFIGS["seq-arm"]})
    spec = registry.get("model", "seq-arm")
    state = registry.get("domain", "sequences").fit_state(sequence_data, spec, config.model)
    model = spec.build(config.model, state)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    checkpoint.save(path, domain="sequences", model_name="seq-arm", config=config.to_dict(),
                    state_dict=model.state_dict(), domain_state=state, info={})
    return path


# ------------------------------------------------------------------------------------ the cases


@dataclass
class Case:
    """``setup(root, fixtures)`` lays out valid inputs and returns (argv, planted file, name the
    error must show, npz member names)."""

    name: str
    variants: tuple[str, ...]
    setup: Callable[[Path, pytest.FixtureRequest], tuple[list[str], Path, Path, tuple[str, ...]]]


BIN = ("pickle", "torch")
NPZ = ("pickle", "torch", "npz")


def _train(model: str, data: Path, root: Path) -> list[str]:
    return ["train", "--model", model, "--data", str(data), "--out", str(root / "run" / "model.ckpt"),
            "--config", json.dumps({"train": {"accelerator": "cpu", "max_steps": 1}}), "--threads", "1"]


def smiles_train(root, request):
    data = _molecule_data(root)
    return _train("smiles-arm", data, root), data / "train.smi", data / "train.smi", ()


def molecule_graphs(root, request):
    data = _molecule_data(root)
    target = data / "graphs_train.npz"
    return _train("graph-vae", data, root), target, target, ("format", "atom_ptr", "smiles_utf8")


def molecule_dense(root, request):
    data = _molecule_data(root)
    target = data / "dense.npz"
    return _train("graph-flow", data, root), target, target, ("atom_types", "max_atoms", "train_atoms", "train_bonds")


def molecule_reference_stats(root, request):
    reference = _molecule_data(root)
    samples = root / "samples.csv"
    samples.write_text("smiles,valid\nCCO,1\nc1ccccc1,1\n")
    target = reference / "ref_test.npz"
    argv = ["evaluate", "--domain", "molecules", "--samples", str(samples), "--reference", str(reference),
            "--out", str(root / "metrics.json")]
    return argv, target, target, ("logP", "SA", "QED", "weight")


def molecule_reference_smiles(root, request):
    target = root / "test.smi"
    return (["reference", "--domain", "molecules", "--data", str(target), "--out", str(root / "ref_test.npz")],
            target, target, ())


def conformer_npz(root, request):
    data = root / "data"
    data.mkdir()
    shutil.copyfile(DATA / "qm9_3d_sample.npz", data / "valid.npz")
    target = data / "train.npz"
    return _train("qm9-edm", data, root), target, target, ("n_atoms", "atom_types", "positions")


def _md_data(root: Path) -> Path:
    from tests.domains.structures.fixtures_md import write_prepared

    return write_prepared(root / "data")


def md_trajectory(root, request):
    data = _md_data(root)
    return _train("ala2-flow", data, root), data / "train.dcd", data / "train.dcd", ()


def md_topology(root, request):
    data = _md_data(root)
    return _train("ala2-flow", data, root), data / "topology.pdb", data / "topology.pdb", ()


def md_samples(root, request):
    data = _md_data(root)
    target = root / "samples.dcd"
    argv = ["evaluate", "--domain", "peptide-md", "--samples", str(target), "--reference", str(data),
            "--out", str(root / "metrics.json")]
    return argv, target, target, ()


def _trajectory_data(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    (data / "prepare.json").write_text(json.dumps({"maze": "umaze"}))
    return data


def trajectory_split(root, request):
    data = _trajectory_data(root)
    target = data / "train.npz"
    return _train("traj-arm", data, root), target, target, ("transitions", "lengths")


def trajectory_prepare_json(root, request):
    data = _trajectory_data(root)
    target = data / "prepare.json"
    return _train("traj-arm", data, root), target, target, ()


def _minari(root: Path, request) -> tuple[list[str], Path]:
    raw = root / "raw"
    shutil.copytree(request.getfixturevalue("minari_raw"), raw)
    return ["prepare", "pointmaze-umaze", "--raw", str(raw), "--out", str(root / "data")], raw


def minari_hdf5(root, request):
    argv, raw = _minari(root, request)
    return argv, raw / "minari" / "data" / "main_data.hdf5", raw / "minari", ()


def minari_metadata(root, request):
    argv, raw = _minari(root, request)
    return argv, raw / "minari" / "data" / "metadata.json", raw / "minari", ()


def sequence_fasta(root, request):
    data = root / "data"
    shutil.copytree(request.getfixturevalue("sequence_data"), data)
    return _train("seq-arm", data, root), data / "train.fasta", data / "train.fasta", ()


def sequence_prepare_json(root, request):
    data = root / "data"
    shutil.copytree(request.getfixturevalue("sequence_data"), data)
    return _train("seq-arm", data, root), data / "prepare.json", data / "prepare.json", ()


def checkpoint_sample(root, request):
    target = root / "model.ckpt"
    return (["sample", "--checkpoint", str(target), "-n", "1", "--out", str(root / "samples.csv")],
            target, target, ())


def compressed_file(root, request):
    target = root / "test.fasta.dgmz"
    argv = ["decompress", "--checkpoint", str(request.getfixturevalue("seq_checkpoint")), "--input", str(target),
            "--out", str(root / "restored.fasta"), "--device", "cpu"]
    return argv, target, target, ()


def _molecule_run(root: Path) -> Path:
    run = root / "results" / "molecules" / "moses" / "smiles-arm" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"validity": 1.0}))
    return run


def _report(root: Path, *inputs: str) -> list[str]:
    return ["report", "--results", str(root / "results"), "--out", str(root / "report.html"),
            *[f"--input={item}" for item in inputs]]


def report_metrics(root, request):
    target = _molecule_run(root) / "metrics.json"
    return _report(root), target, target, ()


def report_checkpoint(root, request):
    target = _molecule_run(root) / "model.ckpt"
    return _report(root), target, target, ()


def report_reference_input(root, request):
    run = _molecule_run(root)
    (run / "samples.csv").write_text("smiles,valid,logp,sa,qed,mw\nCCO,1,0.1,1.0,0.4,46.0\n")
    target = root / "resources" / "molecules" / "moses" / "ref_test.npz"
    return _report(root, f"molecules/moses/ref_test={target}"), target, target, ("logP", "SA", "QED", "weight")


def report_json_input(root, request):
    run = root / "results" / "trajectories" / "pointmaze-umaze" / "traj-arm" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    target = root / "resources" / "trajectories" / "pointmaze-umaze" / "expert_rollout_d4rl.json"
    return _report(root, f"trajectories/pointmaze-umaze/expert_rollout_d4rl={target}"), target, target, ()


CASES = [
    Case("molecules-smiles-train.smi", BIN, smiles_train),
    Case("molecules-reference-test.smi", BIN, molecule_reference_smiles),
    Case("molecules-graphs_train.npz", NPZ, molecule_graphs),
    Case("molecules-dense.npz", NPZ, molecule_dense),
    Case("molecules-reference-stats-ref_test.npz", NPZ, molecule_reference_stats),
    Case("conformers-train.npz", NPZ, conformer_npz),
    Case("peptide-md-train.dcd", BIN, md_trajectory),
    Case("peptide-md-topology.pdb", BIN, md_topology),
    Case("peptide-md-samples.dcd", BIN, md_samples),
    Case("trajectories-train.npz", NPZ, trajectory_split),
    Case("trajectories-prepare.json", BIN, trajectory_prepare_json),
    Case("minari-main_data.hdf5", BIN, minari_hdf5),
    Case("minari-metadata.json", BIN, minari_metadata),
    Case("sequences-train.fasta", BIN, sequence_fasta),
    Case("sequences-prepare.json", BIN, sequence_prepare_json),
    Case("checkpoint-model.ckpt", ("pickle", "torch", "torch-checkpoint"), checkpoint_sample),
    Case("compressed-.dgmz", BIN, compressed_file),
    Case("report-results-metrics.json", BIN, report_metrics),
    Case("report-results-model.ckpt", ("pickle", "torch", "torch-checkpoint"), report_checkpoint),
    Case("report-input-ref_test.npz", NPZ, report_reference_input),
    Case("report-input-rollout.json", BIN, report_json_input),
]
PARAMS = [pytest.param(case, variant, id=f"{case.name}-{variant}") for case in CASES for variant in case.variants]


def _check_refused(rc: int, stderr: str, named: Path, marker: Path) -> None:
    assert not marker.exists(), "the planted pickle ran"
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("dgm: error:")]
    assert rc == 2 and len(errors) == 1, f"exit code {rc}, stderr:\n{stderr}"
    assert str(named) in errors[0], errors[0]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
def test_planted_pickle_is_refused(case: Case, variant: str, tmp_path: Path, request, capsys, one_thread) -> None:
    from dgm_science import cli

    marker = tmp_path / MARKER
    argv, target, named, members = case.setup(tmp_path, request)
    plant(target, variant, marker, members or ("data",))
    capsys.readouterr()
    rc = cli.main(argv)
    _check_refused(rc, capsys.readouterr().err, named, marker)


def test_minari_env_spec_is_never_built(tmp_path: Path, request, capsys) -> None:
    """metadata.json without stored spaces makes Minari ``gym.make`` its env_spec, i.e. import and
    call any ``module:function`` named there: refused before Minari reads it."""
    from dgm_science import cli

    marker = tmp_path / MARKER
    argv, raw = _minari(tmp_path, request)
    path = raw / "minari" / "data" / "metadata.json"
    metadata = json.loads(path.read_text())
    _hostile_env_spec(metadata, marker)
    path.write_text(json.dumps(metadata))
    rc = cli.main(argv)
    _check_refused(rc, capsys.readouterr().err, raw / "minari", marker)


def _hostile_env_spec(metadata: dict, marker: Path) -> None:
    del metadata["observation_space"], metadata["action_space"]
    spec = json.loads(metadata["env_spec"])
    spec.update(entry_point="os:system", kwargs={"command": f"touch {shlex.quote(str(marker))}"},
                max_episode_steps=None, additional_wrappers=[])
    metadata["env_spec"] = json.dumps(spec)


def test_payloads_are_live(tmp_path: Path, minari_raw: Path) -> None:
    """Control: each planted file does run its code when loaded the unsafe way."""
    marker = tmp_path / MARKER
    loaders = {
        "pickle": lambda p: pickle.loads(p.read_bytes()),
        "torch": lambda p: torch.load(p, weights_only=False),
        "torch-checkpoint": lambda p: torch.load(p, weights_only=False),
        "npz": lambda p: np.load(p, allow_pickle=True)["data"],
    }
    for variant, load in loaders.items():
        path = tmp_path / f"payload.{variant}"
        plant(path, variant, marker)
        load(path)
        assert marker.exists(), variant
        marker.unlink()

    import minari

    data = tmp_path / "minari"
    shutil.copytree(minari_raw / "minari" / "data", data)
    metadata = json.loads((data / "metadata.json").read_text())
    _hostile_env_spec(metadata, marker)
    (data / "metadata.json").write_text(json.dumps(metadata))
    try:
        minari.MinariDataset(data)
    except Exception:  # os.system returns an int, not an env: gymnasium fails after the call
        pass
    assert marker.exists(), "minari"


def test_real_cli_process(tmp_path: Path) -> None:
    """The installed entry point as a process: exit code 2, one error line, no traceback."""
    marker = tmp_path / MARKER
    target = tmp_path / "model.ckpt"
    plant(target, "torch", marker)
    env = {**os.environ, "DGLBACKEND": "pytorch", "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-m", "dgm_science.cli", "sample", "--checkpoint", str(target), "-n", "1",
                           "--out", str(tmp_path / "samples.csv")], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    _check_refused(proc.returncode, proc.stderr, target, marker)
