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
    assert fit.overheads.per_layer == 0.0 and fit.overheads.per_pass > 0


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
