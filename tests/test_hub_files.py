"""The hub's files agree with each other without a hub running: the one-machine setup (hub/), its proxy pin, and
the Zero to JupyterHub mapping (hub/z2jh/: an image built from the course's own files and a values file, parsed
and its Python run against stand-in spawners, since no cluster is reachable here)."""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import stat
from pathlib import Path
from types import SimpleNamespace

import yaml
from traitlets.config import Config

from .conftest import REPO

HUB = REPO / "hub"
Z2JH = HUB / "z2jh"


def _setup_hub():
    spec = importlib.util.spec_from_file_location("setup_hub", HUB / "setup_hub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config_values(path: Path) -> Config:
    """Run a traitlets config file (nbgrader's or JupyterHub's style) and return what it set."""
    config = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"get_config": lambda: config, "__file__": str(path)})
    return config


def _values() -> dict:
    return yaml.safe_load((Z2JH / "values.yaml").read_text())


# ---- one machine ---------------------------------------------------------------------------------------------------

def test_the_hub_config_and_setup_script_are_valid_python():
    for path in (HUB / "jupyterhub_config.py", HUB / "setup_hub.py", Z2JH / "nbgrader_config.py"):
        ast.parse(path.read_text(), str(path))


def test_the_proxy_is_pinned_to_one_version_and_the_lock_agrees():
    wanted = json.loads((HUB / "package.json").read_text())["dependencies"]["configurable-http-proxy"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", wanted), f"pin configurable-http-proxy exactly, not {wanted!r}"
    lock = json.loads((HUB / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == wanted
    assert "hub/node_modules/" in (REPO / ".gitignore").read_text()


def test_prepare_lays_out_the_shared_folders_with_nbgrader_permissions(tmp_path):
    setup = _setup_hub()
    (tmp_path / "env").mkdir()
    setup.prepare(tmp_path)
    assert stat.S_IMODE((tmp_path / "exchange").stat().st_mode) == 0o1777
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    config = _config_values(tmp_path / "env" / "etc" / "jupyter" / "nbgrader_config.py")
    assert config.Exchange.root == str(tmp_path / "exchange")
    assert config.CourseDirectory.course_id == setup.COURSE_ID
    student = json.loads((tmp_path / "etc" / "student" / "jupyter_server_config.json").read_text())
    assert student["ServerApp"]["jpserver_extensions"]["nbgrader.server_extensions.formgrader"] is False
    assert json.loads((tmp_path / "roster.json").read_text()) == {"instructors": [], "students": []}


def test_an_instructor_home_holds_the_course_pointed_at_the_exchange(tmp_path):
    setup = _setup_hub()
    exchange = tmp_path / "exchange"
    course = setup.instructor_home(tmp_path, exchange)
    assert (course / "solutions" / "00_orientation" / "00_orientation.ipynb").is_file()
    assert (course / "notebooks" / "00_orientation" / "00_orientation.ipynb").is_file()
    # The course's own config, then the hub's exchange (the course's default is a folder in the course).
    assert _config_values(course / "nbgrader_config.py").Exchange.root == str(exchange)
    assert _config_values(course / "nbgrader_config.py").ExchangeFactory.collect == \
        "lessonlib.course.exchange.OwnerCollect"
    assert _config_values(tmp_path / ".jupyter" / "nbgrader_config.py").CourseDirectory.root == str(course)
    server = json.loads((tmp_path / ".jupyter" / "jupyter_server_config.json").read_text())
    assert server["ServerApp"]["jpserver_extensions"] == {"lessonlib.course.formgrader": True}
    (course / "solutions" / "mine.txt").write_text("an instructor's edit")
    setup.instructor_home(tmp_path, exchange)
    assert (course / "solutions" / "mine.txt").exists(), "running it again keeps the instructor's files"


# ---- Zero to JupyterHub ---------------------------------------------------------------------------------------------

def _dockerfile_copies() -> list[tuple[list[str], str]]:
    copies = []
    for line in (Z2JH / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, target = line.split()[1:]
            copies.append(([s for s in sources if not s.startswith("--")], target))
    return copies


def test_the_image_is_built_from_the_course_files_without_solutions():
    copied = [source for sources, _ in _dockerfile_copies() for source in sources]
    for source in copied:
        assert (REPO / source).exists(), f"hub/z2jh/Dockerfile copies {source}, which the repository does not have"
    assert not any(source.startswith("solutions") for source in copied), "every student's pod runs this image"
    assert {"pyproject.toml", "constraints.txt", "lessonlib"} <= set(copied)
    dockerfile = (Z2JH / "Dockerfile").read_text()
    assert "-c /tmp/course/constraints.txt '/tmp/course[hub]'" in dockerfile, "installed through the lock, not editable"
    assert "python:3.11" in dockerfile


def test_the_values_file_mounts_the_exchange_where_the_image_looks_for_it():
    values = _values()
    exchange = _config_values(Z2JH / "nbgrader_config.py").Exchange.root
    mounts = {m["name"]: m["mountPath"] for m in values["singleuser"]["storage"]["extraVolumeMounts"]}
    assert mounts["nbgrader-exchange"] == exchange
    (claim,) = [v for v in values["singleuser"]["storage"]["extraVolumes"] if v["name"] == "nbgrader-exchange"]
    pvc = yaml.safe_load((Z2JH / "exchange-pvc.yaml").read_text())
    assert claim["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "every user's pod mounts the exchange"
    (init,) = values["singleuser"]["initContainers"]
    assert f"chmod 1777 {exchange}" in " ".join(init["command"])
    assert values["singleuser"]["image"]["name"] and values["singleuser"]["cmd"] == "jupyterhub-singleuser"
    assert values["singleuser"]["memory"]["limit"] and values["singleuser"]["cpu"]["limit"]


def test_the_values_file_gives_each_user_a_uid_and_students_no_formgrader():
    """Run hub.extraConfig as the chart would (after hub.config), then its pre-spawn hook on stand-in spawners."""
    values = _values()
    c = Config()
    for section, settings in values["hub"]["config"].items():
        for key, value in settings.items():
            setattr(c[section], key, value)
    exec(compile(values["hub"]["extraConfig"]["course"], "extraConfig", "exec"), {"c": c})
    hook = c.KubeSpawner.pre_spawn_hook
    admins = c.Authenticator.admin_users

    def spawner(name, user_id):
        return SimpleNamespace(user=SimpleNamespace(name=name, id=user_id), environment={"SHARED": "1"},
                               lifecycle_hooks=None)

    teacher, alice, bob = spawner(admins[0], 1), spawner("alice", 2), spawner("bob", 3)
    for s in (teacher, alice, bob):
        hook(s)
    assert len({teacher.uid, alice.uid, bob.uid}) == 3 and min(alice.uid, bob.uid) >= 1001
    student_config = "/opt/course-env/etc/student"
    assert alice.environment["JUPYTER_CONFIG_PATH"] == student_config
    assert "JUPYTER_CONFIG_PATH" not in teacher.environment
    assert alice.environment["SHARED"] == "1" and alice.lifecycle_hooks is None
    assert "instructor-home" in " ".join(teacher.lifecycle_hooks["postStart"]["exec"]["command"])
    copies = {target: sources for sources, target in _dockerfile_copies()}
    assert copies["$COURSE_ENV/etc/student/"] == ["hub/student/"]
    assert "ENV COURSE_ENV=/opt/course-env" in (Z2JH / "Dockerfile").read_text()


def test_formgraders_autograde_runs_coursegrade_for_that_student(monkeypatch, tmp_path):
    """lessonlib.course.formgrader replaces NbGraderAPI.autograde: the button runs `coursegrade autograde` in the
    course folder, and its exit status becomes formgrader's success."""
    import subprocess
    import sys

    from lessonlib.course import formgrader

    calls = []

    def fake_run(command, cwd, capture_output, text):
        calls.append((command, cwd))
        return subprocess.CompletedProcess(command, 1 if "bob" in command else 0, "graded 1\n", "")

    monkeypatch.setattr(formgrader.subprocess, "run", fake_run)
    api = SimpleNamespace(coursedir=SimpleNamespace(root=str(tmp_path)))
    assert formgrader.coursegrade_autograde(api, "00_orientation", "alice") == {"success": True, "log": "graded 1\n"}
    failed = formgrader.coursegrade_autograde(api, "00_orientation", "bob", force=False)
    assert failed["success"] is False and "exited with 1" in failed["error"]
    (alice, cwd), (bob, _) = calls
    assert alice == [sys.executable, "-m", "lessonlib.course.cli", "autograde", "00_orientation", "--student", "alice",
                     "--quiet", "--force"] and cwd == str(tmp_path)
    assert "--force" not in bob
    assert formgrader._jupyter_server_extension_points() == [{"module": "lessonlib.course.formgrader"}]
