"""Notebooks committed in the form JupyterLab saves them, so that opening one does not modify it.

JupyterLab 4.6 rewrites a notebook's ``metadata.language_info`` with what the kernel reports as soon as the
kernel starts; when that differs from the file (nbgrader writes only ``{"name": "python"}``), the notebook is
marked modified before anything runs and autosave rewrites the learner's file, which then clashes with
``git pull``. Everything else JupyterLab writes (cell ids, nbformat 4.5, one-space indentation, sorted keys, a
final newline) is what nbformat writes already (checked by opening and saving every notebook in a real
JupyterLab: tests/test_notebooks_saved_form.py).

The kernel reports the Python version it runs on, so the form depends on it: the notebooks carry the version
of the Python that runs ``make release``, the course environment's, which is the kernel JupyterLab starts for
``make lab``. A learner on another Python version still sees that one field change on open; nothing in a file
can prevent it.

    python -m lessonlib.course.notebook_form solutions notebooks
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def language_info(version: str | None = None) -> dict:
    """What the IPython kernel reports about its language (ipykernel's ``IPythonKernel.language_info``)."""
    return {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": version or sys.version.split()[0],
    }


def saved_form(notebook: nbformat.NotebookNode, version: str | None = None) -> nbformat.NotebookNode:
    """The notebook with the kernel metadata JupyterLab would write on open (changed in place and returned)."""
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["language_info"] = language_info(version)
    return notebook


def text_of(notebook: nbformat.NotebookNode) -> str:
    """The file's text as Jupyter's server writes it."""
    text = nbformat.writes(notebook, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def normalize(path: Path, version: str | None = None) -> bool:
    """Rewrite ``path`` in the saved form; True when that changed the file."""
    before = path.read_text(encoding="utf-8")
    after = text_of(saved_form(nbformat.reads(before, as_version=4), version))
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or [Path("solutions"), Path("notebooks")]
    for folder in folders:
        for path in sorted(folder.glob("*/*.ipynb")):
            if normalize(path):
                print(f"{path}: kernel metadata set as JupyterLab saves it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
