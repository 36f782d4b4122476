"""lessonlib.course.grading: the helper every test cell calls."""
import math
import sys
import types
import warnings

import pytest

from lessonlib import costs
from lessonlib.costs import presets, spec
from lessonlib.course.grading import Grader, assert_close, is_close, normalize_choice, uses_reference


def test_partial_credit_one_stdout_line_per_check(capsys):
    grader = Grader("Ex", points=3)
    grader.check("right", lambda: True, points=1)
    grader.check("wrong", lambda: False, points=2, hint="look at the batch size")
    assert grader.score() == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == "PASS  right [1/1]"
    assert lines[1] == "FAIL  wrong [0/2]: look at the batch size"
    assert lines[2] == "Ex: 1 / 3 points from these checks"
    assert err == ""


def test_hidden_points_are_announced_when_checks_cover_less_than_the_cell(capsys):
    grader = Grader("Ex", points=5)
    grader.check("visible", lambda: True, points=2)
    assert grader.score() == 2
    assert "3 more points decided by hidden checks" in capsys.readouterr().out


def test_errors_in_student_code_fail_the_check_without_raising(capsys):
    grader = Grader("Ex", points=4)
    grader.check("boom", lambda: 1 / 0, points=1)
    grader.check("todo", lambda: (_ for _ in ()).throw(NotImplementedError()), points=1)
    grader.check("undefined", lambda: undefined_name, points=1)  # noqa: F821
    grader.check("assertion", lambda: assert_close(3, 4, what="bytes"), points=1)
    assert grader.score() == 0
    out = capsys.readouterr().out
    assert "ZeroDivisionError: division by zero" in out
    assert "not answered yet" in out
    assert "NameError" in out and "run that cell" in out
    assert "bytes: expected 4, got 3" in out


def test_warnings_and_stderr_of_a_right_answer_cost_nothing_and_reach_only_stdout(capsys):
    def noisy():
        warnings.warn("old API", DeprecationWarning, stacklevel=2)
        print("progress...", file=sys.stderr)
        return True

    grader = Grader("Ex", points=1)
    grader.check("noisy but right", noisy, points=1)
    assert grader.score() == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert "DeprecationWarning: old API" in out and "progress..." in out


def test_a_failed_gate_zeroes_the_exercise(capsys):
    grader = Grader("Ex", points=2)
    grader.check("right", True, points=2)
    grader.gate("own code", False, hint="do not call the reference")
    assert grader.score() == 0
    assert "this exercise scores 0" in capsys.readouterr().out


def test_checks_worth_more_than_the_cell_are_an_authoring_error():
    grader = Grader("Ex", points=1)
    grader.check("a", True, points=1)
    with pytest.raises(ValueError, match="worth 2 points but the cell is worth 1"):
        grader.check("b", True, points=1)


def test_a_check_returning_none_fails():
    grader = Grader("Ex", points=1)
    assert not grader.check("forgot to return", lambda: None, points=1)


def test_assert_close_and_is_close():
    assert assert_close(1.0 + 1e-9, 1.0)
    assert is_close(0, 0.0)
    assert not is_close("12", 12)
    assert not is_close(True, 1)
    assert not is_close(float("nan"), 1.0)
    with pytest.raises(AssertionError, match="should be a number"):
        assert_close(None, 1)


@pytest.mark.parametrize("answer", ["B", "b", " b ", "(B)", "B)", "B.", "[b]"])
def test_normalize_choice_accepts_a_letter_written_any_reasonable_way(answer):
    assert normalize_choice(answer, {"A": "", "B": ""}) == "B"


def test_normalize_choice_rejects_non_options_and_uses_aliases():
    assert normalize_choice("Z", {"A": ""}) is None
    assert normalize_choice(2, {"A": ""}) is None
    assert normalize_choice("Memory Reduction", {"memory": ""}, {"memory reduction": "memory"}) == "memory"


def test_uses_reference_sees_direct_module_and_closure_use():
    from lessonlib.costs.spec import ModelSpec

    def own(x):
        return 2 * x

    def via_class(x):
        return ModelSpec  # noqa: B018

    def via_module(x):
        return spec.ModelSpec.from_hf_config(x)

    namespace = {"lessonlib": __import__("lessonlib.costs.presets")}
    exec("def via_package(x):\n    return lessonlib.costs.presets.model_preset(x)\n", namespace)

    def outer():
        reference = presets.model_preset

        def inner():
            return reference("gpt2")
        return inner

    assert not uses_reference(own, costs)
    assert uses_reference(via_class, costs)
    assert uses_reference(via_module, costs)
    assert uses_reference(namespace["via_package"], costs)
    assert uses_reference(outer(), costs)
    assert not uses_reference(math.sqrt, costs)
    assert uses_reference(lambda: types, types)
    # The answer is the reference itself, imported under the exercise's name.
    assert uses_reference(presets.model_preset, costs)
    assert uses_reference(spec.ModelSpec.from_hf_config, costs)


def test_torch_functions_called_sees_a_fused_kernel_however_it_is_reached():
    import torch
    from torch.nn.functional import scaled_dot_product_attention as renamed

    from lessonlib.course.grading import torch_functions_called

    q = torch.randn(1, 2, 3, 4)

    def helper(x):
        return renamed(x, x, x)

    def by_hand(x):
        return (x @ x.transpose(-1, -2)).softmax(-1) @ x

    assert "scaled_dot_product_attention" in torch_functions_called(lambda: helper(q))
    assert "scaled_dot_product_attention" not in torch_functions_called(by_hand, q)
    assert "softmax" in torch_functions_called(by_hand, q)


def test_runs_reference_sees_what_runs_not_what_is_written():
    """A helper that calls the reference is caught; an unused import or another module's display helper is not."""
    from lessonlib.core.units import human_bytes
    from lessonlib.costs import spec as spec_module
    from lessonlib.course.grading import runs_reference

    def helper(config):
        return spec_module.ModelSpec.from_hf_config(config).n_params()

    def via_helper(config):
        return helper(config)

    def own_with_debug_print(config):
        print("debug", human_bytes(1536))          # a display helper, not the cost model
        return 2 * config["vocab_size"]

    def mentions_but_never_calls(config):
        if False:
            return spec_module.ModelSpec
        return 1

    config = {"model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 4}
    assert runs_reference(lambda: via_helper(config), costs)
    assert runs_reference(lambda: spec_module.ModelSpec.from_hf_config(config), spec_module.ModelSpec)
    assert not runs_reference(lambda: own_with_debug_print(config), costs)
    assert not runs_reference(lambda: mentions_but_never_calls(config), costs)
    assert not runs_reference(lambda: 1 / 0, costs)   # the answer's own error is not a reference call


def test_stderr_of_a_right_answer_costs_nothing_however_it_is_written(capsys):
    """logging configured earlier (its handler holds the stderr stream of that time), os.write to fd 2, and
    print to sys.stderr: all reported on stdout, nothing on stderr."""
    import logging
    import os

    logger = logging.getLogger("learner")
    handler = logging.StreamHandler(sys.stderr)      # what logging.basicConfig() sets up in an answer cell
    logger.addHandler(handler)
    try:
        def noisy():
            logger.warning("from a logging handler")
            os.write(2, b"from file descriptor 2\n")
            print("to sys.stderr", file=sys.stderr)
            return True

        grader = Grader("noisy", points=1)
        assert grader.check("noisy but right", noisy)
        out, err = capsys.readouterr()
        assert err == "" and "PASS  noisy but right" in out and "no points lost" in out
    finally:
        logger.removeHandler(handler)
