"""Lesson 04's dashboard: the cascade's threshold moves accuracy, cost and deferral along the frontier, the draft
length sets speculative decoding's expected gain; callbacks never raise on extreme values and answer quickly."""
import math
import time

import numpy as np
import pytest

from lessonlib.costs.speculative import expected_speedup, expected_tokens_per_pass
from lessonlib.dashboards.cascading import (
    MAX_DRAFT_LEN,
    CascadeView,
    MeasuredDraft,
    cascade_report,
    cascading_dashboard,
    speculative_report,
)
from lessonlib.models.cascade import CascadeResults, evaluate_cascade

RNG = np.random.default_rng(0)
N = 300
CONFIDENCE = RNG.uniform(0, 1, (3, N))
RESULTS = CascadeResults(["small", "medium", "large"],
                         correct=RNG.uniform(0, 1, (3, N)) < np.array([[0.3], [0.6], [0.8]]) + 0.2 * CONFIDENCE,
                         confidence=CONFIDENCE,
                         flops=np.array([[1e6], [8e6], [3e7]]) * RNG.uniform(0.8, 1.2, (3, N)))
VIEW = CascadeView.of(RESULTS, target=0.8)
MEASURED = {2: MeasuredDraft(0.8, 2.3, 1.3), 4: MeasuredDraft(0.75, 3.0, None)}


def test_the_view_holds_the_curve_its_frontier_and_the_single_models():
    curve = evaluate_cascade(RESULTS, VIEW.grid)
    np.testing.assert_allclose(VIEW.cost, curve.cost / 1e9)
    assert VIEW.unit == "GFLOP" and len(VIEW.frontier) >= 2
    assert np.all(np.diff(VIEW.cost[VIEW.frontier]) >= 0) and np.all(np.diff(VIEW.accuracy[VIEW.frontier]) > 0)
    np.testing.assert_allclose(VIEW.single_accuracy, RESULTS.correct.mean(axis=1))
    in_mflop = CascadeView.of(RESULTS, flops_unit="MFLOP")
    np.testing.assert_allclose(in_mflop.cost, 1e3 * VIEW.cost)
    assert "MFLOP</b> per query" in cascade_report(in_mflop, 0.5)[0]
    with pytest.raises(ValueError, match="flops_unit must be one of kFLOP, MFLOP, GFLOP"):
        CascadeView.of(RESULTS, flops_unit="TFLOP")


@pytest.mark.parametrize("threshold", [0.0, 0.37, 0.999, 1.0, 1.01, 50.0, math.inf, np.float64(0.5)])
def test_the_cascade_report_shows_the_exact_setting(threshold):
    html, svg = cascade_report(VIEW, threshold)
    point = evaluate_cascade(RESULTS, [float(threshold)]).point(0)
    assert f"{point['accuracy']:.1%}" in html and "<svg" in svg and "this threshold" in svg
    if threshold == 0:
        assert "small 100%" in html and "past small: 0%" in html
    if threshold > 1:
        assert "always defers" in html and "large 100%" in html


@pytest.mark.parametrize("bad", [-0.01, -math.inf, math.nan, "0.5", None, True])
def test_a_bad_threshold_is_explained_not_raised(bad):
    html, chart = cascade_report(VIEW, bad)
    assert "Cannot show this setting" in html and chart is None


@pytest.mark.parametrize("alpha, k, c", [(0.8, 4, 0.3), (0.0, 1, 0.0), (1.0, MAX_DRAFT_LEN, 1.5), (1.0, 1000, 0.0),
                                         (0.5, 3, 100.0), (np.float64(0.7), np.int64(5), np.float32(0.2))])
def test_the_speculative_report_gives_leviathan_s_numbers(alpha, k, c):
    html, chart = speculative_report(alpha, k, c, MEASURED)
    assert f"{expected_tokens_per_pass(float(alpha), int(k)):.2f}</b> tokens per pass" in html
    speedup = expected_speedup(float(alpha), int(k), float(c))
    assert (f"{speedup:.2f}x" in html) and (("slower" in html) == (speedup < 1))
    assert "<svg" in chart and "expected speedup" in chart


def test_measured_points_are_reported_at_their_draft_length():
    assert "acceptance 0.80, 2.30 tokens per target pass, speedup 1.30x" in speculative_report(0.8, 2, 0.3, MEASURED)[0]
    assert "3.00 tokens per target pass" in speculative_report(0.8, 4, 0.3, MEASURED)[0]
    assert "not measured at this draft length" in speculative_report(0.8, 7, 0.3, MEASURED)[0]


@pytest.mark.parametrize("alpha, k, c", [(1.01, 4, 0.3), (-0.1, 4, 0.3), (math.nan, 4, 0.3), (0.5, 0, 0.3),
                                         (0.5, 2.5, 0.3), (0.5, True, 0.3), (0.5, 4, -1.0), (0.5, 4, math.inf),
                                         (0.5, 4, math.nan), ("0.5", 4, 0.3)])
def test_bad_speculative_settings_are_explained_not_raised(alpha, k, c):
    html, chart = speculative_report(alpha, k, c, MEASURED)
    assert "Cannot show this setting" in html and chart is None


def test_callbacks_answer_quickly():
    """A loose sanity bound on a shared machine (the p95 target is measured by benchmarks/bench_dashboards.py)."""
    cascade_report(VIEW, 0.5), speculative_report(0.8, 4, 0.3)    # the first call draws the figures
    start = time.perf_counter()
    for threshold in np.linspace(0, 1.01, 10):
        cascade_report(VIEW, float(threshold))
    for k in range(1, 11):
        speculative_report(0.8, k, 0.3, MEASURED)
    assert (time.perf_counter() - start) / 20 < 1.0


def test_the_widget_builds_and_answers():
    box = cascading_dashboard(VIEW, 0.8, 0.3, MEASURED)
    cascade_panel, speculative_panel = box.children
    threshold, report = cascade_panel.children[1], cascade_panel.children[3]
    threshold.value = 1.01
    assert "always defers" in report.value
    threshold.value = 0.0
    assert "small 100%" in report.value
    draft, spec_report = speculative_panel.children[1], speculative_panel.children[5]
    draft.value = 2
    assert "acceptance 0.80, 2.30 tokens" in spec_report.value
