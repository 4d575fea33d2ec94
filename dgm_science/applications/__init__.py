"""Applications: what is built on the generative models without being a generative run of a domain.
Goal-directed design (``design/``: ``dgm optimize``, ``dgm decorate``, GuacaMol / PMO tasks) and
property prediction (``prediction/``: ``dgm predict``, ``dgm evaluate-predictor``) each live in a
subpackage that registers, like a domain, its ``Application`` (``@register("application", name)``),
its commands and its report section. An application may import a domain (it sits above them); no
domain imports an application.

Each is a top-level block of the pipeline's config (``config_key``) and a folder under ``results/``
(``results_folder``); neither is a domain, and their runs are not generative runs, so the workflow's list
of domains (workflows/rules/common.smk, from the catalog of the registry), the report's summary and its
trade-off table leave them out by asking the registry. Importing this package imports none of its
subpackages; ``load()`` imports them, as ``registry`` does before a lookup. Its rules are in
workflows/rules/applications/<name>/.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import ClassVar

class Application:
    """An application of the models, registered as a class (``@register("application", name)``) and
    used without an instance: where its settings and outputs are. Its commands register themselves
    (``dgm_science.commands.command``) and its report section as ``report`` / ``<domain>-<name>``."""

    name: ClassVar[str]
    config_key: ClassVar[str]
    """The pipeline config's top-level block of its settings (workflows/schemas/config.schema.yaml);
    ``name`` unless the subclass says otherwise."""
    results_folder: ClassVar[str]
    """Its folder under ``results/`` (no generative runs in it); ``name`` unless the subclass says otherwise."""
    commands: ClassVar[tuple[str, ...]] = ()
    """The ``dgm`` subcommands it adds."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for attribute in ("config_key", "results_folder"):
            if attribute not in vars(cls) and hasattr(cls, "name"):
                setattr(cls, attribute, cls.name)


@functools.cache
def load() -> None:
    """Import every application subpackage (registering its entries); a new application is one new folder."""
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")
