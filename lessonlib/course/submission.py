"""One submission, from the student's folder to an executed notebook: the job a grading worker does.

A worker reads the submitted notebook (an unreadable file is reported, never guessed at), applies nbgrader's
sanitizing steps against a read-only snapshot of the gradebook (test cells become the checksummed originals;
deleted ones come back), puts the cells in the lesson's order, plans which demonstrations to skip
(:mod:`.plan`), copies the student's files (and the assignment's own data files, as nbgrader does) into a fresh
sandbox (:mod:`.sandbox`) and runs it there (:mod:`.executor`). The executed notebook goes to a staging folder;
only the parent process writes the gradebook (:mod:`.classroom`).
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import plan as plans
from .executor import run_submission
from .limits import Limits
from .nbgrader_steps import quiet_about_repaired_cell_ids, sanitize
from .sandbox import Isolation, Sandbox, python_roots

# A notebook is read whole by the grading worker, outside the sandbox: a larger one is not graded (the course's
# notebooks are a few hundred KB; with every output and figure, a few MB).
MAX_NOTEBOOK_BYTES = 100 * 2**20
PROTECTED_MODULES = ["torch", "torch.nn", "torch.nn.functional", "numpy", "math", "operator", "functools"]


@dataclass(frozen=True)
class Lesson:
    """What every submission of one assignment is compared with, read once by the parent."""
    assignment: str
    notebook: str                       # notebook id (file name without .ipynb)
    source_positions: dict[str, int]    # grade_id, or a lesson cell's normalized source -> its position
    lesson_sources: tuple[str, ...]     # the release's plain code cells, in order
    release_tests: dict[str, str]       # grade_id -> test cell source as released (hidden tests removed)
    data_folder: str                    # solutions/<assignment>: its non-notebook files are copied in
    answer_names: dict[str, frozenset[str]] = field(default_factory=dict)   # answer grade_id -> names it binds
    graded_cells: dict[str, tuple] = field(default_factory=dict)   # grade_id -> its grading metadata, as released

    @classmethod
    def read(cls, source_notebook: Path, release_notebook: Path) -> Lesson:
        source = nbformat.read(source_notebook, as_version=4)
        release = nbformat.read(release_notebook, as_version=4)
        positions: dict[str, int] = {}
        for i, c in reversed(list(enumerate(source.cells))):
            grade_id = c.metadata.get("nbgrader", {}).get("grade_id")
            positions[grade_id or plans.normalize(c.source)] = i
        lesson = tuple(c.source for c in release.cells
                       if c.cell_type == "code" and plans.role_of(c, frozenset()) == plans.STUDENT)
        tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in release.cells
                 if plans.role_of(c, frozenset()) == plans.TEST}
        answers = {c.metadata["nbgrader"]["grade_id"]: plans.facts(c.source).binds for c in source.cells
                   if c.cell_type == "code" and plans.role_of(c, frozenset()) == plans.ANSWER}
        graded = {c.metadata["nbgrader"]["grade_id"]: grading_metadata(c) for c in release.cells
                  if c.metadata.get("nbgrader", {}).get("grade_id")}
        return cls(source_notebook.parent.name, source_notebook.stem, positions, lesson, tests,
                   str(source_notebook.parent), answers, graded)


def grading_metadata(cell) -> tuple | None:
    """What nbgrader grades a cell by: its type, flags and points (None without usable grading metadata)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if not isinstance(meta, dict):
        return None
    points = meta.get("points") if meta.get("grade") else None
    if isinstance(points, (int, float)) and not isinstance(points, bool):
        points = float(points)          # 5 and 5.0 are the same points
    return (cell.get("cell_type"), bool(meta.get("grade")), bool(meta.get("solution")), bool(meta.get("locked")),
            points)


