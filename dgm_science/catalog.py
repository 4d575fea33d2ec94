"""What the workflow asks of the package when Snakemake parses it, without importing torch or a domain.

Every job of a cluster run parses the Snakefile again (the Slurm job step runs Snakemake), and importing the
model registry imports torch, Lightning and every domain: seconds per job. The workflow needs only facts
about the registered components: each model's domain, batch fields, capabilities, samples file and paper-size
training resources; each dataset's source files; the config's JSON Schema with every model's block (generated
from the config dataclasses by :mod:`dgm_science.schema`). This module computes them once, in a child
process (``python -m dgm_science.catalog``), and caches them as JSON under the run's
``.snakemake/dgm-science/<key>/``, ``key`` being a hash of the package's source files and of the base schema:
an edit of either computes a new catalog, and the parse of every later job reads two small files.

This module imports nothing of the package at import time (a test checks that a dry run imports no torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
CACHE = Path(".snakemake") / "dgm-science"
"""Where the catalogs are cached, relative to the run's working directory (Snakemake's own folder)."""
SOURCE_SUFFIXES = (".py", ".yaml", ".json")
CATALOG, SCHEMA = "catalog.json", "config.schema.json"


def fingerprint(base_schema: str | Path) -> str:
    """A hash of the package's source files (path and content) and of ``base_schema``: the catalog's key."""
    digest = hashlib.sha256()
    for root, folders, files in os.walk(PACKAGE):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(files):
            if name.endswith(SOURCE_SUFFIXES):
                path = Path(root, name)
                digest.update(f"{path.relative_to(PACKAGE)}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(Path(base_schema).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:20]


def describe(base_schema: str | Path) -> dict[str, Any]:
    """The catalog, from the live registry (imports every domain): models, datasets, applications and the schema."""
    from dgm_science import registry, schema

    models = {}
    for name in registry.names("model"):
        spec = registry.get("model", name)
        domain = registry.get("domain", spec.domain)
        models[name] = {
            "domain": spec.domain,
            "batch_fields": list(spec.batch_fields),
            "samples_file": domain.samples_file,
            "predicts": spec.predicts,
            "langevin": spec.langevin,
            "train_resources": spec.train_resources.as_dict(),
        }
    datasets = {name: {"sources": list(registry.get("dataset", name).sources),
                       "domain": registry.get("dataset", name).domain}
                for name in registry.names("dataset")}
    sources = {kind: {"domain": cls.domain, "file_fields": list(cls.file_fields)}
               for kind in registry.names("source") for cls in [registry.get("source", kind)]}
    applications = {name: {"config_key": registry.get("application", name).config_key,
                           "results_folder": registry.get("application", name).results_folder}
                    for name in registry.names("application")}
    return {"models": models, "datasets": datasets, "sources": sources, "applications": applications,
            "schema": schema.pipeline_schema(base_schema)}


def write(base_schema: str | Path, folder: Path) -> None:
    """Write the catalog and the schema into ``folder`` (each file atomically: jobs may race)."""
    described = describe(base_schema)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in ((SCHEMA, described.pop("schema")), (CATALOG, described)):
        partial = folder / f".{name}.{os.getpid()}"
        partial.write_text(json.dumps(content, indent=1, sort_keys=True))
        os.replace(partial, folder / name)


@dataclass(frozen=True)
class Catalog:
    """The cached facts (see the module's doc) and the path of the generated config schema."""

    models: dict[str, dict[str, Any]]
    datasets: dict[str, dict[str, Any]]
    sources: dict[str, dict[str, Any]]
    applications: dict[str, dict[str, Any]]
    schema_path: str

    def model(self, name: str) -> dict[str, Any]:
        """The facts of model ``name``; a clear error lists the known names."""
        return _known("model", self.models, name)

    def dataset(self, name: str) -> dict[str, Any]:
        """The facts of dataset ``name``; a clear error lists the known names."""
        return _known("dataset", self.datasets, name)

    def source(self, kind: str) -> dict[str, Any]:
        """The facts of file kind ``kind`` (a user dataset's ``source.kind``): its domain and file fields."""
        return _known("file kind", self.sources, kind)


def _known(kind: str, table: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None


def load(base_schema: str | Path, cache: str | Path = CACHE) -> Catalog:
    """The catalog of this package and ``base_schema``: read from ``cache``, computed there first (in a child
    process, which imports the registry) when the package or the schema changed; older catalogs are removed."""
    cache = Path(cache)
    folder = cache / fingerprint(base_schema)
    if not (folder / CATALOG).is_file() or not (folder / SCHEMA).is_file():
        done = subprocess.run([sys.executable, "-m", "dgm_science.catalog", "--base", str(base_schema),
                               "--out", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dgm_science.catalog: describing the registered models failed:\n{done.stderr[-4000:]}")
        for old in cache.iterdir():
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
    facts = json.loads((folder / CATALOG).read_text())
    return Catalog(facts["models"], facts["datasets"], facts["sources"], facts["applications"], str((folder / SCHEMA).resolve()))


def input_name(path: str | Path) -> str:
    """The report's name of a resources file (``dgm report --input NAME=PATH``):
    ``resources/<domain>/<dataset>/[...]/<stem>.<ext>`` -> ``<domain>/<dataset>/<stem>``."""
    parts = Path(path).parts
    if len(parts) < 4 or parts[0] != "resources":
        raise ValueError(f"{path}: not a resources/<domain>/<dataset>/... file")
    return f"{parts[1]}/{parts[2]}/{parts[-1].split('.')[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgm_science.catalog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the hand-written config schema (workflows/schemas/)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write catalog.json and the schema into")
    args = parser.parse_args(argv)
    write(args.base, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
