"""The ``trajectories`` domain: PointMaze trajectory models that plan (``maze-diffuser``,
``traj-arm``) — their state (maze, horizon, normalisation limits), datasets of windows, start /
goal conditions, decode, likelihood, samples as a Minari dataset and plan evaluation. The data,
the ``Trajectory`` item and its normalised window representation live in ``data.py``.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.base import Domain, ModelSpec, Samples
from dgm_science.domains.trajectories.data import (
    ACT_DIM, COLUMNS, OBS_DIM, Trajectory, WindowDataset, episode_trajectory, inpainting_condition, log_scale,
    normalize, plan_reach, read_prepared, read_split, trajectory_episode, unnormalize, window_condition,
)
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path, csv_number


def point(text: str) -> tuple[float, float]:
    """argparse type of a maze position "X,Y"."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    return x, y




@register("domain", "trajectories")
class TrajectoryDomain(Domain):
    """PointMaze trajectories; samples are a Minari dataset (one episode per sampled plan)."""

    name = "trajectories"
    headline = ("wall_fraction", "plan points in walls ↓")
    headline_ratio_scale = True
    size_unit = "step"
    samples_file = "samples.minari"
    samples_in_folder = True
    condition_options = ("start", "goal", "within_reach")

    @classmethod
    def summary_rows(cls, dataset: str, seed_dirs: list[Path]) -> list[tuple[str, list[Any], tuple[str, float] | None]]:
        """The open-loop headline (no paper reports it), then per evaluation protocol the map-free planner's
        closed-loop normalised score (``rollout_<protocol>.json``) beside Diffuser's published row of the same
        maze and protocol."""
        from dgm_science.domains.trajectories.rollout import PROTOCOLS, published_planners
        from dgm_science.utils import read_json

        metrics = [read_json(p) for d in seed_dirs if (p := d / "metrics.json").is_file()]
        if metrics and "dynamic_error" in metrics[0]:  # a user's environment (no maze, no walls): its headline
            rows = [("plan vs the data's one-step model, std ↓", [m.get("dynamic_error") for m in metrics], None),
                    ("held-out data vs the one-step model, std", [m.get("data_dynamic_error") for m in metrics], None)]
        else:
            rows = super().summary_rows(dataset, seed_dirs)
        for protocol in PROTOCOLS:
            found = [read_json(p) for d in seed_dirs if (p := d / f"rollout_{protocol}.json").is_file()]
            if not found:
                continue
            diffuser = [r for r in published_planners(found[0]["maze"], protocol) if r["method"] == "Diffuser"]
            anchor = (f"Diffuser ({protocol}, GPU)", diffuser[0]["score"]) if diffuser else None
            rows.append((f"closed-loop score, {protocol} ↑", [r.get("normalized_score") for r in found], anchor))
            if found[0].get("normalized_score") is None:  # a user's maze: no D4RL reference, the return instead
                rows.append((f"closed-loop return, {protocol} ↑", [r.get("return_mean") for r in found], None))
        found = [read_json(p) for d in seed_dirs if (p := d / "rollout_env.json").is_file()]
        if found:  # a user's Minari dataset: its environment's closed loop, or why it was skipped
            rows.append(("closed-loop return, env ↑" if "skipped" not in found[0] else
                         f"closed loop: {found[0]['skipped']}", [r.get("return_mean") for r in found], None))
        return rows

    @staticmethod
    def fit_state(data_dir: Path, spec: type[ModelSpec], model_cfg: Any) -> dict[str, Any]:
        """Maze, horizon, the per-dimension limits of the training transitions (normalisation) and
        their mean distance per step (how far a plan of the horizon goes: stitched planning)."""
        from dgm_science.domains.trajectories.mazes import maze_spec

        prepared = read_prepared(data_dir)
        if prepared.get("maze") is None:  # a user's Minari dataset of another environment (generic.py)
            from dgm_science.domains.trajectories import generic

            return generic.fit_state(prepared, data_dir, model_cfg.horizon)
        maze = maze_spec(prepared["maze"])
        horizon = int(model_cfg.horizon or maze.horizon)
        episodes = read_split(Path(data_dir) / "train.npz")
        train = np.concatenate(episodes)
        low, high = train.min(0).astype(np.float64), train.max(0).astype(np.float64)
        high = np.where(high - low < 1e-6, low + 1e-6, high)
        steps = [np.linalg.norm(np.diff(episode[:, :2], axis=0), axis=1) for episode in episodes]
        return {"maze": maze.name, "env_id": maze.env_id, "horizon": horizon, "obs_dim": OBS_DIM,
                "act_dim": ACT_DIM, "columns": list(COLUMNS), "low": low.tolist(), "high": high.tolist(),
                "step_length": float(np.concatenate(steps).mean())}

    @staticmethod
    def datasets(data_dir: Path, spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[WindowDataset, WindowDataset]:
        train = WindowDataset(read_split(Path(data_dir) / "train.npz"), state)
        valid = WindowDataset(read_split(Path(data_dir) / "valid.npz"), state, stride=max(1, state["horizon"] // 4))
        return train, valid

    @classmethod
    def add_sample_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--start", type=point, default=None, metavar="X,Y",
                           help="trajectory models: start every plan here, at rest (default: drawn in a free cell)")
        group.add_argument("--goal", type=point, default=None, metavar="X,Y",
                           help="trajectory models: end every plan here (default: drawn in another free cell)")
        group.add_argument("--within-reach", action="store_true",
                           help="trajectory models: draw each goal within the plan's reach of its start, "
                                "the data's mean step length x (horizon - 1) along the maze's shortest path "
                                "(default: anywhere in the maze; not with --start / --goal)")

    @staticmethod
    def draw_conditions(n: int, state: dict[str, Any], generator: torch.Generator | None = None,
                        start: Sequence[float] | None = None, goal: Sequence[float] | None = None,
                        within_reach: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
        """Starts and goals for ``n`` plans: given (x, y), checked to lie in the maze, or drawn as
        gymnasium-robotics resets do: two distinct free cells, uniform within +-0.25 of each
        centre; the start at rest. ``within_reach``: the goal's cell no farther along the maze's
        shortest path than a plan of the horizon goes at the data's pace (whole cells), so that
        each plan can arrive. Returns the inpainting condition and the decode options."""
        from dgm_science.domains.trajectories.mazes import Maze

        if state.get("maze") is None:  # a generic environment: held-out first observations, no goal
            from dgm_science.domains.trajectories import generic

            if start is not None or goal is not None or within_reach:
                raise ValueError("--start / --goal / --within-reach are PointMaze positions; this model's plans "
                                 "start from held-out first observations of its dataset")
            return generic.start_condition(generic.draw_starts(n, state, generator), state), {"goals": None}
        maze = Maze(state["maze"])
        max_cells = None
        if within_reach:
            if start is not None or goal is not None:
                raise ValueError("--within-reach draws both the start and the goal: give it without --start / --goal")
            reach = plan_reach(state, "--within-reach")
            max_cells = int(reach // maze.scaling)
            if max_cells < 1:
                raise ValueError(f"--within-reach: a plan of this model goes {reach:.2f} at the data's pace, "
                                 f"less than one cell of the {maze.name} maze")
        starts, goals = maze.draw_start_goal(n, generator, max_cells=max_cells)
        if start is not None:
            starts[:] = [*maze.check_point(start, "start"), 0.0, 0.0]
        if goal is not None:
            goals[:] = maze.check_point(goal, "goal")
        return inpainting_condition(starts, goals, state), {"goals": goals}

    @staticmethod
    def decode_table(raw: torch.Tensor, state: dict[str, Any], goals: np.ndarray | None = None,
                     **options: Any) -> tuple[list[Trajectory | None], dict[str, list[Any]]]:
        """Normalised windows (B, H, 6) -> trajectories in the maze's units (None if not finite)."""
        x = unnormalize(raw.detach().float().cpu().numpy(), state)
        obs_dim = int(state.get("obs_dim", OBS_DIM))
        if state.get("maze") is None:
            goals = np.zeros((len(x), 0))
        goals = x[:, -1, :2] if goals is None else np.asarray(goals, dtype=np.float64)
        items = [Trajectory(w[:, :obs_dim], w[:, obs_dim:], g) if np.isfinite(w).all() else None
                 for w, g in zip(x, goals)]
        return items, {}

    @staticmethod
    def batch_of(items: Sequence[Any], spec: type[ModelSpec], model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """Normalised windows of the items with the model's horizon, conditioned on their own start
        and final position, and their positions in ``items``."""
        keep = [i for i, item in enumerate(items)
                if item is not None and len(item.observations) == state["horizon"] and np.isfinite(item.transitions).all()]
        if not keep:
            return None, []
        x = torch.from_numpy(normalize(np.stack([items[i].transitions for i in keep]), state).astype(np.float32))
        return {"x": x, "condition": window_condition(x, state)}, keep

    @staticmethod
    def log_jacobian(batch: dict[str, torch.Tensor], state: dict[str, Any]) -> np.ndarray:
        """The normalisation's log-scale summed over the free (not inpainted) entries: the model's
        density of normalised windows becomes log p(trajectory | start, goal) in the maze's units."""
        free = ~torch.isfinite(batch["condition"])
        return (free.double().numpy() * log_scale(state)).sum((1, 2))

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        """Steps per trajectory."""
        return np.array([math.nan if item is None else len(item.observations) for item in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, samples: Samples, *, state: dict[str, Any] | None = None, n_jobs: int = 1) -> int:
        """``path`` (a folder ending in .minari): the valid trajectories as a Minari dataset, one
        episode each (H observations, H - 1 actions, the env's sparse reward, truncated at the end)
        for RL libraries; ``samples.csv`` beside it: one row per drawn sample (index, valid, start,
        goal, final distance to the goal, log_likelihood). Returns the number of valid samples."""
        from dgm_science.domains.trajectories.mazes import maze_spec
        from dgm_science.domains.trajectories.minari_io import write_minari

        path = Path(path)
        if path.suffix != ".minari":
            raise ValueError(f"{path}: trajectory samples are written as a Minari dataset folder ending in .minari")
        if state is None:
            raise ValueError("write_samples needs the model's domain state (maze, horizon)")
        if state.get("maze") is None:
            return _write_generic_samples(path, samples, state)
        maze = maze_spec(state["maze"])
        items, log_likelihood = samples.items, samples.log_likelihood
        episodes, rows = [], []
        for i, item in enumerate(items):
            ll = float(log_likelihood[i]) if i < len(log_likelihood) else math.nan
            if item is None:
                rows.append([i, 0, "", "", "", "", "", csv_number(ll)])
                continue
            episodes.append(trajectory_episode(item))
            distance = float(np.linalg.norm(item.observations[-1, :2] - item.goal))
            ends = (*item.observations[0, :2], *item.goal)
            rows.append([i, 1, *(csv_number(float(v)) for v in ends), csv_number(distance), csv_number(ll)])
        write_minari(path, episodes, dataset_id=f"dgm/pointmaze-{maze.label}-samples-v0", env_id=maze.env_id,
                     env_kwargs={"continuing_task": True, "reset_target": False, **maze.map_kwargs},
                     description=f"{len(episodes)} plans sampled by a trajectory model on PointMaze {maze.label}")
        with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "valid", "start_x", "start_y", "goal_x", "goal_y", "goal_distance",
                             "log_likelihood"])
            writer.writerows(rows)
        return len(episodes)

    @staticmethod
    def read_samples(path: Path) -> list[Trajectory | None]:
        """The drawn samples in order (None for invalid ones) from the Minari dataset and its CSV."""
        from dgm_science.domains.trajectories.minari_io import read_minari

        path = Path(path)
        table = path.with_suffix(".csv")
        if not table.is_file():
            raise DataError(f"{table}: missing (written beside {path} by `dgm sample`)")
        episodes = iter(read_minari(path))
        out: list[Trajectory | None] = []
        with open(table, newline="") as fh:
            generic_layout = None if "goal_x" in fh.readline() else _sample_layout(path)
            fh.seek(0)
            for line, row in enumerate(csv.DictReader(fh), start=2):
                if row.get("valid") not in ("0", "1"):
                    raise DataError(f"{table}:{line}: expected columns index, valid, ...")
                if row["valid"] == "0":
                    out.append(None)
                    continue
                try:
                    episode = next(episodes)
                except StopIteration:
                    raise DataError(f"{table}:{line}: more valid rows than episodes in {path}") from None
                out.append(episode_trajectory(episode) if generic_layout is None
                           else _generic_item(episode, generic_layout))
        return out

    @classmethod
    def evaluate(cls, samples_path: Path, reference_dir: Path, *, n_jobs: int = 1,
                 max_trajectories: int = 500) -> dict[str, float]:
        """Open-loop plan quality: dynamic consistency in the simulator (``metrics.plan_metrics``)
        of up to ``max_trajectories`` samples, and the same for real validation windows (the
        ``data_*`` row)."""
        from dgm_science.domains.trajectories.mazes import maze_spec
        from dgm_science.domains.trajectories.metrics import plan_metrics

        prepared = read_prepared(reference_dir)
        samples = cls.read_samples(samples_path)
        valid = [s for s in samples if s is not None]
        metrics = {"valid": len(valid) / max(len(samples), 1), "samples": float(len(samples))}
        if prepared.get("maze") is None:  # a generic environment: consistency with the data's one-step model
            from dgm_science.domains.trajectories import generic

            horizon = len(valid[0].observations) if valid else int(prepared["horizon"])
            metrics.update(generic.dynamics_metrics(reference_dir, valid, horizon, max_trajectories=max_trajectories))
            env, why = generic.make_env(prepared.get("env_id"), prepared.get("env_kwargs") or {},
                                        prepared.get("max_episode_steps"))
            if env is not None:
                env.close()
            else:
                import logging

                logging.getLogger(__name__).warning("closed loop will be skipped: %s", why)
            metrics["env_installed"] = float(env is not None)
            return metrics
        metrics.update(plan_metrics(prepared["maze"], valid[:max_trajectories]))
        horizon = len(valid[0].observations) if valid else maze_spec(prepared["maze"]).horizon
        episodes = read_split(Path(reference_dir) / "valid.npz")
        windows = [Trajectory(w[:, :OBS_DIM].astype(np.float64), w[:, OBS_DIM:].astype(np.float64),
                              w[-1, :2].astype(np.float64))
                   for e in episodes for w in (e[s:s + horizon] for s in range(0, len(e) - horizon + 1, horizon))]
        data = plan_metrics(prepared["maze"], windows[:max_trajectories])
        metrics.update({f"data_{k}": v for k, v in data.items()})
        return metrics


def _sample_layout(path: Path) -> list[list[Any]]:
    """The observation layout of a generic samples dataset (its stored observation space)."""
    from minari.serialization import deserialize_space

    from dgm_science.domains.trajectories import generic
    from dgm_science.domains.trajectories.minari_io import load_minari

    space = load_minari(path).storage.metadata["observation_space"]
    return generic.obs_layout(deserialize_space(space) if isinstance(space, str) else space)


def _generic_item(episode: dict[str, Any], layout: list[list[Any]]) -> Trajectory:
    from dgm_science.domains.trajectories import generic

    return generic.episode_item(episode, layout)


def _write_generic_samples(path: Path, samples: Samples, state: dict[str, Any]) -> int:
    """Plans of a generic environment as a Minari dataset in the dataset's own spaces (rewards 0: plans
    carry none) and samples.csv (index, valid, log_likelihood)."""
    from minari.serialization import deserialize_space

    from dgm_science.domains.trajectories import generic
    from dgm_science.domains.trajectories.minari_io import write_minari

    episodes, rows = [], []
    for i, item in enumerate(samples.items):
        ll = float(samples.log_likelihood[i]) if i < len(samples.log_likelihood) else math.nan
        rows.append([i, int(item is not None), csv_number(ll)])
        if item is not None:
            episodes.append(generic.sample_episode(item, state))
    spaces = (deserialize_space(state["observation_space"]), deserialize_space(state["action_space"]))
    write_minari(path, episodes, dataset_id="dgm/user-samples-v0", env_id=state.get("env_id"),
                 env_kwargs=state.get("env_kwargs") or {}, spaces=spaces,
                 description=f"{len(episodes)} plans sampled by a trajectory model on {state.get('dataset_id')} "
                             f"({state.get('env_id')}); rewards are 0 (plans carry no reward)")
    with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "valid", "log_likelihood"])
        writer.writerows(rows)
    return len(episodes)
