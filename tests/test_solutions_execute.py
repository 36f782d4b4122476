"""Every solution notebook runs top to bottom without error, offline, within the 60 s budget; run times are
recorded in reports/notebook-times.json."""
import time

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import ASSIGNMENTS, REPO, record_time

BUDGET_SECONDS = 60


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_notebook_executes(assignment, monkeypatch):
    path = next((REPO / "solutions" / assignment).glob("*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    seconds = time.perf_counter() - start
    record_time(assignment, "solution_execute_seconds", seconds)

    stderr = [(i, o["text"][:300]) for i, c in enumerate(notebook.cells) if c.cell_type == "code"
              for o in c.outputs if o.get("name") == "stderr"
              and c.metadata.get("nbgrader", {}).get("grade")]
    assert not stderr, f"test cells wrote to stderr (nbgrader would score them 0): {stderr}"
    assert seconds <= BUDGET_SECONDS, f"{assignment} took {seconds:.1f} s; the budget is {BUDGET_SECONDS} s"
