"""The course's pieces of nbgrader's own pipeline: grading goes through nbgrader's autograde converter and its
gradebook; only execution is replaced.

* :class:`ClearSolutionsRunAll` is nbgrader's ``ClearSolutions`` for the release, except that a value answer
  (a solution region at the top level of a cell) becomes a comment instead of ``raise NotImplementedError()``,
  so that *Run All* goes past an unanswered exercise; a function's body still raises.
* :class:`RestoreCells` is nbgrader's ``OverwriteCells`` (test cells restored to the gradebook's checksummed
  originals, deleted ones added back) without its warning for every test cell whose hidden tests were removed
  in the release -- that "checksum changed" is expected for every student, the perfect one included. Whether a
  student really edited a test cell is reported by the class commands, which compare with the release.
* :func:`sanitize` runs nbgrader's sanitizing preprocessors on a submission, as ``nbgrader autograde`` does
  before executing it.
* :class:`ReplayExecution` takes the place of nbgrader's ``Execute`` in the autograde converter: it hands over
  the notebook a sandboxed worker executed, after checking that every test cell in it is the gradebook's
  original. nbgrader then saves the grades, late penalties and the autograded notebook as usual.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    ClearSolutions,
    DeduplicateIds,
    NbGraderPreprocessor,
    OverwriteCells,
    OverwriteKernelspec,
)
from traitlets import Unicode


class ClearSolutionsRunAll(ClearSolutions):
    """nbgrader's ClearSolutions, with another stub for a solution region at the top level of a code cell.

    A value answer (``q2_answer = "C"``) sits at the top level. The course's solutions put a placeholder above
    the region (``q2_answer = "?"``); the release keeps it and replaces the region with ``value_stub`` (a comment),
    so *Run All* runs past an unanswered exercise: its test cell says "not answered yet" and the cells below go on
    (lessonlib.course.answers.answered). Inside a function (an indented region) the usual code stub stays: calling
    an unanswered function raises NotImplementedError, which the checks and fallbacks report."""

    value_stub = Unicode("# YOUR ANSWER HERE: replace each ... and \"?\" above with your value",
                         help="What replaces a solution region at the top level of a code cell").tag(config=True)

    def _replace_solution_region(self, cell: NotebookNode, language: str) -> bool:
        replaced = super()._replace_solution_region(cell, language)
        if replaced and cell.cell_type == "code":
            stub, lines, kept = self.code_stub[language].split("\n"), cell.source.split("\n"), []
            i = 0
            while i < len(lines):
                if lines[i:i + len(stub)] == stub:       # an unindented stub: the region was at the top level
                    kept.extend(self.value_stub.split("\n"))
                    i += len(stub)
                else:
                    kept.append(lines[i])
                    i += 1
            cell.source = "\n".join(kept)
        return replaced


class RestoreCells(OverwriteCells):
    """nbgrader's OverwriteCells, adding deleted test cells back, quiet about expected checksum changes."""

    def __init__(self, **kw):
        kw.setdefault("add_missing_cells", True)
        super().__init__(**kw)

    def add_missing_grade_cells(self, nb, resources):
        """Deleted grade cells come back at the end of the notebook, as nbgrader's own transform makes them (the
        class workers then put every cell in the lesson's order). nbgrader's placement after "the previous
        cell" fails when that cell was deleted too."""
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        present = {c.metadata.nbgrader.get("grade_id") for c in nb.cells if utils.is_grade(c) or utils.is_solution(c)}
        solutions = {c.name for c in source.solution_cells}
        by_name = {c.name: c for c in source.source_cells}
        for grade_cell in source.grade_cells:
            if grade_cell.name not in present:
                cell = self.missing_cell_transform(by_name[grade_cell.name], grade_cell.max_score,
                                                   is_solution=grade_cell.name in solutions)
                if nb.nbformat_minor >= 5 and not cell.get("id"):
                    cell["id"] = f"restored-{grade_cell.name}"     # nbformat 4.5 wants an id on every cell
                nb.cells.append(cell)
        return nb, resources

    def preprocess(self, nb, resources):
        self._roles = None
        return super().preprocess(nb, resources)

    def _source_roles(self) -> dict[str, dict]:
        """grade_id -> the nbgrader flags the gradebook's source notebook gives that cell (read once)."""
        if self._roles is None:
            source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
            points = {c.name: c.max_score for c in [*source.grade_cells, *source.task_cells]}
            solutions = {c.name for c in source.solution_cells}
            tasks = {c.name for c in source.task_cells}
            self._roles = {c.name: {"grade": c.name in points, "solution": c.name in solutions,
                                    "task": c.name in tasks, "points": points.get(c.name)}
                           for c in source.source_cells}
        return self._roles

    def preprocess_cell(self, cell, resources, cell_index):
        """As nbgrader's, with the cell's grading flags (grade, solution, task, points) first put back to the
        gradebook's: nbgrader restores a test cell's source, locked flag and points, but not its grade and
        solution flags, so a test cell the student marked as not graded (or an answer cell marked as a test worth
        points) stopped its autograde with "Inconsistent checksums" or a missing grade cell. A cell with grading
        metadata but no grade_id, or with one this assignment does not have (from another notebook, made up, or a
        duplicate nbgrader's DeduplicateIds emptied), becomes a plain cell: nbgrader's own add-back of task cells
        fails on grading metadata without a grade_id."""
        meta = cell.metadata.get("nbgrader")
        if meta is not None:
            role = self._source_roles().get(meta.get("grade_id")) if isinstance(meta, dict) else None
            if role is None:
                del cell.metadata["nbgrader"]
                return cell, resources
            for flag in ("grade", "solution", "task"):
                if bool(meta.get(flag)) != role[flag]:
                    if flag != "task" or role[flag]:
                        meta[flag] = role[flag]
                    else:
                        meta.pop(flag)
            if role["grade"] or role["task"]:
                meta["points"] = role["points"]
            else:
                meta.pop("points", None)
        return super().preprocess_cell(cell, resources, cell_index)

    def report_change(self, name, attr, old, new):
        if attr == "checksum":
            self.log.debug("test cell %s restored from the gradebook", name)
        else:
            super().report_change(name, attr, old, new)


