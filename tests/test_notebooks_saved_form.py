"""Committed notebooks are in the form JupyterLab saves them: opening one in JupyterLab does not mark it modified,
so autosave never rewrites a learner's file before they change anything (and `git pull` of notebooks/ does not
clash with a file they only looked at). See lessonlib/course/notebook_form.py for what JupyterLab changes."""
import json
import shutil
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from lessonlib.course.notebook_form import language_info, saved_form, text_of

from .browser import chromium_page, lab_server, require_chromium
from .conftest import REPO

NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb")) + sorted((REPO / "notebooks").glob("*/*.ipynb"))
THIS_PYTHON = sys.version.split()[0]


def _id(path):
    return str(path.relative_to(REPO))


def _committed_version(path):
    return json.loads(path.read_text())["metadata"].get("language_info", {}).get("version")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_file_is_written_as_jupyter_writes_it_with_the_kernel_metadata(path):
    text = path.read_text(encoding="utf-8")
    version = _committed_version(path)
    assert version, f"{_id(path)}: no language_info.version; run `make release`"
    expected = text_of(saved_form(nbformat.reads(text, as_version=4), version))
    assert text == expected, f"{_id(path)} is not in JupyterLab's saved form: run `make release`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebooks_carry_this_environments_python_version(path):
    version = _committed_version(path)
    if version != THIS_PYTHON:
        pytest.skip(f"the notebooks carry Python {version}, this environment runs {THIS_PYTHON}: opening them here "
                    "changes language_info.version (only that); `make release` with the course's Python sets it")


def test_the_metadata_written_is_what_the_kernel_reports():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    assert notebook.metadata["language_info"] == language_info()


def test_opening_and_saving_in_jupyterlab_changes_nothing(tmp_path_factory):
    """Every committed notebook, opened in a real JupyterLab until its kernel is idle: not marked modified, and
    saving it without an edit writes the same bytes."""
    executable = require_chromium()
    root = tmp_path_factory.mktemp("lab-root-saved-form")
    copies = {}
    for path in NOTEBOOKS:
        target = root / path.parent.parent.name / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8")
        if _committed_version(path) != THIS_PYTHON:  # see test_notebooks_carry_this_environments_python_version
            text = text_of(saved_form(nbformat.reads(text, as_version=4), THIS_PYTHON))
        target.write_text(text, encoding="utf-8")
        copies[target.relative_to(root).as_posix()] = text
    problems = []
    with lab_server(root, tmp_path_factory.mktemp("lab-home-saved-form")) as (base, token), \
            chromium_page(executable) as page:
        for relative, text in copies.items():
            page.goto(f"{base}/lab/tree/{relative}?token={token}&reset", timeout=120_000)
            page.wait_for_function(
                """() => {
                    const k = document.querySelector('.jp-Toolbar-kernelName');
                    const s = document.querySelector('#jp-main-statusbar');
                    return k && k.textContent.includes('Python 3') && s && s.textContent.includes('Idle');
                }""", timeout=120_000)
            time.sleep(1.0)  # let the kernel-info reply reach the model
            dirty = page.evaluate(
                "() => { const w = jupyterapp.shell.currentWidget; return w.context.model.dirty; }")
            page.evaluate("() => jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function(
                "() => !jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
            time.sleep(0.5)
            saved = (root / relative).read_text(encoding="utf-8")
            if dirty:
                problems.append(f"{relative}: marked modified on open")
            if saved != text:
                problems.append(f"{relative}: saving without an edit changed the file")
    shutil.rmtree(root, ignore_errors=True)
    assert not problems, "\n".join(problems)
