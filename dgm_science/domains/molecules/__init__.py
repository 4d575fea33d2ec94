"""Molecules (2D): MOSES / QM9 SMILES and RDKit graphs."""

from dgm_science.domains.molecules import data, domain, models, report  # noqa: F401  (register entries)