class DropMalformedMetadata(NbGraderPreprocessor):
    """Grading metadata without a usable grade_id (not a dict, no grade_id, not a string) is removed before
    nbgrader's own steps, which index ``metadata.nbgrader["grade_id"]`` and fail on it: the cell is graded as a
    plain cell, as a cell the student added."""

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.metadata.get("nbgrader")
        if meta is not None and not (isinstance(meta, dict) and isinstance(meta.get("grade_id"), str)
                                     and meta["grade_id"]):
            del cell.metadata["nbgrader"]
        return cell, resources


SANITIZERS = (DropMalformedMetadata, ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreCells,
              CheckCellMetadata)


def sanitize(nb: NotebookNode, db_url: str, assignment: str, notebook: str, student: str) -> NotebookNode:
    """nbgrader's sanitizing steps of autograde, applied to ``nb`` in place."""
    resources = ResourcesDict(nbgrader={"db_url": db_url, "assignment": assignment, "notebook": notebook,
                                        "student": student})
    for step in SANITIZERS:
        nb, resources = step().preprocess(nb, resources)
    return nb


class ReplayExecution(NbGraderPreprocessor):
    """Stands in for nbgrader's Execute preprocessor: the notebook was executed by a sandboxed worker."""

    executed: dict[tuple[str, str, str], Path] = {}     # (assignment, student, notebook) -> executed notebook

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        info = resources["nbgrader"]
        key = (info["assignment"], info["student"], info["notebook"])
        if key not in self.executed:
            raise RuntimeError(f"no executed notebook for {key}: the worker did not finish it")
        executed = nbformat.read(self.executed[key], as_version=4)
        with Gradebook(info["db_url"]) as gradebook:
            originals = {cell.name: cell for cell in gradebook.find_notebook(info["notebook"],
                                                                              info["assignment"]).source_cells}
        expected = {c.metadata.nbgrader["grade_id"] for c in nb.cells if utils.is_grade(c) or utils.is_solution(c)}
        found = {c.metadata.nbgrader["grade_id"] for c in executed.cells
                 if utils.is_grade(c) or utils.is_solution(c)}
        if expected != found:
            raise RuntimeError(f"the executed notebook's graded cells {sorted(found)} differ from nbgrader's "
                               f"{sorted(expected)}")
        for cell in executed.cells:
            if utils.is_grade(cell) and not utils.is_solution(cell):
                original = originals[cell.metadata.nbgrader["grade_id"]]
                if not _is_original(cell.source, original.source):
                    raise RuntimeError(f"test cell {original.name} is not the gradebook's original")
        executed.metadata = nb.metadata
        return executed, resources


