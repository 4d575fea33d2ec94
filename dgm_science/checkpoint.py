"""Self-describing checkpoints: weights + the config and domain state needed to rebuild the model.

Only tensors, numbers, strings, lists and dicts are stored, so files load with
``torch.load(..., weights_only=True)``; no model object is ever pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import dgm_science
from dgm_science.utils import atomic_path

FORMAT = "dgm-science-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not a dgm-science checkpoint."""


def save(
    path: str | Path,
    *,
    domain: str,
    model_name: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    domain_state: dict[str, Any],
    info: dict[str, Any] | None = None,
) -> None:
    """Write atomically (temp file + rename), so an interrupted save leaves no half file."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dgm_version": dgm_science.__version__,
        "domain": domain,
        "model": model_name,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "domain_state": domain_state,
        "info": info or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; one clear CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files; all mean the same here
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dgm-science checkpoint (is it a Lightning training checkpoint?)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this dgm-science understands"
        )
    return payload