def tampering_notes(cells: list, lesson: Lesson) -> list[str]:
    """What the student changed in the graded cells (before nbgrader's sanitizing puts the originals back)."""
    notes = []
    submitted: dict[str, list] = {}
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(grade_id, str):
            submitted.setdefault(grade_id, []).append(cell)
    for grade_id, released in lesson.release_tests.items():
        found = submitted.get(grade_id, [])
        if not found:
            notes.append(f"test cell {grade_id} was missing from the submission; the original was added back and "
                         "run")
        elif any(plans.normalize(c.get("source", "")) != plans.normalize(released) for c in found):
            notes.append(f"test cell {grade_id} was edited in the submission; the original was run")
    changed = sorted(grade_id for grade_id, found in submitted.items() if grade_id in lesson.graded_cells
                     and any(grading_metadata(c) != lesson.graded_cells[grade_id] for c in found))
    if changed:
        notes.append(f"the grading metadata (type, graded/answer/locked flags, points) of {', '.join(changed)} was "
                     "changed in the submission; the course's was used")
    duplicated = sorted(grade_id for grade_id, found in submitted.items() if len(found) > 1)
    if duplicated:
        notes.append(f"cells {', '.join(duplicated)} appeared more than once; nbgrader graded the last copy of each "
                     "and ran the others as the student's own cells")
    unknown = sorted(grade_id for grade_id in submitted if grade_id not in lesson.graded_cells)
    if unknown:
        notes.append(f"graded cells this lesson does not have ({', '.join(unknown)}) were run as the student's own "
                     "cells and score nothing")
    return notes


@dataclass(frozen=True)
class Job:
    lesson: Lesson
    student: str
    submitted: str                      # the student's submitted folder for this assignment
    db_url: str                         # a read-only snapshot of the gradebook
    staging: str                        # where the executed notebook goes
    limits: Limits
    isolation: Isolation
    skip_demonstrations: bool = True
    threads: int = 1


@dataclass
class Outcome:
    student: str
    status: str                         # "executed", "unreadable", "failed"
    executed: str | None = None         # path of the executed notebook
    notes: list[str] = field(default_factory=list)
    voided: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    kernel_seconds: float = 0.0
    cells_skipped: int = 0
    phases: dict[str, float] = field(default_factory=dict)   # where the time went (for benchmarks)


_SLOT = 0


def set_slot(queue) -> None:
    """Worker process initializer: take a slot number (it picks the sandbox uid)."""
    global _SLOT
    _SLOT = queue.get()


def grade_job(job: Job) -> Outcome:
    """Run in a worker process; never raises (a failure is an Outcome)."""
    started, cpu = time.monotonic(), time.process_time()
    quiet_about_repaired_cell_ids()
    try:
        outcome = _grade(job)
    except Exception as error:  # a bug or an environment problem: report it, keep the class going
        outcome = Outcome(job.student, "failed", notes=[f"grading failed: {type(error).__name__}: {error}",
                                                        traceback.format_exc(limit=6)])
    outcome.seconds = time.monotonic() - started
    # CPU time, which a busy machine does not stretch as it does wall-clock time (for the benchmark); the kernel's
    # is added by the executor (_grade)
    outcome.phases["cpu: worker"] = time.process_time() - cpu
    return outcome


