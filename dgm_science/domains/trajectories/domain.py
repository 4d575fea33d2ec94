"""Robot trajectories: windows of (state, action) from expert PointMaze data, for trajectory
models that plan (``maze-diffuser``, ``traj-arm``).

An item is a ``Trajectory``: observations (H, 4) = (x, y, vx, vy), actions (H, 2) in [-1, 1] and
the goal (2,). Models see windows (B, H, 6) normalised per dimension to [-1, 1] (Diffuser's
``LimitsNormalizer``) and a condition of the same shape, NaN where free: the whole first
observation (the start) and the last position (the goal) are known, as in Diffuser's Maze2D
``GoalDataset``. Data: ``dgm collect`` writes the expert Minari dataset, ``dgm prepare`` splits
its episodes into train / validation (``train.npz``, ``valid.npz``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from dgm_science.domains.trajectories.mazes import GOAL_RADIUS
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path

OBS_DIM, ACT_DIM = 4, 2
TRANSITION_DIM = OBS_DIM + ACT_DIM
COLUMNS = ("x", "y", "vx", "vy", "ax", "ay")


class Trajectory(NamedTuple):
    """A planned (or recorded) trajectory: observations (H, 4), actions (H, 2), goal (2,)."""

    observations: np.ndarray
    actions: np.ndarray
    goal: np.ndarray

    @property
    def transitions(self) -> np.ndarray:
        return np.concatenate([self.observations, self.actions], axis=1)


# ----------------------------------------------------------------------------- data


def _episode_arrays(episodes: list[dict[str, Any]], path: Path) -> list[np.ndarray]:
    """(T, 6) transitions (o_t, a_t) per episode; an error naming ``path`` for a wrong shape."""
    out = []
    for i, episode in enumerate(episodes):
        obs = episode["observations"]
        obs = obs["observation"] if isinstance(obs, dict) else obs
        actions = np.asarray(episode["actions"])
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != OBS_DIM or actions.ndim != 2 or actions.shape[1] != ACT_DIM:
            raise DataError(f"{path}: episode {i} has observations {obs.shape} and actions {actions.shape}; "
                            f"PointMaze models need observation (T + 1, {OBS_DIM}) and action (T, {ACT_DIM})")
        if len(obs) != len(actions) + 1:
            raise DataError(f"{path}: episode {i} has {len(obs)} observations for {len(actions)} actions")
        out.append(np.concatenate([obs[:-1], actions], axis=1).astype(np.float32))
    return out


def _write_split(path: Path, arrays: list[np.ndarray]) -> None:
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, transitions=np.concatenate(arrays) if arrays else np.zeros((0, TRANSITION_DIM), np.float32),
                 lengths=lengths)


def read_split(path: Path) -> list[np.ndarray]:
    """The episodes of a prepared split: a list of (T, 6) float32 arrays."""
    if not Path(path).is_file():
        raise DataError(f"{path}: missing; run `dgm prepare` for this dataset first")
    with np.load(path) as data:
        transitions, lengths = data["transitions"], data["lengths"]
    return np.split(transitions, np.cumsum(lengths)[:-1]) if len(lengths) else []


def prepare_trajectories(maze: str, raw_dir: Path, out_dir: Path, *, val_episodes: int | None = None,
                         seed: int = 0) -> dict[str, Any]:
    """Split the expert Minari dataset in ``raw_dir`` into train / validation by whole episodes
    (seeded; ``val_episodes``, default 10 %), checking every episode's shapes; ``prepare.json``
    records the sizes."""
    from dgm_science.domains.trajectories.minari_io import read_minari

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    collected = raw_dir / "collect.json"
    if not collected.is_file():
        raise DataError(f"{collected}: missing; generate the expert data with `dgm collect` first")
    info = json.loads(collected.read_text())
    if info.get("maze") != maze:
        raise DataError(f"{raw_dir}: holds {info.get('maze')!r} data, not {maze!r}")
    episodes = _episode_arrays(read_minari(raw_dir / "minari"), raw_dir / "minari")
    if len(episodes) < 2:
        raise DataError(f"{raw_dir}: {len(episodes)} episode(s); need at least 2 to hold one out")
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_valid = max(1, round(0.1 * len(episodes))) if val_episodes is None else val_episodes
    if not 1 <= n_valid < len(episodes):
        raise ValueError(f"--val-size {n_valid}: needs 1 .. {len(episodes) - 1} of the {len(episodes)} episodes")
    split = {"valid": sorted(order[:n_valid].tolist()), "train": sorted(order[n_valid:].tolist())}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, ids in split.items():
        _write_split(out_dir / f"{name}.npz", [episodes[i] for i in ids])
    stats = {"maze": maze, "env_id": info.get("env_id"), "seed": seed, "collect": info,
             **{f"{name}_episodes": len(ids) for name, ids in split.items()},
             **{f"{name}_steps": int(sum(len(episodes[i]) for i in ids)) for name, ids in split.items()}}
    with atomic_path(out_dir / "prepare.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def read_prepared(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / "prepare.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dgm prepare` for this dataset first")
    return json.loads(path.read_text())


def _register_dataset(maze: str) -> None:
    class _Dataset:
        __doc__ = f"Expert PointMaze {maze} trajectories (shortest path + PD controller), a local Minari dataset."
        domain = "trajectories"
        version = "generated"

        @staticmethod
        def fetch(out_dir: Path) -> dict[str, Any]:
            raise ValueError(f"pointmaze-{maze} is generated in the simulator, not downloaded: run "
                             f"`dgm collect {maze} --out {out_dir}`")

        @staticmethod
        def prepare(raw_dir: Path, out_dir: Path, *, train_size: int | None = None, val_size: int | None = None,
                    seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
            """``val_size``: validation episodes (default 10 %); ``train_size`` must be unset."""
            if train_size is not None:
                raise ValueError("--train-size: choose the number of episodes in `dgm collect`")
            return prepare_trajectories(maze, raw_dir, out_dir, val_episodes=val_size, seed=seed)

    _Dataset.__name__ = f"Dataset_pointmaze_{maze}"
    register("dataset", f"pointmaze-{maze}")(_Dataset)


for _maze in ("umaze", "medium", "large"):
    _register_dataset(_maze)


# ----------------------------------------------------------------------------- windows


def normalize(x: np.ndarray | torch.Tensor, state: dict[str, Any]) -> Any:
    low, high = (np.asarray(state[k], dtype=np.float32) for k in ("low", "high"))
    if isinstance(x, torch.Tensor):
        low, high = torch.as_tensor(low, device=x.device), torch.as_tensor(high, device=x.device)
    return 2 * (x - low) / (high - low) - 1


def unnormalize(x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    low, high = (np.asarray(state[k], dtype=np.float64) for k in ("low", "high"))
    return (np.asarray(x, dtype=np.float64) + 1) / 2 * (high - low) + low


def log_scale(state: dict[str, Any]) -> np.ndarray:
    """log of d(original) / d(normalised) per dimension (6,)."""
    low, high = (np.asarray(state[k], dtype=np.float64) for k in ("low", "high"))
    return np.log((high - low) / 2)


def inpainting_condition(starts: np.ndarray, goals: np.ndarray, state: dict[str, Any]) -> torch.Tensor:
    """The normalised (n, H, 6) condition, NaN where free: observation 0 = start (x, y, vx, vy),
    position H-1 = goal (x, y)."""
    n, horizon = len(starts), state["horizon"]
    raw = np.full((n, horizon, TRANSITION_DIM), np.nan, dtype=np.float64)
    raw[:, 0, :OBS_DIM] = starts
    raw[:, -1, :2] = goals
    return torch.from_numpy(normalize(raw, state).astype(np.float32))


class WindowDataset(torch.utils.data.Dataset):
    """Every window of ``horizon`` consecutive transitions inside one episode (``stride`` apart),
    normalised; a batch is {"x": (B, H, 6), "condition": (B, H, 6)} (NaN = free)."""

    n_too_long = 0

    def __init__(self, episodes: list[np.ndarray], state: dict[str, Any], stride: int = 1) -> None:
        horizon = state["horizon"]
        self.state = state
        self.data = torch.from_numpy(normalize(np.concatenate(episodes), state).astype(np.float32)) \
            if episodes else torch.zeros(0, TRANSITION_DIM)
        starts, offset = [], 0
        for episode in episodes:
            if len(episode) >= horizon:
                starts.append(offset + np.arange(0, len(episode) - horizon + 1, stride))
            offset += len(episode)
        if not starts:
            raise DataError(f"no episode has {horizon} steps: lower model.horizon or collect longer episodes")
        self.starts = torch.from_numpy(np.concatenate(starts))
        self.offsets = torch.arange(horizon)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        x = self.data[self.starts[torch.as_tensor(indices)][:, None] + self.offsets]
        return {"x": x, "condition": window_condition(x)}


def window_condition(x: torch.Tensor) -> torch.Tensor:
    """The training condition of windows x (B, H, 6): their own start observation and final position."""
    condition = torch.full_like(x, math.nan)
    condition[:, 0, :OBS_DIM] = x[:, 0, :OBS_DIM]
    condition[:, -1, :2] = x[:, -1, :2]
    return condition


# ----------------------------------------------------------------------------- the domain


def _cell(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ""


@register("domain", "trajectories")
class TrajectoryDomain:
    """PointMaze trajectories; samples are a Minari dataset (one episode per sampled plan)."""

    name = "trajectories"
    samples_file = "samples.minari"
    condition_options = ("start", "goal")

    @staticmethod
    def fit_state(data_dir: Path, spec: Any, model_cfg: Any) -> dict[str, Any]:
        """Maze, horizon and the per-dimension limits of the training transitions (normalisation)."""
        from dgm_science.domains.trajectories.mazes import maze_spec

        prepared = read_prepared(data_dir)
        maze = maze_spec(prepared["maze"])
        horizon = int(model_cfg.horizon or maze.horizon)
        train = np.concatenate(read_split(Path(data_dir) / "train.npz"))
        low, high = train.min(0).astype(np.float64), train.max(0).astype(np.float64)
        high = np.where(high - low < 1e-6, low + 1e-6, high)
        return {"maze": maze.name, "env_id": maze.env_id, "horizon": horizon, "obs_dim": OBS_DIM,
                "act_dim": ACT_DIM, "columns": list(COLUMNS), "low": low.tolist(), "high": high.tolist()}

    @staticmethod
    def datasets(data_dir: Path, spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[WindowDataset, WindowDataset]:
        train = WindowDataset(read_split(Path(data_dir) / "train.npz"), state)
        valid = WindowDataset(read_split(Path(data_dir) / "valid.npz"), state, stride=max(1, state["horizon"] // 4))
        return train, valid

    @staticmethod
    def draw_conditions(n: int, state: dict[str, Any], generator: torch.Generator | None = None,
                        start: Sequence[float] | None = None, goal: Sequence[float] | None = None
                        ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Starts and goals for ``n`` plans: given (x, y), checked to lie in the maze, or drawn as
        gymnasium-robotics resets do: two distinct free cells, uniform within +-0.25 of each
        centre; the start at rest. Returns the inpainting condition and the decode options."""
        from dgm_science.domains.trajectories.mazes import Maze

        maze = Maze(state["maze"])
        starts, goals = maze.draw_start_goal(n, generator)
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
        goals = x[:, -1, :2] if goals is None else np.asarray(goals, dtype=np.float64)
        items = [Trajectory(w[:, :OBS_DIM], w[:, OBS_DIM:], g) if np.isfinite(w).all() else None
                 for w, g in zip(x, goals)]
        return items, {}

    @classmethod
    def decode(cls, raw: torch.Tensor, state: dict[str, Any], **options: Any) -> list[Trajectory | None]:
        return cls.decode_table(raw, state, **options)[0]

    @staticmethod
    def batch_of(items: Sequence[Any], spec: Any, model_cfg: Any, state: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor] | None, list[int]]:
        """Normalised windows of the items with the model's horizon, conditioned on their own start
        and final position, and their positions in ``items``."""
        keep = [i for i, item in enumerate(items)
                if item is not None and len(item.observations) == state["horizon"] and np.isfinite(item.transitions).all()]
        if not keep:
            return None, []
        x = torch.from_numpy(normalize(np.stack([items[i].transitions for i in keep]), state).astype(np.float32))
        return {"x": x, "condition": window_condition(x)}, keep

    @classmethod
    @torch.no_grad()
    def log_likelihood(cls, model: Any, items: Sequence[Any], spec: Any, model_cfg: Any,
                       state: dict[str, Any], batch_size: int = 500) -> np.ndarray:
        """log p(trajectory | start, goal) in nats in the maze's units (an ELBO for the diffuser);
        NaN for an invalid item or one of another horizon."""
        out = np.full(len(items), math.nan)
        device = next(model.parameters()).device
        model.eval()
        scale = log_scale(state)
        for begin in range(0, len(items), batch_size):
            chunk = list(items[begin:begin + batch_size])
            batch, keep = cls.batch_of(chunk, spec, model_cfg, state)
            if batch is None:
                continue
            free = ~torch.isfinite(batch["condition"])
            jacobian = (free.double().numpy() * scale).sum((1, 2))
            log_p = model.log_prob({k: v.to(device) for k, v in batch.items()}).double().cpu().numpy()
            out[[begin + k for k in keep]] = log_p - jacobian
        return out

    @staticmethod
    def item_sizes(items: Sequence[Any]) -> np.ndarray:
        """Steps per trajectory."""
        return np.array([math.nan if item is None else len(item.observations) for item in items], dtype=float)

    @staticmethod
    def write_samples(path: Path, items: Sequence[Trajectory | None], log_likelihood: np.ndarray,
                      n_jobs: int = 1, *, state: dict[str, Any] | None = None,
                      columns: dict[str, list[Any]] | None = None) -> int:
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
        maze = maze_spec(state["maze"])
        episodes, rows = [], []
        for i, item in enumerate(items):
            ll = float(log_likelihood[i]) if i < len(log_likelihood) else math.nan
            if item is None:
                rows.append([i, 0, "", "", "", "", "", _cell(ll)])
                continue
            episodes.append(trajectory_episode(item))
            distance = float(np.linalg.norm(item.observations[-1, :2] - item.goal))
            rows.append([i, 1, *(_cell(float(v)) for v in (*item.observations[0, :2], *item.goal)), _cell(distance),
                         _cell(ll)])
        write_minari(path, episodes, dataset_id=f"dgm/pointmaze-{maze.name}-samples-v0", env_id=maze.env_id,
                     env_kwargs={"continuing_task": True, "reset_target": False},
                     description=f"{len(episodes)} plans sampled by a trajectory model on PointMaze {maze.name}")
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
                out.append(episode_trajectory(episode))
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
        metrics.update(plan_metrics(prepared["maze"], valid[:max_trajectories]))
        horizon = len(valid[0].observations) if valid else maze_spec(prepared["maze"]).horizon
        episodes = read_split(Path(reference_dir) / "valid.npz")
        windows = [Trajectory(w[:, :OBS_DIM].astype(np.float64), w[:, OBS_DIM:].astype(np.float64),
                              w[-1, :2].astype(np.float64))
                   for e in episodes for w in (e[s:s + horizon] for s in range(0, len(e) - horizon + 1, horizon))]
        data = plan_metrics(prepared["maze"], windows[:max_trajectories])
        metrics.update({f"data_{k}": v for k, v in data.items()})
        return metrics


