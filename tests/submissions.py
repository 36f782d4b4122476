"""Build the submissions the end-to-end autograde test grades: the solution, the blank release, and the
answers kept in tests/wrong_answers/<assignment>.py, packed into as few notebooks as their cells allow."""
from __future__ import annotations

import copy
import runpy
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lessonlib.course.autograde import ScratchCourse, SubmissionScore


@dataclass
class Variant:
    name: str
    replace: dict[str, str]         # answer cell grade_id -> new source
    expect: dict[str, float]        # test cell grade_id -> exact score
    wrong: bool
    requires: tuple[str, ...] = ()  # answer cells this variant relies on being right (kept out of its group)

    @property
    def touched(self) -> set[str]:
        return set(self.replace) | set(self.expect) | set(self.requires)


@dataclass
class GradedRun:
    assignment: str
    released_dir: Path
    solution_cells: dict[str, dict]             # grade_id -> nbgrader metadata of the source notebook
    students: dict[str, list[Variant]] = field(default_factory=dict)   # student id -> variants it holds
    result: subprocess.CompletedProcess | None = None
    scores: dict[str, SubmissionScore] = field(default_factory=dict)

    @property
    def test_cells(self) -> dict[str, float]:
        """Autograded test cells and their points."""
        return {gid: meta["points"] for gid, meta in self.solution_cells.items()
                if meta.get("grade") and not meta.get("solution")}

    def variants(self, wrong: bool) -> list[tuple[str, Variant]]:
        return [(student, v) for student, vs in self.students.items() for v in vs if v.wrong == wrong]


def load_variants(repo: Path, assignment: str) -> list[Variant]:
    path = repo / "tests" / "wrong_answers" / f"{assignment}.py"
    if not path.is_file():
        return []
    data = runpy.run_path(str(path))
    return [Variant(name, spec["replace"], spec.get("expect", {}), wrong, tuple(spec.get("requires", ())))
            for wrong, table in ((True, data.get("WRONG", {})), (False, data.get("RIGHT", {})))
            for name, spec in table.items()]


def pack(variants: list[Variant]) -> list[list[Variant]]:
    """Group variants so that no two in a group replace the same answer cell, aim at the same test cell, or
    break a cell the other relies on: then each test cell's score in a packed notebook belongs to exactly
    one variant."""
    groups: list[list[Variant]] = []
    for variant in variants:
        for group in groups:
            if not any(variant.touched & v.touched for v in group):
                group.append(variant)
                break
        else:
            groups.append([variant])
    return groups


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def answered_release(released: nbformat.NotebookNode, solution: nbformat.NotebookNode,
                     replacements: dict[str, str]) -> nbformat.NotebookNode:
    """The student release with every answer cell taken from the solution, then the replacements applied:
    what a student who answered everything would submit."""
    answers = {_grade_id(c): c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    unknown = set(replacements) - set(answers)
    if unknown:
        raise KeyError(f"wrong-answer data names cells the notebook does not have: {sorted(unknown)}")
    notebook = copy.deepcopy(released)
    for cell in notebook.cells:
        grade_id = _grade_id(cell)
        if grade_id in answers and cell.metadata["nbgrader"].get("solution"):
            cell.source = replacements.get(grade_id, answers[grade_id]).strip("\n")
    return notebook


def build_submissions(course: ScratchCourse, assignment: str, released_dir: Path, repo: Path) -> GradedRun:
    source_path = next((repo / "solutions" / assignment).glob("*.ipynb"))
    released_path = released_dir / source_path.name
    solution = nbformat.read(source_path, as_version=4)
    released = nbformat.read(released_path, as_version=4)
    run = GradedRun(assignment, released_dir,
                    {_grade_id(c): c.metadata["nbgrader"] for c in solution.cells if _grade_id(c)})

    course.submit("solution", assignment, source_path.name, source_path)
    course.submit("blank", assignment, source_path.name, released_path)
    run.students["solution"], run.students["blank"] = [], []
    variants = load_variants(repo, assignment)
    for kind, wanted in (("wrong", True), ("right", False)):
        for index, group in enumerate(pack([v for v in variants if v.wrong == wanted])):
            replacements = {gid: src for v in group for gid, src in v.replace.items()}
            student = f"{kind}{index:02d}"
            course.submit(student, assignment, source_path.name,
                          answered_release(released, solution, replacements))
            run.students[student] = group
    return run