def _grade(job: Job) -> Outcome:
    lesson = job.lesson
    path = Path(job.submitted) / f"{lesson.notebook}.ipynb"
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return Outcome(job.student, "unreadable",
                       notes=[f"{path.name} is too large to grade ({size / 2**20:.0f} MB; the limit is "
                              f"{MAX_NOTEBOOK_BYTES / 2**20:.0f} MB); it scores 0. Ask the student to clear its "
                              "outputs and upload it again"])
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several types for unreadable notebooks
        detail = " ".join(str(error).split())[:200]
        return Outcome(job.student, "unreadable",
                       notes=[f"{path.name} is not a readable notebook ({type(error).__name__}: {detail}); it "
                              "scores 0. The file is kept in submitted/: ask the student to upload it again"])
    outcome = Outcome(job.student, "executed")
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        outcome.phases[name] = time.monotonic() - mark
        mark = time.monotonic()

    outcome.notes += tampering_notes(nb.cells, lesson)
    nb = sanitize(nb, job.db_url, lesson.assignment, lesson.notebook, job.student)
    order = plans.lesson_order(nb.cells, lesson.source_positions)
    if order != sorted(order):
        outcome.notes.append("cells were out of the lesson's order; graded in the lesson's order")
        nb.cells = [nb.cells[i] for i in order]
    lesson_sources = frozenset(plans.normalize(s) for s in lesson.lesson_sources)
    cell_plan = plans.plan(nb.cells, lesson_sources, skip_demonstrations=job.skip_demonstrations)
    for planned in cell_plan.cells:
        if planned.role == plans.ANSWER:
            planned.owns = lesson.answer_names.get(planned.grade_id, frozenset())
    outcome.cells_skipped = len(cell_plan.skipped)
    phase("sanitize and plan")

    sandbox = Sandbox(job.isolation, job.limits, slot=_SLOT, threads=job.threads,
                      parent=Path(job.staging))
    try:
        font_cache = matplotlib_font_cache()
        if font_cache is not None:
            shutil.copyfile(font_cache, sandbox.runtime / font_cache.name)
        sandbox.add_files(Path(job.submitted))
        # the assignment's data files, as nbgrader copies them, but never its notebooks: the source notebook has the
        # student's notebook's name and holds the solutions and the hidden tests
        sandbox.add_files(Path(lesson.data_folder), skip=(".ipynb_checkpoints",), notebooks=False)
        for stray in sandbox.input.rglob("*.ipynb"):
            if stray != sandbox.input / path.name:
                stray.unlink()     # other notebooks the student uploaded are not graded
        phase("sandbox files")
        executed, report = run_submission(nb, cell_plan, sandbox, job.limits,
                                          guard_settings(cell_plan, nb.cells))
        outcome.phases["kernel start"] = report.kernel_seconds
        outcome.phases["cells"] = report.run_seconds - report.kernel_seconds
        outcome.phases["cpu: kernel"] = report.kernel_cpu_seconds
        mark = time.monotonic()
    finally:
        sandbox.cleanup()
    target = Path(job.staging) / f"{job.student}.{lesson.notebook}.ipynb"
    nbformat.write(executed, target)
    phase("cleanup and write")
    outcome.executed = str(target)
    outcome.notes += report.notes
    outcome.voided = report.voided
    outcome.kernel_seconds = report.kernel_seconds
    return outcome


@functools.cache
def matplotlib_font_cache() -> Path | None:
    """matplotlib's font list as a kernel in the sandbox would build it (the same system fonts are bound there),
    built once per worker process instead of once per submission."""
    folder = tempfile.mkdtemp(prefix="coursegrade-matplotlib-")
    atexit.register(shutil.rmtree, folder, True)
    try:
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager as m; m.fontManager"],
                       env={**os.environ, "MPLCONFIGDIR": folder, "HOME": folder}, capture_output=True,
                       timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = sorted(Path(folder).glob("fontlist-*.json"))
    return found[0] if found else None


def guard_settings(cell_plan: plans.NotebookPlan, cells: list) -> dict:
    """What the kernel's guard protects and pre-imports: the modules the test cells import, and the modules of
    the names they read that lesson cells imported."""
    imported: dict[str, str] = {}
    for c in cell_plan.cells:
        if c.role in (plans.LESSON, plans.TEST):
            imported.update(plans.imported_modules(cells[c.index].source))
    preimport: list[str] = []
    for c in cell_plan.cells:
        if c.role != plans.TEST:
            continue
        modules = plans.imported_modules(cells[c.index].source).values()
        modules = [*modules, *(imported[name] for name in c.facts.reads if name in imported)]
        preimport += [m for m in modules if m not in preimport]
    return {"preimport": preimport, "protect_prefixes": ["lessonlib"], "protect_modules": PROTECTED_MODULES,
            "trusted_roots": [str(p) for p in python_roots()]}


def write_outcome(outcome: Outcome, folder: Path) -> None:
    (folder / f"{outcome.student}.outcome.json").write_text(json.dumps(outcome.__dict__, indent=1))


def worker_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))
