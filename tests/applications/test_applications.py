"""Applications are registered like domains: each declares its config block, results folder and commands,
which the workflow reads from the catalog of the registry (tests/test_catalog.py) and the report from the
registry; importing the package imports no application."""

from __future__ import annotations

import subprocess
import sys

from dgm_science import registry
from dgm_science.applications import Application


def test_the_applications_are_registered_with_their_config_blocks():
    apps = [registry.get("application", name) for name in registry.names("application")]
    assert {"design", "prediction"} <= {app.name for app in apps}
    assert all(issubclass(app, Application) for app in apps)
    assert {app.config_key for app in apps} == {app.results_folder for app in apps} == {"design", "prediction"}


def test_each_application_registers_the_commands_it_declares_from_its_own_package():
    for name in registry.names("application"):
        app = registry.get("application", name)
        assert app.commands, name
        for command in app.commands:
            module = registry.get("command", command).run.__module__
            assert module == f"dgm_science.applications.{name}.commands", (command, module)


def test_importing_the_package_imports_no_application_nor_torch():
    code = ("import sys; import dgm_science.applications; "
            "assert 'torch' not in sys.modules, 'torch'; "
            "assert not [m for m in sys.modules if m.startswith('dgm_science.applications.')], sys.modules")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
