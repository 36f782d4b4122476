"""Autograde a whole class in one unattended run, through nbgrader's own gradebook and autograde converter.

    coursegrade autograde 03a_mixture_of_experts [--student alice] [--workers 2] [--force]

Design
------
1. Register the assignment in the course's gradebook (:func:`.nbgrader_steps.register_assignment`): nbgrader
   generates it into a scratch folder, so the committed release in ``notebooks/`` is never rewritten, and a
   fresh clone (whose gradebook is git-ignored) can grade right away.
2. Find the submissions in ``submitted/<student>/<assignment>/``. A student whose folder holds one notebook under
   another name has it copied to the expected name (the original stays). Already-graded submissions are skipped
   unless ``--force`` (as ``nbgrader autograde`` does).
3. Execute them in parallel: a pool of worker processes (one per core by default) runs :mod:`.submission` jobs;
   each submission gets a fresh sandbox, its own kernel, and a read-only snapshot of the gradebook for nbgrader's
   sanitizing steps. Nothing a submission does can reach the gradebook, the course folder or another student.
4. Record each result as it arrives, in this process only (so the gradebook has one writer and is never left
   half-written): nbgrader's autograde converter runs with :class:`.nbgrader_steps.ReplayExecution` in place
   of its Execute step, and saves the grades, late penalties and ``autograded/`` notebook as usual, where
   formgrader, ``generate_feedback`` and ``nbgrader export`` find them. An unreadable or missing notebook scores
   0 the way nbgrader scores a missing one.
5. Summarize: graded, failed and why, time taken; the same report goes to ``reports/grading/<assignment>.txt``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .autograde import find_course_root
from .config import configured_limits
from .limits import Limits
from .nbgrader_steps import SANITIZERS, ReplayExecution, in_folder, nbgrader_app, register_assignment
from .sandbox import Isolation, probe
from .submission import Job, Lesson, Outcome, grade_job, set_slot, worker_threads


@dataclass
class StudentResult:
    student: str
    status: str                    # graded, unreadable, missing, failed
    score: float | None = None
    max_score: float = 0.0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kernel_seconds: float = 0.0
    cells_skipped: int = 0
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class ClassReport:
    assignment: str
    results: list[StudentResult] = field(default_factory=list)
    already_graded: list[str] = field(default_factory=list)
    seconds: float = 0.0               # the whole command
    grading_seconds: float = 0.0       # from the first submission dispatched to the last one recorded
    workers: int = 1
    isolation: list[str] = field(default_factory=list)
    release_warning: str = ""

    def by_student(self) -> dict[str, StudentResult]:
        return {r.student: r for r in self.results}

    @property
    def failed(self) -> list[StudentResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        lines = [f"{self.assignment}: {len(self.results)} submission(s) in {self.seconds:.1f} s with "
                 f"{self.workers} worker(s)"]
        graded = [r for r in self.results if r.status == "graded"]
        if graded:
            per = statistics.median(r.seconds for r in graded)
            lines.append(f"  graded: {len(graded)} (median {per:.1f} s each, kernel start included)")
        for status, label in (("unreadable", "unreadable notebook, scored 0"), ("missing", "no notebook, scored 0"),
                              ("failed", "NOT GRADED (see below; fix and re-run with --student)")):
            names = [r.student for r in self.results if r.status == status]
            if names:
                lines.append(f"  {label}: {len(names)} ({', '.join(names)})")
        if self.already_graded:
            lines.append(f"  already graded, skipped: {len(self.already_graded)} (use --force to grade again)")
        for result in self.results:
            if result.notes:
                score = f"{result.score:g}/{result.max_score:g}" if result.score is not None else "-"
                lines.append(f"  {result.student} ({result.status}, {score}):")
                lines += [f"    - {note}" for note in result.notes]
        if self.release_warning:
            lines.append(f"  WARNING: {self.release_warning}")
        lines.append("  isolation: " + "; ".join(self.isolation))
        return "\n".join(lines)


class ClassGrader:
    """Grades submissions of one assignment of the course at ``course_root``."""

    def __init__(self, course_root: Path | None = None, limits: Limits | None = None, workers: int | None = None,
                 skip_demonstrations: bool = True, progress: bool = True, in_process: bool = False,
                 isolation: Isolation | None = None):
        self.root = Path(course_root or find_course_root()).resolve()
        self.limits = limits or configured_limits(self.root)
        self.workers = max(1, workers or default_workers(self.limits))
        self.skip_demonstrations = skip_demonstrations
        self.progress = progress
        self.in_process = in_process      # run the jobs one by one in this process (self-grading one notebook)
        self.isolation = isolation or probe()
        self.renamed: dict[str, str] = {}
        self.log_records: list[str] = []

    # -- the run --------------------------------------------------------------------------------------------
    def autograde(self, assignment: str, students: list[str] | None = None, force: bool = False) -> ClassReport:
        with _exclusive(self.root / LOCK_FILE):
            return self._autograde(assignment, students, force)

    def _autograde(self, assignment: str, students: list[str] | None, force: bool) -> ClassReport:
        started = time.monotonic()
        report = ClassReport(assignment, workers=self.workers, isolation=self.isolation.describe())
        source = self._source_notebook(assignment)
        with tempfile.TemporaryDirectory(prefix="coursegrade-") as scratch_name:
            scratch = Path(scratch_name)
            scratch.chmod(0o711)
            generated = register_assignment(self.root, assignment, scratch)
            committed = self.root / "notebooks" / assignment / source.name
            release = committed if committed.is_file() else generated / source.name
            report.release_warning = _release_drift(committed, generated / source.name)
            lesson = Lesson.read(source, release)
            pending, report.already_graded, missing = self._submissions(assignment, lesson, students, force)
            staging = scratch / "staging"
            staging.mkdir()
            staging.chmod(0o711)
            with in_folder(self.root):
                app = self._autograde_app(assignment)
                snapshot = scratch / "gradebook-snapshot.db"
                _snapshot(Path(app.coursedir.db_url.removeprefix("sqlite:///")), snapshot)
                for student in missing:
                    report.results.append(self._record_empty(app, assignment, lesson, student, "missing",
                                                             [f"no {lesson.notebook}.ipynb was submitted"]))
                jobs = [Job(lesson, student, str(self.root / "submitted" / student / assignment),
                            f"sqlite:///{snapshot}", str(staging), self.limits, self.isolation,
                            self.skip_demonstrations, worker_threads(self.workers)) for student in pending]
                dispatched = time.monotonic()
                for outcome in self._execute(jobs):
                    recording, recording_cpu = time.monotonic(), time.process_time()
                    result = self._record(app, assignment, lesson, outcome)
                    result.phases = {**outcome.phases, "recording (grading process)": time.monotonic() - recording,
                                     "cpu: recording": time.process_time() - recording_cpu}
                    report.results.append(result)
                report.grading_seconds = time.monotonic() - dispatched
        report.results.sort(key=lambda r: r.student)
        report.seconds = time.monotonic() - started
        self._write_report(report)
        return report

    def _execute(self, jobs: list[Job]):
        """Yield each job's Outcome as soon as it is done, running up to ``workers`` at a time. A worker process
        that dies (never a kernel's doing: those are outcomes) breaks the pool; its jobs are tried once more in a
        fresh pool, then reported as failed."""
        if not jobs:
            return
        if self.in_process:
            for job in jobs:
                yield grade_job(job)
            return
        context = multiprocessing.get_context("spawn")
        bar = tqdm(total=len(jobs), unit="submission", disable=not self.progress, dynamic_ncols=True)
        attempts: dict[str, int] = {}
        remaining = list(jobs)
        try:
            while remaining:
                slots = context.Queue()
                for slot in range(self.workers):
                    slots.put(slot)
                with ProcessPoolExecutor(self.workers, mp_context=context, initializer=set_slot,
                                         initargs=(slots,)) as pool:
                    futures: dict[Future, Job] = {pool.submit(grade_job, job): job for job in remaining}
                    remaining = []
                    while futures:
                        done, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for future in done:
                            job = futures.pop(future)
                            try:
                                outcome = future.result()
                            except BrokenProcessPool:
                                attempts[job.student] = attempts.get(job.student, 0) + 1
                                if attempts[job.student] < 2:
                                    remaining.append(job)
                                    continue
                                outcome = Outcome(job.student, "failed", notes=[
                                    "its grading worker process died twice (not the kernel: the grading process "
                                    "itself); grade it alone with --student to see the error"])
                            bar.set_postfix_str(f"{job.student}: {outcome.status}")
                            bar.update()
                            yield outcome
        finally:
            bar.close()

    # -- recording in the gradebook ------------------------------------------------------------------------
    def _autograde_app(self, assignment: str):
        from nbconvert.preprocessors import ClearMetadataPreprocessor
        from nbgrader.apps import AutogradeApp
        from nbgrader.preprocessors import (
            AssignLatePenalties,
            CheckCellMetadata,
            IgnorePattern,
            LimitOutput,
            SaveAutoGrades,
        )
        from traitlets.config import Config

        app = nbgrader_app(AutogradeApp, self.root, [assignment])
        app.coursedir.assignment_id = assignment
        config = Config()
        config.Autograde.sanitize_preprocessors = list(SANITIZERS)     # the workers' own, in the same order
        config.Autograde.autograde_preprocessors = [ReplayExecution, IgnorePattern, ClearMetadataPreprocessor,
                                                    LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                                    CheckCellMetadata]
        config.BaseConverter.force = True
        app.update_config(config)
        handler = _ListHandler(self.log_records)
        app.log.addHandler(handler)
        return app

    def _record(self, app, assignment: str, lesson: Lesson, outcome: Outcome) -> StudentResult:
        from nbgrader.converters import Autograde
        from nbgrader.converters.base import NbGraderException

        if outcome.student in self.renamed:
            outcome.notes.insert(0, self.renamed.pop(outcome.student))
        if outcome.status != "executed":
            return self._record_empty(app, assignment, lesson, outcome.student, outcome.status, outcome.notes,
                                      outcome.seconds)
        ReplayExecution.executed[(assignment, outcome.student, lesson.notebook)] = Path(outcome.executed)
        app.coursedir.student_id = outcome.student
        del self.log_records[:]
        try:
            Autograde(coursedir=app.coursedir, parent=app).start()
        except NbGraderException:
            errors = [r for r in self.log_records if "Traceback" not in r][-3:]
            return StudentResult(outcome.student, "failed", notes=outcome.notes + [
                "nbgrader could not record it: " + " | ".join(errors)], seconds=outcome.seconds)
        finally:
            ReplayExecution.executed.pop((assignment, outcome.student, lesson.notebook), None)
            app.coursedir.student_id = "*"
        score, max_score = self._score(app, assignment, outcome.student)
        return StudentResult(outcome.student, "graded", score, max_score, outcome.notes, outcome.seconds,
                             outcome.kernel_seconds, outcome.cells_skipped)

    def _record_empty(self, app, assignment: str, lesson: Lesson, student: str, status: str, notes: list[str],
                      seconds: float = 0.0) -> StudentResult:
        """A submission with nothing to grade scores 0 in every graded cell, as nbgrader scores a missing
        notebook; an autograded copy left from an earlier run is removed."""
        from nbgrader.api import Gradebook

        if status == "failed":
            return StudentResult(student, status, notes=notes, seconds=seconds)
        with Gradebook(app.coursedir.db_url, app.coursedir.course_id) as gradebook:
            gradebook.update_or_create_student(student)
            gradebook.update_or_create_submission(assignment, student)
            notebook = gradebook.find_submission_notebook(lesson.notebook, assignment, student)
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
            gradebook.db.commit()
        stale = self.root / "autograded" / student / assignment
        if stale.is_dir():
            shutil.rmtree(stale)
        score, max_score = self._score(app, assignment, student)
        return StudentResult(student, status, score, max_score, notes, seconds)

    def _score(self, app, assignment: str, student: str) -> tuple[float, float]:
        from nbgrader.api import Gradebook

        with Gradebook(app.coursedir.db_url, app.coursedir.course_id) as gradebook:
            submission = gradebook.find_submission(assignment, student)
            return float(submission.score), float(submission.max_score)

    # -- the course folder ----------------------------------------------------------------------------------
    def _source_notebook(self, assignment: str) -> Path:
        notebooks = sorted((self.root / "solutions" / assignment).glob("*.ipynb"))
        if len(notebooks) != 1:
            known = sorted(p.name for p in (self.root / "solutions").iterdir() if any(p.glob("*.ipynb")))
            raise SystemExit(f"{assignment}: expected one notebook in solutions/{assignment}/ "
                             f"(assignments: {', '.join(known)})")
        return notebooks[0]

    def _submissions(self, assignment: str, lesson: Lesson, students: list[str] | None, force: bool):
        """(to grade, already graded, without any notebook) student ids."""
        submitted = self.root / "submitted"
        folders = sorted(p for p in submitted.glob(f"*/{assignment}") if p.is_dir()) if submitted.is_dir() else []
        found = {p.parent.name: p for p in folders}
        if students:
            unknown = [s for s in students if s not in found]
            if unknown:
                raise SystemExit(f"no submission of {assignment} for {', '.join(unknown)} in submitted/ "
                                 f"(students with one: {', '.join(found) or 'none'})")
            found = {s: found[s] for s in students}
        pending, graded, missing = [], [], []
        for student, folder in found.items():
            expected = folder / f"{lesson.notebook}.ipynb"
            if not expected.exists():
                others = sorted(folder.glob("*.ipynb"))
                if len(others) == 1:
                    shutil.copyfile(others[0], expected)
                    self.renamed[student] = (f"graded {others[0].name} (the only notebook in its folder) as "
                                             f"{expected.name}; a copy under that name is now in submitted/")
                else:
                    missing.append(student)
                    continue
            autograded = self.root / "autograded" / student / assignment / expected.name
            if not force and autograded.is_file() and autograded.stat().st_mtime >= expected.stat().st_mtime:
                graded.append(student)
            else:
                pending.append(student)
        return pending, graded, missing

    def _write_report(self, report: ClassReport) -> None:
        """The run's summary as text, and every student's latest result as JSON (a run of one student updates
        that student's entry and keeps the others)."""
        folder = self.root / "reports" / "grading"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{report.assignment}.txt").write_text(report.summary() + "\n")
        path = folder / f"{report.assignment}.json"
        earlier = json.loads(path.read_text()).get("results", []) if path.is_file() else []
        now = {r.student for r in report.results}
        results = [r for r in earlier if r.get("student") not in now] + [r.__dict__ for r in report.results]
        path.write_text(json.dumps(
            {"assignment": report.assignment, "last_run": {"seconds": report.seconds, "workers": report.workers,
                                                           "students": sorted(now)},
             "results": sorted(results, key=lambda r: r["student"])}, indent=1) + "\n")


def default_workers(limits: Limits) -> int:
    """One worker per CPU core, as long as every worker's kernel can use its whole memory limit at once."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return cores
    return max(1, min(cores, memory // (limits.memory_mb * 2**20)))


def _snapshot(db: Path, target: Path) -> None:
    """A consistent copy of the gradebook for the workers' read-only use."""
    source = sqlite3.connect(db)
    try:
        copy = sqlite3.connect(target)
        with copy:
            source.backup(copy)
        copy.close()
    finally:
        source.close()


def _release_drift(committed: Path, generated: Path) -> str:
    """A warning when notebooks/ (what students received) differs from what solutions/ generates now."""
    import nbformat

    if not committed.is_file():
        return f"{committed.relative_to(committed.parents[2])} is missing: run `make release` and commit it"

    def cells(path):
        return [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]

    if cells(committed) != cells(generated):
        return (f"{committed.parent.name}: notebooks/ is out of date with solutions/ (run `make release`); students "
                "who received the committed release are graded against the tests in solutions/")
    return ""


LOCK_FILE = ".coursegrade.lock"


@contextlib.contextmanager
def _exclusive(path: Path):
    """One autograde at a time per course: two would both write the gradebook."""
    import fcntl

    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(f"another `coursegrade autograde` is running in {path.parent}; wait for it to "
                             "finish") from None
        yield


class _ListHandler(logging.Handler):
    def __init__(self, records: list[str]):
        super().__init__(logging.ERROR)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage()[:400])
