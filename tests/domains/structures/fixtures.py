"""The structures models' contract-test inputs: QM9 conformations (``fixtures_qm9``) and
alanine-dipeptide MD (``fixtures_md``)."""

from __future__ import annotations

from typing import Any

from tests.domains.structures import fixtures_md, fixtures_qm9

MODULES = {"qm9-edm": fixtures_qm9, "ala2-flow": fixtures_md, "ala2-ebm": fixtures_md}
TINY_CONFIGS: dict[str, dict[str, Any]] = {name: module.TINY_CONFIG for name, module in MODULES.items()}
TINY_CONFIGS["ala2-ebm"] = fixtures_md.TINY_EBM_CONFIG
TINY_CONFIGS["qm9-graph-conformer"] = fixtures_qm9.TINY_GRAPH_CONFORMER_CONFIG
DENSITY = True
"""Densities of real coordinates: log p may be > 0."""


def tiny_case(name: str, n: int = 16) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tiny config, domain state, batch of ``n``) of ``name``."""
    if name == "qm9-graph-conformer":
        return (TINY_CONFIGS[name], *fixtures_qm9.tiny_graph_conformer_state_and_batch(n))
    return (TINY_CONFIGS[name], *MODULES[name].tiny_state_and_batch(n))
