"""agrad is two layers: the library, and the chapter's application on top.

The library (``Value``, ``sum``/``dot``, ``compile``, ``nn``, ``optim``,
``linreg``, ``datasets``, ``viz``) imports nothing of the application
(``studies``, ``sweep``, the command line); the application uses only the
library's public names; and no module imports itself in a circle.  Checked
on the installed package's sources, so against a wheel too: every import
statement counts, those inside functions included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import resources

import pytest

APPLICATION = {"agrad.studies", "agrad.sweep", "agrad.__main__"}


def package_modules() -> dict[str, ast.Module]:
    """Every Python module of the installed agrad, parsed, by dotted name."""
    modules = {}

    def walk(directory, prefix: str) -> None:
        for entry in directory.iterdir():
            if entry.is_dir() and entry.joinpath("__init__.py").is_file():
                walk(entry, f"{prefix}.{entry.name}")
            elif entry.name.endswith(".py"):
                stem = entry.name.removesuffix(".py")
                name = prefix if stem == "__init__" else f"{prefix}.{stem}"
                modules[name] = ast.parse(entry.read_text(encoding="utf-8"))

    walk(resources.files("agrad"), "agrad")
    return modules


MODULES = package_modules()
LIBRARY = set(MODULES) - APPLICATION


def imported(module: ast.Module) -> list[tuple[str, str | None]]:
    """(module, name) for every import in ``module``: ``import agrad.nn`` is
    ("agrad.nn", None); ``from agrad import nn`` is ("agrad", "nn"), which
    is the module agrad.nn when there is one."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def agrad_modules_imported(module: ast.Module) -> set[str]:
    modules = set()
    for source, name in imported(module):
        if name is not None and f"{source}.{name}" in MODULES:
            modules.add(f"{source}.{name}")
        elif source in MODULES:
            modules.add(source)
    return modules


def test_the_package_is_the_two_layers_expected():
    assert set(MODULES) > APPLICATION
    assert {"agrad", "agrad.nn", "agrad.optim", "agrad.linreg", "agrad.viz"} <= LIBRARY


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_the_library_imports_nothing_of_the_application(name):
    assert agrad_modules_imported(MODULES[name]) & APPLICATION == set()


@pytest.mark.parametrize("name", sorted(APPLICATION))
def test_the_application_uses_only_the_librarys_public_names(name):
    module = MODULES[name]
    private = [
        f"from {source} import {imported_name}"
        for source, imported_name in imported(module)
        if source.startswith("agrad")
        and (
            any(part.startswith("_") for part in source.split(".")[1:] if part != "__main__")
            or (imported_name or "").startswith("_")
        )
    ]
    # viz._figure, studies._seeded: a private name read off an agrad module
    aliases = {
        alias.asname or alias.name
        for source, names in [
            (node.module, node.names)
            for node in ast.walk(module)
            if isinstance(node, ast.ImportFrom) and node.module == "agrad"
        ]
        for alias in names
    }
    private += [
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(module)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
    ]
    assert private == []


def test_no_module_imports_itself_in_a_circle():
    graph = {name: agrad_modules_imported(tree) - {name} for name, tree in MODULES.items()}
    # a package imports its submodules; a submodule importing its package is
    # the usual `import agrad`, so only edges between non-package modules and
    # from the package down count as a circle's links
    packages = {name for name in MODULES if any(other.startswith(name + ".") for other in MODULES)}
    for name, targets in graph.items():
        if name not in packages:
            graph[name] = targets - packages
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, f"an import circle: {' -> '.join([*visiting, name])}"
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_importing_the_library_loads_no_application_module():
    library = sorted(name for name in LIBRARY if name != "agrad.__main__")
    code = (
        f"import importlib, sys\nfor name in {library!r}:\n    importlib.import_module(name)\n"
        f"print(sorted(set(sys.modules) & set({sorted(APPLICATION)!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
