"""nbgrader inside JupyterLab as `make lab` starts it (the course root as the server's root and working folder, so
nbgrader reads nbgrader_config.py): its extensions are installed and enabled, the notebook toolbar has the
Validate button and the menu bar an Nbgrader menu, validating a solution notebook from the UI reports success,
and formgrader lists the course's assignments. Works on a scratch copy of the course (formgrader writes a
gradebook into the course root). Screenshots go to reports/screenshots/lab-*.png."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .browser import SCREENSHOTS, chromium_page, lab_server, require_chromium
from .conftest import ASSIGNMENTS, REPO

JUPYTER = str(Path(sys.executable).parent / "jupyter")
VALIDATED = "00_orientation"   # the quickest solution to run


def _clean(text: str) -> str:
    """Jupyter's extension lists colour their words: drop the ANSI escapes."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _listed(*command: str) -> str:
    done = subprocess.run([JUPYTER, *command], capture_output=True, text=True)
    return _clean(done.stdout + done.stderr)


def test_nbgraders_lab_and_server_extensions_are_installed_and_enabled():
    lab = _listed("labextension", "list")
    line = next((row for row in lab.splitlines() if "@jupyter/nbgrader" in row), "")
    assert "enabled" in line and "OK" in line, lab
    server = _listed("server", "extension", "list")
    for extension in ("formgrader", "validate_assignment", "assignment_list"):
        assert f"nbgrader.server_extensions.{extension} enabled" in server, server


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    executable = require_chromium()
    course = tmp_path_factory.mktemp("lab-course")
    for folder in ("solutions", "notebooks"):
        shutil.copytree(REPO / folder, course / folder)
    shutil.copy(REPO / "nbgrader_config.py", course)
    with lab_server(course, tmp_path_factory.mktemp("lab-home"), cwd=course) as (base, token), \
            chromium_page(executable) as page:
        page.set_default_timeout(120_000)
        path = f"solutions/{VALIDATED}/{VALIDATED}.ipynb"
        page.goto(f"{base}/lab/tree/{path}?token={token}&reset")
        page.wait_for_function(
            """() => {
                const k = document.querySelector('.jp-Toolbar-kernelName');
                const s = document.querySelector('#jp-main-statusbar');
                return k && k.textContent.includes('Python 3') && s && s.textContent.includes('Idle');
            }""")
        yield page


def test_the_notebook_toolbar_has_validate_and_the_menu_bar_nbgrader(lab):
    assert lab.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-item", has_text="Validate").count() == 1
    lab.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    items = lab.locator(".lm-Menu-itemLabel").all_inner_texts()
    lab.keyboard.press("Escape")
    assert {"Formgrader", "Assignment List", "Create assignment"} <= set(items), items


def test_validating_a_solution_from_the_ui_reports_success(lab):
    lab.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-item", has_text="Validate").click()
    dialog = lab.locator(".jp-Dialog")
    dialog.wait_for()
    # Validation runs the whole notebook (its hidden tests included) in a fresh kernel.
    lab.wait_for_function("() => !document.querySelector('.jp-Dialog').innerText.includes('Validating')",
                          timeout=300_000)
    text = dialog.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lab.screenshot(path=str(SCREENSHOTS / "lab-validate.png"))
    assert "Success! Your notebook passes all the tests." in text, text
    lab.keyboard.press("Escape")


def test_formgrader_opens_and_lists_the_course_assignments(lab):
    lab.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    lab.locator(".lm-Menu-itemLabel").get_by_text("Formgrader", exact=True).click()
    frame = lab.frame_locator("iframe").last
    frame.get_by_text("Manage Assignments").first.wait_for()
    for assignment in ASSIGNMENTS:
        frame.get_by_text(assignment, exact=True).first.wait_for()
    lab.screenshot(path=str(SCREENSHOTS / "lab-formgrader.png"))
