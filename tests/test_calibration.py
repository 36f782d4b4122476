"""lessonlib.costs.overheads and lessonlib.measure.calibration: fitting the per-pass and per-layer overhead from
decode times at several depths."""
import pytest

from lessonlib.core.timing import median_time, min_time
from lessonlib.costs.overheads import fit_overheads


def test_recovers_the_overheads_of_synthetic_timings():
    depths = (1, 2, 4, 8)
    roofline = [1e-6 * d for d in depths]
    measured = [r + 2e-4 + 5e-5 * d for r, d in zip(roofline, depths, strict=True)]
    fit = fit_overheads(depths, measured, roofline)
    assert fit.overheads.per_pass == pytest.approx(2e-4)
    assert fit.overheads.per_layer == pytest.approx(5e-5)
    assert max(abs(r) for r in fit.residuals) < 1e-12


def test_negative_overheads_are_clipped():
    fit = fit_overheads((1, 2), [1.0, 0.5], [0.0, 0.0])
    assert fit.overheads.per_layer == 0.0 and fit.overheads.per_pass > 0 and fit.clipped == ("per layer",)


@pytest.mark.parametrize("depths, measured, roofline, message", [
    ((4, 4), [1, 1], [0, 0], "at least two different depths"),
    ((1, 2), [1], [0, 0], "same length"),
])
def test_bad_input_says_what_is_needed(depths, measured, roofline, message):
    with pytest.raises(ValueError, match=message):
        fit_overheads(depths, measured, roofline)


def test_median_time_times_real_calls():
    calls = []
    assert median_time(lambda: calls.append(1), repeats=3, warmup=2) >= 0
    assert len(calls) == 5
    assert 0 <= min_time(lambda: calls.append(1), repeats=2) <= median_time(lambda: sum(range(1000)), repeats=3)


@pytest.mark.parametrize("shape", [dict(), dict(n_kv_heads=2), dict(bias=False),
                                   dict(n_heads=3, n_kv_heads=3, head_dim=32, intermediate_size=200)],
                         ids=["gpt2", "grouped-query", "no biases", "pruned heads and channels"])
def test_the_cost_models_view_of_a_tiny_model_counts_its_parameters_exactly(shape):
    from lessonlib.models.cost_spec import spec_of
    from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig

    shape = {"n_heads": 4, "hidden_size": 128} | shape
    model = TinyGPT(TinyGPTConfig(vocab_size=41, max_position_embeddings=64, n_layers=2, **shape))
    assert spec_of(model).n_params() == model.n_params()


def test_fit_quality_is_one_for_a_straight_line_and_low_for_noise():
    depths = (1, 2, 4, 8)
    exact = fit_overheads(depths, [2e-4 + 5e-5 * d for d in depths], [0.0] * 4)
    assert exact.r_squared == pytest.approx(1.0) and exact.clipped == ()
    noisy = fit_overheads(depths, [9e-4, 2e-4, 8e-4, 3e-4], [0.0] * 4)
    assert noisy.r_squared < 0.5 and noisy.clipped == ("per layer",)  # more layers measured faster


def _calibration(samples_per_depth, excess):
    from lessonlib.core.timing import Timing
    from lessonlib.measure.calibration import Calibration

    depths = (1, 2, 4, 8)
    timings = tuple(Timing(s) for s in samples_per_depth)
    return Calibration(fit_overheads(depths, excess, [0.0] * 4), timings)


def test_a_calibration_on_steady_timings_and_a_straight_line_is_reliable():
    excess = [2e-4 + 5e-5 * d for d in (1, 2, 4, 8)]
    calibration = _calibration([(e, e * 1.01, e * 1.02) for e in excess], excess)
    assert calibration.reliable and calibration.problem == ""
    assert calibration.overheads.per_layer == pytest.approx(5e-5)


def test_a_calibration_says_why_it_is_not_to_be_trusted():
    excess = [9e-4, 2e-4, 8e-4, 3e-4]
    calibration = _calibration([(e, 3 * e, 4 * e) for e in excess], excess)
    assert not calibration.reliable
    problem = calibration.problem
    assert "never reproduced their fastest run" in problem
    assert "straight line explains only" in problem and "cost per layer came out negative" in problem


def test_calibrate_overheads_measures_real_models_and_reports_its_quality():
    from lessonlib.costs.hardware import hardware_preset
    from lessonlib.measure.calibration import calibrate_overheads
    from lessonlib.measure.decode import torch_threads

    with torch_threads(1):
        calibration = calibrate_overheads(hardware_preset("a100-80gb"), hidden_size=32, n_heads=2, depths=(1, 2),
                                          context_len=4, attempts=1)
    assert calibration.depths == (1, 2) and len(calibration.timings) == 2 and calibration.attempts == 1
    assert all(t.seconds > 0 for t in calibration.timings)
    assert isinstance(calibration.reliable, bool)
