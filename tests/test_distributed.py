"""Distributed training is the same training: 2 CPU ranks (gloo) under Lightning's
``strategy="ddp"`` against one process, for one model of each family; only rank 0 writes; every
parameter gets a gradient (DDP's requirement); a Slurm job with the wrong number of tasks fails.

What the equality test compares: ``tests/distributed_worker.py`` trains each model for STEPS
optimisation steps of a global batch of 2 x BATCH examples with the real GenerativeLightningModule,
samplers, loaders, AdamW, warm-up schedule and gradient clipping, (a) on 2 ranks of BATCH each and
(b) in one process that accumulates the same 2 micro-batches of BATCH per step. The random draws of
a loss (diffusion times, noise, VAE latents, dequantisation) are seeded from (seed, step, global
micro-batch index), so rank r draws exactly what micro-batch r of the reference draws; with
per-micro-batch normalised losses the two compute the same gradient, and 2 ranks must end with the
reference's weights. A wrong data split, a rank that trains other data, unsynchronised weights
(ActNorm's data-dependent initialisation, an EMA copy), a per-rank learning rate or a missing
gradient would all show. The gradient of ala2-flow, a flow with a deterministic per-example-mean
loss, is also compared with one process of batch 2 x BATCH in one piece.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dgm_science import api, checkpoint, registry
from dgm_science.config import TrainConfig
from dgm_science.training import SlurmTasksError, check_slurm_tasks, make_trainer, requested_processes
from tests.distributed_worker import MODELS, N_VALID
from tests.test_contract import setup  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
BATCH, STEPS = 4, 4  # per rank; 2 ranks make a global batch of 8


def _worker(out: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}  # not a Slurm job here
    env.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0", DGLBACKEND="pytorch")
    command = [sys.executable, str(ROOT / "tests/distributed_worker.py"), "--out", str(out), "--batch", str(BATCH),
               "--steps", str(STEPS), *args]
    run = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(folder of the 2-rank DDP run, folder of the one-process reference run)."""
    ddp, reference = tmp_path_factory.mktemp("ddp"), tmp_path_factory.mktemp("reference")
    _worker(ddp, "--devices", "2", "--api")
    _worker(reference, "--devices", "1", "--reference")
    return ddp, reference


def _load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].is_floating_point()
               else float(not torch.equal(a[k], b[k])) for k in a)


