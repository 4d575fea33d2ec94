"""Robot trajectory data: expert PointMaze episodes (Minari) prepared into train / validation
splits, the registered ``pointmaze-*`` datasets, and their representation for models.

An item is a ``Trajectory``: observations (H, 4) = (x, y, vx, vy), actions (H, 2) in [-1, 1] and
the goal (2,). Models see windows (B, H, 6) normalised per dimension to [-1, 1] (Diffuser's
``LimitsNormalizer``) and a condition of the same shape, NaN where free: the whole first
observation (the start) and the last position (the goal) are known, as in Diffuser's Maze2D
``GoalDataset``. Data: ``dgm collect`` writes the expert Minari dataset, ``dgm prepare`` splits
its episodes into train / validation (``train.npz``, ``valid.npz``). Trajectories convert to and
from Minari episodes (``trajectory_episode``, ``episode_trajectory``) for samples.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from dgm_science.domains.trajectories.mazes import GOAL_RADIUS
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.utils import atomic_path, read_json

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
    try:
        with np.load(path, allow_pickle=False) as data:
            transitions, lengths = data["transitions"], data["lengths"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a prepared trajectory split .npz ({type(err).__name__}: {err})") from None
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
    return read_json(path)


def _register_dataset(maze: str) -> None:
    class _Dataset:
        __doc__ = f"Expert PointMaze {maze} trajectories (shortest path + PD controller), a local Minari dataset."
        domain = "trajectories"
        sources: tuple[str, ...] = ()
        """Committed files the workflow passes to ``dgm prepare`` (none: ``dgm collect`` makes the data)."""
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
    """log of d(original) / d(normalised) per dimension (D,)."""
    low, high = (np.asarray(state[k], dtype=np.float64) for k in ("low", "high"))
    return np.log((high - low) / 2)


def plan_reach(state: dict[str, Any], needed_by: str) -> float:
    """How far a plan of the model's horizon goes at the data's pace: the training data's mean step
    length x (horizon - 1). ``needed_by`` names what asks, for the error of a checkpoint that
    predates the step length."""
    if "step_length" not in state:
        raise ValueError(f"{needed_by} needs the data's step length, which this checkpoint does not record "
                         "(it predates it): retrain the model")
    return state["step_length"] * (state["horizon"] - 1)


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
            if episodes else torch.zeros(0, transition_dim(state))
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
        return {"x": x, "condition": window_condition(x, self.state)}


def transition_dim(state: dict[str, Any]) -> int:
    """Width of a window's rows: observation + action dimensions (6 for PointMaze)."""
    return int(state.get("obs_dim", OBS_DIM)) + int(state.get("act_dim", ACT_DIM))


def window_condition(x: torch.Tensor, state: dict[str, Any] | None = None) -> torch.Tensor:
    """The training condition of windows x (B, H, D): their own start observation and, in a maze, their
    final position (a generic environment's windows: the start only)."""
    obs_dim = OBS_DIM if state is None else int(state.get("obs_dim", OBS_DIM))
    condition = torch.full_like(x, math.nan)
    condition[:, 0, :obs_dim] = x[:, 0, :obs_dim]
    if state is None or state.get("maze") is not None:
        condition[:, -1, :2] = x[:, -1, :2]
    return condition


# ----------------------------------------------------------------------------- Minari episodes


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
