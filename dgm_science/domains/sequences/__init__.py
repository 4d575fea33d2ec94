"""Genetic sequences: 16S rRNA genes (V4 amplicons, full length) and Swiss-Prot proteins, with
autoregressive, masked-diffusion and VAE models and lossless neural compression."""

from dgm_science.domains.sequences import commands, data, domain, models, report, sources  # noqa: F401  (register entries)
