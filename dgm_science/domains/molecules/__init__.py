"""Molecules (2D): MOSES / QM9 SMILES, RDKit graphs and dense graphs."""

from dgm_science.domains.molecules import (  # noqa: F401  (register entries)
    commands, data, design_report, domain, graph_diffusion, graph_flow, models, molgan, prediction_report, report,
)
