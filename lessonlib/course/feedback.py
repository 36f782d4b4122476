"""Per-student feedback pages that show every check's PASS/FAIL line and never the hidden tests' code.

    coursegrade feedback 00_orientation [--student alice]

nbgrader's ``generate_feedback`` renders each autograded notebook to ``feedback/<student>/<assignment>/`` with the
preprocessors the course configures (nbgrader_config.py, so plain ``nbgrader generate_feedback`` does the same):
nbgrader's ``GetGrades``, then :class:`RedactHiddenTests`, then nbgrader's ``ClearHiddenTests``
(:class:`ClearHiddenTestsForFeedback`). The hidden
region of a test cell is removed from its source by ``ClearHiddenTests``; :class:`RedactHiddenTests` also removes
any line of it that reached an output -- a failing hidden assert's traceback, or a student's code that printed
what it found -- everywhere in the notebook. Check names are shown (they never state an answer).
"""
from __future__ import annotations

import re
from pathlib import Path

from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import List

from .nbgrader_steps import in_folder, nbgrader_app
from .plan import split_hidden

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REDACTED = "[a line of a hidden test, not shown]"


# nbgrader's preprocessors declare ``display_data_priority`` without the config tag, so the HTML exporter's setting
# of it makes generate_feedback warn "Config option not recognized"; declaring it configurable silences that.
class ClearHiddenTestsForFeedback(ClearHiddenTests):
    """nbgrader's ClearHiddenTests, without the spurious configuration warning."""
    display_data_priority = List([]).tag(config=True)


class RedactHiddenTests(NbGraderPreprocessor):
    """Removes from every output each line that contains a line of a hidden test (8 characters or more, once
    stripped; shorter ones, like ``)`` or ``else:``, reveal nothing)."""
    display_data_priority = List([]).tag(config=True)

    def preprocess(self, nb, resources):
        hidden = set()
        for cell in nb.cells:
            if utils.is_grade(cell) and cell.cell_type == "code":
                _, region = split_hidden(cell.source)
                hidden |= {line.strip() for line in region.splitlines() if len(line.strip()) >= 8}
        self.hidden = hidden
        if not hidden:
            return nb, resources
        return super().preprocess(nb, resources)

    def _clean(self, text: str) -> str:
        lines = text.split("\n")
        return "\n".join(REDACTED if any(h in ANSI.sub("", line) for h in self.hidden) else line for line in lines)

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if "text" in output:
                output.text = self._clean(output.text)
            if "traceback" in output:
                output.traceback = [self._clean(line) for line in output.traceback]
            if "evalue" in output:
                output.evalue = self._clean(output.evalue)
            for mime, value in list(output.get("data", {}).items()):
                if mime.startswith("text/") and isinstance(value, str):
                    output.data[mime] = self._clean(value)
        return cell, resources


def generate(course_root: Path, assignment: str, student: str | None = None) -> list[Path]:
    """nbgrader's generate_feedback for the assignment (one student, or all who were autograded); returns the
    pages written."""
    from nbgrader.apps import GenerateFeedbackApp
    from nbgrader.converters import GenerateFeedback
    from nbgrader.converters.base import NbGraderException

    with in_folder(course_root):
        app = nbgrader_app(GenerateFeedbackApp, course_root, [assignment, "--force"])
        app.coursedir.assignment_id = assignment
        if student:
            app.coursedir.student_id = student
        try:
            GenerateFeedback(coursedir=app.coursedir, parent=app).start()
        except NbGraderException as error:
            raise SystemExit(f"nbgrader could not write feedback for {assignment}: {error} (autograde it first: "
                             f"coursegrade autograde {assignment})") from None
    pattern = f"{student or '*'}/{assignment}/*.html"
    return sorted((course_root / "feedback").glob(pattern))
