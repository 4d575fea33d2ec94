"""Scientific domains: each registers its data, networks, metrics and models."""

from dgm_science.domains import molecules, sequences, structures, trajectories  # noqa: F401
