"""lessonlib.lessons.cascading and lesson 04's reference answers: chatbot-like traffic, the oracle router, how well
a confidence separates right from wrong, the learner's cascade and speculative loop run on the course's models;
the references agree with lessonlib's own implementations."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lessonlib.costs import variants
from lessonlib.costs.hardware import hardware_preset
from lessonlib.costs.memory import largest_batch
from lessonlib.costs.presets import model_preset
from lessonlib.costs.roofline import decode_step
from lessonlib.lessons import references
from lessonlib.lessons.cascading import (
    LogitsFn,
    acceptance_by_draft_len,
    curve_with,
    greedy_tokens,
    oracle_routing,
    prompt_tokens,
    random_routing,
    run_learner_speculative,
    separation,
    traffic,
)
from lessonlib.models.cascade import CascadeResults, choose_threshold, evaluate_cascade

from .tiny_models import assert_options_balanced, one_thread, random_model  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(seed=0, **changes):
    return random_model(seed, varied=True, **changes)


def random_results(seed, m=3, n=60):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0, 1, (m, n)).round(2)                # ties with the thresholds happen
    return CascadeResults([f"m{i}" for i in range(m)], rng.uniform(0, 1, (m, n)) < 0.3 + 0.6 * confidence,
                          confidence, rng.integers(1, 5, (m, n)) * 10.0 ** np.arange(m)[:, None])


def test_traffic_is_deterministic_and_follows_the_mix():
    lines, difficulty = traffic(2000, seed=3)
    assert (lines, difficulty.tolist()) == (traffic(2000, seed=3)[0], traffic(2000, seed=3)[1].tolist())
    shares = {d: (difficulty == d).mean() for d in ("easy", "mixed", "hard")}
    assert shares == pytest.approx({"easy": 0.5, "mixed": 0.3, "hard": 0.2}, abs=0.03)
    assert {line[0] for line in lines} == set("crsa") and all(">" in line for line in lines)
    assert traffic(50, 1, {"hard": 1.0})[1].tolist() == ["hard"] * 50
    with pytest.raises(ValueError, match="add up to 1"):
        traffic(10, mix={"easy": 0.5})
    with pytest.raises(ValueError, match="positive whole number"):
        traffic(0)


def test_the_oracle_sends_each_query_to_the_cheapest_model_that_answers_it_right():
    correct = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0]]
    cost = [[1, 1, 1, 1], [10, 10, 10, 10], [100, 100, 100, 100]]
    oracle = oracle_routing(correct, cost)
    assert oracle.model.tolist() == [0, 1, 2, 0]
    np.testing.assert_allclose(oracle.needs, [0.25, 0.25, 0.25, 0.25])
    assert oracle.accuracy == 0.75 and oracle.cost == pytest.approx((1 + 10 + 100 + 1) / 4)
    with pytest.raises(ValueError, match="both be"):
        oracle_routing(correct, [[1, 2]])


def test_random_routing_is_the_upper_envelope_of_the_models_alone():
    costs, accuracies = [1, 10, 30, 12], [0.3, 0.7, 0.68, 0.5]      # the last two cost more than the second and
    np.testing.assert_allclose(random_routing(costs, accuracies, [1, 5.5, 10, 20, 100]),      # are less accurate
                               [0.3, 0.5, 0.7, 0.7, 0.7])
    assert np.isnan(random_routing(costs, accuracies, 0.5))          # cheaper than the cheapest model: no mix
    # a middle model above the chord stays on the envelope
    assert random_routing([0, 1, 2], [0.0, 0.9, 1.0], 1) == pytest.approx(0.9)
    assert random_routing([0, 1, 2], [0.0, 0.4, 1.0], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one number per model"):
        random_routing([1, 2], [0.5], 1)


def test_separation_is_the_area_under_the_roc_curve():
    assert separation([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert separation([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert separation([1, 0], [0.5, 0.5]) == 0.5
    assert separation([1, 0, 1, 0], [0.9, 0.7, 0.6, 0.8]) == 0.5
    assert math.isnan(separation([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_references_agree_with_lessonlib_s_cascade(seed):
    results = random_results(seed)
    for threshold in (0.0, 0.3, 0.5, 0.99, 1.0, 1.5):
        expected = evaluate_cascade(results, [threshold])
        answering = references.cascade_decision(results.confidence, threshold)
        assert references.cascade_cost(results.flops, answering) == pytest.approx(expected.cost[0])
        np.testing.assert_allclose(np.bincount(answering, minlength=3) / results.n_queries, expected.answered_by[0])
    grid = np.append(np.arange(101) / 100, np.inf)
    curve = curve_with(references.cascade_decision, references.cascade_cost, results.correct, results.confidence,
                       results.flops, grid)
    expected = evaluate_cascade(results, grid)
    np.testing.assert_allclose(curve["accuracy"], expected.accuracy)
    np.testing.assert_allclose(curve["cost"], expected.cost)
    np.testing.assert_allclose(curve["answered_by"], expected.answered_by)
    for target in (0.5, 0.6, 0.7, 0.99):
        chosen = choose_threshold(results, target, grid)
        mine = references.cheapest_threshold(results.correct, results.confidence, results.flops, grid, target)
        assert mine == chosen.threshold or (mine is None and not chosen.met)


def test_logits_fn_counts_passes_and_speaks_plainly():
    model = make(0)
    fn = LogitsFn(model)
    logits = fn([1, 2, 3])
    assert logits.shape == (3, 41) and fn.passes == 1 and fn.positions == 3
    torch.testing.assert_close(fn(torch.tensor([1, 2, 3])), model(torch.tensor([[1, 2, 3]])).logits[0])
    with pytest.raises(AttributeError, match="call it as model"):
        fn.generate(torch.tensor([[1]]), 3)
    with pytest.raises(ValueError, match="exceed the model's 64 positions"):
        fn(list(range(41)) * 2)
    with pytest.raises(ValueError, match="at least one token"):
        fn([])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_the_reference_speculative_loop_is_exact_and_counts_its_target_passes(k):
    target, draft = make(0), make(1, n_layers=1)
    prompts = [[3, 9, 4], [7, 1, 1, 20, 5]]
    run = run_learner_speculative(references.speculative_greedy, target, draft, prompts, 21, k)
    assert run.identical == 2 and run.new_tokens == 42 and run.target_passes <= 42
    perfect = run_learner_speculative(references.speculative_greedy, target, target, prompts, 21, k)
    assert perfect.identical == 2 and perfect.target_passes == 2 * math.ceil(21 / (k + 1))
    assert references.speculative_greedy(LogitsFn(target), LogitsFn(draft), [3, 9], 1, 4) == \
        greedy_tokens(target, [3, 9], 1)


def test_acceptance_by_draft_length_counts_every_round():
    target = make(0)
    points = acceptance_by_draft_len(target, target, [[3, 9, 4]], 20, [1, 4])
    assert [p.draft_len for p in points] == [1, 4]
    assert all(p.stats.acceptance_rate == 1.0 and p.stats.new_tokens == 20 for p in points)
    assert points[1].stats.target_passes == 4
    assert prompt_tokens("c abc>abc") == prompt_tokens("c abc>xyz") and len(prompt_tokens("c abc>abc")) == 7


@pytest.mark.parametrize("name, precision", [("llama-2-7b", "bf16"), ("llama-2-7b", "int8"), ("mixtral-8x7b", "int8")])
def test_conversations_per_gpu_is_the_largest_batch_within_memory_and_latency(name, precision):
    spec, a100 = model_preset(name), hardware_preset("a100-80gb")
    for latency in (0.02, 0.03, 0.05):
        batch = references.conversations_per_gpu(spec, precision, a100, 4096, latency)
        assert batch <= largest_batch(spec, a100.memory_bytes, precision, 4096)
        if batch:
            assert decode_step(spec, a100, precision, 4096, batch).seconds <= latency
        if 0 < batch < largest_batch(spec, a100.memory_bytes, precision, 4096):
            assert decode_step(spec, a100, precision, 4096, batch + 1).seconds > latency
    gqa = variants.with_kv_heads(spec, 8) if name == "llama-2-7b" else spec
    assert references.conversations_per_gpu(gqa, precision, a100, 4096, 1.0) >= \
        references.conversations_per_gpu(spec, precision, a100, 4096, 1.0)


def test_lesson_04_multiple_choice_options_do_not_give_the_answer_away_by_length():
    """Balanced options: the longest at most 1.2x the shortest (the same rule as lessons 00 and 02)."""
    assert_options_balanced(REPO / "solutions" / "04_cascading" / "04_cascading.ipynb")
