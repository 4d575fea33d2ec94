"""Applications are registered like domains: ``APPLICATIONS`` (what the workflow reads without torch)
names the registered applications' config blocks, each declares its commands, and reading it imports
no application."""

from __future__ import annotations

import subprocess
import sys

from dgm_science import registry
from dgm_science.applications import APPLICATIONS, Application


def test_applications_names_the_registered_applications_config_keys():
    apps = [registry.get("application", name) for name in registry.names("application")]
    assert {"design", "prediction"} <= {app.name for app in apps}
    assert all(issubclass(app, Application) for app in apps)
    assert sorted(APPLICATIONS) == sorted(app.config_key for app in apps)
    assert sorted(APPLICATIONS) == sorted(app.results_folder for app in apps)


def test_each_application_registers_the_commands_it_declares_from_its_own_package():
    for name in registry.names("application"):
        app = registry.get("application", name)
        assert app.commands, name
        for command in app.commands:
            module = registry.get("command", command).run.__module__
            assert module == f"dgm_science.applications.{name}.commands", (command, module)


def test_reading_the_application_keys_imports_no_application_nor_torch():
    code = ("import sys; from dgm_science.applications import APPLICATIONS; "
            "assert 'torch' not in sys.modules, 'torch'; "
            "assert not [m for m in sys.modules if m.startswith('dgm_science.applications.')], sys.modules; "
            "print(','.join(APPLICATIONS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ",".join(APPLICATIONS)
