"""What an installed agrad holds, and what its wheel and sdist hold.

The first tests run against whatever agrad is imported (an editable install
during development, the installed wheel in CI).  The wheel and sdist tests
need the built files: .ci/run sets AGRAD_WHEEL and AGRAD_SDIST to them.
"""

from __future__ import annotations

import ast
import os
import tarfile
import zipfile
from importlib import metadata, resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pytest

import agrad
import agrad._core

if TYPE_CHECKING:  # importlib.resources.abc is new in 3.11; the package supports 3.10
    from importlib.resources.abc import Traversable

SOURCE_ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGE = SOURCE_ROOT / "python" / "agrad"


def _is_build_litter(name: str) -> bool:
    return name == "__pycache__" or name.endswith((".pyc", ".so", ".pyd"))


def source_package_files() -> set[str]:
    """Paths, relative to the package, of the files in python/agrad."""
    return {
        path.relative_to(SOURCE_PACKAGE).as_posix()
        for path in SOURCE_PACKAGE.rglob("*")
        if path.is_file() and not any(_is_build_litter(part) for part in path.parts)
    }


def installed_package_files(root: Traversable, prefix: str = "") -> set[str]:
    found = set()
    for entry in root.iterdir():
        if _is_build_litter(entry.name):
            continue
        if entry.is_dir():
            found |= installed_package_files(entry, f"{prefix}{entry.name}/")
        else:
            found.add(prefix + entry.name)
    return found


def is_compiled_core(name: str) -> bool:
    return PurePosixPath(name).name.startswith("_core.") and name.endswith((".so", ".pyd"))


# -- the installed package


def test_version_is_the_distributions() -> None:
    assert agrad.__version__ == metadata.version("agrad")


def test_the_distribution_links_its_docs_source_tracker_and_changelog() -> None:
    urls = dict(
        entry.split(", ", 1) for entry in metadata.metadata("agrad").get_all("Project-URL") or []
    )
    assert set(urls) == {"Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith("https://") for url in urls.values())
    assert urls["Issues"].startswith(urls["Source"]) and urls["Changelog"].endswith("CHANGELOG.md")


def test_installed_package_holds_typing_files_and_data() -> None:
    files = installed_package_files(resources.files("agrad"))
    assert {"py.typed", "_core.pyi", "__init__.py", "pure.py"} <= files
    assert any(name.startswith("datasets/") and name.endswith(".csv") for name in files)


@pytest.mark.skipif(not SOURCE_PACKAGE.is_dir(), reason="no source tree beside the tests")
def test_installed_package_holds_every_source_file() -> None:
    installed = installed_package_files(resources.files("agrad"))
    assert source_package_files() <= installed


def stub_names() -> tuple[set[str], set[str]]:
    """Names the stub gives the module, and names it gives Value."""
    stub = ast.parse(resources.files("agrad").joinpath("_core.pyi").read_text(encoding="utf-8"))
    module_names: set[str] = set()
    value_names: set[str] = set()
    for node in stub.body:
        if isinstance(node, ast.FunctionDef):
            module_names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            module_names.add(node.name)
            if node.name != "Value":  # the other classes' members stubtest checks
                continue
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    value_names.add(member.name)
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    value_names.add(member.target.id)
    return module_names, value_names


def test_stub_names_what_the_module_has() -> None:
    module_names, value_names = stub_names()
    assert module_names <= set(dir(agrad._core))
    assert value_names <= set(dir(agrad._core.Value))


def test_module_has_nothing_the_stub_leaves_out() -> None:
    # mypy's stubtest (run by .ci/run) checks signatures too; this catches a
    # new function or method in src/agrad_core/ whose stub was forgotten.
    module_names, value_names = stub_names()
    runtime_module = {
        name for name in vars(agrad._core) if not (name.startswith("__") and name.endswith("__"))
    }
    assert runtime_module <= module_names
    runtime_value = {
        name
        for name in vars(agrad._core.Value)
        if not (name.startswith("__") and name.endswith("__"))
        and not name.startswith("_pybind11_")  # pybind11's own cross-module plumbing
    }
    assert runtime_value <= value_names


# -- the built wheel and sdist (paths given by .ci/run)


def built_file(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: no built distribution to inspect")
    path = Path(value)
    assert path.is_file(), f"{variable}={value} is not a file"
    return path


def test_wheel_holds_the_package_and_nothing_else() -> None:
    wheel = built_file("AGRAD_WHEEL")
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
    dist_info = f"agrad-{agrad.__version__}.dist-info/"
    package = [name.removeprefix("agrad/") for name in names if name.startswith("agrad/")]
    others = [name for name in names if not name.startswith(("agrad/", dist_info))]
    assert others == [], "files outside the package and its metadata"
    assert len([name for name in package if is_compiled_core(name)]) == 1
    assert f"{dist_info}licenses/LICENSE" in names
    python_files = {name for name in package if not is_compiled_core(name)}
    if SOURCE_PACKAGE.is_dir():
        assert python_files == source_package_files()
    assert not any(_is_build_litter(part) for name in python_files for part in name.split("/"))


def test_sdist_holds_the_sources_and_no_build_output() -> None:
    sdist = built_file("AGRAD_SDIST")
    top = f"agrad-{agrad.__version__}/"
    with tarfile.open(sdist) as archive:
        names = {
            member.name.removeprefix(top) for member in archive.getmembers() if member.isfile()
        }
    for needed in (
        "pyproject.toml",
        "CMakeLists.txt",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "PKG-INFO",
    ):
        assert needed in names
    assert any(name.startswith("cpp/") for name in names)
    assert any(name.startswith("src/agrad_core/") for name in names)
    assert any(name.startswith("tests/") for name in names)
    package = {
        name.removeprefix("python/agrad/") for name in names if name.startswith("python/agrad/")
    }
    if SOURCE_PACKAGE.is_dir():
        assert package == source_package_files()
    unwanted = [
        name
        for name in names
        if name.startswith(("build/", "dist/", ".git/", ".ci/", ".github/"))
        or any(_is_build_litter(part) for part in name.split("/"))
    ]
    assert unwanted == []
