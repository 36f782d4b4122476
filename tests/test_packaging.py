"""The install contract: one dependency set in pyproject.toml and environment.yml, installed through the lock
(constraints.txt), the two README commands, the optional CPU wheel index for PyTorch, one Python floor, lint in
`make test`, and CI running exactly `make test`."""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import REPO


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NOT_PINS = {"-e .", "-c constraints.txt"}


def test_environment_yml_pins_the_same_packages_as_pyproject():
    runtime = set(_pyproject()["project"]["dependencies"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pins = {d for d in env["dependencies"] if isinstance(d, str)}
    assert set(pip_section) - NOT_PINS == runtime, (
        f"environment.yml pip section {sorted(set(pip_section) - NOT_PINS)} != pyproject {sorted(runtime)}")
    assert "-e ." in pip_section, "environment.yml must install lessonlib itself (-e .)"
    # conda writes the pip list to a requirements file beside environment.yml, so pip reads this path from there
    assert pip_section[0] == "-c constraints.txt", "environment.yml's pip list must start with -c constraints.txt"
    assert "python=3.11" in conda_pins


def test_every_dependency_is_pinned_exactly_and_torch_is_the_cpu_capable_release():
    project = _pyproject()["project"]
    pins = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    loose = [d for d in pins if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", d)]
    assert not loose, f"pin these exactly (==): {loose}"
    assert "torch==2.13.0" in project["dependencies"]


def test_ci_runs_make_test_and_nothing_that_hides_a_failure():
    script = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert "make test" in commands
    assert "set -euo pipefail" in commands
    assert not any(token in script for token in ("|| true", "|| :", "set +e")), "CI must not swallow failures"


def test_readme_quickstart_shows_the_two_commands_first():
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", readme, re.S)
    assert first_block, "README needs a quickstart code block"
    commands = [line.strip() for line in first_block.group(1).splitlines() if line.strip()
                and not line.strip().startswith("#")]
    assert commands == ["make lab", "make test"], f"the quickstart block should be the two commands, got {commands}"
    for section in ("Course map", "Learner guide", "Instructor guide"):
        assert f"## {section}" in readme, f"README needs a '{section}' section"


def test_makefile_has_the_documented_targets():
    listed = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True).stdout
    for target in ("lab", "test", "release", "grade"):
        assert re.search(rf"^{target}\s", listed, re.M), f"make {target} is missing from `make help`"


def test_every_lesson_in_the_course_map():
    readme = (REPO / "README.md").read_text()
    for lesson in sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()):
        assert f"`{lesson}`" in readme, f"the README course map does not list {lesson}"


# ---- make: the lock, the CPU wheel index, lint -------------------------------------------------------------------

def _make(*args, check=True):
    """make in the repository, deaf to the make that may be running these tests (`make test TORCH_INDEX=cpu` hands
    its variables down in MAKEFLAGS) and to the caller's TORCH_INDEX or VENV."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TORCH_INDEX", "VENV"}}
    result = subprocess.run(["make", "-C", str(REPO), *args], capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _make_dry_run(tmp_path, *args):
    """`make -n` against a venv that does not exist yet, so every install step shows."""
    return _make("-n", f"VENV={tmp_path / 'venv'}", *args).stdout


def _pip_installs(output):
    return [line for line in output.splitlines() if " -m pip install " in line]


def test_make_lab_and_make_test_install_through_the_lock(tmp_path):
    lab = _pip_installs(_make_dry_run(tmp_path, "lab"))
    test = _pip_installs(_make_dry_run(tmp_path, "test"))
    assert lab and lab[-1].endswith(" -e ."), lab
    assert test and test[-1].endswith(" -e '.[dev]'"), test
    for line in lab + test:
        assert " -c constraints.txt " in line, f"installs without the lock: {line}"


def test_a_refreshed_lock_or_pyproject_reinstalls(tmp_path):
    """The stamps depend on constraints.txt and pyproject.toml: with both up to date nothing installs; with either
    newer than the stamps (make -W pretends so), pip runs again."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for stamp in ("bin/python", ".course-installed", ".dev-installed"):
        (venv / stamp).touch()
    dev_stamp = str(venv / ".dev-installed")
    assert not _pip_installs(_make("-n", f"VENV={venv}", dev_stamp).stdout)
    for changed in ("constraints.txt", "pyproject.toml"):
        reinstall = _make("-n", f"VENV={venv}", "-W", changed, dev_stamp).stdout
        assert len(_pip_installs(reinstall)) == 2, f"a newer {changed} must reinstall: {reinstall}"


def test_torch_index_cpu_reaches_pip_and_is_off_by_default(tmp_path):
    for target in ("lab", "test", "lock"):
        default = _make_dry_run(tmp_path, target)
        assert "download.pytorch.org" not in default, f"make {target} must use pip's own indexes by default"
        cpu = _make_dry_run(tmp_path, target, "TORCH_INDEX=cpu")
        installs = _pip_installs(cpu)
        assert installs, cpu
        for line in installs:
            assert f"--extra-index-url {CPU_INDEX} " in line, f"make {target} TORCH_INDEX=cpu: {line}"


def test_a_mistyped_torch_index_is_refused(tmp_path):
    result = _make("-n", f"VENV={tmp_path / 'venv'}", "lab", "TORCH_INDEX=gpu", check=False)
    assert result.returncode != 0 and "TORCH_INDEX=gpu is not a PyTorch wheel index" in result.stderr


def _wheel(folder: Path, version: str) -> None:
    """A minimal wheel of a package named fakepkg."""
    info = f"fakepkg-{version}.dist-info"
    files = {"fakepkg/__init__.py": f"BUILD = {version!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(folder / f"fakepkg-{version}-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(text)}")
        wheel.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")


def test_pip_takes_the_cpu_build_that_an_extra_index_offers_beside_the_bare_release(tmp_path):
    """What TORCH_INDEX=cpu relies on, shown offline with a stand-in package: one source offers 1.0.0 (PyPI's
    CUDA torch), another 1.0.0+cpu (PyTorch's CPU index); the ==1.0.0 pin and the lock's ==1.0.0 constraint both
    admit the +cpu build, and pip prefers it."""
    pypi, cpu = tmp_path / "pypi", tmp_path / "cpu"
    pypi.mkdir(), cpu.mkdir()
    _wheel(pypi, "1.0.0"), _wheel(cpu, "1.0.0+cpu")
    (tmp_path / "constraints.txt").write_text("fakepkg==1.0.0\n")
    pip = [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--dry-run",
           "--disable-pip-version-check", "-c", str(tmp_path / "constraints.txt"), "fakepkg==1.0.0",
           "--find-links", str(pypi)]
    both = subprocess.run(pip + ["--find-links", str(cpu)], capture_output=True, text=True, check=True).stdout
    assert "Would install fakepkg-1.0.0+cpu" in both, both
    alone = subprocess.run(pip, capture_output=True, text=True, check=True).stdout
    assert "Would install fakepkg-1.0.0\n" in alone, alone


def test_make_test_lints_with_ruff_before_the_tests(tmp_path):
    commands = _make_dry_run(tmp_path, "test").splitlines()
    lint = [i for i, line in enumerate(commands) if line.endswith("/ruff check .")]
    tests = [i for i, line in enumerate(commands) if line.endswith("/python -m pytest")]
    assert lint and tests and lint[0] < tests[0], commands
    ruff = _pyproject()["tool"]["ruff"]
    assert ruff["line-length"] == 120
    assert {"E", "F", "W", "I", "B"} <= set(ruff["lint"]["select"])
    assert any(d.startswith("ruff==") for d in _pyproject()["project"]["optional-dependencies"]["dev"])


# ---- one Python floor --------------------------------------------------------------------------------------------

def test_the_python_floor_is_the_same_everywhere():
    floor = re.fullmatch(r">=(\d+)\.(\d+)", _pyproject()["project"]["requires-python"])
    assert floor, "requires-python should read >=3.N"
    major, minor = floor.groups()
    makefile = (REPO / "Makefile").read_text()
    assert re.findall(r"v >= \((\d+), (\d+)\)", makefile) == [(major, minor)], "Makefile's version check"
    assert f"Python {major}.{minor}+ is needed" in makefile
    assert _pyproject()["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    readme = (REPO / "README.md").read_text()
    assert f"Python {major}.{minor} or newer" in readme
    older = f"{major}.{int(minor) - 1}"
    assert not re.search(rf"{re.escape(older)}\+? works|{re.escape(older)}\+", readme), f"README still claims {older}"


def _python_3_10():
    candidates = [shutil.which("python3.10"), *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() == "True":
            return candidate
    return None


def test_make_refuses_a_python_below_the_floor(tmp_path):
    python = _python_3_10()
    if python is None:
        pytest.skip("no Python 3.10 on this machine to try the Makefile's floor with")
    venv = tmp_path / "venv"
    result = _make(f"VENV={venv}", f"PYTHON={python}", f"{venv}/bin/python", check=False)
    assert result.returncode != 0
    assert "Python 3.11+ is needed; found 3.10" in result.stderr
    assert not venv.exists(), "no venv may be made with a Python below the floor"
