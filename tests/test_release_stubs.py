"""What a learner finds where a solution was cut (issue 9, item 15): a value answer keeps its placeholder and
does not raise, so Run All goes on; a function's body raises NotImplementedError until it is written."""
import nbformat
from traitlets.config import Config

from lessonlib.course import answers
from lessonlib.course.answers import answered, is_placeholder
from lessonlib.course.grading import Grader, assert_close
from lessonlib.course.nbgrader_steps import ClearSolutionsRunAll

from .conftest import REPO

SOURCE = '''def speedup(a, b):
    ### BEGIN SOLUTION
    return a / b
    ### END SOLUTION


q2_ratio = ...
### BEGIN SOLUTION
q2_ratio = speedup(6, 3)
### END SOLUTION
if answered("Exercise 2", q2_ratio):
    print(q2_ratio)'''


def released(source: str) -> str:
    config = Config()
    config.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "grade": False, "solution": True, "locked": False, "grade_id": "q2_answer", "schema_version": 3}})
    step = ClearSolutionsRunAll(config=config)
    step.preprocess_cell(cell, {"language": "python"}, 0)
    return cell.source


def test_a_value_answer_keeps_its_placeholder_and_a_function_still_raises():
    text = released(SOURCE)
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in text      # the function's body
    assert "q2_ratio = ...\n# YOUR ANSWER HERE" in text
    assert text.count("raise NotImplementedError()") == 1
    namespace = {"answered": answered}
    exec(compile(text, "release", "exec"), namespace)                # runs through: nothing raises at the top
    assert namespace["q2_ratio"] is ...


def test_the_course_config_uses_the_run_all_stub():
    config = (REPO / "nbgrader_config.py").read_text()
    assert '"lessonlib.course.nbgrader_steps.ClearSolutionsRunAll"' in config
    assert '"nbgrader.preprocessors.ClearSolutions"' not in config


def test_every_value_answer_of_the_release_is_a_placeholder_not_a_raise():
    for notebook in sorted((REPO / "notebooks").glob("*/*.ipynb")):
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                top_level = [line for line in cell.source.splitlines() if line.startswith("raise ")]
                assert not top_level, f"{notebook.name} {cell.metadata.nbgrader.grade_id}: {top_level}"


def test_placeholders_are_recognised_and_answers_are_not(monkeypatch):
    shown = []
    monkeypatch.setattr(answers, "_show", shown.append)
    for value in (..., "?", " ? ", "...", {"a": "..."}, [1, ...]):
        assert is_placeholder(value), value
    for value in (0, 0.0, None, False, "A", "", {"a": "memory"}, [1, 2]):
        assert not is_placeholder(value), value
    assert answered("Exercise 1", 3.0, "B")
    assert not answered("Exercise 4b", 3.0, ...)
    assert len(shown) == 1 and "Exercise 4b" in shown[0] and "not answered yet" in shown[0]


def test_a_placeholder_number_fails_its_check_as_not_answered(capsys):
    grader = Grader("Exercise 4b", points=1)
    grader.check("the Pi's latency", lambda: assert_close(..., 0.01, what="seconds"), points=1)
    assert "not answered yet" in capsys.readouterr().out
    assert grader.score() == 0


def test_a_cell_showing_an_unanswered_function_notes_it_and_goes_on(monkeypatch):
    shown = []
    monkeypatch.setattr(answers, "_show", shown.append)

    def edge_plan(target, draft, k):
        raise NotImplementedError()

    def broken(target, draft, k):
        return 1 / 0

    assert answers.shown_if_answered("Exercise 4b", edge_plan, 1, 2, 4) is None
    assert answers.shown_if_answered("Exercise 4b", broken, 1, 2, 4) is None
    assert answers.shown_if_answered("Exercise 4b", lambda *a: (True, 3.0), 1, 2, 4) == (True, 3.0)
    assert "not answered yet" in shown[0] and "`edge_plan`" in shown[0]
    assert "ZeroDivisionError" in shown[1] and len(shown) == 2
