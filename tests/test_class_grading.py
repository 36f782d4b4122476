"""Class grading as an instructor does it: the README's walk-through, run literally on a fresh copy of the course
with the fixture class of tests/class_fixture.py (good and hostile submissions), graded once with the default
workers; every assertion reads that one run. Then: the same submissions as the end-to-end test, graded through
the class machinery (sandbox, guard, skipped demonstrations), score exactly as plain `nbgrader autograde` does.
"""
from __future__ import annotations

import hashlib
import html
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from lessonlib.course.classroom import ClassGrader
from lessonlib.course.plan import split_hidden
from lessonlib.course.sandbox import probe

from . import class_fixture as fixture
from .conftest import REPO

BIN = Path(sys.executable).parent


@dataclass
class ClassRun:
    root: Path
    students: list[fixture.Student]
    outputs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    alone: dict[str, dict[str, float | None]] = field(default_factory=dict)
    submitted_before: dict[str, str] = field(default_factory=dict)
    submitted_after: dict[str, str] = field(default_factory=dict)
    course_before: dict[str, str] = field(default_factory=dict)     # the course's own files (solutions/, ...)
    course_after: dict[str, str] = field(default_factory=dict)
    tmp_left: list[str] = field(default_factory=list)               # what grading left in its temporary folder
    sandbox_processes: list[str] = field(default_factory=list)      # processes of sandbox uids still running

    def student(self, name: str) -> fixture.Student:
        return next(s for s in self.students if s.id == name)

    def result(self, name: str) -> dict:
        return next(r for r in self.report["results"] if r["student"] == name)

    def graded_notebook(self, name: str) -> nbformat.NotebookNode:
        return nbformat.read(self.root / "autograded" / name / fixture.ASSIGNMENT / fixture.NOTEBOOK, as_version=4)


def fresh_course(target: Path, assignments: list[str] | None = None) -> Path:
    """What a clone holds for grading: the config, solutions/ and notebooks/ (no gradebook, nothing graded)."""
    target.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", target)
    for folder in ("solutions", "notebooks"):
        for assignment in assignments or [p.name for p in (REPO / folder).iterdir() if p.is_dir()]:
            shutil.copytree(REPO / folder / assignment, target / folder / assignment)
    return target


def gradebook_scores(root: Path, assignment: str) -> dict[str, dict[str, float | None]]:
    from nbgrader.api import Gradebook, MissingEntry

    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for student in gradebook.students:
            try:
                submission = gradebook.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            scores[student.id] = {grade.name: grade.score if grade.auto_score is not None else None
                                  for notebook in submission.notebooks for grade in notebook.grades
                                  if grade.cell_type == "code"}
    return scores


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(command: list[str], cwd: Path, timeout: float = 1200, tmp: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def course_files(root: Path) -> dict[str, str]:
    """Hashes of what grading relies on and must never change: the config, solutions/ and notebooks/."""
    found = {"nbgrader_config.py": hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest()}
    for folder in ("solutions", "notebooks"):
        found.update({f"{folder}/{name}": digest for name, digest in hashes(root / folder).items()})
    return found


def processes_of_sandbox_uids() -> list[str]:
    """Processes still running as one of the uids sandboxed kernels get (when grading runs as root)."""
    from lessonlib.course.sandbox import DEFAULT_UID_BASE

    found = []
    for entry in Path("/proc").iterdir():
        try:
            uid = entry.stat().st_uid if entry.name.isdigit() else None
            if uid is not None and DEFAULT_UID_BASE <= uid < DEFAULT_UID_BASE + 1000:
                found.append(f"{entry.name} (uid {uid}): {(entry / 'cmdline').read_bytes()[:80]!r}")
        except OSError:
            continue
    return found


def require_sandbox() -> None:
    """The fixture class is hostile (it reads solutions/, overwrites the gradebook, reaches the network): it is
    graded only where bubblewrap confines it. On Linux a missing bubblewrap fails (.ci/run installs it); one that
    is installed but cannot create namespaces here (a container without the privilege) skips, saying why; the
    unconfined fallback is tested on its own (test_without_bubblewrap_...)."""
    isolation = probe()
    if isolation.confined:
        return
    if sys.platform.startswith("linux") and shutil.which("bwrap") is None:
        pytest.fail(f"class grading tests check the real isolation: {isolation.reason}")
    pytest.skip(f"the hostile class cannot be graded safely here, so its isolation is not tested: {isolation.reason}")


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory) -> ClassRun:
    require_sandbox()
    root = fresh_course(tmp_path_factory.mktemp("class") / "course")
    with open(root / "nbgrader_config.py", "a") as config:   # quicker limits for the runaway submissions
        config.write("\nc.ClassGrading.cell_seconds = 20\nc.ClassGrading.memory_mb = 2048\n")
    students = fixture.build(REPO, root)
    download = root.parent / f"{fixture.ASSIGNMENT}.zip"
    download.write_bytes(fixture.download(students))
    result = ClassRun(root, students)
    tmp = root.parent / "tmp"      # the grading commands' temporary folder: sandboxes, staging, caches
    tmp.mkdir()
    for line in fixture.class_walkthrough((REPO / "README.md").read_text()):
        command = shlex.split(line)
        assert command[0] == "coursegrade", f"the walk-through should only use coursegrade: {line}"
        command[0] = str(BIN / "coursegrade")
        if command[1] == "collect":
            command[-1] = str(download)
        if command[1] == "autograde":
            result.submitted_before = hashes(root / "submitted")
            result.course_before = course_files(root)
        result.outputs[command[1]] = run(command, root, tmp=tmp)
        if command[1] == "autograde":
            result.submitted_after = hashes(root / "submitted")
            result.course_after = course_files(root)
            result.tmp_left = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
            result.sandbox_processes = processes_of_sandbox_uids()
            result.report = fixture.load_report(root)
            result.scores = gradebook_scores(root, fixture.ASSIGNMENT)
    alone = ["good_solution", "good_noisy", "good_megabytes"]
    result.outputs["alone"] = run([str(BIN / "coursegrade"), "autograde", fixture.ASSIGNMENT, "--force", "--quiet",
                                   "--workers", "1", *[arg for s in alone for arg in ("--student", s)]], root)
    result.alone = {s: scores for s, scores in gradebook_scores(root, fixture.ASSIGNMENT).items() if s in alone}
    return result


