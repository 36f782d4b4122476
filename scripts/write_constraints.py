"""Write constraints.txt: every distribution installed in the running environment, pinned (`make lock` runs this
inside a throwaway venv where it has just installed `-e .[dev,hub]` from pyproject.toml alone).

    python scripts/write_constraints.py constraints.txt [--torch-index cpu]

What it writes, so that one file serves Linux, macOS and Windows:
- `pip freeze --exclude-editable`, less lessonlib, pip, setuptools and wheel, sorted by name;
- local version labels dropped (torch==2.13.0+cpu -> torch==2.13.0): the label names a build, not a release, and a
  macOS or Windows machine has no +cpu wheel. `==2.13.0` still admits the +cpu build where an index offers one;
- a release whose Requires-Python shuts out some Python the course supports (a floor above requires-python's, an
  upper bound, an exclusion) gets that Requires-Python as a marker, so that on such a Python pip picks the release
  that fits instead of failing: `soupsieve==4.1.3; python_full_version >= "3.11.5"`;
- it refuses CUDA libraries (nvidia-*, cuda-*, triton): they come only with PyPI's Linux x86_64 torch, which pins
  them itself, and a lock made from that build would not be the one the other platforms resolve.
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LEFT_OUT = {"lessonlib", "pip", "setuptools", "wheel"}
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)$")


def python_floor() -> Version:
    """The lowest Python pyproject.toml's requires-python admits (its >= clause)."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    floors = [Version(s.version) for s in SpecifierSet(requires) if s.operator == ">="]
    if len(floors) != 1:
        raise SystemExit(f"pyproject.toml requires-python {requires!r} needs exactly one >= clause")
    return floors[0]


def shuts_out_a_supported_python(clause: Specifier, floor: Version) -> bool:
    """Whether a Requires-Python clause rejects some Python from the floor up to the next major version."""
    ceiling = Version(str(floor.major + 1))
    if clause.operator in (">=", ">"):
        return not clause.contains(floor)
    if clause.operator in ("<", "<="):
        return Version(clause.version) < ceiling
    if clause.operator == "!=":
        if clause.version.endswith(".*"):  # != 3.0.*: a whole release series
            series = Version(clause.version[:-2])
            return Version(f"{floor.major}.{floor.minor}") <= series < ceiling
        return floor <= Version(clause.version) < ceiling
    return True  # ==, ~=, ===: rare enough to keep as they are


def python_marker(name: str, floor: Version) -> str | None:
    """The clauses of the distribution's Requires-Python that shut out a supported Python, as a marker; else None.
    (`>=2.7, !=3.0.*` says nothing about 3.11 and later, so it gets none.)"""
    requires = metadata.metadata(name).get("Requires-Python")
    clauses = sorted((c for c in SpecifierSet(requires or "") if shuts_out_a_supported_python(c, floor)), key=str)
    return " and ".join(f'python_full_version {c.operator} "{c.version}"' for c in clauses) or None


def pins() -> list[tuple[str, str]]:
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable",
                             "--disable-pip-version-check"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in frozen.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            raise SystemExit(f"cannot pin {line!r}: installed from a path or URL, not from an index")
        name, version = match["name"], match["version"]
        if canonicalize_name(name) in LEFT_OUT:
            continue
        found.append((name, Version(version).public))  # drop a local label: 2.13.0+cpu -> 2.13.0
    return sorted(found, key=lambda pin: canonicalize_name(pin[0]))


def header(torch_index: str | None) -> str:
    how = "make lock" + (f" TORCH_INDEX={torch_index}" if torch_index else "")
    arch = platform.machine()
    return f"""\
# Every package the course installs, pinned: the full set `pip install -e '.[dev,hub]'` resolved to.
# make lab / make test install with `pip install -c constraints.txt`, and environment.yml's pip section reads it.
# Do not edit by hand. Refresh it after changing a pin in pyproject.toml with the one command
#     {how}
# which resolves pyproject.toml's pins afresh in a throwaway venv (this file unused) and writes what landed there
# (scripts/write_constraints.py). This one: Python {platform.python_version()} on {platform.system()}, {arch}.
# Local build labels are dropped (torch 2.13.0+cpu is written torch==2.13.0) so every platform reads the same line.
# A `; python_full_version ...` marker: that release does not support every Python the course does, and there
# pip picks the release that fits. Packages only another platform needs (pywinpty, colorama on Windows; the CUDA
# libraries of PyPI's Linux torch, which torch pins itself) are not listed, so pip resolves them there.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--torch-index", help="the TORCH_INDEX the install used, recorded in the header")
    args = parser.parse_args()

    floor = python_floor()
    found = pins()
    cuda = [name for name, _ in found if CUDA_ONLY.match(canonicalize_name(name))]
    if cuda:
        raise SystemExit(f"refusing to lock PyPI's CUDA build of torch (it brought {', '.join(cuda)}): "
                         "run `make lock TORCH_INDEX=cpu` so the lock holds what every platform resolves")
    lines = []
    for name, version in found:
        marker = python_marker(name, floor)
        lines.append(f"{name}=={version}" + (f"; {marker}" if marker else ""))
    args.output.write_text(header(args.torch_index) + "\n".join(lines) + "\n")
    print(f"wrote {args.output}: {len(lines)} pins")


if __name__ == "__main__":
    main()
