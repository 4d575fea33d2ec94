"""Name -> builder registries, so configs select components without if/elif chains.

Usage::

    @register("model", "smiles-arm")
    class SmilesARM(ModelSpec):  # a model entry is a dgm_science.base.ModelSpec subclass
        domain = "molecules"
        Config = SmilesARMConfig
        batch_fields = ("tokens",)

        @staticmethod
        def build(cfg, domain_state): ...

    model = registry.get("model", "smiles-arm").build(cfg, domain_state)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = defaultdict(dict)


def register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn`` as the builder of ``name`` within ``kind``; a ``model`` entry must
    be a :class:`~dgm_science.base.ModelSpec` subclass declaring its domain, Config and batch fields
    (TypeError otherwise)."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if kind == "model":
            from dgm_science.base import ModelSpec  # imported late: base imports torch

            ModelSpec.check(fn, name)
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice")
        _REGISTRY[kind][name] = fn
        return fn

    return decorator


def _load_plugins() -> None:
    # Importing the domain and application packages runs their @register decorators; the trade-off table
    # registers the report's section across domains.
    from dgm_science import applications, domains, tradeoff  # noqa: F401

    applications.load()


def get(kind: str, name: str) -> Callable[..., Any]:
    """The builder registered as ``name`` in ``kind``; a clear error lists the known names."""
    _load_plugins()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY[kind])) or "none"
        raise KeyError(f"unknown {kind} {name!r}; known: {known}") from None


def names(kind: str) -> list[str]:
    """All names registered in ``kind``, sorted."""
    _load_plugins()
    return sorted(_REGISTRY[kind])


def build(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the builder registered as ``name`` in ``kind``."""
    return get(kind, name)(*args, **kwargs)
