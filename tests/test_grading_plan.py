"""What a grading run may skip (lessonlib.course.plan): demonstrations nothing graded depends on, never a test, an
answer or the learner's own code, and never a lesson cell whose names or objects a kept cell uses. Whether
skipping changes a score is proved end to end in test_class_grading.py; this pins down the analysis itself."""
import copy

import nbformat
import pytest

from lessonlib.course import plan

from .conftest import ASSIGNMENTS, REPO


def lesson(assignment):
    name = f"{assignment}.ipynb"
    source = nbformat.read(REPO / "solutions" / assignment / name, as_version=4)
    release = nbformat.read(REPO / "notebooks" / assignment / name, as_version=4)
    lesson_sources = frozenset(plan.normalize(c.source) for c in release.cells
                               if c.cell_type == "code" and plan.role_of(c, frozenset()) == plan.STUDENT)
    return source, lesson_sources


def binders(cells, name):
    return [i for i, c in enumerate(cells) if c.cell_type == "code" and name in plan.facts(c.source).binds]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_tests_answers_and_setup_always_run_and_some_demonstrations_are_skipped(assignment):
    source, lesson_sources = lesson(assignment)
    planned = plan.plan(source.cells, lesson_sources)
    for cell in planned.cells:
        if cell.role in (plan.TEST, plan.ANSWER, plan.STUDENT):
            assert not cell.skip, f"{assignment}: cell {cell.index} ({cell.role}) would be skipped"
    first_code = next(c for c in planned.cells if c.facts is not None)
    assert not first_code.skip, "the setup cell (imports, %matplotlib, seeds) must run"
    assert planned.skipped, f"{assignment}: nothing skipped"


@pytest.mark.parametrize("assignment, names", [
    ("03a_mixture_of_experts", ("usage", "layer_timing")),                  # routing statistics, a timing run
    ("03b_pruning_and_the_edge", ("sweep", "results", "contenders")),      # the pruning sweep, scored models
])
def test_the_heavy_demonstrations_of_lesson_03_are_skipped(assignment, names):
    source, lesson_sources = lesson(assignment)
    planned = plan.plan(source.cells, lesson_sources)
    skipped = {c.index for c in planned.skipped}
    for name in names:
        assert set(binders(source.cells, name)) <= skipped, name


def last_test(cells):
    return max(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade")
               and c.cell_type == "code")


def test_a_student_cell_that_uses_a_demonstration_keeps_it():
    source, lesson_sources = lesson("03b_pruning_and_the_edge")
    cells = copy.deepcopy(source.cells)
    cells.insert(last_test(cells), nbformat.v4.new_code_cell("print(results)"))
    planned = plan.plan(cells, lesson_sources)
    assert not planned.cells[last_test(cells) - 1].skip, "the student's cell always runs"
    assert binders(cells, "results")
    for index in binders(cells, "results"):
        assert not planned.cells[index].skip, "the cell that scores `results` must run for the student's cell"


def test_nothing_after_the_last_test_runs():
    source, lesson_sources = lesson("03b_pruning_and_the_edge")
    cells = copy.deepcopy(source.cells)
    cells.append(nbformat.v4.new_code_cell("print(results)\nwhile True:\n    pass"))
    planned = plan.plan(cells, lesson_sources)
    after = [c for c in planned.cells if c.index > last_test(cells) and c.facts is not None]
    assert after and all(c.skip for c in after)
    assert binders(cells, "results") and all(planned.cells[i].skip for i in binders(cells, "results"))
    everything = plan.plan(cells, lesson_sources, skip_demonstrations=False)
    assert not everything.skipped, "--run-everything runs every cell"


def test_a_name_rebound_before_it_is_used_is_not_read_from_an_earlier_cell():
    fresh = plan.facts("rows = []\nfor k in (1, 2):\n    spec = k * 2\n    rows.append(spec)\ntable(rows)")
    assert {"rows", "spec"} <= fresh.binds and not {"rows", "spec", "k"} & fresh.reads, fresh.reads
    assert "rows" in plan.facts("rows.append(1)\nrows = []").reads          # used before it is rebound
    assert "rows" in plan.facts("rows = rows + [1]").reads                   # the old value builds the new one
    assert "rows" in plan.facts("if ok:\n    rows = []\nrows.append(1)").reads   # bound on one branch only
    assert "rows" in plan.facts("def show():\n    print(rows)\nshow()\nrows = []").reads
    assert "x" in plan.facts("x = 1\ndel x\nprint(x)").reads                # deleted, then read
    assert "rows" in plan.facts("with suppress(KeyError):\n    rows = f()\nprint(rows)").reads   # may not run
    assert "rows" in plan.facts("try:\n    rows = f()\nexcept KeyError:\n    pass\nprint(rows)").reads
    assert "rows" not in plan.facts("with open('f') as f:\n    rows = f.read()\nprint(rows)").reads