def trajectory_episode(item: Trajectory) -> dict[str, Any]:
    """A trajectory as a Minari episode: H observations (the env's dict), H - 1 actions, the sparse
    reward of each reached state, truncated at the end."""
    obs = item.observations.astype(np.float64)
    horizon = len(obs)
    goal = np.broadcast_to(item.goal, (horizon, 2)).astype(np.float64)
    reached = np.linalg.norm(obs[1:, :2] - goal[1:], axis=1) <= GOAL_RADIUS
    return {
        "observations": {"observation": obs, "achieved_goal": obs[:, :2].copy(), "desired_goal": goal.copy()},
        "actions": np.clip(item.actions[:-1], -1, 1).astype(np.float32),
        "rewards": reached.astype(np.float64),
        "terminations": np.zeros(horizon - 1, dtype=bool),
        "truncations": np.arange(horizon - 1) == horizon - 2,
    }


def episode_trajectory(episode: dict[str, Any]) -> Trajectory:
    """A sample episode back as a trajectory (the last action, not stored, repeated)."""
    obs = episode["observations"]
    actions = np.asarray(episode["actions"], dtype=np.float64)
    actions = np.concatenate([actions, actions[-1:]]) if len(actions) else np.zeros((1, ACT_DIM))
    return Trajectory(np.asarray(obs["observation"], dtype=np.float64), actions,
                      np.asarray(obs["desired_goal"][0], dtype=np.float64))