def test_every_command_of_the_walkthrough_succeeds(graded_class):
    for step, output in graded_class.outputs.items():
        assert output.returncode == 0, f"coursegrade {step} failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}"
    collect = graded_class.outputs["collect"].stdout
    assert f"collected {len(graded_class.students)} student(s)" in collect, collect
    assert "renamed: renamed: my attempt.ipynb filed as 01_inference_costs.ipynb" in collect, collect
    assert "README.txt" in collect and "NOT COLLECTED" in collect, collect
    summary = graded_class.outputs["autograde"].stdout
    assert f"graded: {len(graded_class.students) - 1}" in summary and "invalid_json" in summary, summary
    for step in ("autograde", "feedback", "export"):     # warnings nbgrader used to print for every student
        stderr = graded_class.outputs[step].stderr
        assert "checksum" not in stderr.lower() and "Config option" not in stderr, f"{step}:\n{stderr[-2000:]}"
        assert "Non-unique cell id" not in stderr, f"{step}: nbformat's repairs of changed_metadata's ids:\n" \
                                                   f"{stderr[-2000:]}"


def test_every_submission_gets_the_score_it_deserves(graded_class):
    problems = []
    for student in graded_class.students:
        got = graded_class.scores.get(student.id)
        if got is None:
            problems.append(f"{student.id}: no grades in the gradebook")
            continue
        want = student.expected_scores()
        if got != want:
            wrong = {gid: (got.get(gid), points) for gid, points in want.items() if got.get(gid) != points}
            problems.append(f"{student.id}: (got, deserved) {wrong}; notes: {graded_class.result(student.id)['notes']}")
        status = graded_class.result(student.id)["status"]
        if status != student.status:
            problems.append(f"{student.id}: status {status}, expected {student.status}")
    assert not problems, "\n".join(problems)


def test_the_report_says_what_happened(graded_class):
    problems = []
    for student in graded_class.students:
        notes = " | ".join(graded_class.result(student.id)["notes"])
        missing = [words for words in student.notes if words not in notes]
        if missing:
            problems.append(f"{student.id}: no {missing} in: {notes or '(no notes)'}")
    assert not problems, "\n".join(problems)
    good = [s.id for s in graded_class.students if s.id.startswith("good_") and not s.notes]
    for name in good:
        assert not graded_class.result(name)["notes"], f"{name} is clean but got notes"


def test_a_correct_answer_that_writes_to_stderr_keeps_its_points_and_is_told(graded_class):
    nb = graded_class.graded_notebook("good_noisy")
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q1_tests")
    text = "".join(o.get("text", "") for o in test.outputs)
    assert "no points lost" in text and "this function is slow" in text, text
    assert not [o for o in test.outputs if o.get("name") == "stderr"], "stderr in a test cell scores it 0"
    assert graded_class.scores["good_noisy"]["q1_tests"] == fixture.POINTS["q1_tests"]


