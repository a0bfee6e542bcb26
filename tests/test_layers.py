"""The layers point one way: core (gridlens) < services (producer, consumer, api) < app.

Read from the source with ast, every import counts, at module level or inside a
function: a function-local import that dodges a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "gridlens"
SERVICES = ("producer", "consumer", "api")
APP = "app"
PACKAGES = (CORE, *SERVICES, APP)


def imported_packages(package: str) -> dict[str, set[str]]:
    """For each of the package's modules, the project packages it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        module = str(path.relative_to(ROOT))
        found[module] = {name.split(".")[0] for name in names} & set(PACKAGES) - {package}
    return found


def package_graph() -> dict[str, set[str]]:
    return {package: set().union(*imported_packages(package).values()) for package in PACKAGES}


def test_the_core_imports_no_service_and_not_the_application() -> None:
    offenders = {
        module: sorted(imported) for module, imported in imported_packages(CORE).items() if imported
    }
    assert offenders == {}


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_the_application(service: str) -> None:
    offenders = {
        module: sorted(imported)
        for module, imported in imported_packages(service).items()
        if APP in imported
    }
    assert offenders == {}


def test_no_two_packages_import_each_other() -> None:
    graph = package_graph()
    both_ways = sorted(
        (first, second)
        for first in PACKAGES
        for second in graph[first]
        if first < second and first in graph[second]
    )
    assert both_ways == []


def test_the_package_graph_has_no_cycle() -> None:
    graph = package_graph()
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"import cycle: {' -> '.join((*path, package))}"
        if package not in done:
            for imported in sorted(graph[package]):
                visit(imported, (*path, package))
            done.add(package)

    for package in PACKAGES:
        visit(package, ())


def test_modules_and_functions_fit_on_a_screen_or_a_few() -> None:
    """No module of the code is over 400 lines, no function over 60."""
    too_long: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            where = path.relative_to(ROOT)
            if len(source.splitlines()) > 400:
                too_long.append(f"{where}: {len(source.splitlines())} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > 60:
                        too_long.append(f"{where}: {node.name} is {length} lines")
    assert too_long == []
