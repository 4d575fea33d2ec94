"""Placeholder: the MoFlow-style graph flow lands here."""
