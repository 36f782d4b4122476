"""Grade your own notebooks against the hidden tests, exactly as an instructor's nbgrader would.

    make grade                                   # every lesson in notebooks/
    make grade NB=notebooks/00_orientation/00_orientation.ipynb
    python -m lessonlib.course.selfgrade 00_orientation

Your notebook is copied into a throwaway nbgrader course and autograded there; nothing in the course folder
changes except the feedback page written to reports/feedback/.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from .autograde import ScratchCourse, assignments, find_course_root


def _resolve(target: str, course_root: Path, known: list[str]) -> tuple[str, Path]:
    """Map an assignment id or a notebook path to (assignment, notebook path)."""
    if target in known:
        notebooks = sorted((course_root / "notebooks" / target).glob("*.ipynb"))
        if not notebooks:
            raise SystemExit(f"no notebook in notebooks/{target}/: run `make release` or restore it from git")
        return target, notebooks[0]
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise SystemExit(f"{target}: no such notebook, and not an assignment id ({', '.join(known)})")
    for candidate in (path.parent.name, path.stem):
        if candidate in known:
            return candidate, path
    raise SystemExit(f"cannot tell which lesson {path.name} belongs to: keep it in a folder named after the "
                     f"lesson (one of {', '.join(known)})")


def grade(assignment: str, notebook: Path, course_root: Path, out=sys.stdout) -> bool:
    """Autograde one notebook; print the scores and the failed checks. False if it could not be graded."""
    print(f"\n== {assignment}: grading {notebook}", file=out)
    try:
        nbformat.read(notebook, as_version=4)
    except Exception as error:  # nbformat raises several types for unreadable notebooks
        print(f"   cannot grade: the file is not a readable notebook ({type(error).__name__}: "
              f"{str(error).splitlines()[0][:200]}).\n   Nothing was changed. Restore the student version with "
              f"`git checkout -- {notebook}` or fix the JSON by hand.", file=out)
        return False
    with tempfile.TemporaryDirectory(prefix="selfgrade-") as workdir:
        course = ScratchCourse(course_root, Path(workdir))
        released = course.release(assignment)
        expected_name = next(released.glob("*.ipynb")).name  # a renamed copy is graded under the right name
        course.submit("you", assignment, expected_name, notebook)
        result = course.autograde(assignment, student="you")
        score = course.scores(assignment).get("you")
        if result.returncode != 0 or score is None:
            print(f"   nbgrader could not grade it:\n{result.stderr[-2000:]}", file=out)
            return False
        print(f"   {score.auto_score:g} / {score.auto_max:g} points from the automatic checks", file=out)
        for cell in score.cells.values():
            if cell.graded_by_hand:
                print(f"   {cell.grade_id:<22} {cell.max_score:g} points, graded by hand (an instructor "
                      "reads it in formgrader; compare with the solution notebook)", file=out)
            else:
                print(f"   {cell.grade_id:<22} {cell.score or 0:g} / {cell.max_score:g}", file=out)
        graded = course.root / "autograded" / "you" / assignment / expected_name
        for line in _failed_checks(graded):
            print(f"     {line}", file=out)
        page = course.feedback(assignment, "you")
        if page:
            target = course_root / "reports" / "feedback" / f"{assignment}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(page, target)
            print(f"   feedback page: {target}", file=out)
    return True


def _failed_checks(graded_notebook: Path) -> list[str]:
    if not graded_notebook.is_file():
        return []
    lines = []
    for cell in nbformat.read(graded_notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                lines += [line for line in output["text"].splitlines() if line.startswith("FAIL")]
            elif output.get("output_type") == "error" and output["ename"] == "NotImplementedError":
                lines.append("TODO  an answer cell still raises NotImplementedError (not answered yet)")
            elif output.get("output_type") == "error":
                lines.append(f"ERROR {output['ename']}: {output['evalue'][:200]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="notebook paths or assignment ids (default: every lesson)")
    args = parser.parse_args(argv)
    course_root = find_course_root()
    known = assignments(course_root)
    targets = args.targets or known
    ok = True
    for target in targets:
        assignment, notebook = _resolve(target, course_root, known)
        ok &= grade(assignment, notebook, course_root)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
