"""Trajectory episodes <-> a local Minari dataset (minari 0.5, HDF5 storage; needs ``h5py``).

``write_minari(path, episodes, ...)`` lays a dataset out as Minari does under its datasets root:
``path/data/metadata.json`` and ``path/data/main_data.hdf5``, never touching ``~/.minari``.
Observations keep the env's Dict space (``observation`` / ``achieved_goal`` / ``desired_goal``),
the env spec (with the collection kwargs) and the evaluation env spec are stored, so
``recover_environment()`` works.

Loading it from another program::

    import gymnasium_robotics, minari  # gymnasium-robotics must be installed for the env
    dataset = minari.MinariDataset("path/to/minari/data")         # the data folder itself
    for episode in dataset.iterate_episodes():
        episode.observations["observation"], episode.actions, episode.rewards
    env = dataset.recover_environment()                 # collection env (continuing, goals resampled)
    eval_env = dataset.recover_environment(eval_env=True)   # the registered env: D4RL's protocol

or through Minari's registry of local datasets, by placing (or symlinking) the folder ``path`` as
``$MINARI_DATASETS_PATH/<dataset_id>`` (e.g. ``$ROOT/dgm/pointmaze-umaze-expert-v0``) and calling
``minari.load_dataset("dgm/pointmaze-umaze-expert-v0")`` with ``MINARI_DATASETS_PATH=$ROOT``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dgm_science.errors import DataError
from dgm_science.utils import atomic_dir

EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
"""Arrays of an episode dict; an optional int "seed" (the env's reset seed) rides along."""


def _data_dir(path: str | Path) -> Path:
    """The Minari data folder of ``path``: ``path/data`` or ``path`` itself when it holds metadata.json."""
    path = Path(path)
    if (path / "metadata.json").is_file():
        return path
    return path / "data"


def _require_h5py() -> None:
    import importlib.util

    if importlib.util.find_spec("h5py") is None:
        raise ImportError("Minari's HDF5 storage needs h5py: pip install 'minari[hdf5]' (or h5py)")


def _check_episode(i: int, episode: Mapping[str, Any], obs_space: Any, act_space: Any) -> None:
    missing = [k for k in EPISODE_KEYS if k not in episode]
    if missing:
        raise ValueError(f"episode {i} lacks {', '.join(missing)}")
    obs = episode["observations"]
    steps = len(episode["rewards"])
    shapes = {k: np.shape(v) for k, v in obs.items()} if isinstance(obs, Mapping) else {None: np.shape(obs)}
    spaces = dict(obs_space.spaces) if hasattr(obs_space, "spaces") and isinstance(obs_space.spaces, Mapping) \
        else {None: obs_space}
    if set(shapes) != set(spaces):
        raise ValueError(f"episode {i}: observation keys {sorted(map(str, shapes))} differ from the env's "
                         f"{sorted(map(str, spaces))}")
    for key, shape in shapes.items():
        if shape != (steps + 1, *spaces[key].shape):
            raise ValueError(f"episode {i}: observations[{key!r}] has shape {shape}, expected "
                             f"{(steps + 1, *spaces[key].shape)} ({steps} steps)")
    if np.shape(episode["actions"]) != (steps, *act_space.shape):
        raise ValueError(f"episode {i}: actions have shape {np.shape(episode['actions'])}, "
                         f"expected {(steps, *act_space.shape)}")
    for key in ("terminations", "truncations"):
        if np.shape(episode[key]) != (steps,):
            raise ValueError(f"episode {i}: {key} have shape {np.shape(episode[key])}, expected ({steps},)")


def write_minari(path: str | Path, episodes: Sequence[Mapping[str, Any]], *, dataset_id: str, env_id: str | None,
                 env_kwargs: Mapping[str, Any] | None = None, author: str = "dgm-science",
                 description: str | None = None, algorithm_name: str | None = None,
                 metadata: Mapping[str, Any] | None = None, spaces: tuple[Any, Any] | None = None) -> Path:
    """Write ``episodes`` as a Minari dataset in the folder ``path`` (replaced if it exists).

    ``episodes``: dicts of observations ({key: (T+1, ...)} for a Dict space), actions (T, ...),
    rewards, terminations, truncations (T,), optionally "seed". ``env_id`` / ``env_kwargs`` give the
    env spec stored for ``recover_environment()`` (``max_episode_steps`` may be among the kwargs);
    the registered ``env_id`` is stored as the evaluation env. ``metadata``: extra JSON-able keys
    (e.g. ``ref_min_score`` / ``ref_max_score`` for ``minari.get_normalized_score``).
    The dataset is built in a temporary folder beside ``path`` and renamed into place.
    ``spaces``: (observation space, action space) given, for an environment that may not be installed:
    the env spec is then stored only when the env builds (``generic.make_env``).
    Returns the data folder (``path/data``), which ``minari.MinariDataset`` opens."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    from dgm_science.domains.trajectories.mazes import gym_make

    _require_h5py()
    if spaces is None:
        env = gym_make(env_id, **dict(env_kwargs or {}))
    else:
        from dgm_science.domains.trajectories.generic import make_env

        env = make_env(env_id, dict(env_kwargs or {}), None)[0]
    env_spec, (obs_space, act_space) = None, spaces or (None, None)
    if env is not None:
        try:
            env_spec = env.spec
            if spaces is None:
                obs_space, act_space = env.observation_space, env.action_space
        finally:
            env.close()
    for i, episode in enumerate(episodes):
        _check_episode(i, episode, obs_space, act_space)

    path = Path(path).resolve()  # Minari's storage joins a relative data path onto itself
    with atomic_dir(path) as tmp:
        storage = MinariStorage.new(tmp / "data", observation_space=obs_space, action_space=act_space,
                                    env_spec=env_spec, data_format="hdf5", jpeg_encoding=False)
        info: dict[str, Any] = {
            "dataset_id": dataset_id, "minari_version": minari.__version__, "author": {author},
        }
        if env_spec is not None:
            info["eval_env_spec"] = gym.spec(env_id).to_json()
        if spaces is None:
            info["requirements"] = ["gymnasium-robotics>=1.4.0", "mujoco>=3.0.0"]
        if description is not None:
            info["description"] = description
        if algorithm_name is not None:
            info["algorithm_name"] = algorithm_name
        info.update(metadata or {})
        storage.update_metadata(info)
        storage.update_episodes(
            EpisodeBuffer(
                id=i,
                seed=None if episode.get("seed") is None else int(episode["seed"]),
                observations=({k: np.asarray(v) for k, v in episode["observations"].items()}
                              if isinstance(episode["observations"], Mapping) else np.asarray(episode["observations"])),
                actions=np.asarray(episode["actions"]),
                rewards=np.asarray(episode["rewards"]),
                terminations=np.asarray(episode["terminations"], dtype=bool),
                truncations=np.asarray(episode["truncations"], dtype=bool),
            )
            for i, episode in enumerate(episodes)
        )
    return path / "data"


def load_minari(path: str | Path):
    """``minari.MinariDataset`` of the dataset folder ``path`` (or its ``data`` subfolder);
    ``FileNotFoundError`` when it is missing, ``ValueError`` when it is not a readable dataset."""
    import minari

    data = _data_dir(path)
    if not data.is_dir():
        raise FileNotFoundError(f"{path}: no Minari dataset here (expected {data}/metadata.json)")
    if not (data / "metadata.json").is_file():
        raise FileNotFoundError(f"{path}: no Minari dataset here ({data}/metadata.json is missing)")
    _require_h5py()
    _check_metadata(path, data)
    try:
        return minari.MinariDataset(data)
    except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError, AssertionError) as err:
        raise ValueError(f"{path}: not a readable Minari dataset ({type(err).__name__}: "
                         f"{err or 'incomplete metadata.json'})") from err


def _check_metadata(path: str | Path, data: Path) -> None:
    """Refuse what would make Minari run code named in the dataset: without stored observation /
    action spaces ``MinariStorage.read`` calls ``gym.make`` on metadata.json's env_spec (importing
    and calling its ``entry_point``), and ``data_format`` picks the storage backend; only
    self-describing HDF5 datasets (as ``write_minari`` writes) are read. DataError names ``path``."""
    try:
        metadata = json.loads((data / "metadata.json").read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError (e.g. a pickle)
        raise DataError(f"{path}: not a readable Minari dataset ({type(err).__name__}: {err})") from None
    if not (isinstance(metadata, dict) and isinstance(metadata.get("observation_space"), str)
            and isinstance(metadata.get("action_space"), str) and metadata.get("data_format") == "hdf5"):
        raise DataError(f"{path}: not a readable Minari dataset (metadata.json needs observation_space, "
                        "action_space and data_format 'hdf5'; the env is never built from its env_spec)")


def read_minari(path: str | Path) -> list[dict[str, Any]]:
    """Every episode of the dataset at ``path`` as a dict of arrays (the keys ``write_minari`` takes;
    "seed" when one was stored); errors as :func:`load_minari`."""
    dataset = load_minari(path)
    storage = dataset.storage
    indices = list(range(storage.total_episodes))
    try:
        seeds = [meta.get("seed") for meta in storage.get_episode_metadata(indices)]
        episodes = []
        for episode, seed in zip(storage.get_episodes(indices), seeds):
            item = {key: episode[key] for key in EPISODE_KEYS}
            if seed is not None:
                item["seed"] = int(seed)
            episodes.append(item)
    except (KeyError, OSError) as err:
        raise ValueError(f"{path}: corrupt Minari dataset ({type(err).__name__}: {err})") from err
    return episodes
