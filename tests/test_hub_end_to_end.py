"""A class on the course's JupyterHub (hub/), end to end, with real Linux users: the instructor releases lesson 00
from formgrader; three students' own servers fetch it through nbgrader's exchange, work it (one full, one partial,
one blank) and submit (the partial one twice; the blank one also forges a submission in the full one's name); the
instructor collects (the latest submission of each wins, the forged one counts as its maker's), autogrades
with the course's class grading (formgrader's button runs coursegrade), generates and releases feedback; each
student fetches only their own; the grades are exported. Every request goes through the hub's proxy with the
user's own token. Then no student can read another's submission or feedback or the instructor's solutions/, and
stopping the hub stops every process it started.

Needs root on Linux (useradd, a hub that starts servers as their users) and node/npm for the proxy; the hub's
course environment is built once into COURSE_HUB_TEST_ROOT (default /srv/efficient-llm-inference-test, about two
minutes the first time) and reused while pyproject.toml, constraints.txt and lessonlib are unchanged.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pwd
import secrets
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from .hub_driver import (
    COURSE_ID,
    Hub,
    UserServer,
    as_user,
    create_user,
    free_ports,
    processes_matching,
    processes_of,
    remove_user,
    why_not_here,
)
from .submissions import answered_release

REPO = Path(__file__).resolve().parents[1]
HUB_ROOT = Path(os.environ.get("COURSE_HUB_TEST_ROOT", "/srv/efficient-llm-inference-test"))
ASSIGNMENT = "00_orientation"
NOTEBOOK = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
INSTRUCTOR = "ehubteach"
FULL, PARTIAL, BLANK = "ehubfull", "ehubpart", "ehubblank"
STUDENTS = [FULL, PARTIAL, BLANK]
USERS = [INSTRUCTOR, *STUDENTS]
# Lesson 00's autograded points: q1 8, q2 2, q3_kv 3, q3_flops 2, q3_trade 1 (q4 is a written answer, by hand).
AUTOGRADED_MAX = 16.0
# The partial student answers the two multiple-choice questions q2 (2 points) and q3_trade (1 point); their first
# submission has q2 only.
PARTIAL_FIRST, PARTIAL_LAST = ("q2_answer",), ("q2_answer", "q3_trade_answer")
EXPECTED = {FULL: AUTOGRADED_MAX, PARTIAL: 3.0, BLANK: 0.0}

pytestmark = pytest.mark.skipif(why_not_here() is not None, reason=f"{why_not_here()}")


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)


def _answered(released: dict, only: tuple[str, ...] | None) -> dict:
    """The fetched notebook with the solution's answers (all of them, or only the named answer cells)."""
    released = nbformat.from_dict(released)
    solution = _solution()
    if only is not None:
        keep = set(only)
        solution.cells = [c for c in solution.cells if c.metadata.get("nbgrader", {}).get("grade_id") in keep]
    answered = answered_release(released, solution, {})
    return json.loads(nbformat.writes(answered))


def _denied(user: str, *command: str) -> bool:
    """The command, run as that Linux user, fails with permission denied."""
    result = as_user(user, *command)
    return result.returncode != 0 and "ermission denied" in result.stderr


@pytest.fixture(scope="module")
def hub():
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    for user in USERS:
        create_user(user, passwords[user])
    hub = Hub(HUB_ROOT, free_ports(3))
    try:
        hub.setup([INSTRUCTOR], STUDENTS)
        hub.start()
        hub.passwords = passwords
        yield hub
    finally:
        hub.stop()
        for user in USERS:
            remove_user(user)


