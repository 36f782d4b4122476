"""Shared fixtures: the course root, its assignments, an isolated Jupyter environment, and one real nbgrader
autograde run per assignment (shared by every end-to-end test of that assignment)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lessonlib.course.autograde import ScratchCourse, assignments

from .submissions import GradedRun, build_submissions

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = assignments(REPO)
TIMINGS: dict[str, dict[str, float]] = {}
TIMINGS_FILE = REPO / "reports" / "notebook-times.json"


def record_time(assignment: str, what: str, seconds: float) -> None:
    TIMINGS.setdefault(assignment, {})[what] = round(seconds, 2)


@pytest.fixture(scope="session", autouse=True)
def isolated_jupyter(tmp_path_factory):
    """A learner's own ~/.jupyter config, kernels or IPython profile must not change how the tests grade."""
    base = tmp_path_factory.mktemp("jupyter-home")
    patch = pytest.MonkeyPatch()
    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        patch.setenv(variable, str(base / variable.lower()))
    yield
    patch.undo()


@pytest.fixture(scope="session", params=ASSIGNMENTS)
def graded(request, tmp_path_factory) -> GradedRun:
    """Release the assignment in a scratch course, submit the solution, the blank release, and the
    wrong/right answers from tests/wrong_answers/<assignment>.py, and autograde them all in one call."""
    assignment = request.param
    course = ScratchCourse(REPO, tmp_path_factory.mktemp(f"course-{assignment}"))
    released = course.release(assignment)
    run = build_submissions(course, assignment, released, REPO)
    start = time.perf_counter()
    run.result = course.autograde(assignment)
    seconds = time.perf_counter() - start
    record_time(assignment, "autograde_seconds_all_submissions", seconds)
    record_time(assignment, "autograde_submissions", len(run.students))
    run.scores = course.scores(assignment)
    return run


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(TIMINGS_FILE.read_text()) if TIMINGS_FILE.exists() else {}
    for assignment, values in TIMINGS.items():
        previous.setdefault(assignment, {}).update(values)
    TIMINGS_FILE.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
    terminalreporter.section("notebook timings (also in reports/notebook-times.json)")
    for assignment, values in sorted(TIMINGS.items()):
        terminalreporter.write_line(f"{assignment}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
