"""Every assignment through a real `nbgrader autograde`, scores read back from nbgrader's gradebook.

Covers each folder of solutions/ automatically: the solution scores full marks, the blank release scores 0,
each plausible wrong answer in tests/wrong_answers/<assignment>.py loses exactly the points it should (and
nothing elsewhere), and right answers written differently from the solution still score full marks.
"""
import pytest

from .conftest import REPO
from .submissions import load_variants


def test_autograde_ran_cleanly(graded):
    assert graded.result.returncode == 0, f"nbgrader autograde failed:\n{graded.result.stderr[-3000:]}"
    missing = set(graded.students) - set(graded.scores)
    assert not missing, f"no grades recorded for {sorted(missing)}"


def test_solution_scores_full_marks(graded):
    score = graded.scores["solution"]
    assert graded.test_cells, "the assignment has no autograded test cells"
    lost = {gid: (c.score, c.max_score) for gid, c in score.cells.items()
            if not c.graded_by_hand and c.score != c.max_score}
    assert not lost, f"the solution loses points in {lost}"
    assert score.auto_score == sum(graded.test_cells.values())


def test_blank_release_scores_zero(graded):
    score = graded.scores["blank"]
    earned = {gid: c.score for gid, c in score.cells.items() if c.score}
    assert not earned, f"the blank release earns points in {earned}"


def test_blank_release_runs_to_the_end_without_a_traceback(graded):
    """Run All on an untouched release goes through (issue 9, item 15): an unanswered value answer is a
    placeholder, not a raise, and the cells after an unanswered exercise print a note instead of failing. Only
    calling an unanswered function raises, and the test cells report that as a FAIL line, not an error."""
    import nbformat

    course = graded.released_dir.parent.parent
    notebooks = list((course / "autograded" / "blank" / graded.assignment).glob("*.ipynb"))
    assert notebooks, "nbgrader wrote no autograded notebook for the blank release"
    errors = [f"cell {i} ({c.metadata.get('nbgrader', {}).get('grade_id', 'no grade id')}): {o.ename}: "
              f"{str(o.evalue)[:120]}"
              for nb in notebooks for i, c in enumerate(nbformat.read(nb, as_version=4).cells)
              if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "the blank release stops Run All at:\n" + "\n".join(errors)


def test_right_answers_written_differently_score_full_marks(graded):
    for student, variant in graded.variants(wrong=False):
        score = graded.scores[student]
        assert score.auto_score == score.auto_max, (
            f"{variant.name}: {score.auto_score}/{score.auto_max}; lost in "
            f"{ {g: c.score for g, c in score.cells.items() if not c.graded_by_hand and c.score != c.max_score} }")


def test_wrong_answers_lose_exactly_the_expected_points(graded):
    problems = []
    for student, group in graded.students.items():
        if not group or not group[0].wrong:
            continue
        expected = {gid: points for v in group for gid, points in v.expect.items()}
        owner = {gid: v.name for v in group for gid in v.expect}
        for gid, full in graded.test_cells.items():
            got = graded.scores[student].cells[gid].score
            want = expected.get(gid, full)
            if got != want:
                who = owner.get(gid, "an unrelated exercise")
                problems.append(f"{gid}: expected {want}, got {got} ({who})")
    assert not problems, "\n".join(problems)


def test_each_wrong_answer_scores_between_zero_and_full(graded):
    total = sum(graded.test_cells.values())
    for _, variant in graded.variants(wrong=True):
        lost = sum(graded.test_cells[gid] - points for gid, points in variant.expect.items())
        assert 0 < total - lost < total, f"{variant.name} would score {total - lost} of {total}"
        assert all(points < graded.test_cells[gid] for gid, points in variant.expect.items()), \
            f"{variant.name} expects full marks on a cell it targets"


@pytest.mark.parametrize("assignment", sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()))
def test_every_exercise_has_at_least_two_wrong_answers(assignment):
    import nbformat

    from lessonlib.course.autograde import assignments

    assert assignment in assignments(REPO), f"solutions/{assignment} holds no notebook"
    source = nbformat.read(next((REPO / "solutions" / assignment).glob("*.ipynb")), as_version=4)
    test_cells = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
                  if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    counts = {gid: 0 for gid in test_cells}
    for variant in load_variants(REPO, assignment):
        for gid in variant.expect if variant.wrong else ():
            counts[gid] = counts.get(gid, 0) + 1
    thin = {gid: n for gid, n in counts.items() if n < 2}
    assert not thin, (f"tests/wrong_answers/{assignment}.py needs at least two plausible wrong answers for "
                      f"each test cell; too few for {thin}")
