"""A user's trajectories as a dataset (``dgm prepare --source``): kind ``minari``, a local Minari dataset of
any gymnasium environment with Box spaces, and kind ``maze``, a PointMaze layout given as a maze map whose
expert data is collected in the simulator. Both write what the built-in PointMaze prepare writes
(``train.npz``, ``valid.npz``, plus ``test.npz``; ``prepare.json``), split at random by whole episodes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgm_science.config import bounded
from dgm_science.errors import DataError
from dgm_science.registry import register
from dgm_science.sources import SkipLog, Source, SourceOptions, random_split, write_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinariOptions(SourceOptions):
    """A local Minari dataset (HDF5) of an environment with Box observations (or a Dict of Boxes) and Box
    actions, split at random by whole episodes."""

    dataset_id: str | None = None
    """with ``path`` = a datasets root (e.g. ~/.minari/datasets): the dataset's id, e.g.
    mujoco/hopper/expert-v0 (its folder is path/dataset_id); null: ``path`` is the dataset's folder"""
    horizon: int = bounded(32, minimum=2)
    """window length: the default horizon of models that set none; episodes with fewer steps are skipped
    (counted in prepare.json)"""


@dataclass(frozen=True)
class MazeOptions(SourceOptions):
    """A PointMaze layout: the expert (shortest path + PD controller) is run in the simulator on the map,
    then its episodes are split at random."""

    path: str | list[str] = ""
    """unused (the data is collected in the simulator)"""
    maze_map: list[list[int | str]] = dataclasses.field(default_factory=list)
    """rows of cells: 1 wall, 0 free, g / r / c free goal / reset / both cells (gymnasium-robotics'
    maze_map); enclosed by walls, every free cell connected"""
    episodes: int = bounded(50, minimum=3)
    """expert episodes collected"""
    episode_steps: int = bounded(300, minimum=2)
    """steps per episode (goals resampled on arrival)"""
    noise: float = bounded(0.0, minimum=0.0)
    """std of the Gaussian action noise of the expert"""


def _split_episodes(episodes: list[np.ndarray], options: SourceOptions, out_dir: Path, where: str
                    ) -> dict[str, Any]:
    """Random split of whole episodes into train / valid / test .npz; the counts and steps per split."""
    from dgm_science.domains.trajectories.data import _write_split

    split = random_split(len(episodes), options.valid, options.test, options.seed, where, unit="episodes")
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"split": options.split, "seed": options.seed}
    for name, ids in split.items():
        _write_split(out_dir / f"{name}.npz", [episodes[i] for i in ids])
        stats[f"{name}_episodes"] = len(ids)
        stats[f"{name}_steps"] = int(sum(len(episodes[i]) for i in ids))
    stats["_split"] = split
    return stats


