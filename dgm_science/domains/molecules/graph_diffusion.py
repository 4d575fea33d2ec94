"""Placeholder: the DiGress-style graph diffusion model lands here."""
