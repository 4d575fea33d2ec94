"""`make test-cluster` (DGM_CLUSTER_REQUIRED=1) fails when no cluster test ran: none selected, or
one skipped (without root); without the variable such a session passes as pytest decides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.mark.parametrize("body, args, required, code", [
    ("def test_runs():\n    pass\n", [], True, 0),
    ("def test_needs_root():\n    pytest.skip('needs root')\n", [], True, 1),
    ("def test_needs_root():\n    pytest.skip('needs root')\n", [], False, 0),
    ("def test_runs():\n    pass\n", ["-k", "no_such_test"], True, 1),
    ("def test_runs():\n    pass\n", ["-k", "no_such_test"], False, 5),
])
def test_a_session_without_a_cluster_test_fails_when_required(body, args, required, code, tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_fake.py").write_text(f"import pytest\n\npytestmark = pytest.mark.cluster\n\n\n{body}")
    env = {k: v for k, v in os.environ.items() if k != "DGM_CLUSTER_REQUIRED"}
    if required:
        env["DGM_CLUSTER_REQUIRED"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cluster", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    if code == 1:
        assert "DGM_CLUSTER_REQUIRED=1: " in done.stdout