@register("source", "minari")
class MinariSource(Source):
    """A local Minari dataset (as Minari writes it: <folder>/data/metadata.json + main_data.hdf5)."""

    domain = "trajectories"
    Options = MinariOptions
    file_fields = ("path",)
    split_methods = ("random",)

    @classmethod
    def files(cls, options: SourceOptions) -> list[str]:
        return [str(cls.folder(options))]

    @staticmethod
    def folder(options: MinariOptions) -> Path:
        path = Path(options.path if isinstance(options.path, str) else options.path[0])
        return path / options.dataset_id if options.dataset_id else path

    @classmethod
    def prepare(cls, options: MinariOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        from minari.serialization import deserialize_space

        from dgm_science.domains.trajectories import generic
        from dgm_science.domains.trajectories.minari_io import _data_dir, read_minari

        if not isinstance(options.path, str):
            raise DataError("source.path: one Minari dataset folder (not a list)")
        folder = cls.folder(options)
        where = str(folder)
        data = _data_dir(folder)
        if not (data / "metadata.json").is_file():
            raise DataError(f"{where}: not a Minari dataset (no data/metadata.json; give the dataset's folder, or its "
                            "parent as path and dataset_id)")
        metadata = json.loads((data / "metadata.json").read_text())
        try:
            obs_space = deserialize_space(metadata["observation_space"])
            act_space = deserialize_space(metadata["action_space"])
        except (KeyError, TypeError, ValueError, NotImplementedError) as err:
            raise DataError(f"{where}: metadata.json's observation / action space cannot be read "
                            f"({type(err).__name__}: {err})") from None
        generic.check_box(obs_space, "observation", where)
        generic.check_box(act_space, "action", where)
        layout = generic.obs_layout(obs_space)
        obs_dim = int(sum(np.prod(shape) if shape else 1 for _, shape in layout))
        act_dim = int(np.prod(act_space.shape))
        skips = SkipLog(where, unit="episodes")
        episodes, returns = [], []
        raw = read_minari(folder)
        for i, episode in enumerate(raw):
            rows = generic.episode_rows(episode, layout, act_dim, f"{where}: episode {i}")
            if len(rows) < options.horizon:
                skips.skip(i, f"{len(rows)} steps < horizon {options.horizon}")
                continue
            episodes.append(rows)
            returns.append(float(np.sum(episode["rewards"])))
        if raw and not episodes:
            longest = max(len(e["actions"]) for e in raw)
            raise DataError(f"{where}: none of the {len(raw)} episodes has {options.horizon} steps (the longest has "
                            f"{longest}); set the source's horizon (and the models' model.horizon) to at most {longest}")
        skips.check(len(raw))
        stats = _split_episodes(episodes, options, Path(out_dir), where)
        split = stats.pop("_split")
        for name, ids in split.items():
            stats[f"{name}_return_mean"] = float(np.mean([returns[i] for i in ids]))
        stats = {"kind": "minari", "maze": None, "source": where, "dataset_id": metadata.get("dataset_id"),
                 **generic.env_settings(metadata), "observation_space": metadata["observation_space"],
                 "action_space": metadata["action_space"], "obs_layout": layout, "obs_dim": obs_dim,
                 "act_dim": act_dim, "action_low": np.asarray(act_space.low, np.float64).tolist(),
                 "action_high": np.asarray(act_space.high, np.float64).tolist(), "horizon": options.horizon,
                 "read": len(raw), "short_episodes": "skipped", **skips.as_dict(), **stats}
        if skips.count:
            log.warning("%s: %d of %d episodes shorter than the horizon %d were skipped (%s)", where, skips.count,
                        len(raw), options.horizon, skips.lines())
        write_stats(Path(out_dir), stats)
        return stats


@register("source", "maze")
class MazeSource(Source):
    """A PointMaze map: expert data collected on it in the simulator, split like the built-in mazes'."""

    domain = "trajectories"
    Options = MazeOptions
    file_fields = ()
    split_methods = ("random",)

    @classmethod
    def prepare(cls, options: MazeOptions, out_dir: Path, *, n_jobs: int) -> dict[str, Any]:
        from dgm_science.domains.trajectories.data import _episode_arrays
        from dgm_science.domains.trajectories.expert import write_expert_dataset
        from dgm_science.domains.trajectories.mazes import custom_maze_name, maze_spec
        from dgm_science.domains.trajectories.minari_io import read_minari
        from dgm_science.sources import split_sizes

        try:
            name = custom_maze_name(options.maze_map, "source.maze_map")
        except ValueError as err:
            raise DataError(str(err)) from None
        split_sizes(options.episodes, options.valid, options.test, "source.episodes", unit="episodes")
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".collect-") as tmp:
            collected = write_expert_dataset(Path(tmp) / "raw", name, episodes=options.episodes,
                                             episode_steps=options.episode_steps, noise=options.noise,
                                             seed=options.seed)
            episodes = _episode_arrays(read_minari(Path(tmp) / "raw" / "minari"), Path(tmp))
        stats = _split_episodes(episodes, options, out_dir, "source.episodes")
        stats.pop("_split")
        spec = maze_spec(name)
        stats = {"kind": "maze", "maze": name, "env_id": spec.env_id, "max_episode_steps": spec.max_episode_steps,
                 "horizon": spec.horizon, "collect": collected,
                 "normalized_score": "not available: no D4RL reference returns for a user maze; the workflow "
                                     "rolls out the expert and straight baselines on the same episodes", **stats}
        write_stats(out_dir, stats)
        return stats
