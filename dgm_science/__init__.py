"""dgm-science: deep generative models on real scientific data."""

__version__ = "0.1.0"