def test_the_course_fallback_helper_reads_one_name_and_is_not_a_dynamic_lookup():
    cell = plan.facts('fn = yours_or_reference("count_params", globals(), references.count_params, "Exercise 1")')
    assert "count_params" in cell.reads and not cell.effects, cell
    assert "calls globals()" in plan.facts("f(globals())").effects
    cells = [nbformat.v4.new_code_cell("import lessonlib\nplot = [1, 2, 3]"),
             nbformat.v4.new_code_cell('fn = yours_or_reference("plot", globals(), len, "Exercise 1")'),
             nbformat.v4.new_code_cell("fn([1])")]
    cells[-1].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "t",
                                      "points": 1}
    planned = plan.plan(cells, frozenset(plan.normalize(c.source) for c in cells[:-1]))
    assert not planned.dynamic and not planned.skipped, "the test reads fn, which reads plot"


def test_a_lesson_cell_that_mutates_what_a_test_reads_is_kept():
    cells = [nbformat.v4.new_code_cell("import torch\nCONFIG = {'a': 1}"),
             nbformat.v4.new_code_cell("CONFIG['a'] = 2"),                 # a mutation, not a binding
             nbformat.v4.new_code_cell("torch.manual_seed(1)"),            # global state
             nbformat.v4.new_code_cell("plot = [1, 2, 3]"),                # nothing needs it
             nbformat.v4.new_code_cell("x = CONFIG['a']\nx")]
    cells[-1].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "t",
                                      "points": 1}
    lesson_sources = frozenset(plan.normalize(c.source) for c in cells[:-1])
    planned = plan.plan(cells, lesson_sources)
    assert [c.skip for c in planned.cells] == [False, False, False, True, False]


def test_dynamic_name_lookups_keep_everything():
    cells = [nbformat.v4.new_code_cell("plot = [1, 2, 3]"), nbformat.v4.new_code_cell("print(globals()['plot'])")]
    planned = plan.plan(cells, frozenset([plan.normalize(cells[0].source)]))
    assert planned.dynamic and not planned.skipped


def test_cells_go_back_to_the_lessons_order_and_student_cells_stay_with_their_neighbour():
    source, lesson_sources = lesson("00_orientation")
    positions = {}
    for i, c in reversed(list(enumerate(source.cells))):
        positions[c.metadata.get("nbgrader", {}).get("grade_id") or plan.normalize(c.source)] = i
    cells = copy.deepcopy(source.cells)
    test = cells.pop(next(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade_id")
                          == "q1_tests"))
    cells.insert(0, test)
    helper = nbformat.v4.new_code_cell("helper = 1")
    answer = next(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "q2_answer")
    cells.insert(answer + 1, helper)
    order = plan.lesson_order(cells, positions)
    reordered = [cells[i] for i in order]
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in reordered]
    assert ids.index("q1_answer") < ids.index("q1_tests")
    assert reordered[ids.index("q2_answer") + 1] is helper


def test_a_test_cell_that_looks_names_up_in_globals_keeps_what_it_names():
    cells = [nbformat.v4.new_code_cell("import math\nHELPER = 2\nPLOT = [1]"),
             nbformat.v4.new_code_cell("SCALE = 3"),
             nbformat.v4.new_code_cell("CHART = [2]"),
             nbformat.v4.new_code_cell('ok = callable(globals().get("HELPER")) or globals()["SCALE"] > 1\nok')]
    cells[-1].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "t",
                                      "points": 1}
    lesson_sources = frozenset(plan.normalize(c.source) for c in cells[:-1])
    planned = plan.plan(cells, lesson_sources)
    assert not planned.dynamic
    assert [c.skip for c in planned.cells] == [False, False, True, False]
    cells.insert(3, nbformat.v4.new_code_cell('print(globals()["CH" + "ART"])'))   # a learner's lookup: unknown
    planned = plan.plan(cells, lesson_sources)
    assert planned.dynamic and not planned.skipped
