"""lessonlib.models.cascade: confidence measures in [0, 1], who answers at a threshold (0 never defers, above 1
always defers), costs that add up along the cascade, the Pareto frontier, choosing a threshold on validation and
checking it on test, per-query results that agree with exact_match and the cost model; measured seconds."""
import numpy as np
import pytest
import torch

from lessonlib.measure.cascade import with_measured_seconds
from lessonlib.models import corpus
from lessonlib.models.cascade import (
    CascadeResults,
    answer_confidence,
    answer_flops,
    cascade_decision,
    cascade_results,
    check_threshold,
    choose_threshold,
    evaluate_cascade,
    pareto_frontier,
    single_models,
    token_confidence,
)
from lessonlib.models.checkpoints import load_pretrained
from lessonlib.models.cost_spec import spec_of
from lessonlib.models.evaluation import exact_match

from .tiny_models import one_thread, random_model  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def make(seed=0, **changes):
    return random_model(seed, varied=False, **changes)


# Three models, five queries: who is right, how sure, what it costs (FLOPs, seconds).
RESULTS = CascadeResults(
    names=["small", "medium", "large"],
    correct=[[1, 0, 1, 0, 0], [1, 1, 0, 0, 1], [1, 1, 1, 1, 0]],
    confidence=[[0.9, 0.3, 0.6, 0.5, 0.2], [0.95, 0.8, 0.4, 0.7, 0.9], [1.0, 0.9, 0.9, 0.8, 0.5]],
    flops=[[1, 1, 1, 1, 2], [10, 10, 10, 10, 20], [100, 100, 100, 100, 200]],
    seconds=[[0.1] * 5, [0.5] * 5, [2.0] * 5])


# -- confidence ----------------------------------------------------------------------------------------------------
def test_confidence_measures_lie_in_0_1_with_their_extremes():
    uniform, certain = torch.zeros(41), torch.tensor([100.0] + [0.0] * 40)
    assert token_confidence(uniform, "max_prob") == pytest.approx(1 / 41)
    assert token_confidence(uniform, "margin") == pytest.approx(0) and token_confidence(uniform, "entropy") < 1e-6
    for measure in ("max_prob", "margin", "entropy"):
        assert token_confidence(certain, measure) == pytest.approx(1)
        values = token_confidence(torch.randn(200, 41, generator=torch.Generator().manual_seed(0)) * 3, measure)
        assert ((values >= 0) & (values <= 1)).all()
    two_way = torch.tensor([0.7, 0.3, 0.0]).log()
    assert token_confidence(two_way, "margin") == pytest.approx(0.4)
    entropy = -(0.7 * np.log(0.7) + 0.3 * np.log(0.3))
    assert token_confidence(two_way, "entropy") == pytest.approx(1 - entropy / np.log(3))


def test_answer_confidence_combines_only_the_answer_s_tokens():
    probs = torch.tensor([[0.9, 0.5, 0.99, 0.1], [0.6, 0.8, 0.7, 0.2]])   # max prob of 4 tokens, 2 answers
    logits = torch.stack([probs, 1 - probs], -1).log()                      # (2, 4, 2): the max is probs
    lengths = torch.tensor([3, 2])                                          # the 0.1 and 0.7, 0.2 are past the end
    torch.testing.assert_close(answer_confidence(logits, lengths, over="min"), torch.tensor([0.5, 0.6]))
    torch.testing.assert_close(answer_confidence(logits, lengths, over="mean"), torch.tensor([2.39 / 3, 0.7]))
    torch.testing.assert_close(answer_confidence(logits, lengths, over="first"), torch.tensor([0.9, 0.6]))
    with pytest.raises(ValueError, match="over must be one of min, mean, first"):
        answer_confidence(logits, lengths, over="max")
    with pytest.raises(ValueError, match="confidence measure must be one of max_prob, margin, entropy"):
        token_confidence(logits, "logit")


# -- the decision and its evaluation -----------------------------------------------------------------------------
def test_threshold_0_never_defers_and_above_1_always_defers():
    assert (cascade_decision(RESULTS.confidence, 0.0) == 0).all()
    for above in (1.0001, 2.0, np.inf):
        assert (cascade_decision(RESULTS.confidence, above) == 2).all()
    # at exactly 1 only certain answers stay: none of the first two models' here
    assert (cascade_decision(RESULTS.confidence, 1.0) == 2).all()


def test_a_query_stays_at_the_first_model_confident_enough():
    assert cascade_decision(RESULTS.confidence, 0.6).tolist() == [0, 1, 0, 1, 1]
    assert cascade_decision(RESULTS.confidence, 0.85).tolist() == [0, 2, 2, 2, 1]
    # one threshold per stage: 0.85 for the small model, 0.75 for the medium one
    assert cascade_decision(RESULTS.confidence, [0.85, 0.75]).tolist() == [0, 1, 2, 2, 1]
    assert cascade_decision(RESULTS.confidence[:1], 0.99).tolist() == [0] * 5   # one model answers everything


