"""The committed student release equals what `nbgrader generate_assignment` makes from solutions/ now."""
import json

import nbformat

from .conftest import REPO


def _normalized(path):
    # Compare parsed notebooks: JSON key order and indentation are formatting, not content.
    return json.loads(json.dumps(nbformat.read(path, as_version=4), sort_keys=True))


def test_committed_release_matches_a_fresh_generate_assignment(graded):
    fresh = sorted(p.name for p in graded.released_dir.iterdir())
    committed_dir = REPO / "notebooks" / graded.assignment
    assert committed_dir.is_dir(), f"notebooks/{graded.assignment} is missing: run `make release`"
    assert sorted(p.name for p in committed_dir.iterdir()) == fresh, "run `make release` and commit notebooks/"
    for path in graded.released_dir.glob("*.ipynb"):
        assert _normalized(committed_dir / path.name) == _normalized(path), (
            f"notebooks/{graded.assignment}/{path.name} is out of date with solutions/: run `make release` "
            "and commit the result")
