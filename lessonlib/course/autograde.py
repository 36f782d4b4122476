"""Run real nbgrader in a throwaway course root: release an assignment, submit notebooks, autograde them and
read the scores back from nbgrader's gradebook.

The test suite uses this to prove every assignment end to end (solution = full marks, blank = 0, wrong
answers in between), and ``make grade`` uses it so a learner can grade their own notebook against the hidden
tests without touching the course's gradebook.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

CONFIG_FILE = "nbgrader_config.py"


def find_course_root(start: Path | None = None) -> Path:
    """The folder holding nbgrader_config.py and solutions/: the current folder or one above it, else the
    checkout lessonlib was installed from."""
    candidates = [Path(start or Path.cwd()).resolve()]
    candidates += list(candidates[0].parents) + [Path(__file__).resolve().parents[2]]
    for folder in candidates:
        if (folder / CONFIG_FILE).is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError("cannot find the course root (a folder with nbgrader_config.py and solutions/); "
                            "run this from inside the course checkout")


def assignments(course_root: Path) -> list[str]:
    """Assignment ids: the folders of solutions/ that hold a notebook."""
    return sorted(p.name for p in (course_root / "solutions").iterdir()
                  if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader_env() -> dict[str, str]:
    """The environment nbgrader needs: this interpreter's bin folder first on PATH (nbgrader runs its
    database migrations through the `alembic` command, and the kernel spec launches `python`)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


@dataclass
class CellScore:
    grade_id: str
    score: float | None        # None: nothing recorded yet (a written answer awaiting its grader)
    max_score: float
    graded_by_hand: bool       # a written (markdown) answer, graded in formgrader


@dataclass
class SubmissionScore:
    student: str
    cells: dict[str, CellScore] = field(default_factory=dict)

    @property
    def auto_score(self) -> float:
        return sum(c.score or 0.0 for c in self.cells.values() if not c.graded_by_hand)

    @property
    def auto_max(self) -> float:
        return sum(c.max_score for c in self.cells.values() if not c.graded_by_hand)


class ScratchCourse:
    """A temporary nbgrader course root that copies the real course's config and one assignment's source."""

    def __init__(self, course_root: Path, workdir: Path):
        self.course_root = Path(course_root)
        self.root = Path(workdir)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.course_root / CONFIG_FILE, self.root / CONFIG_FILE)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=self.root, env=nbgrader_env(),
                              capture_output=True, text=True)

    def release(self, assignment: str) -> Path:
        """Generate the student version; returns the released assignment folder."""
        shutil.copytree(self.course_root / "solutions" / assignment, self.root / "solutions" / assignment,
                        dirs_exist_ok=True)
        result = self.run("generate_assignment", assignment, "--force")
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{result.stderr[-4000:]}")
        return self.root / "notebooks" / assignment

    def submit(self, student: str, assignment: str, notebook_name: str, notebook: Path | nbformat.NotebookNode):
        """Place a submission where nbgrader's autograde looks for it. A path is copied byte for byte (even
        when it is not valid JSON: that is nbgrader's problem to report)."""
        folder = self.root / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / notebook_name
        if isinstance(notebook, (str, Path)):
            shutil.copy(notebook, target)
        else:
            nbformat.write(notebook, target)
        return target

    def autograde(self, assignment: str, student: str | None = None) -> subprocess.CompletedProcess:
        args = ["autograde", assignment, "--force"] + (["--student", student] if student else [])
        return self.run(*args)

    def feedback(self, assignment: str, student: str) -> Path | None:
        self.run("generate_feedback", assignment, "--student", student, "--force")
        pages = list((self.root / "feedback" / student / assignment).glob("*.html"))
        return pages[0] if pages else None

    def scores(self, assignment: str) -> dict[str, SubmissionScore]:
        """Per student, per graded cell: the score nbgrader recorded (None where nothing was recorded)."""
        from nbgrader.api import Gradebook, MissingEntry

        results: dict[str, SubmissionScore] = {}
        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gradebook:
            for student in gradebook.students:
                try:
                    submission = gradebook.find_submission(assignment, student.id)
                except MissingEntry:
                    continue
                score = SubmissionScore(student.id)
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        recorded = grade.auto_score is not None or grade.manual_score is not None
                        score.cells[grade.name] = CellScore(grade.name, grade.score if recorded else None,
                                                            grade.max_score, grade.cell_type == "markdown")
                results[student.id] = score
        return results
