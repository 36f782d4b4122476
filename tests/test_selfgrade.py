"""`make grade` / `coursegrade selfgrade` (lessonlib.course.selfgrade): a learner grades their notebook against
the hidden tests, in the same sandbox as a class, and is told plainly what went wrong."""
import io
import shutil

import nbformat
import pytest

from lessonlib.course.selfgrade import grade

from .conftest import REPO

ASSIGNMENT = "00_orientation"
RELEASE = REPO / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def test_blank_notebook_scores_zero_and_lists_what_to_do(tmp_path):
    out = io.StringIO()
    assert grade(ASSIGNMENT, RELEASE, REPO, out)
    text = out.getvalue()
    assert "0 / 16 points" in text
    # Unanswered exercises are listed by their failed checks (the release runs through: no cell raises).
    assert "FAIL" in text and "not answered yet" in text and "set q2_answer to one of" in text
    assert "graded by hand" in text


def test_a_renamed_copy_anywhere_is_recognized_and_graded(tmp_path):
    copy = tmp_path / "my attempt.ipynb"
    shutil.copy(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", copy)
    out = io.StringIO()
    assert grade("", copy, REPO, out)
    assert "16 / 16 points" in out.getvalue()


def test_a_notebook_filed_under_the_wrong_lesson_is_graded_as_its_own(tmp_path):
    misplaced = tmp_path / "01_inference_costs" / "mine.ipynb"
    misplaced.parent.mkdir()
    shutil.copy(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", misplaced)
    out = io.StringIO()
    assert grade("01_inference_costs", misplaced, REPO, out)
    text = out.getvalue()
    assert "this looks like lesson 00_orientation's notebook, not 01_inference_costs's" in text, text
    assert "16 / 16 points" in text and "Traceback" not in text


def test_an_empty_notebook_says_why_it_scores_zero(tmp_path):
    empty = tmp_path / ASSIGNMENT / "empty.ipynb"
    empty.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), empty)
    out = io.StringIO()
    assert grade(ASSIGNMENT, empty, REPO, out)
    text = out.getvalue()
    assert "has none of 00_orientation's exercises" in text and "0 / 16 points" in text, text


def test_a_broken_notebook_gets_a_clear_message_and_nothing_changes(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    out = io.StringIO()
    assert not grade(ASSIGNMENT, broken, REPO, out)
    text = out.getvalue()
    assert "not a readable notebook" in text and "Your file was not changed" in text, text
    assert "git checkout" not in text
    assert broken.read_text() == '{"cells": ['


def test_the_learners_code_sees_neither_solutions_nor_hidden_tests(tmp_path):
    """A blank notebook that would copy the answers from solutions/ (or read the hidden tests next to it, where
    grading used to put them) finds nothing: it still scores 0 and says why. That takes bubblewrap's sandbox
    (elsewhere a learner's code can read their own clone's solutions/, as the learner can)."""
    from lessonlib.course.sandbox import probe

    if not probe().confined:
        pytest.skip(f"no sandbox here to keep solutions/ out of reach: {probe().reason}")
    nb = nbformat.read(RELEASE, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell(f'''
import glob, json
found = [p for p in glob.glob("/tmp/**/*.ipynb", recursive=True) + glob.glob("/home/**/*.ipynb", recursive=True)
         if "BEGIN HIDDEN" + " TESTS" in open(p).read()]
print("found", found)
source = json.load(open({str(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")!r}))
'''))
    hostile = tmp_path / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    hostile.parent.mkdir()
    nbformat.write(nb, hostile)
    out = io.StringIO()
    assert grade(ASSIGNMENT, hostile, REPO, out)
    text = out.getvalue()
    assert "0 / 16 points" in text and "FileNotFoundError" in text, text
    page = (REPO / "reports" / "feedback" / f"{ASSIGNMENT}.html").read_text()
    assert "found []" in page, "a notebook with the hidden tests was within the learner's reach"