def test_costs_add_up_along_the_cascade():
    curve = evaluate_cascade(RESULTS, [0.0, 0.6, 0.85, 2.0])
    # threshold 0: the small model alone
    assert curve.accuracy[0] == pytest.approx(0.4) and curve.cost[0] == pytest.approx(6 / 5)
    # 0.6: answered by small, medium, small, medium, medium: right, right, right, wrong, right
    assert curve.accuracy[1] == pytest.approx(0.8)
    assert curve.cost[1] == pytest.approx((1 + 11 + 1 + 11 + 22) / 5)
    # 0.85: small, large, large, large, medium: all right
    assert curve.accuracy[2] == pytest.approx(1.0)
    assert curve.cost[2] == pytest.approx((1 + 111 + 111 + 111 + 22) / 5)
    # above 1: every query pays all three models
    assert curve.accuracy[3] == pytest.approx(0.8) and curve.cost[3] == pytest.approx((111 * 4 + 222) / 5)
    np.testing.assert_allclose(curve.answered_by, [[1, 0, 0], [0.4, 0.6, 0], [0.2, 0.2, 0.6], [0, 0, 1]])
    np.testing.assert_allclose(curve.deferral_rate, [[0, 0], [0.6, 0], [0.8, 0.6], [1, 1]])
    seconds = evaluate_cascade(RESULTS, [0.0, 2.0], cost="seconds")
    np.testing.assert_allclose(seconds.cost, [0.1, 2.6])
    alone = single_models(RESULTS)
    assert alone["names"].tolist() == ["small", "medium", "large"]
    np.testing.assert_allclose(alone["accuracy"], [0.4, 0.6, 0.8])
    np.testing.assert_allclose(alone["cost"], [1.2, 12, 120])


def test_per_stage_threshold_grids_are_evaluated_setting_by_setting():
    grid = np.array([[0.85, 0.75], [0.0, 2.0]])
    curve = evaluate_cascade(RESULTS, grid)
    assert curve.thresholds.shape == (2, 2)
    assert curve.accuracy[0] == pytest.approx(np.mean([1, 1, 1, 1, 1]))
    assert curve.point(1)["answered_by"] == [1, 0, 0]


def test_bad_thresholds_and_results_fail_clearly():
    for bad in (-0.1, np.nan):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\] \(0: never defer\), or above 1"):
            cascade_decision(RESULTS.confidence, bad)
    with pytest.raises(ValueError, match=r"one per setting and stage \(K, 2\) for 3 models"):
        evaluate_cascade(RESULTS, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"confidences must lie in \[0, 1\]"):
        cascade_decision([[0.5, 1.2], [0.3, 0.2]], 0.5)
    with pytest.raises(ValueError, match="no measured seconds"):
        evaluate_cascade(CascadeResults(["a"], [[True]], [[0.5]], [[1.0]]), cost="seconds")
    with pytest.raises(ValueError, match="confidence has shape"):
        CascadeResults(["a", "b"], [[True], [False]], [[0.5]], [[1.0], [2.0]])


def test_the_pareto_frontier_keeps_the_points_nothing_beats():
    points = [(3, 0.7), (1, 0.5), (2, 0.5), (2, 0.8), (4, 0.8), (5, 0.9), (1, 0.5), (0.5, 0.2)]
    assert pareto_frontier(points).tolist() == [7, 1, 3, 5]
    curve = evaluate_cascade(RESULTS)
    frontier = pareto_frontier(np.stack([curve.cost, curve.accuracy], 1))
    assert (np.diff(curve.cost[frontier]) > 0).all() and (np.diff(curve.accuracy[frontier]) > 0).all()
    with pytest.raises(ValueError, match=r"points must be \(K, 2\)"):
        pareto_frontier([1, 2, 3])


def test_choose_the_cheapest_threshold_meeting_the_target_and_check_it_on_test():
    # accuracy is 0.4 up to a threshold of 0.2, 0.6 up to 0.3, then 0.8 (the medium model takes query 1): the
    # first grid point past 0.3 is the cheapest setting that reaches 0.8
    choice = choose_threshold(RESULTS, 0.8)
    assert choice.met and choice.threshold == pytest.approx(0.31) and choice.accuracy == pytest.approx(0.8)
    assert choice.cost == pytest.approx((1 + 11 + 1 + 1 + 22) / 5)
    curve = evaluate_cascade(RESULTS)
    assert choice.cost == curve.cost[curve.accuracy >= 0.8].min()
    assert str(choice) == "threshold 0.31 reaches 80.0% (target 80.0%) at 7.2 flops per query"
    check = check_threshold(RESULTS, choice)
    assert check["met"] and check["accuracy"] == choice.accuracy and check["cost"] == choice.cost
    # tuned on all five queries, the threshold for 50% falls short on queries 1 and 3 (the small model fails both)
    assert not check_threshold(RESULTS.take([1, 3]), choose_threshold(RESULTS, 0.5))["met"]
    # per-stage grids choose a row
    grid = np.array([[0.85, 0.75], [0.31, 0.31], [0.0, 0.0]])
    assert choose_threshold(RESULTS, 0.8, grid).threshold.tolist() == [0.31, 0.31]
    with pytest.raises(ValueError, match=r"accuracy_target is a fraction .* in \[0, 1\]"):
        choose_threshold(RESULTS, 80)