@pytest.mark.parametrize("name", MODELS)
def test_two_ranks_train_the_weights_of_one_process(name, runs):
    ddp, reference = runs
    rank0, rank1 = _load(ddp / f"{name}.rank0.pt"), _load(ddp / f"{name}.rank1.pt")
    assert _max_difference(rank0, rank1) == 0.0  # the ranks hold one model
    accumulated = _load(reference / f"{name}.accumulate.pt")
    assert _max_difference(_load(ddp / f"{name}.rank0.gradient.pt"),
                           _load(reference / f"{name}.accumulate.gradient.pt")) < 1e-6
    assert _max_difference(rank0, accumulated) < 1e-5
    summaries = [json.loads((ddp / f"summary.rank{r}.json").read_text())[name] for r in (0, 1)]
    assert [s["global_rank"] for s in summaries] == [0, 1] and all(s["world_size"] == 2 for s in summaries)
    assert all(s["global_step"] == STEPS for s in summaries)
    # validation is sharded: each rank scores half of the validation examples, and the reduced
    # val/nll is the same on both ranks
    assert [s["validated_examples"] for s in summaries] == [N_VALID // 2] * 2
    assert summaries[0]["val/nll"] == summaries[1]["val/nll"]
    one = json.loads((reference / "summary.rank0.json").read_text())[f"{name}.accumulate"]
    assert one["validated_examples"] == N_VALID and one["world_size"] == 1


def test_training_moved_the_weights(runs):
    """The equality above is between trained models, not two copies of the initial weights."""
    ddp, reference = runs
    for name in MODELS:
        single = _load(reference / f"{name}.single.pt")
        assert _max_difference(_load(ddp / f"{name}.rank0.pt"), single) > 0  # other noise / normalisation
        gradient = _load(ddp / f"{name}.rank0.gradient.pt")
        assert max(g.abs().max().item() for g in gradient.values()) > 1e-4


def test_a_deterministic_per_example_loss_has_the_gradient_of_one_batch(runs):
    """ala2-flow's loss (mean NLL per example, no random draws): the all-reduced gradient of 2 ranks
    of B/2 is the gradient of one process with batch B, with ActNorm initialised across ranks."""
    ddp, reference = runs
    assert _max_difference(_load(ddp / "ala2-flow.rank0.gradient.pt"),
                           _load(reference / "ala2-flow.single.gradient.pt")) < 1e-6


def test_only_rank_zero_writes_the_checkpoint_statistics_and_logs(runs):
    ddp, _ = runs
    run = ddp / "api"
    written = {r: json.loads((ddp / f"writes.rank{r}.json").read_text()) for r in (0, 1)}
    assert written[1] == []  # rank 1 opened nothing for writing in the run folder
    names = {Path(p).relative_to(run).as_posix() for p in written[0]}
    assert {"model.ckpt", "train/logs/metrics.csv", "train/checkpoints/last.ckpt"} <= names
    payload = checkpoint.load(run / "model.ckpt")
    assert payload["info"]["world_size"] == 2 and payload["info"]["global_rank"] == 0
    assert payload["info"]["global_step"] == 4 and "typicality" in payload["info"]
    api.load(run / "model.ckpt", device="cpu")


@pytest.mark.parametrize("name", registry.names("model"))
def test_every_parameter_gets_a_gradient(name, setup):  # noqa: F811 - the contract tests' fixture
    """DDP (without find_unused_parameters) fails on a parameter that takes no part in the loss."""
    _, _, model, _, batch = setup(name)
    model.train()
    partial = model.partial_updates  # a GAN: critic steps, then a generator step
    steps = model.update_round() if partial else range(3)
    used: set[str] = set()
    for step in steps:  # several steps: random diffusion times, masks and noise differ per step
        model.zero_grad(set_to_none=True)
        model.set_training_step(step)
        model.loss(batch).backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        used |= {n for n, p in model.named_parameters() if p.grad is not None}
        assert partial or unused == [], f"{name}: parameters without a gradient: {unused}"
    # a model that updates part of itself per step gets find_unused_parameters (training.make_trainer),
    # and still trains every parameter within a round of steps
    assert used == {n for n, p in model.named_parameters() if p.requires_grad}, name


def test_a_partial_update_model_gets_ddp_that_finds_unused_parameters_only_with_several_processes(tmp_path):
    """The GAN's trainer: find_unused_parameters when the config asks for several processes (as
    ``requested_processes`` counts them), plain DDP for other models, one device without DDP."""
    def trainer(devices, partial):
        return make_trainer(TrainConfig(accelerator="cpu", devices=devices), tmp_path / f"{devices}{partial}",
                            progress=False, partial_updates=partial)

    assert getattr(trainer(2, True).strategy, "_ddp_kwargs", {}).get("find_unused_parameters") is True
    assert not getattr(trainer(2, False).strategy, "_ddp_kwargs", {}).get("find_unused_parameters")
    assert not hasattr(trainer(1, True).strategy, "_ddp_kwargs")


def test_graph_diffusion_loads_checkpoints_with_the_last_layers_discarded_global_weights(setup):  # noqa: F811
    """Checkpoints from before the last layer lost its unused global update still load, with the
    same outputs."""
    _, _, model, _, batch = setup("graph-diffusion")
    state = model.state_dict()
    last = f"denoiser.layers.{len(model.denoiser.layers) - 1}."
    dy = model.denoiser.layers[0].attention.global_self.in_features
    first_norms = model.denoiser.layers[0].norms
    dx, de = first_norms[0].normalized_shape[0], first_norms[1].normalized_shape[0]
    old = dict(state)
    for key, shape in {"attention.global_self.weight": (dy, dy), "attention.node_pool.linear.weight": (dy, 4 * dx),
                       "attention.edge_pool.linear.weight": (dy, 4 * de), "attention.global_out.0.weight": (dy, dy),
                       "attention.global_out.2.weight": (dy, dy), "norms.2.weight": (dy,), "norms.5.bias": (dy,),
                       "ffns.2.0.weight": (2 * dy, dy), "ffns.2.3.weight": (dy, 2 * dy)}.items():
        old[last + key] = torch.randn(shape)
    assert not hasattr(model.denoiser.layers[-1].attention, "global_self")
    assert hasattr(model.denoiser.layers[0].attention, "global_self")  # earlier layers keep their global update
    fresh = setup("graph-diffusion")[2]
    fresh.load_state_dict(old)  # strict: the discarded weights are dropped, nothing else is missing
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_requested_processes_counts_devices_as_lightning():
    assert requested_processes(TrainConfig(accelerator="cpu", devices=2)) == 2
    assert requested_processes(TrainConfig(accelerator="cpu", devices="auto")) == 1
    assert requested_processes(TrainConfig(accelerator="cpu", devices="0,1,2")) == 3
    assert requested_processes(TrainConfig(accelerator="cpu", devices=2, num_nodes=3)) == 6
    with pytest.raises(ValueError, match="train.devices"):
        requested_processes(TrainConfig(devices="many"))


def test_a_slurm_job_with_fewer_tasks_than_devices_fails_clearly():
    two = TrainConfig(accelerator="cpu", devices=2)
    with pytest.raises(SlurmTasksError, match=r"started 1 task\(s\).*one task per device.*--ntasks-per-node=2"):
        check_slurm_tasks(two, {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train"})
    with pytest.raises(SlurmTasksError, match="started 1 task"):  # sbatch without --ntasks: one task
        check_slurm_tasks(two, {"SLURM_JOB_ID": "7"})
    with pytest.raises(SlurmTasksError, match="asks for 1 training processes"):  # 2 tasks would train twice
        check_slurm_tasks(TrainConfig(accelerator="cpu", devices=1), {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"})
    check_slurm_tasks(two, {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2"})
    check_slurm_tasks(two, {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "bash"})  # Lightning launches
    check_slurm_tasks(two, {})  # not in Slurm: Lightning launches the processes
    check_slurm_tasks(TrainConfig(accelerator="cpu"), {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})


def test_dgm_train_in_a_one_task_slurm_job_asking_for_two_devices_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    config = api.RunConfig.parse("smiles-arm", {"train": {"accelerator": "cpu", "devices": 2}})
    with pytest.raises(SlurmTasksError, match="one task per device"):
        api.train("smiles-arm", tmp_path / "no-data", config, seed=0, out=tmp_path / "model.ckpt")
    assert not (tmp_path / "model.ckpt").exists()