def _is_original(source: str, original: str) -> bool:
    """The gradebook's source, possibly after the comment nbgrader puts at the top of a cell it added back."""
    if not source.endswith(original):
        return False
    prefix = source[:len(source) - len(original)]
    return all(not line.strip() or line.lstrip().startswith("#") for line in prefix.splitlines())


@contextlib.contextmanager
def in_folder(folder: Path):
    """nbgrader reads nbgrader_config.py from the current folder: run its apps from the course root."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@functools.cache
def alembic_head() -> str:
    """The gradebook schema's alembic revision, read in this process from nbgrader's own migration scripts.
    nbgrader asks a fresh `alembic heads` subprocess for it whenever it creates a gradebook: a second or two on
    an idle machine, tens of seconds on a busy one, for a constant."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader import dbutil

    with dbutil._temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:
        return ScriptDirectory.from_config(Config(ini)).get_current_head()


def nbgrader_app(app_class, course_root: Path, argv: list[str] | None = None, log_level: int = logging.WARNING):
    """An nbgrader application configured from the course's nbgrader_config.py, as its command would be, for
    use in this process (call it inside :func:`in_folder`)."""
    tools = str(Path(sys.executable).parent)     # nbgrader runs `alembic` from PATH to create a gradebook
    if tools not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([tools, os.environ.get("PATH", "")])
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head
    warnings.filterwarnings("ignore", module="nbgrader")            # SQLAlchemy session warnings: noise
    warnings.filterwarnings("ignore", message=".*not in session.*")
    quiet_about_repaired_cell_ids()
    app = app_class()
    app.initialize([*(argv or []), f"--log-level={log_level}"])
    if Path(app.coursedir.root).resolve() != Path(course_root).resolve():
        raise RuntimeError(f"run nbgrader apps from the course root {course_root}, not {os.getcwd()}")
    return app


def quiet_about_repaired_cell_ids() -> None:
    """nbformat repairs duplicated cell ids (a student's edit) when it reads a notebook, warning once per cell:
    dozens of lines of noise on the instructor's terminal for one student, about something that changes nothing."""
    from nbformat.warnings import DuplicateCellId

    warnings.filterwarnings("ignore", category=DuplicateCellId)


def register_assignment(course_root: Path, assignment: str, scratch: Path) -> Path:
    """Register ``assignment`` in the course's gradebook (its notebooks, graded cells and the checksummed test
    cells autograde restores) by generating it into ``scratch``: the committed release in notebooks/ is left
    alone. Returns the generated release folder."""
    from nbgrader.apps import GenerateAssignmentApp
    from nbgrader.converters.base import NbGraderException

    release = scratch / "release"
    with in_folder(course_root):
        app = nbgrader_app(GenerateAssignmentApp, course_root,
                           [assignment, "--force", f"--CourseDirectory.release_directory={release}"])
        app.coursedir.assignment_id = assignment
        from nbgrader.converters import GenerateAssignment

        try:
            GenerateAssignment(coursedir=app.coursedir, parent=app).start()
        except NbGraderException as error:
            raise RuntimeError(f"nbgrader could not register {assignment} in the gradebook: {error}. If the graded "
                               f"cells of solutions/{assignment} changed after students submitted, restore them "
                               "or start a new gradebook") from None
    return release / assignment
