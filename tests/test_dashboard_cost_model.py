"""The lesson-01 cost-model dashboard: a plain callback (HTML + roofline SVG), fast, never raising."""
import itertools
import json
import time

import pytest

from lessonlib.costs.hardware import hardware_preset_names
from lessonlib.costs.precision import PRECISIONS, WEIGHT_BYTES
from lessonlib.costs.presets import model_preset_names
from lessonlib.dashboards.controls import BATCH_CHOICES, CONTEXT_CHOICES
from lessonlib.dashboards.cost_model import CUSTOM, cost_model_dashboard, cost_model_report


def test_every_extreme_combination_renders_a_report_and_a_plot():
    # Every model on every hardware at both ends of the sliders, and every precision at the ends.
    combos = [(m, h, "bf16", c, b) for m, h in itertools.product(model_preset_names(), hardware_preset_names())
              for c, b in ((CONTEXT_CHOICES[0], BATCH_CHOICES[0]), (CONTEXT_CHOICES[-1], BATCH_CHOICES[-1]))]
    combos += [("mixtral-8x7b", h, p, CONTEXT_CHOICES[-1], BATCH_CHOICES[-1])
               for h, p in itertools.product(hardware_preset_names(), WEIGHT_BYTES)]
    for model, hardware, precision, context, batch in combos:
        html, svg = cost_model_report(model, hardware, precision, context, batch)
        assert "Cannot evaluate" not in html and svg.count("<polyline") >= 1, (model, hardware, precision)


def test_report_shows_memory_breakdown_fit_and_both_phases():
    html, _ = cost_model_report("llama-2-70b", "a100-80gb", "bf16", 4096, 1)
    for part in ("weights", "KV cache", "activations", "does not fit", "prefill", "decode", "Time to first token"):
        assert part in html
    assert "fits" in cost_model_report("qwen2-0.5b", "raspberry-pi-5", "bf16", 1024, 1)[0]


def test_a_pasted_config_is_evaluated():
    config = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
              "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
              "_name_or_path": "my-model"}
    html, svg = cost_model_report(CUSTOM, "jetson-orin-nano", "int8", 2048, 4, json.dumps(config))
    assert "my-model" in html and "<svg" in svg


def test_bad_pasted_configs_are_explained_not_raised():
    assert "not valid JSON" in cost_model_report(CUSTOM, "a100-80gb", config_text="{oops")[0]
    assert "no hidden_size" in cost_model_report(CUSTOM, "a100-80gb", config_text='{"model_type": "llama"}')[0]
    html, svg = cost_model_report(CUSTOM, "a100-80gb", config_text='{"model_type": "t5"}')
    assert "model_type &#x27;t5&#x27; is not one this course models" in html and svg is None


def test_callback_answers_a_sweep_of_settings_without_stalling():
    """A sanity bound only (p95 under 0.5 s, ten times the 50 ms target): timings on a shared CPU are noisy, so the
    target itself is measured by benchmarks/bench_dashboards.py, not asserted here."""

    def p95_of_a_sweep():
        times = []
        for i, hardware in enumerate(["a100-80gb", "raspberry-pi-5", "h100-sxm", "jetson-orin-nano"] * 8):
            start = time.perf_counter()
            cost_model_report("mixtral-8x7b", hardware, "bf16", CONTEXT_CHOICES[i % 18], BATCH_CHOICES[i % 11])
            times.append(time.perf_counter() - start)
        return sorted(times)[int(0.95 * len(times))]

    # Best of three sweeps: another process briefly owning both cores must not fail the build.
    p95 = min(p95_of_a_sweep() for _ in range(3))
    assert p95 < 0.5, f"p95 {p95 * 1e3:.1f} ms"


def test_widget_shows_the_config_box_only_for_a_pasted_config():
    dashboard = cost_model_dashboard(model="gpt2")
    controls = dashboard.children[0].children
    model_box, config_box = controls[0], controls[1]
    assert config_box.layout.display == "none"
    model_box.value = CUSTOM
    assert config_box.layout.display == ""
    report = dashboard.children[1].children[0]
    assert "<svg" in dashboard.children[1].children[1].value
    assert "pasted config" in report.value or "B parameters" in report.value


def test_times_of_a_setting_that_does_not_fit_are_marked_as_hypothetical():
    assert "if it fit" in cost_model_report("llama-2-7b", "raspberry-pi-5", "bf16", 1024, 1)[0]
    assert "if it fit" not in cost_model_report("qwen2-0.5b", "raspberry-pi-5", "bf16", 1024, 1)[0]


def test_a_phase_past_the_chart_is_drawn_at_its_edge_with_its_value():
    # A 131k-token prefill of 1024 sequences sits near 4e5 FLOP/byte, past the axis (1e5): an arrow, and its value.
    _, svg = cost_model_report("llama-3-8b", "a100-80gb", "bf16", 131072, 1024)
    assert "<polygon" in svg and "prefill (368k FLOP/byte)" in svg
    _, svg = cost_model_report("llama-3-8b", "a100-80gb", "bf16", 1024, 1)
    assert "prefill (" not in svg and "prefill" in svg


def test_what_if_knobs_and_every_precision_change_the_prediction():
    base, _ = cost_model_report("llama-2-7b", "a100-80gb", "bf16", 1024, 1)
    faster, _ = cost_model_report("llama-2-7b", "a100-80gb", "bf16", 1024, 1, bandwidth_x=2)
    assert "what if 2x bandwidth" in faster and faster != base
    reports = {p: cost_model_report("llama-2-7b", "a100-80gb", p, 1024, 1)[0] for p in PRECISIONS}
    assert len(set(reports.values())) == len(PRECISIONS)
    assert "4-bit weights" in reports["int4"]


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(context_len=-5), dict(bandwidth_x=0),
                                 dict(flops_x=1e9), dict(precision="fp8"), dict(batch_size="many")])
def test_impossible_values_give_a_message_not_a_traceback(bad):
    settings = dict(model="llama-2-7b", hardware="a100-80gb") | bad
    html, svg = cost_model_report(**settings)
    assert "Cannot evaluate" in html and svg is None and "Traceback" not in html
