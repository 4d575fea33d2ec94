"""3D structures: QM9 conformations (E(n)-equivariant diffusion; a user's own conformers: ``sources.py``) and
molecular dynamics of alanine dipeptide (Boltzmann-generator flow on internal coordinates)."""

from dgm_science.domains.structures import commands, data, domain, edm, models, report, sources  # noqa: F401  (register entries)
