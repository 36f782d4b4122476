"""What lessons 00 and 01 build on: the learner's function or the reference (with a note that says which), the
reference answers (equal to the cost model), sentences that follow the measurement, and the roofline figure."""
import json
from importlib import resources

import matplotlib
import pytest

from lessonlib.core.timing import Timing
from lessonlib.costs.hardware import hardware_preset
from lessonlib.costs.overheads import fit_overheads
from lessonlib.costs.presets import model_preset
from lessonlib.costs.roofline import decode_step, prefill
from lessonlib.course import answers
from lessonlib.lessons import inference_costs, references
from lessonlib.measure.calibration import Calibration

matplotlib.use("Agg")


@pytest.fixture
def notes(monkeypatch):
    shown = []
    monkeypatch.setattr(answers, "_show", shown.append)
    return shown


def _unanswered(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("namespace, why", [
    ({"f": _unanswered}, "not answered yet"),
    ({}, "not defined yet"),
    ({"f": lambda *a: 1 / 0}, "ZeroDivisionError"),
    ({"f": lambda *a: "many"}, "not a number"),
    ({"f": lambda *a: float("nan")}, "not a number"),
], ids=["unanswered", "undefined", "raises", "returns text", "returns nan"])
def test_an_unusable_answer_falls_back_to_the_reference_and_says_so(notes, namespace, why):
    chosen = answers.yours_or_reference("f", namespace, references.flops_saved_by_kv_cache, "Exercise 3b",
                                        example=(7e9, 1000))
    assert chosen is references.flops_saved_by_kv_cache
    assert len(notes) == 1 and "Exercise 3b" in notes[0] and why in notes[0] and "reference" in notes[0]


def test_a_working_answer_is_used_even_when_it_disagrees(notes):
    def mine(n_params, prefix_len):
        print("debugging")  # a print in the learner's function is not shown by the check
        return n_params * prefix_len

    assert answers.yours_or_reference("f", {"f": mine}, references.flops_saved_by_kv_cache, "Exercise 3b",
                                      example=(7e9, 1000)) is mine
    assert "does not agree" in notes[-1] and "your" in notes[-1]
    right = lambda n_params, prefix_len: 2 * n_params * prefix_len  # noqa: E731
    assert answers.yours_or_reference("f", {"f": right}, references.flops_saved_by_kv_cache, "Exercise 3b",
                                      example=(7e9, 1000)) is right
    assert notes[-1].startswith("✔")


def test_a_numpy_boolean_is_a_usable_answer(notes):
    import numpy as np

    mine = lambda intensity, peak, bandwidth: np.float64(intensity) < peak / bandwidth  # noqa: E731
    assert answers.yours_or_reference("f", {"f": mine}, references.is_memory_bound, "Exercise 3c",
                                      example=(1.0, 312e12, 2.039e12)) is mine
    assert notes[-1].startswith("✔")


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-2-70b", "llama-3-8b", "mistral-7b"])
def test_the_reference_answers_agree_with_the_cost_model(name):
    config = json.loads((resources.files("lessonlib") / "data" / "models" / f"{name}.json").read_text())
    spec = model_preset(name)
    assert references.count_params(config) == spec.n_params()
    assert references.conversation_kv_bytes(config, 1000) == spec.kv_cache_bytes(1000)
    assert references.kv_cache_bytes(spec.n_layers, spec.n_kv_heads, spec.head_dim, 1000, 3) == \
        spec.kv_cache_bytes(1000, 3)


def test_the_reference_edge_cases_are_the_ones_the_instructions_state():
    assert references.max_batch_that_fits(4e9, 1e9, 8e9) == 0          # weights fill the device exactly
    assert references.max_batch_that_fits(5e9, 1e9, 8e9) == 0          # weights do not fit
    assert references.max_batch_that_fits(1e9, 1e9, 5e9) == 3          # rounding down
    assert references.is_memory_bound(100.0, 200e12, 2e12) is False    # exactly at the ridge point
    assert references.is_memory_bound(99.0, 200e12, 2e12) is True
    assert references.flops_saved_by_kv_cache(3e9, 0) == 0


def test_lesson_03_reference_counts_agree_with_the_cost_model():
    config = json.loads((resources.files("lessonlib") / "data" / "models" / "mixtral-8x7b.json").read_text())
    spec = model_preset("mixtral-8x7b")
    assert references.moe_params(config) == (spec.n_params(), spec.n_active_params())
    total = spec.n_params()
    assert references.fits(config, total * 2, 2) is True and references.fits(config, total * 2 - 1, 2) is False
    # A dense model as one "expert" (Exercise 03b-4's Y): the count includes a router of d weights per layer
    # that a dense model does not have, as the instructions say: 0.002% of Mistral-7B.
    dense = json.loads((resources.files("lessonlib") / "data" / "models" / "mistral-7b.json").read_text())
    dense |= {"num_local_experts": 1, "num_experts_per_tok": 1}
    extra = references.moe_params(dense)[0] - model_preset("mistral-7b").n_params()
    assert extra == dense["num_hidden_layers"] * dense["hidden_size"]


def test_lesson_03_reference_plans_flip_with_the_budget():
    """Precision, memory left and offloading each flip the deployment decision of Exercise 03b-4a."""
    x = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
         "num_attention_heads": 16, "num_key_value_heads": 4, "num_local_experts": 8, "num_experts_per_tok": 2}
    y = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 1, "num_experts_per_tok": 1}
    phone = dict(bandwidth=76.8e9, flash_bandwidth=4.2e9)

    def choice(bytes_per_param, budget, flash):
        return references.plan(dict(phone, bytes_per_param=bytes_per_param, budget_bytes=budget,
                                    experts_in_flash=flash), x, y, 0.45)[4]

    assert [choice(1, 4.8e9, False), choice(0.5, 4.8e9, False), choice(0.5, 2.4e9, False), choice(1, 2.4e9, True),
            choice(0.5, 2.4e9, True), choice(2, 2e9, False)] == ["Y", "X", "Y", "X", "Y", None]


