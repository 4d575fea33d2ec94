"""3D structures: QM9 conformations (E(n)-equivariant diffusion; a user's own conformers: ``conformer_sources.py``)
and molecular dynamics of alanine dipeptide (Boltzmann-generator flow on internal coordinates; a user's own
trajectory: ``md_sources.py``)."""

from dgm_science.domains.structures import (  # noqa: F401  (register entries)
    commands, conformer_sources, data, domain, edm, graph_conformers, md_sources, models, report,
)
