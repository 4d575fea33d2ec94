"""Scientific domains: each subpackage registers its data, networks, metrics, models, report
section and commands when imported; every subpackage here is imported, so a new domain is one new
folder."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")
