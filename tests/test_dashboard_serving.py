"""The serving trade-off (costs.serving and its dashboard): throughput against latency across batch sizes."""
import itertools
import time

import pytest

from lessonlib.costs.hardware import hardware_preset, hardware_preset_names
from lessonlib.costs.precision import PRECISIONS
from lessonlib.costs.presets import model_preset, model_preset_names
from lessonlib.costs.serving import best_within, serving_curve
from lessonlib.dashboards.serving import TARGETS_MS, serving_dashboard, serving_report

LLAMA, A100 = model_preset("llama-3-8b"), hardware_preset("a100-80gb")


def test_batching_raises_throughput_and_latency_together():
    points = serving_curve(LLAMA, A100, "bf16", 2048)
    assert [p.batch_size for p in points] == [2**k for k in range(11)]
    assert all(b.throughput > a.throughput for a, b in itertools.pairwise(points))
    assert all(b.latency >= a.latency for a, b in itertools.pairwise(points))
    # Memory-bound at batch 1: doubling the batch costs each user far less than double the time.
    assert points[1].latency < 1.2 * points[0].latency and points[0].step.bound == "memory"


def test_best_within_a_target_is_the_fastest_batch_that_fits_and_meets_it():
    points = serving_curve(LLAMA, A100, "bf16", 2048)
    best = best_within(points, 0.05)
    assert best.fits and best.latency <= 0.05
    assert all(p.throughput <= best.throughput for p in points if p.fits and p.latency <= 0.05)
    assert best_within(points, 1e-6) is None
    with pytest.raises(ValueError, match="positive number"):
        best_within(points, 0)


def test_report_names_the_chosen_batch_and_marks_what_does_not_fit():
    html, svg = serving_report("llama-3-8b", "a100-80gb", "bf16", 4096, 50)
    assert "batch 64" in html and "does not fit" in html and "if it fit)" in html
    assert "<svg" in svg and "most tokens/s within the target (batch 64)" in svg


def test_a_target_no_batch_meets_and_a_model_that_does_not_fit_read_as_sentences():
    html, _ = serving_report("llama-3-8b", "raspberry-pi-5", "int4", 1024, 5)   # batch 1 takes ~250 ms per token
    assert "No batch meets 5.00 ms per token" in html and "even batch 1 waits" in html
    html, svg = serving_report("llama-2-70b", "raspberry-pi-5", "bf16", 1024, 50)
    assert "Not even one sequence fits" in html and "<svg" in svg


@pytest.mark.parametrize("bad", [dict(target_ms=0), dict(target_ms=-3), dict(context_len=-1),
                                 dict(precision="fp8"), dict(model="gpt-9"), dict(bandwidth_x=0),
                                 dict(target_ms=float("nan")), dict(context_len="long")])
def test_impossible_values_give_a_message_not_a_traceback(bad):
    html, svg = serving_report(**bad)
    assert "Cannot evaluate" in html and svg is None


def test_every_model_hardware_and_precision_renders_quickly():
    """A sanity bound only; benchmarks/bench_dashboards.py measures p50/p95 against the 50 ms target."""
    times = []
    for model, hardware, precision in itertools.product(model_preset_names(), hardware_preset_names(), PRECISIONS):
        if hardware == "this-machine":
            continue
        start = time.perf_counter()
        html, svg = serving_report(model, hardware, precision, 131072, TARGETS_MS[0])
        times.append(time.perf_counter() - start)
        assert "Cannot" not in html and "<svg" in svg, (model, hardware, precision)
    assert sorted(times)[int(0.95 * len(times))] < 0.5


def test_the_widget_answers_a_control():
    box = serving_dashboard()
    chart, report = box.children[-1].children
    before = report.value
    target = next(c for c in box.children if getattr(c, "description", "") == "target / token")
    target.value = 200
    assert report.value != before and "200.00 ms per token" in report.value and "<svg" in chart.value
