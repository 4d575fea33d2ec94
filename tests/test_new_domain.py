"""A fifth domain, written here without touching a package file: its dataset, ``Domain`` class,
one model (a ``families.flows.Flow``) and one command are registered by this test, then run
through the real ``dgm`` CLI: prepare -> train -> sample -> evaluate, and its own command.
What CONTRIBUTING.md's "Adding a domain" asks of a contributor, checked."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pytest
import torch
from torch import nn

from dgm_science import cli, registry
from dgm_science.resources import TrainResources
from dgm_science.base import Domain, GenerativeModel, ModelSpec, Samples
from dgm_science.commands import command
from dgm_science.families.flows import ActNorm, AffineCoupling, Flow
from dgm_science.families.vae import StandardNormal
from dgm_science.utils import atomic_path

RADIUS, NOISE = 2.0, 0.1


def ring_points(n: int, seed: int) -> np.ndarray:
    """(n, 2) points on a circle of ``RADIUS`` with Gaussian radial noise."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * math.pi, n)
    radius = RADIUS + NOISE * rng.standard_normal(n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


class RingData:
    """Dataset "toy-rings": points on a noisy circle, split into train / valid / test."""

    @staticmethod
    def fetch(out_dir: Path) -> dict[str, Any]:
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / "points.npy", ring_points(3000, seed=7))
        return {"points": 3000}

    @staticmethod
    def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None = None, val_size: int | None = None,
                seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
        points = np.load(raw_dir / "points.npy", allow_pickle=False)
        order = np.random.default_rng(seed).permutation(len(points))
        val_size = val_size or 500
        splits = {"test": order[:500], "valid": order[500:500 + val_size], "train": order[500 + val_size:]}
        if train_size is not None:
            splits["train"] = splits["train"][:train_size]
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, index in splits.items():
            np.save(out_dir / f"{name}.npy", points[index])
        return {name: len(index) for name, index in splits.items()}


class PointDataset(torch.utils.data.Dataset):
    n_too_long = 0

    def __init__(self, points: np.ndarray) -> None:
        self.points = torch.from_numpy(points).float()

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.points[i]

    @staticmethod
    def collate(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": torch.stack(items)}


class RingDomain(Domain):
    """Points in the plane: items are (x, y) tuples; samples are a CSV."""

    name = "toy-rings"
    samples_file = "samples.csv"

    @staticmethod
    def fit_state(data_dir: Path, spec: Any, model_cfg: Any) -> dict[str, Any]:
        return {"dim": 2}

    @staticmethod
    def datasets(data_dir: Path, spec: Any, model_cfg: Any, state: dict[str, Any]) -> tuple[Any, Any]:
        return tuple(PointDataset(np.load(data_dir / f"{s}.npy")) for s in ("train", "valid"))  # type: ignore

    @staticmethod
    def batch_of(items: Sequence[Any], spec: Any, model_cfg: Any, state: dict[str, Any]):
        keep = [i for i, p in enumerate(items) if p is not None and np.isfinite(p).all()]
        if not keep:
            return None, []
        return {"x": torch.tensor(np.array([items[i] for i in keep]), dtype=torch.float32)}, keep

    @staticmethod
    def decode_table(raw: torch.Tensor, state: dict[str, Any], **options: Any):
        return [tuple(p) if np.isfinite(p).all() else None for p in raw.double().numpy().tolist()], {}

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        return np.ones(len(items))

    @staticmethod
    def typical_set(data_dir: Path, model_cfg: Any = None) -> list[tuple[float, float]]:
        return [tuple(p) for p in np.load(data_dir / "valid.npy")]

    @staticmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["x", "y", "log_likelihood", "ood_score"])
            ood = samples.ood_score if samples.ood_score is not None else np.full(len(samples), math.nan)
            for item, ll, score in zip(samples.items, samples.log_likelihood, ood):
                writer.writerow([*(item or ("", "")), ll, score])
        return sum(item is not None for item in samples.items)

    @staticmethod
    def read_samples(path: Path) -> np.ndarray:
        with open(path) as fh:
            return np.array([[float(r["x"]), float(r["y"])] for r in csv.DictReader(fh)])

    @classmethod
    def evaluate(cls, samples_path: Path, reference_dir: Path, *, n_jobs: int = 1) -> dict[str, float]:
        """Mean and spread of the samples' radius beside the test points', and the energy distance."""
        x, y = cls.read_samples(samples_path), np.load(reference_dir / "test.npy")

        def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.linalg.norm(a[:, None] - b[None], axis=-1).mean())

        energy = 2 * mean_distance(x, y) - mean_distance(x, x) - mean_distance(y, y)
        radius = np.linalg.norm(x, axis=1)
        return {"mean_radius": float(radius.mean()), "radius_std": float(radius.std()), "energy_distance": energy,
                "data_mean_radius": float(np.linalg.norm(y, axis=1).mean())}


