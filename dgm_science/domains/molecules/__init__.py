"""Molecules (2D): MOSES / QM9 SMILES, RDKit graphs and dense graphs: their data, models, sampling
(with the candidate search of ``dgm sample``), metrics and report section. Design and property
prediction on these models are applications (``dgm_science/applications/``)."""

from dgm_science.domains.molecules import (  # noqa: F401  (register entries)
    commands, data, domain, graph_diffusion, graph_flow, latent_gan, models, molgan, report, sources,
)
