"""The project's one import path for DGL 2.1.0 (PyPI, built for torch <= 2.2) under torch 2.13.

Before importing ``dgl`` this sets ``DGLBACKEND=pytorch`` (unless already set) and registers an
empty module as ``dgl.graphbolt``: graphbolt's compiled library does not load with torch 2.13
(and its ``torchdata.datapipes`` dependency is gone), and ``import dgl`` imports it eagerly.
DGL's other pure-Python imports need ``pandas``.

Works: graph construction, batching, message passing (``update_all`` with ``dgl.function``),
``dgl.nn`` layers such as ``EGNNConv``. Does not work: ``dgl.graphbolt`` (the empty stub) and
``dgl.sparse`` (its C++ library is built against the old torch ABI).
"""

from __future__ import annotations

import os
import sys
import types

_GRAPHBOLT = "dgl.graphbolt"


def import_dgl() -> types.ModuleType:
    """Import and return the ``dgl`` module through the shim; safe to call repeatedly."""
    loaded = sys.modules.get("dgl")
    if loaded is not None:
        return loaded
    os.environ.setdefault("DGLBACKEND", "pytorch")
    if _GRAPHBOLT not in sys.modules:
        stub = types.ModuleType(
            _GRAPHBOLT, "Empty stand-in: DGL graphbolt does not load under torch 2.13."
        )
        sys.modules[_GRAPHBOLT] = stub
    import dgl

    return dgl
