"""Trajectories of any gymnasium environment with Box spaces (a user's local Minari dataset): flat
observation vectors, the episode split, start conditions, samples written back as Minari, open-loop
consistency against a one-step model of the data and closed loop in the environment when it is installed.

A Dict observation of Box subspaces (PointMaze's ``observation`` / ``achieved_goal`` / ``desired_goal``)
is flattened key by key in sorted key order (``obs_layout``) and split back when samples are written.
Models see windows (B, H, obs_dim + act_dim) of (o_t, a_t) rows, normalised per dimension to [-1, 1];
the condition is the first observation (the start), as Diffuser conditions on the current state.
The state (``fit_state``) of such a model has ``maze`` None.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dgm_science.domains.trajectories.mazes import gym_make  # gym.make, less the maze envs' MJCF temp file
from dgm_science.errors import DataError

log = logging.getLogger(__name__)

MAX_STARTS = 256
"""Held-out first observations kept in a model's state: the starts its plans are drawn from."""


# ----------------------------------------------------------------------------- spaces


def check_box(space: Any, what: str, where: str) -> None:
    """DataError naming the space when ``space`` is not a gymnasium Box (a Dict of Boxes is allowed for
    observations)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return
    if what == "observation" and isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            if not isinstance(sub, spaces.Box):
                raise DataError(f"{where}: observation space Dict key {key!r} is {type(sub).__name__} "
                                f"({sub}); trajectory models need Box observations (or a Dict of Boxes)")
        return
    raise DataError(f"{where}: {what} space is {type(space).__name__} ({space}); trajectory models need a "
                    f"Box {what} space" + (" (or a Dict of Boxes)" if what == "observation" else ""))


def obs_layout(space: Any) -> list[list[Any]]:
    """[[key, shape], ...] of an observation space: one [None, shape] for a Box, sorted keys for a Dict."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return [[key, list(space.spaces[key].shape)] for key in sorted(space.spaces)]
    return [[None, list(space.shape)]]


def flatten_obs(obs: Any, layout: Sequence[Sequence[Any]]) -> np.ndarray:
    """(T, D) float array of observations (T, ...) or {key: (T, ...)} laid out as ``layout``."""
    parts = []
    for key, _ in layout:
        value = np.asarray(obs if key is None else obs[key], dtype=np.float64)
        parts.append(value.reshape(len(value), -1))
    return np.concatenate(parts, axis=1)


def unflatten_obs(x: np.ndarray, layout: Sequence[Sequence[Any]]) -> Any:
    """The inverse of :func:`flatten_obs`."""
    out, offset = {}, 0
    for key, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        out[key] = x[:, offset:offset + size].reshape(len(x), *shape)
        offset += size
    return out[None] if list(out) == [None] else out


def env_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """env_id, kwargs and max_episode_steps of a Minari dataset's stored env_spec (JSON data only; the env
    is never built from it: :func:`make_env` builds only ids registered by installed packages)."""
    raw = metadata.get("env_spec")
    try:
        spec = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        spec = {}
    kwargs = spec.get("kwargs") if isinstance(spec.get("kwargs"), dict) else {}
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError):
        kwargs = {}
    steps = spec.get("max_episode_steps")
    return {"env_id": spec.get("id") if isinstance(spec.get("id"), str) else None, "env_kwargs": kwargs,
            "max_episode_steps": int(steps) if isinstance(steps, int) else None}


def make_env(env_id: str | None, env_kwargs: dict[str, Any], max_episode_steps: int | None) -> tuple[Any, str]:
    """(env, "") when ``env_id`` is registered by an installed package (gymnasium, gymnasium-robotics)
    and builds, else (None, why). The dataset's env_spec entry point is never imported: only the
    registered id's own, so a dataset cannot name code to run."""
    import gymnasium as gym

    if not env_id:
        return None, "the dataset stores no env_spec"
    try:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
    except ImportError:
        pass
    if env_id not in gym.registry:
        return None, f"environment {env_id!r} is not installed (not in gymnasium's registry)"
    kwargs = dict(env_kwargs)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        return gym_make(env_id, **kwargs), ""
    except Exception as err:  # noqa: BLE001  (any failure of a third-party env's constructor means: not available)
        return None, f"gymnasium.make({env_id!r}) failed: {type(err).__name__}: {err}"


