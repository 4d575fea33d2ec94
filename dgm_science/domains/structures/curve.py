"""Learning curve of a 3D-molecule model: EDM's metrics (atom / molecule stability, validity) of
samples of each snapshot a training run kept (``train.snapshot_every_steps``:
``<run>/train/snapshots/step<NNNNNNN>.ckpt``) against its training step, as ``learning_curve.json``
and ``learning_curve.png`` beside the run's samples (the report's structures section shows every PNG
of a run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dgm_science.domains.structures import metrics
from dgm_science.utils import atomic_path

CURVE_SAMPLES = 100
"""Molecules sampled per intermediate snapshot inside ``dgm evaluate`` (a cheap proxy: molecule
stability of 100 samples has a binomial sd of up to 5 points; the final model's point is its whole
samples file)."""
CURVE_COLUMNS = ("step", "samples", "atom_stability", "molecule_stability", "validity")
SNAPSHOT_NAME = re.compile(r"step(\d+)\.ckpt$")


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the snapshots a run kept, by step; [] when it kept none."""
    folder = Path(run_dir) / "train" / "snapshots"
    found = [(int(m.group(1)), p) for p in folder.glob("step*.ckpt") if (m := SNAPSHOT_NAME.search(p.name))]
    return sorted(found)


def snapshot_point(path: Path, n: int, *, seed: int = 0, sampling_steps: int | None = None,
                   batch_size: int = 500) -> dict[str, float]:
    """EDM's metrics of ``n`` molecules sampled (seeded, the EMA weights) from one checkpoint;
    ``sampling_steps`` overrides the model's reverse steps (None: its own)."""
    from dgm_science import api
    from dgm_science.domains.structures.data import items_to_arrays

    loaded = api.load(path, device="cpu")
    if sampling_steps is not None:
        loaded.model.sampling_steps = sampling_steps
    items = [item for item in loaded.sample(n, seed=seed, batch_size=batch_size) if item is not None]
    positions, types, n_atoms = items_to_arrays(items)
    row = metrics.edm_metrics(positions, types, n_atoms)
    return {"step": int(loaded.info["global_step"]), "samples": n, **{k: row[k] for k in CURVE_COLUMNS[2:]}}


def run_curve(run_dir: Path, final: dict[str, float], final_step: int, n: int | None = None,
              seed: int = 0) -> list[dict[str, float]]:
    """The curve of a run: a point per snapshot before ``final_step`` (``n`` samples each, None:
    ``CURVE_SAMPLES``) and the final model's ``final`` metrics (of its samples file) at
    ``final_step``; [] without snapshots."""
    n = CURVE_SAMPLES if n is None else n
    points = [snapshot_point(path, n, seed=seed) for step, path in snapshots(run_dir) if step < final_step]
    if not points:
        return []
    last = {"step": final_step, "samples": int(final["n_samples"]), **{k: final[k] for k in CURVE_COLUMNS[2:]}}
    return points + [last]


def write_curve(points: Sequence[dict[str, Any]], out_dir: Path, title: str) -> Path:
    """``learning_curve.json`` (columns / rows) and ``learning_curve.png`` (the three metrics against
    the step, molecule stability on its own axis) in ``out_dir``; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    with atomic_path(out_dir / "learning_curve.json") as tmp:
        tmp.write_text(json.dumps({"columns": list(CURVE_COLUMNS),
                                   "rows": [[p[c] for c in CURVE_COLUMNS] for p in points]}, indent=1))
    steps = [p["step"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, label in (("atom_stability", "atom stable"), ("validity", "valid")):
        axes[0].plot(steps, [p[key] for p in points], marker="o", label=label)
    axes[0].set(xlabel="training step", ylabel="fraction of samples / atoms", ylim=(0, 1))
    axes[0].legend(loc="lower right")
    axes[1].plot(steps, [100 * p["molecule_stability"] for p in points], marker="o", color="C3")
    axes[1].set(xlabel="training step", ylabel="molecule stability (%)", ylim=(0, None))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = out_dir / "learning_curve.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png