def test_a_tensor_result_is_compared_element_by_element(notes):
    import torch

    mine = lambda logits, k: references.top_k_routing(logits, k)  # noqa: E731
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    assert answers.yours_or_reference("f", {"f": mine}, references.top_k_routing, "Exercise 1a",
                                      example=(logits, 2)) is mine
    assert notes[-1].startswith("✔")
    off = lambda logits, k: (references.top_k_routing(logits, k)[0] * 2, references.top_k_routing(logits, k)[1])  # noqa: E731
    assert answers.yours_or_reference("f", {"f": off}, references.top_k_routing, "Exercise 1a",
                                      example=(logits, 2)) is off
    assert "does not agree" in notes[-1]


def test_first_true_finds_the_threshold_by_bisection():
    calls = []

    def at_least_165(n):
        calls.append(n)
        return n >= 165

    assert inference_costs.first_true(at_least_165, 1, 2**20) == 165 and len(calls) < 30
    assert inference_costs.first_true(lambda n: False, 1, 100) is None
    assert inference_costs.first_true(lambda n: True, 1, 0) is None


STEADY = (1e-3, 1.01e-3, 1.02e-3)
BUSY = (1e-3, 3e-3, 4e-3)


def _t(seconds, samples=STEADY):
    return Timing(tuple(s / samples[0] * seconds for s in samples))


def test_cache_summary_follows_the_numbers():
    contexts = [8, 240]
    text = inference_costs.cache_summary(contexts, [_t(1e-3), _t(1e-3)], [_t(2e-3), _t(9e-3)], [1e-4, 1e-4],
                                         3e6, 1e10)
    assert "**9.0x** faster" in text and "**10x** as long as the roofline's floor" in text
    text = inference_costs.cache_summary(contexts, [_t(1e-3), _t(5e-3)], [_t(2e-3), _t(1e-3)], [1e-2, 1e-1],
                                         3e6, 1e10)
    assert "**slower**" in text and "faster than streaming" in text
    busy = inference_costs.cache_summary(contexts, [_t(1e-3, BUSY), _t(1e-3)], [_t(2e-3), _t(9e-3)],
                                         [1e-4, 1e-4], 3e6, 1e10)
    assert "busy" in busy and "faster" not in busy


def _calibration(reliable=True):
    depths = (1, 2, 4, 8)
    excess = [2e-4 + 5e-5 * d for d in depths] if reliable else [9e-4, 2e-4, 8e-4, 3e-4]
    return Calibration(fit_overheads(depths, excess, [0.0] * 4),
                       tuple(_t(e, STEADY if reliable else BUSY) for e in excess))


def test_calibration_summary_never_draws_a_conclusion_from_a_failed_fit():
    good = inference_costs.calibration_summary(_calibration(), 4, 1e-5)
    assert "50 µs per layer" in good and "overhead, not bytes or FLOPs" in good
    bad = inference_costs.calibration_summary(_calibration(reliable=False), 4, 1e-5)
    assert "Not to be trusted" in bad and "no test of the cost model" in bad and "sets the time" not in bad