@dataclasses.dataclass(frozen=True)
class RingFlowConfig:
    """Couplings of a 2-D RealNVP with MLP conditioners of ``hidden`` units."""

    couplings: int = 6
    hidden: int = 64


class Conditioner(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 4))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, t = self.net(x).chunk(2, dim=-1)
        return torch.tanh(h), t


class PointFlow(GenerativeModel):
    """The flow family over points: log_prob / loss / sample of {"x": (B, 2)}."""

    likelihood = "exact"

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.flow.log_prob(batch["x"])

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return -self.log_prob(batch).mean()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.flow.sample(n, generator=generator, temperature=temperature, device=device)


class RingFlow(ModelSpec):
    """Registry entry: a RealNVP flow over points in the plane."""

    domain: ClassVar[str] = "toy-rings"
    Config = RingFlowConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("x",)
    train_resources = TrainResources(seconds_per_step=0.01, mem_mb=4000)

    @staticmethod
    def build(cfg: RingFlowConfig, state: dict[str, Any]) -> GenerativeModel:
        transforms = []
        for k in range(cfg.couplings):
            transforms += [ActNorm(2, channel_dim=-1), AffineCoupling(torch.arange(2) == k % 2, Conditioner(cfg.hidden))]
        return PointFlow(Flow(StandardNormal(2), transforms))


def _count_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=Path, required=True)


def _count(args: argparse.Namespace) -> None:
    print(f"{len(RingDomain.read_samples(args.samples))} points")


@pytest.fixture
def toy_domain(monkeypatch):
    """The toy domain's registrations, in a copy of the registry that the test's end discards."""
    registry.names("domain")  # the package's own entries first
    monkeypatch.setattr(registry, "_REGISTRY", defaultdict(dict, {k: dict(v) for k, v in registry._REGISTRY.items()}))
    registry.register("dataset", "toy-rings")(RingData)
    registry.register("domain", "toy-rings")(RingDomain)
    registry.register("model", "toy-ring-flow")(RingFlow)
    command("toy-count", "count the points of a samples file", _count_arguments)(_count)


def test_a_new_domain_and_model_run_through_the_cli_without_touching_the_package(toy_domain, tmp_path, capsys):
    def dgm(*argv: Any) -> None:
        assert cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err

    registry.get("dataset", "toy-rings").fetch(tmp_path / "raw")
    dgm("prepare", "toy-rings", "--raw", tmp_path / "raw", "--out", tmp_path / "data")
    config = {"train": {"batch_size": 128, "lr": 3e-3, "max_steps": 400, "warmup_steps": 20, "val_every_steps": 200,
                        "val_batches": 2, "accelerator": "cpu", "devices": 1}, "sample": {"batch_size": 500}}
    dgm("train", "--model", "toy-ring-flow", "--data", tmp_path / "data", "--config", json.dumps(config),
        "--out", tmp_path / "run" / "model.ckpt", "--seed", "0")
    dgm("sample", "--checkpoint", tmp_path / "run" / "model.ckpt", "-n", "1000", "--out", tmp_path / "run" / "s.csv",
        "--device", "cpu")
    rows = list(csv.DictReader(open(tmp_path / "run" / "s.csv")))
    assert len(rows) == 1000 and all(math.isfinite(float(r["log_likelihood"])) for r in rows)
    assert all(math.isfinite(float(r["ood_score"])) for r in rows)  # the typical set was scored at training
    dgm("evaluate", "--domain", "toy-rings", "--samples", tmp_path / "run" / "s.csv", "--reference",
        tmp_path / "data", "--out", tmp_path / "run" / "metrics.json")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # an untrained flow is N(0, I): mean radius 1.25, energy distance to the ring ~0.9
    assert abs(metrics["mean_radius"] - RADIUS) < 0.3 and metrics["energy_distance"] < 0.1, metrics
    dgm("toy-count", "--samples", tmp_path / "run" / "s.csv")
    assert "1000 points" in capsys.readouterr().out
    # another domain's options are refused by name
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "run" / "model.ckpt"), "-n", "5", "--out",
                     str(tmp_path / "x.csv"), "--label", "Firmicutes"]) == 2
    assert "--label: sequences models only" in capsys.readouterr().err


def test_every_registered_domain_implements_the_whole_interface():
    import inspect

    for name in registry.names("domain"):
        domain = registry.get("domain", name)
        assert issubclass(domain, Domain) and not inspect.isabstract(domain), name
        assert domain.name == name and Path(domain.samples_file).suffix, name
    for name in registry.names("model"):
        assert registry.get("model", name).domain in registry.names("domain"), name
