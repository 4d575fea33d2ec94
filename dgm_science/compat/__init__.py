"""Compatibility shims for third-party packages built against older dependencies."""
