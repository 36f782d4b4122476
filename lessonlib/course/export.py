"""Grades to CSV: one row per student, a column per assignment that was submitted, and the total.

    coursegrade export                 # writes grades/grades.csv (git-ignored)
    nbgrader export                    # the same: nbgrader_config.py makes this plugin nbgrader's exporter

Scores are read from nbgrader's gradebook (autograded points plus any hand grading done in formgrader, minus late
penalties: nbgrader's ``score``). A student who did not submit an assignment gets 0 for it. Assignments that
nobody submitted are left out, and the file goes to ``grades/``, which .gitignore keeps out of commits.
"""
from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.plugins import ExportPlugin

from .nbgrader_steps import in_folder, nbgrader_app

DEFAULT_DESTINATION = "grades/grades.csv"


class WideGradesCsv(ExportPlugin):
    """nbgrader export plugin: a wide CSV, one row per student."""

    def export(self, gradebook) -> None:
        destination = Path(self.to or DEFAULT_DESTINATION)
        rows = grade_table(gradebook, self.assignment, self.student)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(destination, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerows(rows)
        self.log.info("wrote %s students to %s", len(rows) - 2, destination)


def grade_table(gradebook, assignments: list[str] | None = None, students: list[str] | None = None) -> list[list]:
    """Header, a row of maximum scores, then a row per student."""
    submitted = [a for a in sorted(gradebook.assignments, key=lambda a: a.name)
                 if a.num_submissions > 0 and (not assignments or a.name in assignments)]
    names = [a.name for a in submitted]
    header = ["student_id", "last_name", "first_name", "email", *names, "total"]
    maxima = [a.max_score for a in submitted]
    rows = [header, ["(maximum)", "", "", "", *_fmt_all(maxima), _fmt(sum(maxima))]]
    for student in sorted(gradebook.students, key=lambda s: s.id):
        if students and student.id not in students:
            continue
        scores = []
        for name in names:
            try:
                scores.append(gradebook.find_submission(name, student.id).score)
            except Exception:  # nbgrader's MissingEntry: this student did not submit it
                scores.append(0.0)
        rows.append([student.id, student.last_name or "", student.first_name or "", student.email or "",
                     *_fmt_all(scores), _fmt(sum(scores))])
    return rows


def _fmt(x: float) -> str:
    return f"{x:g}"


def _fmt_all(values) -> list[str]:
    return [_fmt(v) for v in values]


def export(course_root: Path, destination: str | None = None) -> Path:
    from nbgrader.apps import ExportApp

    with in_folder(course_root):
        args = ["--ExportApp.plugin_class=lessonlib.course.export.WideGradesCsv"]
        if destination:
            args.append(f"--to={Path(destination).expanduser().resolve()}")
        app = nbgrader_app(ExportApp, course_root, args)
        app.start()
    return Path(destination).expanduser().resolve() if destination else course_root / DEFAULT_DESTINATION
