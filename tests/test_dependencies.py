"""What the code imports is declared, and constraints.txt pins the whole resolved set: every third-party import in
lessonlib/ and the notebooks is a runtime dependency in pyproject.toml, every one in tests/, benchmarks/ and
scripts/ a runtime or [dev] one, and the lock agrees with pyproject.toml and with the installed environment."""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

LOCK = REPO / "constraints.txt"
LOCK_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][A-Za-z0-9.!]*)"
                       r"(?:; (?P<marker>\S.*))?$")
# Dynamic imports by name: importlib.import_module("x"), pytest.importorskip("x"), __import__("x").
IMPORTING_CALLS = {"import_module", "importorskip", "__import__"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _declared(*groups: str) -> dict[str, Requirement]:
    project = _project()
    specs = [s for g in groups for s in (project["dependencies"] if g == "runtime"
                                          else project["optional-dependencies"][g])]
    return {canonicalize_name(Requirement(s).name): Requirement(s) for s in specs}


def _local_modules() -> set[str]:
    """Top-level names the repository provides itself (scripts/ is put on sys.path by the tests that use it)."""
    folders = (REPO, REPO / "scripts", REPO / "tests", REPO / "benchmarks")
    return {"lessonlib", "tests"} | {p.stem for folder in folders for p in folder.glob("*.py")}


def _imported_names(tree: ast.AST) -> set[str]:
    """Every absolute import anywhere in the tree (lazy imports inside functions included), as top-level names."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in IMPORTING_CALLS):
            names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


def _sources(folder: Path) -> list[tuple[str, str]]:
    """(label, Python source) of every .py file under folder, and of every notebook code cell (magics dropped)."""
    found = [(str(p.relative_to(REPO)), p.read_text()) for p in sorted(folder.rglob("*.py"))]
    for path in sorted(folder.rglob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
                found.append((f"{path.relative_to(REPO)} cell {i}", "\n".join(lines)))
    return found


def _third_party_imports(*folders: str) -> dict[str, set[str]]:
    """Top-level module name -> where it is imported, for every module neither stdlib nor the repository's own."""
    local = _local_modules()
    found: dict[str, set[str]] = {}
    for folder in folders:
        for label, source in _sources(REPO / folder):
            for name in _imported_names(ast.parse(source, label)):
                if name not in sys.stdlib_module_names and name not in local and name != "__future__":
                    found.setdefault(name, set()).add(label)
    return found


def _undeclared(imports: dict[str, set[str]], declared: dict[str, Requirement]) -> list[str]:
    providers = metadata.packages_distributions()
    problems = []
    for module, where in sorted(imports.items()):
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        example = sorted(where)[0] + (f" and {len(where) - 1} more" if len(where) > 1 else "")
        if not distributions:
            problems.append(f"`import {module}` ({example}): no installed distribution provides it")
        elif not distributions & declared.keys():
            problems.append(f"`import {module}` ({example}) comes from {sorted(distributions)}, not declared")
    return problems


def test_the_import_scan_sees_lazy_and_dynamic_imports():
    tree = ast.parse("import a.b\nfrom c.d import e\nfrom . import f\n"
                     "def g():\n    import h\n    pytest.importorskip('i')\n    importlib.import_module('j.k')\n")
    assert _imported_names(tree) == {"a", "c", "h", "i", "j"}


def test_everything_lessonlib_and_the_notebooks_import_is_a_runtime_dependency():
    imports = _third_party_imports("lessonlib", "solutions", "notebooks")
    assert {"torch", "numpy"} <= imports.keys(), f"the scan found too little: {sorted(imports)}"
    problems = _undeclared(imports, _declared("runtime"))
    assert not problems, "add to pyproject.toml [project] dependencies (and environment.yml), pinned with ==:\n" + \
        "\n".join(problems)


def test_everything_tests_benchmarks_and_scripts_import_is_declared():
    imports = _third_party_imports("tests", "benchmarks", "scripts")
    assert {"pytest", "transformers"} <= imports.keys(), f"the scan found too little: {sorted(imports)}"
    problems = _undeclared(imports, _declared("runtime", "dev"))
    assert not problems, "add to pyproject.toml [project.optional-dependencies] dev, pinned with ==:\n" + \
        "\n".join(problems)


# ---- constraints.txt, the lock -------------------------------------------------------------------------------------

def _lock() -> list[re.Match]:
    lines = [line.strip() for line in LOCK.read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    bad = [line for line in pins if not LOCK_LINE.match(line)]
    assert not bad, f"constraints.txt lines must read `name==version` or `name==version; marker`: {bad}"
    return [LOCK_LINE.match(line) for line in pins]


def test_every_lock_line_is_one_exact_pin_sorted_without_build_labels():
    pins = _lock()
    assert len(pins) > 50, "constraints.txt should pin the whole resolved set, not only the direct dependencies"
    names = [canonicalize_name(p["name"]) for p in pins]
    assert len(names) == len(set(names)), "a package is pinned twice"
    assert names == sorted(names), "constraints.txt is sorted by name (`make lock` writes it so)"
    for pin in pins:
        Version(pin["version"])  # a valid version
        if pin["marker"]:
            Marker(pin["marker"])  # a valid environment marker
    assert not {"lessonlib", "pip", "setuptools"} & set(names)
    cuda = [n for n in names if re.match(r"nvidia-|cuda-|triton$", n)]
    assert not cuda, f"{cuda} come only with PyPI's CUDA torch on Linux: refresh with `make lock TORCH_INDEX=cpu`"


def test_the_lock_says_how_to_refresh_it():
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    assert any(line.strip("# ").startswith("make lock") for line in header), "the header must name `make lock`"


def test_the_lock_pins_every_pyproject_dependency_at_the_same_version():
    locked = {canonicalize_name(p["name"]): p for p in _lock()}
    for name, requirement in _declared("runtime", "dev", "hub").items():
        assert name in locked, f"{requirement} is in pyproject.toml but not in constraints.txt: run `make lock`"
        (spec,) = requirement.specifier
        assert Version(locked[name]["version"]) == Version(spec.version), (
            f"pyproject.toml says {requirement}, constraints.txt {locked[name].group(0)}: run `make lock`")
        assert not locked[name]["marker"], f"{requirement} must install on every supported Python"
    assert locked["torch"].group(0) == "torch==2.13.0"


def test_this_environment_was_installed_from_the_lock():
    """Every locked package that is installed here (and applies to this Python) has the locked version, local
    build label aside (torch 2.13.0+cpu is the lock's torch==2.13.0)."""
    wrong = []
    for pin in _lock():
        if pin["marker"] and not Marker(pin["marker"]).evaluate():
            continue
        try:
            installed = Version(metadata.version(pin["name"]))
        except metadata.PackageNotFoundError:
            continue  # a package of another platform's resolve
        if Version(installed.public) != Version(pin["version"]):
            wrong.append(f"{pin['name']} {installed} (lock: {pin['version']})")
    assert not wrong, f"installed versions differ from constraints.txt: {wrong}; run `make test` (it reinstalls)"


def test_every_locked_release_supports_this_python_or_carries_a_marker():
    """`make lock` adds a Requires-Python marker where a release shuts out some supported Python; this checks the
    releases installed here, whose metadata is at hand."""
    missing = []
    for pin in _lock():
        if pin["marker"]:
            continue
        try:
            requires = metadata.metadata(pin["name"]).get("Requires-Python")
        except metadata.PackageNotFoundError:
            continue
        floor = Version(re.search(r">=\s*([\d.]+)", _project()["requires-python"]).group(1))
        if requires and floor not in SpecifierSet(requires):
            missing.append(f"{pin['name']} (Requires-Python {requires})")
    assert not missing, f"these need a marker (`make lock` adds it): {missing}"


@pytest.mark.parametrize("line, ok", [
    ('soupsieve==4.1.3; python_full_version >= "3.11.5"', True), ("torch==2.13.0", True),
    ("torch==2.13.0+cpu", False), ("torch>=2.13", False), ("torch @ file:///opt/wheels/torch.whl", False)])
def test_what_counts_as_a_lock_line(line, ok):
    assert bool(LOCK_LINE.match(line)) is ok


def _lock_writer():
    spec = importlib.util.spec_from_file_location("write_constraints", REPO / "scripts" / "write_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("clause, shuts_out", [
    (">=3.11.5", True), (">=3.11", False), (">=2.7", False), ("!=3.0.*", False), ("!=3.14.1", True),
    ("!=3.12.*", True), ("<4", False), ("<3.14", True)])
def test_make_lock_marks_only_the_clauses_that_shut_out_a_supported_python(clause, shuts_out):
    writer = _lock_writer()
    assert writer.shuts_out_a_supported_python(Specifier(clause), Version("3.11")) is shuts_out
