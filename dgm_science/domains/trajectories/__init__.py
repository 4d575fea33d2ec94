"""Robot trajectories: PointMaze expert data (Minari) and trajectory models that plan: Diffuser
(Gaussian diffusion, temporal U-Net) and an autoregressive transformer."""

from dgm_science.domains.trajectories import commands, data, domain, models, report, sources  # noqa: F401  (register entries)
