"""The `cluster` marker: tests that start a real single-node Slurm (tests/cluster/slurm.sh); run
them with `make test-cluster` (root, Debian's packages installed on first use).

`make test-cluster` sets DGM_CLUSTER_REQUIRED=1: then a session in which no cluster test ran (none
selected, or one skipped, e.g. without root) fails instead of passing with nothing tested."""

from __future__ import annotations

import os

import pytest

REQUIRED = "DGM_CLUSTER_REQUIRED"
_outcomes: dict[str, list[str]] = {"passed": [], "skipped": []}


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: runs a real single-node Slurm (root; `make test-cluster`)")


def pytest_runtest_logreport(report):
    if "cluster" not in report.keywords:
        return
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _outcomes["skipped"].append(f"{report.nodeid}: {reason}")
    elif report.passed and report.when == "call":
        _outcomes["passed"].append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get(REQUIRED) != "1" or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        return
    skipped, passed = _outcomes["skipped"], _outcomes["passed"]
    if passed and not skipped:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"{REQUIRED}=1: " + ("; ".join(f"skipped {s}" for s in skipped) if skipped
                                                    else "no cluster test was selected"), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
