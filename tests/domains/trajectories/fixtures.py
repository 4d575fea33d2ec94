"""Tiny trajectory data for tests: a prepared folder of a few short expert episodes on U-Maze
(collected in the simulator in well under a second) and tiny configs of the trajectory models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DENSITY = True
"""Densities of real trajectories: log p may be > 0."""
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "maze-diffuser": {"horizon": 16, "dim": 8, "dim_mults": [1, 2], "diffusion_steps": 10, "ema_decay": 0.0},
    "traj-arm": {"horizon": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "components": 2},
}


def prepared(root: Path, episodes: int = 4, steps: int = 120, seed: int = 0, maze: str = "umaze") -> Path:
    """``dgm collect`` + ``dgm prepare`` of a few short noisy-expert episodes: the data folder."""
    from dgm_science import registry
    from dgm_science.domains.trajectories.expert import write_expert_dataset

    write_expert_dataset(root / "raw", maze, episodes=episodes, episode_steps=steps, noise=0.2, seed=seed)
    registry.get("dataset", f"pointmaze-{maze}").prepare(root / "raw", root / "data", seed=seed)
    return root / "data"


def tiny_case(name: str, n: int = 16, root: Path | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tiny config, domain state, training batch of ``n`` windows) for trajectory model ``name``."""
    import tempfile

    from dgm_science import registry
    from dgm_science.config import from_dict

    spec = registry.get("model", name)
    domain = registry.get("domain", "trajectories")
    cfg = from_dict(spec.Config, TINY_CONFIGS[name], name)
    if root is None:  # the data lives only as long as the batch is built
        with tempfile.TemporaryDirectory(prefix="dgm-traj-") as tmp:
            return tiny_case(name, n, Path(tmp))
    data = prepared(Path(root))
    state = domain.fit_state(data, spec, cfg)
    train, _ = domain.datasets(data, spec, cfg, state)
    return TINY_CONFIGS[name], state, train.collate(list(range(0, n * 7, 7)))