def test_no_threshold_reaching_the_target_is_said_plainly():
    no_model_right_on_query_4 = RESULTS.take([0, 1, 2, 3, 4])
    no_model_right_on_query_4.correct[:, 4] = False
    impossible = choose_threshold(no_model_right_on_query_4, 0.9)
    assert not impossible.met and impossible.threshold is None and impossible.accuracy == pytest.approx(0.8)
    assert 0.7 < impossible.best_threshold <= 0.8   # the setting where the large model takes queries 2 and 3
    assert str(impossible).startswith("no threshold reaches 90.0%: the most accurate, 0.71, reaches 80.0%")
    with pytest.raises(ValueError, match="nothing to check: no threshold reaches 90.0%"):
        check_threshold(RESULTS, impossible)


def test_splitting_and_taking_queries_keeps_every_array_aligned():
    validation, test = RESULTS.split(0.6, seed=1)
    assert validation.n_queries == 3 and test.n_queries == 2
    both = np.concatenate([validation.flops, test.flops], 1)
    assert sorted(both[2].tolist()) == sorted(RESULTS.flops[2].tolist())
    assert RESULTS.take([4]).seconds.shape == (3, 1)


def test_a_split_by_task_halves_every_task():
    tasks = np.array(list("aaaabbbbbbcc"))
    results = CascadeResults(["m"], [[True] * 12], [[0.5] * 12], [np.arange(12.0)], tasks=tasks)
    for seed in range(5):
        first, second = results.split(0.5, seed=seed, by_task=True)
        assert sorted(first.tasks.tolist()) == sorted(second.tasks.tolist()) == list("aabbbc")
        assert sorted(np.concatenate([first.flops[0], second.flops[0]]).tolist()) == list(range(12))
    halves = [results.split(0.5, seed, by_task=True)[0].flops for seed in (0, 1)]
    assert not np.array_equal(*halves)
    with pytest.raises(ValueError, match="no tasks to stratify by"):
        RESULTS.split(0.5, by_task=True)


# -- per-query results of real models ----------------------------------------------------------------------------
LINES = corpus.make_lines(6, seed=3, tasks="crsa")


def test_per_query_results_agree_with_exact_match_and_the_cost_model():
    trained, _ = load_pretrained("tiny-gpt")
    lines = corpus.make_lines(24, seed=11, tasks="crsa", difficulty="easy")
    random_model = make()
    results = cascade_results([random_model, trained], lines, ["random", "tiny-gpt"])
    assert results.correct.shape == (2, 24) and results.tasks.tolist() == [line[0] for line in lines]
    assert results.correct[1].mean() == pytest.approx(exact_match(trained, lines)) and results.correct[1].mean() > 0.5
    assert results.correct[0].mean() == exact_match(random_model, lines)
    assert ((results.confidence >= 0) & (results.confidence <= 1)).all()
    # a right answer ends with its newline: the prefill, then a decode step per further token
    spec = spec_of(trained)
    right = int(np.flatnonzero(results.correct[1])[0])
    line = lines[right]
    start = line.index(">") + 1
    assert results.flops[1, right] == answer_flops(spec, start + 1, len(line) - start + 1) == \
        spec.prefill_flops(start + 1) + sum(spec.flops_per_token(start + 1 + i) for i in range(len(line) - start))
    # the trained model is more confident in its right answers than in its wrong ones
    sure = results.confidence[1]
    assert sure[results.correct[1]].mean() > sure[~results.correct[1]].mean()


def test_per_query_results_refuse_mismatched_vocabularies_and_lines_without_answers():
    with pytest.raises(ValueError, match=r"vocabularies differ \(\[40, 41\] tokens\)"):
        cascade_results([make(), make(vocab_size=40)], LINES)
    with pytest.raises(ValueError, match="has no answer to score"):
        cascade_results([make()], ["t the dog sees a cat."])
    with pytest.raises(ValueError, match="1 names for 2 models"):
        cascade_results([make(), make(1)], LINES, ["one"])


def test_measured_seconds_fill_in_and_serve_as_a_cost():
    models = [make(), make(1, n_layers=4)]
    results = with_measured_seconds(cascade_results(models, LINES), models, LINES, repeats=1)
    assert results.seconds.shape == (2, 6) and (results.seconds > 0).all()
    curve = evaluate_cascade(results, [0.0, 2.0], cost="seconds")
    np.testing.assert_allclose(curve.cost, [results.seconds[0].mean(), results.seconds.sum(0).mean()])
    with pytest.raises(ValueError, match="pass the ones the results were computed on"):
        with_measured_seconds(results, models[:1], LINES)