def test_good_submissions_score_exactly_as_when_graded_alone(graded_class):
    assert graded_class.alone, graded_class.outputs["alone"].stdout
    for student, scores in graded_class.alone.items():
        assert scores == graded_class.scores[student], student


def test_submissions_could_not_read_solutions_other_students_or_the_gradebook(graded_class):
    nb = graded_class.graded_notebook("reads_solutions")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "cannot read" in text and "READ " not in text, text
    assert str(graded_class.root) not in text.split("sees", 1)[1].split("\n")[0], text
    if os.geteuid() == 0:
        uid = int(text.split("uid", 1)[1].split()[0])
        assert uid != 0, "the kernel ran as root"


def test_submissions_could_not_change_the_gradebook_or_another_students_files(graded_class):
    nb = graded_class.graded_notebook("writes_the_gradebook")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "cannot write" in text and "WROTE" not in text, text
    with sqlite3.connect(graded_class.root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert graded_class.submitted_before == graded_class.submitted_after, "a submitted file changed while grading"


def test_nothing_outside_the_sandboxes_changed_and_nothing_was_left_running(graded_class):
    assert graded_class.course_before and graded_class.course_before == graded_class.course_after, \
        "solutions/, notebooks/ or nbgrader_config.py changed while grading"
    assert not graded_class.tmp_left, f"grading left files behind: {graded_class.tmp_left[:10]}"
    assert not graded_class.sandbox_processes, f"still running: {graded_class.sandbox_processes[:5]}"
    top = sorted(p.name for p in graded_class.root.iterdir())
    assert set(top) <= {"nbgrader_config.py", "solutions", "notebooks", "gradebook.db", "submitted", "downloaded",
                        "autograded", "feedback", "reports", "grades", ".coursegrade.lock", "plain.csv"}, top


def test_the_network_was_unreachable(graded_class):
    notes = " ".join(graded_class.result("reaches_by_address")["notes"])
    assert "Network is unreachable" in notes, notes


def test_feedback_shows_every_check_and_never_a_hidden_test(graded_class):
    source = nbformat.read(REPO / "solutions" / fixture.ASSIGNMENT / fixture.NOTEBOOK, as_version=4)
    hidden = {line.strip() for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")
              for line in split_hidden(c.source)[1].splitlines() if len(line.strip()) >= 8}
    assert hidden
    pages = sorted((graded_class.root / "feedback").glob(f"*/{fixture.ASSIGNMENT}/*.html"))
    assert len(pages) == len(graded_class.students) - 1, pages   # all but the unreadable one
    for page in pages:
        text = html.unescape(page.read_text())
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{page}: shows hidden test lines {leaked[:3]}"
    good = html.unescape((graded_class.root / "feedback" / "good_solution" / fixture.ASSIGNMENT /
                          "01_inference_costs.html").read_text())
    assert "PASS  grouped-query attention (8 KV heads for 32 query heads)" in good


def test_export_has_one_row_per_student_and_only_submitted_lessons(graded_class):
    rows = [line.split(",") for line in (graded_class.root / "grades" / "grades.csv").read_text().splitlines()]
    assert rows[0] == ["student_id", "last_name", "first_name", "email", fixture.ASSIGNMENT, "total"], rows[0]
    assert rows[1][0] == "(maximum)"
    by_student = {row[0]: row for row in rows[2:]}
    assert set(by_student) == {s.id for s in graded_class.students}
    for student in graded_class.students:
        assert float(by_student[student.id][-1]) == sum(student.expected_scores().values()), student.id
    assert not (graded_class.root / "grades.csv").exists()
    plain = run([str(BIN / "nbgrader"), "export", "--to", "plain.csv"], graded_class.root)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert (graded_class.root / "plain.csv").read_text() == (graded_class.root / "grades" / "grades.csv").read_text()


def test_plain_nbgrader_zip_collect_follows_the_course_naming_rules(tmp_path):
    """`nbgrader zip_collect` itself (not only `coursegrade collect`) files an LMS download by the README's rules."""
    assignment = "00_orientation"
    root = fresh_course(tmp_path / "course", [assignment])
    archive = root / "downloaded" / assignment / "archive"
    archive.mkdir(parents=True)
    notebook = (REPO / "notebooks" / assignment / f"{assignment}.ipynb").read_bytes()
    for name in ("alice_00_orientation.ipynb", "bob/00_orientation.ipynb", "carol_smith_00_orientation.ipynb"):
        (archive / name).parent.mkdir(parents=True, exist_ok=True)
        (archive / name).write_bytes(notebook)
    result = run([str(BIN / "nbgrader"), "zip_collect", assignment], root)
    assert result.returncode == 0, result.stderr[-2000:]
    found = sorted(p.relative_to(root / "submitted").as_posix() for p in (root / "submitted").rglob("*.ipynb"))
    assert found == [f"{s}/{assignment}/{assignment}.ipynb" for s in ("alice", "bob", "carol_smith")], found


def test_grading_state_is_git_ignored():
    ignored = (REPO / ".gitignore").read_text().split()
    for entry in ("gradebook.db", "submitted/", "autograded/", "feedback/", "downloaded/", "grades/", "reports/"):
        assert entry in ignored, entry


def test_class_grading_scores_exactly_as_plain_nbgrader(graded, tmp_path):
    """The end-to-end test's submissions (solution, blank, every wrong and right answer), graded through the
    sandbox, the guard and the skipped demonstrations, get the very scores plain nbgrader gave them (one run per
    assignment, with the end-to-end test's own)."""
    assignment = graded.assignment
    plain_root = graded.released_dir.parents[1]
    root = fresh_course(tmp_path / "course", [assignment])
    shutil.copytree(plain_root / "submitted", root / "submitted")
    report = ClassGrader(root, workers=2, progress=False).autograde(assignment)
    assert not report.failed, report.summary()
    ours = gradebook_scores(root, assignment)
    problems = []
    for student, plain in graded.scores.items():
        plain_cells = {gid: c.score for gid, c in plain.cells.items() if not c.graded_by_hand}
        if ours.get(student) != plain_cells:
            problems.append(f"{student}: class grading {ours.get(student)} vs nbgrader {plain_cells}")
    assert not problems, "\n".join(problems) + "\n" + report.summary()
    assert all(r.cells_skipped > 0 for r in report.results), "no demonstration was skipped: nothing was proved"


def test_a_notebook_that_runs_out_of_time_keeps_what_it_earned_before(tmp_path):
    """The per-notebook wall-clock limit: a submission that idles after its first exercise is stopped when the
    notebook's time is up; the test that ran keeps its points, the rest score 0 and the report says why."""
    from lessonlib.course.limits import Limits

    from .submissions import answered_release

    assignment = "00_orientation"
    root = fresh_course(tmp_path / "course", [assignment])
    name = f"{assignment}.ipynb"
    good = answered_release(nbformat.read(REPO / "notebooks" / assignment / name, as_version=4),
                            nbformat.read(REPO / "solutions" / assignment / name, as_version=4), {})
    slow = fixture.insert_after(good, "q1_tests", "import time\nfor _ in range(600):\n    time.sleep(1)")
    (root / "submitted" / "slow" / assignment).mkdir(parents=True)
    nbformat.write(slow, root / "submitted" / "slow" / assignment / name)
    report = ClassGrader(root, workers=1, progress=False,
                         limits=Limits(notebook_seconds=40)).autograde(assignment)
    result = report.by_student()["slow"]
    assert result.status == "graded", report.summary()
    assert gradebook_scores(root, assignment)["slow"] == {"q1_tests": 8, "q2_tests": 0, "q3_kv_tests": 0,
                                                          "q3_flops_tests": 0, "q3_trade_tests": 0}
    notes = " | ".join(result.notes)
    assert "interrupted when the notebook's 40 s ran out" in notes and "ran out of time" in notes, notes
    assert result.seconds < 120, f"took {result.seconds:.0f} s for a 40 s budget"


def test_without_bubblewrap_grading_still_works_and_says_what_does_not_hold(tmp_path):
    """The fallback a macOS instructor gets: a throwaway folder and resource limits, no namespaces."""
    from lessonlib.course.sandbox import Isolation

    from .submissions import answered_release

    assignment = "00_orientation"
    root = fresh_course(tmp_path / "course", [assignment])
    name = f"{assignment}.ipynb"
    good = answered_release(nbformat.read(REPO / "notebooks" / assignment / name, as_version=4),
                            nbformat.read(REPO / "solutions" / assignment / name, as_version=4), {})
    (root / "submitted" / "alice" / assignment).mkdir(parents=True)
    nbformat.write(good, root / "submitted" / "alice" / assignment / name)
    unconfined = Isolation(None, os.geteuid() == 0, True, "bubblewrap switched off for this test")
    report = ClassGrader(root, workers=1, progress=False, isolation=unconfined).autograde(assignment)
    assert report.by_student()["alice"].status == "graded", report.summary()
    assert gradebook_scores(root, assignment)["alice"] == {"q1_tests": 8, "q2_tests": 2, "q3_kv_tests": 3,
                                                           "q3_flops_tests": 2, "q3_trade_tests": 1}
    assert "NOT CONFINED: bubblewrap switched off for this test" in report.summary()


def test_a_course_checked_out_below_tmp_is_bound_over_the_sandboxes_empty_tmp(tmp_path, monkeypatch):
    """bubblewrap mounts in order: a course (and its virtual environment) below /tmp, as a CI clone often is, must
    be bound after the sandbox's empty /tmp is mounted, or the kernel's Python is hidden under it."""
    from lessonlib.course import sandbox as sandbox_module
    from lessonlib.course.limits import Limits

    course = Path("/tmp/some-course-clone")
    monkeypatch.setattr(sandbox_module, "python_roots", lambda: [Path("/usr"), course / ".venv", course / "lessonlib"])
    box = sandbox_module.Sandbox(probe(), Limits(), parent=tmp_path)
    try:
        args = box._bwrap_args()
    finally:
        box.cleanup()
    empty_tmp = next(i for i in range(len(args) - 1) if args[i] == "--tmpfs" and args[i + 1] == "/tmp")
    binds = [i for i in range(len(args) - 1) if args[i] == "--ro-bind" and args[i + 1].startswith(str(course))]
    assert binds and all(i > empty_tmp for i in binds), args


def test_a_long_temporary_folder_leaves_room_for_the_kernels_sockets(tmp_path):
    """A Unix socket's path fits in 104-108 bytes; macOS's temporary folder alone is ~50 characters, and every
    kernel failed to start when its sockets went below it."""
    from lessonlib.course.limits import Limits
    from lessonlib.course.sandbox import Sandbox

    deep = tmp_path / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    sandbox = Sandbox(probe(), Limits(), parent=deep)
    try:
        assert len(str(sandbox.runtime / "k100-12345")) < 104, sandbox.runtime
        assert sandbox.input.is_relative_to(deep)
    finally:
        sandbox.cleanup()
    assert not sandbox.runtime.exists() and not sandbox.folder.exists()
    short = Sandbox(probe(), Limits(), parent=tmp_path)
    short.cleanup()
    assert short.runtime.parent == short.folder or len(str(short.folder / "runtime")) > 80


def test_a_notebook_too_large_to_read_is_not_read(tmp_path, monkeypatch):
    """The worker reads a notebook whole, outside the sandbox: one above the size limit scores 0 and says why."""
    from lessonlib.course import submission

    assignment = "00_orientation"
    root = fresh_course(tmp_path / "course", [assignment])
    (root / "submitted" / "huge" / assignment).mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / assignment / f"{assignment}.ipynb", root / "submitted" / "huge" / assignment)
    monkeypatch.setattr(submission, "MAX_NOTEBOOK_BYTES", 1000)
    report = ClassGrader(root, workers=1, progress=False, in_process=True).autograde(assignment)
    result = report.by_student()["huge"]
    assert result.status == "unreadable" and "too large to grade" in " ".join(result.notes), report.summary()
    assert gradebook_scores(root, assignment)["huge"] == dict.fromkeys(
        ["q1_tests", "q2_tests", "q3_kv_tests", "q3_flops_tests", "q3_trade_tests"], 0)


def test_without_a_sandbox_uid_the_process_limit_leaves_room_for_your_own_processes(tmp_path):
    """RLIMIT_NPROC counts every process (Linux: thread) of the kernel's uid. Without bubblewrap, an instructor's
    kernel keeps their uid, and a desktop session alone often runs more threads than the limit: the kernel gets
    the limit on top of what the uid already runs."""
    from lessonlib.course.limits import Limits
    from lessonlib.course.sandbox import Isolation, Sandbox, user_tasks

    assert user_tasks(os.getuid()) >= 1
    as_you = Sandbox(Isolation(None, False, True, "off for this test"), Limits(), parent=tmp_path)
    command = as_you.kernel_command([])
    as_you.cleanup()
    already = int(command[command.index("--processes-already") + 1])
    assert already >= 1
    for isolation in (Isolation("/usr/bin/bwrap", True, True), Isolation(None, True, True, "root")):
        sandbox = Sandbox(isolation, Limits(), parent=tmp_path)   # a uid of its own, or root (not limited)
        assert "--processes-already" not in sandbox.kernel_command([])
        sandbox.cleanup()
