"""Formgrader's "autograde" runs the course's class grading: a Jupyter server extension for instructors.

nbgrader's formgrader autogrades a submission with plain nbgrader, which runs the student's code as the instructor,
in the course folder, unconfined. With this extension loaded, its autograde button (and its REST endpoint,
``POST formgrader/api/submission/<assignment>/<student>/autograde``) runs ``coursegrade autograde <assignment>
--student <student>`` instead: the same sandbox, limits and gradebook records as the command line. Everything
else in formgrader (manual grading, feedback, release, collect) is nbgrader's own.

The class's JupyterHub enables it in each instructor's ~/.jupyter (hub/setup_hub.py); elsewhere:

    jupyter server extension enable --user lessonlib.course.formgrader
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def coursegrade_autograde(api, assignment_id: str, student_id: str, force: bool = True, create: bool = True) -> dict:
    """NbGraderAPI.autograde's contract (a dict with success, log and, on failure, error), done by coursegrade in
    its own process. ``create`` is always so: coursegrade adds a student missing from the gradebook."""
    command = [sys.executable, "-m", "lessonlib.course.cli", "autograde", assignment_id,
               "--student", student_id, "--quiet"] + (["--force"] if force else [])
    result = subprocess.run(command, cwd=api.coursedir.root, capture_output=True, text=True)
    log = result.stdout + result.stderr
    if result.returncode == 0:
        return {"success": True, "log": log}
    return {"success": False, "log": log,
            "error": f"coursegrade autograde exited with {result.returncode}:\n{log.strip()[-2000:]}"}


def _jupyter_server_extension_points():
    return [{"module": "lessonlib.course.formgrader"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from nbgrader.apps.api import NbGraderAPI

    NbGraderAPI.autograde = coursegrade_autograde
    serverapp.log.info("formgrader autogrades with coursegrade (%s)", Path(__file__).name)
