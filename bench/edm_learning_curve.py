"""Learning curve of a 3D-molecule model (qm9-edm): EDM's metrics (atom / molecule stability,
validity) of samples of each snapshot a training run kept (``train.snapshot_every_steps``) against
its training step, as a result file (docs/results/families/edm_learning_curve.json) and its plot.

Each point is cached in ``<run>/curve_points/`` so that the script can be re-run while the training
still writes snapshots (only new points are sampled). Not a test: it samples thousands of molecules.

    python bench/edm_learning_curve.py --run /tmp/edm/curve --samples 200 --final-samples 1000 \\
        --out docs/results/families/edm_learning_curve.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from dgm_science import checkpoint
from dgm_science.domains.structures import curve


def point(run: Path, step: int, path: Path, n: int, sampling_steps: int | None, seed: int) -> dict:
    """The cached (or newly sampled) point of one snapshot."""
    cache = run / "curve_points" / f"step{step:07d}_n{n}_s{sampling_steps or 'model'}_seed{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    start = time.perf_counter()
    row = curve.snapshot_point(path, n, seed=seed, sampling_steps=sampling_steps)
    info = checkpoint.load(path)["info"]
    row.update({"train_seconds": info.get("train_seconds"), "sample_seconds": time.perf_counter() - start,
                "sampling_steps": sampling_steps or checkpoint.load(path)["config"]["model"].get("sampling_steps")})
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder of model.ckpt (and train/snapshots)")
    parser.add_argument("--samples", type=int, default=200, help="molecules per intermediate snapshot")
    parser.add_argument("--final-samples", type=int, default=1000, help="molecules for the last snapshot")
    parser.add_argument("--sampling-steps", type=int, default=None, help="override the reverse steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="result JSON (and a .png beside it)")
    parser.add_argument("--command", default="", help="the training command, for the provenance")
    parser.add_argument("--commit", default="", help="commit of the code that trained")
    parser.add_argument("--notes", nargs="*", default=[])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    snaps = curve.snapshots(args.run)
    if not snaps:
        raise SystemExit(f"{args.run}: no train/snapshots")
    final = args.run / "model.ckpt"
    if final.is_file():  # the end of training (a time cap may stop it between snapshots)
        end = int(checkpoint.load(final)["info"]["global_step"])
        snaps = [(step, path) for step, path in snaps if step < end] + [(end, final)]
    rows = []
    for i, (step, path) in enumerate(snaps):
        last = i == len(snaps) - 1
        n = args.final_samples if last else args.samples
        row = point(args.run, step, path, n, args.sampling_steps, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is None:
        return
    columns = ["step", "train seconds", "samples", "sampling steps", "atom stability", "molecule stability",
               "validity", "sample seconds"]
    keys = ["step", "train_seconds", "samples", "sampling_steps", "atom_stability", "molecule_stability",
            "validity", "sample_seconds"]
    payload = checkpoint.load(final if final.is_file() else snaps[-1][1])
    table = {
        "title": f"{payload['model']} learning curve on QM9 (with H): EDM's metrics of samples of the snapshots of one "
                 f"training run (seed {payload['info'].get('seed')}) against its training step",
        "provenance": {"commit": args.commit, "command": args.command + " && python bench/edm_learning_curve.py "
                       + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
                       "config": json.dumps(payload["config"]), "date": datetime.date.today().isoformat(),
                       "machine": "2 CPU cores, no GPU (shared with other jobs: seconds are wall, niced)"},
        "columns": columns,
        "rows": [[r.get(k) if not isinstance(r.get(k), float) else round(r[k], 4) for k in keys] for r in rows],
        "notes": args.notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    curve.write_curve(rows, args.out.parent, table["title"])
    png = args.out.with_suffix(".png")
    (args.out.parent / "learning_curve.png").replace(png)
    (args.out.parent / "learning_curve.json").unlink()


if __name__ == "__main__":
    main()