def test_prediction_summary_says_under_or_over_only_when_the_numbers_do():
    tiny, cpu = model_preset("gpt2"), hardware_preset("raspberry-pi-5")
    step = decode_step(tiny, cpu, "fp32", 8, 1)
    agree = [(_t(step.seconds), step)]
    under = [(_t(step.seconds * 3), step)]
    over = [(_t(step.seconds / 3), step)]
    assert "**under-predicts**" in inference_costs.prediction_summary(agree, under, _calibration(), 4.0)
    assert "**over-predicts**" in inference_costs.prediction_summary(agree, over, _calibration(), 4.0)
    text = inference_costs.prediction_summary(agree, agree, _calibration(), 4.0)
    assert "predicts" not in text and text.count("agree") == 2
    busy = inference_costs.prediction_summary(agree, under, _calibration(reliable=False), 4.0)
    assert busy.startswith("No verdict") and "under-predicts" not in busy


def test_kernel_summary_reads_the_attention_rate_against_the_copy_bandwidth():
    shares = {"matrix products": 0.4, "attention": 0.1, "other operators": 0.5}
    assert "fall short" in inference_costs.kernel_summary(shares, 241, 1e6, _t(1e-3), 1e10, 64)
    assert "CPU's own caches" in inference_costs.kernel_summary(shares, 241, 1e8, _t(1e-3), 1e10, 64)
    assert "busy" in inference_costs.kernel_summary(shares, 241, 1e6, _t(1e-3, BUSY), 1e10, 64)


def test_roofline_figure_keeps_its_legend_off_the_lines_and_merges_coinciding_labels():
    import matplotlib.pyplot as plt

    from lessonlib.display import plots

    a100, llama = hardware_preset("a100-80gb"), model_preset("llama-2-7b")
    same = decode_step(llama, a100, "bf16", 1024, 1)
    fig, ax = plt.subplots()
    plots.roofline(ax, [a100], "bf16", [same, same, prefill(llama, a100, "bf16", 2048)], ["a", "b", "c"])
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["a / b", "c"]
    anchor = ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted())
    assert anchor.x0 >= 1.0, "the legend sits right of the axes"
    plt.close(fig)


def test_a_grading_run_skips_the_profile_and_says_so(monkeypatch):
    from lessonlib.measure.profiling import time_shares

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert time_shares(lambda: None) == {}
    text = inference_costs.kernel_summary({}, 241, 1e6, Timing((1e-3,), shortened=True), 1e10, 64)
    assert "grading run" in text.lower()


def test_a_steady_calibration_that_the_line_does_not_fit_is_not_blamed_on_a_busy_machine():
    depths = (1, 2, 4, 8)
    excess = [1e-5, 2e-5, 4e-5, 6e-4]  # steady timings, but the time jumps once the model leaves the CPU's caches
    calibration = Calibration(fit_overheads(depths, excess, [0.0] * 4), tuple(_t(e) for e in excess))
    assert not calibration.reliable and not calibration.noisy
    text = inference_costs.calibration_summary(calibration, 4, 1e-5)
    assert "steady" in text and "busy" not in text and "Not to be trusted" in text


def test_answers_that_return_arrays_are_compared_element_by_element(notes):
    import numpy as np

    def reference(x):
        return np.array([0, 1, 2]) * x

    assert answers.yours_or_reference("f", {"f": lambda x: [0, x, 2 * x]}, reference, "Exercise 1", example=(3,)) \
        is not reference
    assert "Using **your**" in notes[-1] and "does not agree" not in notes[-1]
    answers.yours_or_reference("f", {"f": lambda x: np.array([0, x, 3 * x])}, reference, "Exercise 1", example=(3,))
    assert "does not agree" in notes[-1]
    answers.yours_or_reference("f", {"f": lambda x: np.array([0, x])}, reference, "Exercise 1", example=(3,))
    assert "does not agree" in notes[-1]
    answers.yours_or_reference("f", {"f": lambda x: "text"}, reference, "Exercise 1", example=(3,))
    assert "does not agree" in notes[-1]


def test_tables_right_align_numbers_and_left_align_labels_such_as_2_4():
    from lessonlib.display.output import looks_numeric

    for number in (3, 2.5, "1,234", "-0.5", "3.2e+09", "12%", "1.5x", "25.6 GB", "3.20 ms"):
        assert looks_numeric(number), number
    for label in ("2:4", "top-2", "Mistral-7B", "yes", True, "", "structured 50%"):
        assert not looks_numeric(label), label