# ----------------------------------------------------------------------------- prepare


def episode_rows(episode: dict[str, Any], layout: Sequence[Sequence[Any]], act_dim: int, where: str
                 ) -> np.ndarray:
    """(T, obs_dim + act_dim) float32 rows (o_t, a_t) of an episode (the final observation dropped)."""
    obs = flatten_obs(episode["observations"], layout)
    actions = np.asarray(episode["actions"], dtype=np.float64).reshape(len(episode["actions"]), -1)
    if len(obs) != len(actions) + 1 or actions.shape[1] != act_dim:
        raise DataError(f"{where}: {len(obs)} observations for actions of shape {actions.shape}; Minari stores "
                        f"T + 1 observations and T actions of {act_dim} dimensions")
    return np.concatenate([obs[:-1], actions], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- the model's side


def fit_state(prepared: dict[str, Any], data_dir: Path, horizon: int | None) -> dict[str, Any]:
    """State of a model of a generic dataset: dimensions, layout, limits of the training rows, the env to
    roll out in, and up to :data:`MAX_STARTS` held-out first observations (test split; validation if none)."""
    from dgm_science.domains.trajectories.data import read_split

    data_dir = Path(data_dir)
    episodes = read_split(data_dir / "train.npz")
    train = np.concatenate(episodes)
    low, high = train.min(0).astype(np.float64), train.max(0).astype(np.float64)
    high = np.where(high - low < 1e-6, low + 1e-6, high)
    held_out = data_dir / "test.npz" if (data_dir / "test.npz").is_file() else data_dir / "valid.npz"
    obs_dim = int(prepared["obs_dim"])
    starts = [e[0, :obs_dim].astype(np.float64).tolist() for e in read_split(held_out)][:MAX_STARTS]
    keys = ("env_id", "env_kwargs", "max_episode_steps", "obs_layout", "observation_space", "action_space",
            "action_low", "action_high", "dataset_id", "obs_dim", "act_dim")
    return {"maze": None, **{k: prepared.get(k) for k in keys},
            "horizon": int(horizon or prepared["horizon"]), "columns": columns(prepared),
            "low": low.tolist(), "high": high.tolist(), "starts": starts,
            "data_return_mean": prepared.get("test_return_mean")}


def columns(prepared: dict[str, Any]) -> list[str]:
    return [f"o{i}" for i in range(int(prepared["obs_dim"]))] + [f"a{i}" for i in range(int(prepared["act_dim"]))]


def start_condition(starts: np.ndarray, state: dict[str, Any]) -> torch.Tensor:
    """The normalised (n, H, D) condition: observation 0 = the start, the rest free (NaN)."""
    from dgm_science.domains.trajectories.data import normalize

    n, dim = len(starts), state["obs_dim"] + state["act_dim"]
    raw = np.full((n, state["horizon"], dim), np.nan, dtype=np.float64)
    raw[:, 0, :state["obs_dim"]] = starts
    return torch.from_numpy(normalize(raw, state).astype(np.float32))


def draw_starts(n: int, state: dict[str, Any], generator: torch.Generator | None) -> np.ndarray:
    """``n`` starts drawn uniformly from the state's held-out first observations."""
    from dgm_science.domains.trajectories.mazes import _numpy_rng

    bank = np.asarray(state["starts"], dtype=np.float64)
    if not len(bank):
        raise ValueError("the model's state holds no start observations")
    return bank[_numpy_rng(generator).integers(0, len(bank), size=n)]


def sample_episode(item: Any, state: dict[str, Any]) -> dict[str, Any]:
    """A plan as a Minari episode in the dataset's own spaces: H observations, H - 1 actions (clipped to the
    action bounds), rewards 0 (plans carry no reward), truncated at the end."""
    horizon = len(item.observations)
    low, high = (np.asarray(state[k], dtype=np.float64) for k in ("action_low", "action_high"))
    shape = (horizon - 1, *np.shape(low))
    actions = np.clip(item.actions[:-1].reshape(shape), low, high)
    return {"observations": unflatten_obs(item.observations, state["obs_layout"]),
            "actions": actions.astype(np.float32), "rewards": np.zeros(horizon - 1),
            "terminations": np.zeros(horizon - 1, dtype=bool),
            "truncations": np.arange(horizon - 1) == horizon - 2}


def episode_item(episode: dict[str, Any], layout: Sequence[Sequence[Any]]) -> Any:
    """A sample episode back as a trajectory (the last action, not stored, repeated; no goal)."""
    from dgm_science.domains.trajectories.data import Trajectory

    obs = flatten_obs(episode["observations"], layout)
    actions = np.asarray(episode["actions"], dtype=np.float64).reshape(len(episode["actions"]), -1)
    actions = np.concatenate([actions, actions[-1:]])
    return Trajectory(obs, actions, np.zeros(0))


# ----------------------------------------------------------------------------- evaluation


def _next_pairs(windows: Sequence[np.ndarray], obs_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(o_t, a_t) inputs and o_{t+1} targets of consecutive rows."""
    x = np.concatenate([w[:-1] for w in windows])
    y = np.concatenate([w[1:, :obs_dim] for w in windows])
    return x, y


def dynamics_metrics(prepared_dir: Path, plans: Sequence[Any], horizon: int, *, neighbours: int = 5,
                     max_trajectories: int = 500) -> dict[str, float]:
    """Open-loop dynamic consistency without a simulator that can be set to a state: a k-nearest-neighbour
    one-step model of the training data (scikit-learn, inputs and targets standardised) predicts
    o_{t+1} from each planned (o_t, a_t); ``dynamic_error`` is the mean absolute difference to the planned
    o_{t+1} in units of the data's per-dimension standard deviation; ``data_dynamic_error`` the same for
    held-out validation windows of the same horizon (the model's own error floor); ``in_range`` the share of
    planned rows inside the training rows' per-dimension range."""
    from sklearn.neighbors import KNeighborsRegressor

    from dgm_science.domains.trajectories.data import read_split

    prepared = json.loads((Path(prepared_dir) / "prepare.json").read_text())
    obs_dim = int(prepared["obs_dim"])
    train = read_split(Path(prepared_dir) / "train.npz")
    x, y = _next_pairs([e.astype(np.float64) for e in train if len(e) > 1], obs_dim)
    mean, std = x.mean(0), np.where(x.std(0) > 1e-9, x.std(0), 1.0)
    y_std = np.where(y.std(0) > 1e-9, y.std(0), 1.0)
    knn = KNeighborsRegressor(n_neighbors=min(neighbours, len(x))).fit((x - mean) / std, y)
    rows = np.concatenate(train)
    low, high = rows.min(0), rows.max(0)

    def error(windows: Sequence[np.ndarray]) -> float:
        if not windows:
            return math.nan
        px, py = _next_pairs(windows, obs_dim)
        return float((np.abs(knn.predict((px - mean) / std) - py) / y_std).mean())

    planned = [np.concatenate([p.observations, p.actions], axis=1) for p in plans[:max_trajectories]]
    valid = [e.astype(np.float64) for e in read_split(Path(prepared_dir) / "valid.npz")]
    windows = [e[s:s + horizon] for e in valid for s in range(0, len(e) - horizon + 1, horizon)][:max_trajectories]
    out = {"trajectories": float(len(planned)), "dynamic_error": error(planned),
           "data_dynamic_error": error(windows)}
    if planned:
        stacked = np.concatenate(planned)
        out["in_range"] = float(((stacked >= low - 1e-6) & (stacked <= high + 1e-6)).all(1).mean())
    return out


def closed_loop(model: Any, *, episodes: int, seed: int, replan_every: int | None = None) -> dict[str, Any]:
    """The planner in the dataset's environment, when installed: each seeded episode (seeds ``seed`` ..
    ``seed + episodes - 1``) starts from the env's reset; a plan of the model's horizon is drawn from the
    current observation (inpainted start) and its actions executed, re-planning every ``replan_every``
    steps (default: half the horizon), until the env ends the episode. Reported: the return, beside a
    uniformly random policy's on the same seeds and the dataset's mean test-episode return, and the return
    normalised to 0 = random, 100 = the dataset (``normalized_score``, the D4RL formula with these two
    references measured here; not D4RL's). Without the env: ``skipped`` says why."""
    state = model.state
    env, why = make_env(state.get("env_id"), state.get("env_kwargs") or {}, state.get("max_episode_steps"))
    if env is None:
        log.warning("closed loop skipped: %s", why)
        return {"protocol": "env", "skipped": f"closed loop skipped: {why}", "env_id": state.get("env_id")}
    every = replan_every or max(1, state["horizon"] // 2)
    low, high = (np.asarray(state[k], dtype=np.float64) for k in ("action_low", "action_high"))
    generator = torch.Generator(device=model.device).manual_seed(seed)
    returns, random_returns, lengths = [], [], []
    start = time.perf_counter()
    try:
        for episode in range(episodes):
            for policy in ("plan", "random"):
                obs, _ = env.reset(seed=seed + episode)
                env.action_space.seed(seed + episode)
                total, steps, done, queue = 0.0, 0, False, []
                while not done:
                    if policy == "random":
                        action = env.action_space.sample()
                    else:
                        if not queue:
                            now = flatten_obs({k: np.asarray(v)[None] for k, v in obs.items()}
                                              if isinstance(obs, dict) else np.asarray(obs)[None],
                                              state["obs_layout"])
                            condition = start_condition(now, state).to(model.device)
                            raw = model.model.sample(1, generator=generator, condition=condition,
                                                     temperature=model.config.sample.temperature)
                            from dgm_science.domains.trajectories.data import unnormalize

                            plan = unnormalize(raw.detach().float().cpu().numpy(), state)[0]
                            queue = list(plan[:every, state["obs_dim"]:])
                        action = np.clip(np.nan_to_num(queue.pop(0)).reshape(np.shape(low)), low, high)
                    obs, reward, terminated, truncated, _ = env.step(action.astype(env.action_space.dtype))
                    total += float(reward)
                    steps += 1
                    done = terminated or truncated
                (returns if policy == "plan" else random_returns).append(total)
                if policy == "plan":
                    lengths.append(steps)
    finally:
        env.close()
    returns_a, random_a = np.asarray(returns), np.asarray(random_returns)
    data = state.get("data_return_mean")
    summary = {"protocol": "env", "env_id": state["env_id"], "episodes": float(episodes),
               "replan_every": float(every), "return_mean": float(returns_a.mean()),
               "return_sem": float(returns_a.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
               "random_return_mean": float(random_a.mean()), "data_return_mean": data,
               "episode_steps": float(np.mean(lengths)), "seconds": time.perf_counter() - start}
    if data is not None and abs(data - random_a.mean()) > 1e-9:
        summary["normalized_score"] = float(100 * (returns_a.mean() - random_a.mean()) / (data - random_a.mean()))
        summary["normalized_score_note"] = ("100 (return - random) / (dataset - random): the random policy on the "
                                            "same seeds and the dataset's mean test-episode return, measured here "
                                            "(not D4RL reference scores)")
    return summary
