"""No domain imports another, nor an application: what two domains share lives outside
``dgm_science/domains/`` (e.g. ``dgm_science/chem.py``), so that a domain is one folder that can be added
or removed alone; applications (``dgm_science/applications/``) sit above the domains and may import them.
The report and the trade-off table do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dgm_science"
DOMAINS = PACKAGE / "domains"


def imported_domains(source: str, module: str) -> set[str]:
    """The domains (``dgm_science.domains.<name>``) that the Python ``source`` of ``module`` (its dotted
    name) imports, absolute or relative, at module level or inside a function."""
    package = module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            # "from dgm_science.domains import molecules" imports the domain named by the alias
            targets = [f"{stem}.{alias.name}" for alias in node.names] if stem == "dgm_science.domains" else [stem]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[:2] == ["dgm_science", "domains"] and len(parts) > 2:
                found.add(parts[2])
    return found


def imports_an_application(source: str, module: str) -> bool:
    """Whether the Python ``source`` of ``module`` imports ``dgm_science.applications`` or one of its modules."""
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            targets = [".".join([*base, *(node.module or "").split(".")]).strip(".")]
        else:
            continue
        if any(t.split(".")[:2] == ["dgm_science", "applications"] for t in targets):
            return True
    return False


def test_the_checker_sees_absolute_relative_and_function_level_imports():
    module = "dgm_science.domains.structures.metrics"
    assert imported_domains("from dgm_science.domains.molecules.properties import map_molecules", module) == {"molecules"}
    assert imported_domains("def f():\n    import dgm_science.domains.sequences.data as d\n", module) == {"sequences"}
    assert imported_domains("from ..molecules import properties", module) == {"molecules"}
    assert imported_domains("from . import domain", module) == {"structures"}
    assert imported_domains("from dgm_science.domains import trajectories", module) == {"trajectories"}
    assert imported_domains("from dgm_science.chem import map_molecules", module) == set()
    assert imports_an_application("from dgm_science.applications.design import optimize", module)
    assert imports_an_application("def f():\n    import dgm_science.applications\n", module)
    assert imports_an_application("from ...applications import prediction", module)
    assert not imports_an_application("from dgm_science.domains.molecules import data", module)


def test_no_domain_imports_another():
    domains = sorted(p.name for p in DOMAINS.iterdir() if (p / "__init__.py").is_file())
    assert {"molecules", "structures", "sequences", "trajectories"} <= set(domains)
    crossing = []
    for domain in domains:
        for path in sorted((DOMAINS / domain).rglob("*.py")):
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            for other in imported_domains(path.read_text(), module) - {domain}:
                crossing.append(f"{path.relative_to(PACKAGE.parent)} imports dgm_science.domains.{other}")
    assert not crossing, "\n".join(crossing)


def test_no_domain_imports_an_application():
    found = []
    for path in sorted(DOMAINS.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if imports_an_application(path.read_text(), module):
            found.append(str(path.relative_to(PACKAGE.parent)))
    assert not found, f"domains import dgm_science.applications: {found}"


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute imports), at any level."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_the_report_and_the_tradeoff_table_do_not_import_each_other_nor_a_domain_or_application():
    """Both build from ``report_parts``; the report finds the trade-off section in the registry
    (``report-across-domains``), as it finds the domains' and applications' sections (``report``)."""
    from dgm_science import registry, report, report_parts, tradeoff

    imported = _imports(PACKAGE / "report.py")
    assert not {"dgm_science.tradeoff", "dgm_science.domains", "dgm_science.applications"} & imported, imported
    assert not [name for name in imported if name.startswith(("dgm_science.domains.", "dgm_science.applications."))]
    in_tradeoff = _imports(PACKAGE / "tradeoff.py")
    assert not {name for name in in_tradeoff if name == "dgm_science.report" or name.startswith("dgm_science.report.")}
    assert "dgm_science.report_parts" in in_tradeoff
    assert not {"dgm_science.report", "dgm_science.tradeoff"} & _imports(PACKAGE / "report_parts.py")
    assert report.Table is report_parts.Table  # what sections imported from the report still works
    assert registry.get("report-across-domains", "families") is tradeoff.section
    assert report.REPORT_SECTIONS[-1] == "report-across-domains"
    assert {"molecules-design", "molecules-prediction"} <= set(registry.names("report"))
