"""3D structures: QM9 conformations (E(n)-equivariant diffusion) and molecular dynamics of
alanine dipeptide (Boltzmann-generator flow on internal coordinates)."""

from dgm_science.domains.structures import (  # noqa: F401  (register entries)
    commands, data, domain, edm, models, report, sources,
)