def test_a_class_on_the_hub_end_to_end(hub):
    timings = {}
    home = {user: Path(pwd.getpwnam(user).pw_dir) for user in USERS}
    course = home[INSTRUCTOR] / "efficient-llm-inference"
    exchange = HUB_ROOT / "exchange" / COURSE_ID

    # ---- log in (PAM) and start everyone's server through the hub's API -----------------------------------------
    assert hub.login(FULL, hub.passwords[FULL]) == 302, "a student logs in with their Linux password"
    assert hub.login(FULL, "not the password") != 302
    assert hub.login("root", "anything") != 302, "only the roster may log in"
    servers = {user: UserServer(hub, user, hub.user_token(user)) for user in USERS}
    for user, seconds in hub.start_all(USERS).items():
        timings[f"{user}'s server ready (four started at once)"] = seconds
    teacher, full, partial, blank = (servers[u] for u in USERS)

    # Each server runs as its user, with the course environment's Python as the kernel.
    for user in USERS:
        owners = {pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name for pid in processes_of(user)}
        assert owners == {user}, f"{user}'s processes: {owners}"
    specs = full.call("GET", "/api/kernelspecs")
    assert list(specs["kernelspecs"]) == ["python3"], specs
    kernel = full.call("POST", "/api/kernels", body={"name": "python3"})
    python = str(HUB_ROOT / "env" / "bin" / "python")
    deadline = time.monotonic() + 30
    while not [cmd for _, cmd in processes_matching("ipykernel_launcher") if cmd.startswith(python)] \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    launched = [(pid, cmd) for pid, cmd in processes_matching("ipykernel_launcher") if cmd.startswith(python)]
    assert [pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name for pid, _ in launched] == [FULL], \
        "the student's kernel runs the course environment's Python, as the student"
    full.call("DELETE", f"/api/kernels/{kernel['id']}")
    # Nobody reaches another's server with their own token; formgrader is the instructor's alone.
    assert hub.request("GET", f"/user/{FULL}/api/contents", partial.token)[0] == 403
    assert hub.request("GET", f"/user/{INSTRUCTOR}/formgrader/api/assignments", full.token)[0] == 403
    assert full.status("GET", "/formgrader/api/assignments") == 404, "students have no formgrader"
    assert hub.request("GET", "/hub/api/users", full.token)[0] == 403, "students are not the hub's admins"
    assert teacher.formgrader("GET", "assignments") is not None

    # ---- release, fetch, work, submit ---------------------------------------------------------------------------
    released = teacher.formgrader("POST", f"assignment/{ASSIGNMENT}/release")
    assert released["success"], released
    assert stat.S_IMODE((HUB_ROOT / "exchange").stat().st_mode) == 0o1777, "nbgrader kept the exchange's modes"
    assert stat.S_IMODE((exchange / "inbound").stat().st_mode) & 0o777 == 0o733
    for student in STUDENTS:
        listed = servers[student].assignments()
        assert listed["success"] and [a["assignment_id"] for a in listed["value"]] == [ASSIGNMENT], listed
        assert listed["value"][0]["status"] == "released"
        servers[student].assignment_action("fetch", ASSIGNMENT)
        assert f"{ASSIGNMENT}.ipynb" in servers[student].listing(ASSIGNMENT)

    work = full.read_notebook(NOTEBOOK)
    full.save_notebook(NOTEBOOK, _answered(work, None))
    full.assignment_action("submit", ASSIGNMENT)
    # The blank student drops a submission named as the full one's, later than it, into the exchange (inbound is
    # writable by all): it must not replace the full student's work (lessonlib.course.exchange.OwnerCollect).
    time.sleep(1.1)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    forged = exchange / "inbound" / f"{FULL}+{ASSIGNMENT}+{stamp}+forged"
    forge = as_user(BLANK, "bash", "-c", f"mkdir '{forged}' && cp ~/{NOTEBOOK} '{forged}/' "
                                         f"&& echo '{stamp}' > '{forged}/timestamp.txt'")
    assert forge.returncode == 0, forge.stderr
    time.sleep(1.1)
    partial.save_notebook(NOTEBOOK, _answered(partial.read_notebook(NOTEBOOK), PARTIAL_FIRST))
    partial.assignment_action("submit", ASSIGNMENT)
    time.sleep(1.1)
    partial.save_notebook(NOTEBOOK, _answered(partial.read_notebook(NOTEBOOK), PARTIAL_LAST))
    partial.assignment_action("submit", ASSIGNMENT)
    blank.assignment_action("submit", ASSIGNMENT)
    (submitted,) = [a for a in partial.assignments()["value"] if a["status"] == "submitted"]
    assert len(submitted["submissions"]) == 2, "the partial student's assignment list shows both submissions"

    inbound = sorted(p.name for p in (exchange / "inbound").iterdir() if p != forged)
    assert len(inbound) == 4, inbound
    assert all(len(name.split("+")) == 4 for name in inbound), f"submissions end in a random string: {inbound}"

    # ---- collect (latest wins), autograde with coursegrade, feedback ---------------------------------------------
    collected = teacher.formgrader("POST", f"assignment/{ASSIGNMENT}/collect")
    assert collected["success"], collected
    assert f"named as {FULL}'s submission but {BLANK} made it" in collected["log"], collected["log"]
    for student in STUDENTS:
        assert (course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    start = time.monotonic()
    for student in STUDENTS:
        graded = teacher.formgrader("POST", f"submission/{ASSIGNMENT}/{student}/autograde")
        assert graded["success"], graded
        assert "graded" in graded["log"].lower(), graded["log"]
    timings["autograde 3 submissions (formgrader, coursegrade)"] = time.monotonic() - start
    report = (course / "reports" / "grading" / f"{ASSIGNMENT}.txt").read_text()
    assert report, "coursegrade's report is in the instructor's course"

    scores = {s["student"]: s for s in teacher.formgrader("GET", f"submissions/{ASSIGNMENT}")}
    assert set(scores) == set(STUDENTS), scores
    for student, expected in EXPECTED.items():
        assert scores[student]["code_score"] == expected, (student, scores[student])
        assert scores[student]["max_code_score"] == AUTOGRADED_MAX, scores[student]
        assert scores[student]["max_score"] == AUTOGRADED_MAX + 3, scores[student]   # + the written answer
    assert scores[FULL]["needs_manual_grade"], "the written answer waits for the instructor"

    feedback = teacher.formgrader("POST", f"assignment/{ASSIGNMENT}/generate_feedback")
    assert feedback["success"], feedback
    release = teacher.formgrader("POST", f"assignment/{ASSIGNMENT}/release_feedback")
    assert release["success"], release
    pages = {}
    for student in STUDENTS:
        servers[student].assignment_action("fetch_feedback", ASSIGNMENT)
        (stamp,) = servers[student].listing(f"{ASSIGNMENT}/feedback")   # one: only the latest was graded
        assert servers[student].listing(f"{ASSIGNMENT}/feedback/{stamp}") == [f"{ASSIGNMENT}.html"]
        pages[student] = servers[student].read_text(f"{ASSIGNMENT}/feedback/{stamp}/{ASSIGNMENT}.html")
    for student, page in pages.items():
        assert f"(Score: {EXPECTED[student]:.1f} / {AUTOGRADED_MAX + 3:.1f})" in page, student
        assert "BEGIN HIDDEN TESTS" not in page, student
    assert "PASS" in pages[FULL] and "PASS" in pages[PARTIAL] and "FAIL" in pages[PARTIAL]
    assert len(set(pages.values())) == 3, "each student has their own page"

    # ---- export ---------------------------------------------------------------------------------------------------
    exported = as_user(INSTRUCTOR, "bash", "-c", f"cd {course} && {HUB_ROOT}/env/bin/coursegrade export")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.reader(io.StringIO((course / "grades" / "grades.csv").read_text())))
    by_student = {row[0]: row for row in rows[1:]}
    for student, expected in EXPECTED.items():
        assert float(by_student[student][rows[0].index(ASSIGNMENT)]) == expected, rows

    # ---- what each student can read -------------------------------------------------------------------------------
    for student in STUDENTS:
        others = [s for s in STUDENTS if s != student]
        assert _denied(student, "ls", str(exchange / "inbound")), "the inbound folder is write-only"
        assert _denied(student, "ls", str(exchange / "feedback")), "the feedback folder is traverse-only"
        assert _denied(student, "ls", str(course)), "the instructor's course is private"
        assert _denied(student, "cat", str(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
        assert _denied(student, "cat", str(course / "gradebook.db"))
        for other in others:
            assert _denied(student, "cat", str(home[other] / NOTEBOOK)), f"{student} read {other}'s notebook"
            assert _denied(student, "ls", str(home[other] / ASSIGNMENT / "feedback"))
        # The release is world-readable; a student's own exchange submission is hidden behind its random name.
        assert as_user(student, "ls", str(exchange / "outbound" / ASSIGNMENT)).returncode == 0
    isolation = as_user(INSTRUCTOR, "bash", "-c", f"cd {course} && {HUB_ROOT}/env/bin/coursegrade isolation").stdout
    print("\n".join(f"{what}: {seconds:.1f} s" for what, seconds in timings.items()))
    print(f"the instructor's autograde, as {INSTRUCTOR}:\n{isolation}")

    # ---- stop everything --------------------------------------------------------------------------------------------
    assert hub.stop() == 0, hub.log()
    time.sleep(1)
    for user in USERS:
        assert processes_of(user) == [], f"{user} still runs {processes_of(user)}"
    assert processes_matching(str(HUB_ROOT)) == [], "a process of the hub is still running"
    assert processes_matching(str(REPO / "hub" / "node_modules")) == [], "the proxy is still running"
