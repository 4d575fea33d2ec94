"""Outputs honour the umask: on a shared cluster folder collaborators must be able to read them
(temp-file helpers create 0600 files and 0700 folders unless told otherwise)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgm_science.utils import atomic_dir, atomic_path, current_umask

from tests.test_cli import make_checkpoint


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_current_umask_reads_without_changing(mask):
    with umask(mask):
        assert current_umask() == mask
        assert current_umask() == mask


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                        (0o002, 0o664, 0o775)])
def test_atomic_writes_honour_the_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "out.d") as tmp:
            (tmp / "inner.txt").write_text("y")
    assert mode(tmp_path / "out.txt") == file_mode
    assert mode(tmp_path / "out.d") == dir_mode
    assert mode(tmp_path / "out.d" / "inner.txt") == file_mode


def test_cli_outputs_are_group_readable_under_umask_027(tmp_path, molecule_state):
    """The real ``dgm sample`` in a process whose umask is 027 (a typical cluster setting): the
    samples file is 0640, not the 0600 a temp file would leave."""
    ckpt = make_checkpoint(tmp_path / "model.ckpt", "smiles-arm", molecule_state)
    out = tmp_path / "run" / "samples.csv"
    env = dict(os.environ, PYTHONHASHSEED="0", DGLBACKEND="pytorch")
    result = subprocess.run(
        [sys.executable, "-m", "dgm_science.cli", "sample", "--checkpoint", str(ckpt), "-n", "5",
         "--out", str(out), "--device", "cpu", "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o027),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert mode(out) == 0o640
    assert mode(ckpt) == 0o644 & ~current_umask()


def test_reference_statistics_file_honours_the_umask(tmp_path):
    """``ref_*.npz`` (molecules' reference statistics) went through a 0600 NamedTemporaryFile."""
    from dgm_science.domains.molecules.metrics import REFERENCE_KEYS, load_reference, save_reference

    stats = {key: np.arange(3) for key in REFERENCE_KEYS}
    with umask(0o022):
        save_reference(tmp_path / "ref_test.npz", stats)
    assert mode(tmp_path / "ref_test.npz") == 0o644
    assert set(load_reference(tmp_path / "ref_test.npz")) == set(REFERENCE_KEYS)
