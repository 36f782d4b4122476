"""`make grade` (lessonlib.course.selfgrade): a learner grades their notebook against the hidden tests."""
import io
import shutil

from lessonlib.course.selfgrade import grade

from .conftest import REPO

ASSIGNMENT = "00_orientation"


def test_blank_notebook_scores_zero_and_lists_what_to_do(tmp_path):
    out = io.StringIO()
    assert grade(ASSIGNMENT, REPO / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", REPO, out)
    text = out.getvalue()
    assert "0 / 16 points" in text
    assert "TODO  an answer cell still raises NotImplementedError" in text
    assert "graded by hand" in text


def test_a_renamed_copy_is_graded_under_the_right_name(tmp_path):
    copy = tmp_path / ASSIGNMENT / "my attempt.ipynb"
    copy.parent.mkdir()
    shutil.copy(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", copy)
    out = io.StringIO()
    assert grade(ASSIGNMENT, copy, REPO, out)
    assert "16 / 16 points" in out.getvalue()


def test_a_broken_notebook_gets_a_clear_message_and_nothing_changes(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    out = io.StringIO()
    assert not grade(ASSIGNMENT, broken, REPO, out)
    assert "not a readable notebook" in out.getvalue() and "Nothing was changed" in out.getvalue()
    assert broken.read_text() == '{"cells": ['
