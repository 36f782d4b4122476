"""Committed notebooks: valid, without outputs, with well-formed nbgrader metadata, and a release for every
source."""
import re
from pathlib import Path

import nbformat
import pytest

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb")) + sorted((REPO / "notebooks").glob("*/*.ipynb"))
GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under solutions/ and notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_is_valid_and_has_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    with_outputs = [i for i, c in enumerate(notebook.cells)
                    if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not with_outputs, f"{_id(path)}: cells {with_outputs} have outputs; clear them before committing"


@pytest.mark.parametrize("path", sorted((REPO / "solutions").glob("*/*.ipynb")), ids=_id)
def test_nbgrader_metadata_is_well_formed(path):
    notebook = nbformat.read(path, as_version=4)
    seen = set()
    for index, cell in enumerate(notebook.cells):
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        where = f"{_id(path)} cell {index}"
        assert meta.get("schema_version") == 3, f"{where}: schema_version must be 3"
        for key in ("grade", "solution", "locked"):
            assert isinstance(meta.get(key), bool), f"{where}: {key} must be true or false"
        grade_id = meta.get("grade_id", "")
        assert GRADE_ID.match(grade_id), f"{where}: grade_id {grade_id!r} must match {GRADE_ID.pattern}"
        assert grade_id not in seen, f"{where}: duplicate grade_id {grade_id!r}"
        seen.add(grade_id)
        if meta["grade"]:
            assert isinstance(meta.get("points"), (int, float)) and meta["points"] >= 0, f"{where}: points"
        if meta["grade"] and not meta["solution"]:
            assert cell.cell_type == "code" and meta["locked"], f"{where}: test cells are locked code cells"
            assert cell.source.rstrip().splitlines()[-1].strip() == "grader.score()", (
                f"{where}: a test cell ends with grader.score() so its value is the points earned")
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3", f"{_id(path)}: kernel python3"


def test_every_source_notebook_has_a_release():
    sources = {p.relative_to(REPO / "solutions") for p in (REPO / "solutions").glob("*/*.ipynb")}
    releases = {p.relative_to(REPO / "notebooks") for p in (REPO / "notebooks").glob("*/*.ipynb")}
    assert sources == releases, f"only in solutions/: {sources - releases}; only in notebooks/: {releases - sources}"


# A hidden check's name reaches the learner (its PASS/FAIL line is in the feedback page) while its code does not,
# so the name describes what is checked and never the verdict: no yes/no or True/False outcome, and no quantity the
# learner is meant to compute ("needs 23.4 GB").
VERDICT = re.compile(r"\b(yes|True|False)\b|\bneeds? [\d.,]+\s*[KMGT]i?B\b")
CHECK_NAME = re.compile(r"""grader\.(?:check|gate)\(\s*f?(["'])(.*?)\1""", re.S)


@pytest.mark.parametrize("path", sorted((REPO / "solutions").glob("*/*.ipynb")), ids=_id)
def test_hidden_check_names_do_not_state_their_answer(path):
    from lessonlib.course.plan import split_hidden

    named = [(cell.metadata["nbgrader"]["grade_id"], match.group(2))
             for cell in nbformat.read(path, as_version=4).cells
             if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code"
             for match in CHECK_NAME.finditer(split_hidden(cell.source)[1])]
    assert named, f"{_id(path)}: no hidden checks found: is the pattern still right?"
    telling = [(grade_id, name) for grade_id, name in named if VERDICT.search(name)]
    assert not telling, f"{_id(path)}: hidden check names that state their answer: {telling}"


FIGSIZE = re.compile(r"figsize=\(\s*([\d.]+)\s*,\s*([\d.]+)\s*\)")
SOURCES = sorted((REPO / "solutions").glob("*/*.ipynb"))


@pytest.mark.parametrize("path", SOURCES + sorted((REPO / "lessonlib").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_figures_fit_a_laptop_screen(path):
    """A figure wider than 9 inches is shrunk to the notebook's width on a laptop, and its ticks become unreadable
    (issue 9, item 18)."""
    text = path.read_text()
    if path.suffix == ".ipynb":
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    wide = [m.group(0) for m in FIGSIZE.finditer(text) if float(m.group(1)) > 9]
    assert not wide, f"{path.name}: {wide}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.parent.name)
def test_every_lesson_asks_for_a_prediction_before_its_key_measurements(path):
    prompts = sum(c.source.count("Predict before you run")
                  for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    assert prompts >= 2, f"{path.name} has {prompts} 'Predict before you run' prompts"
