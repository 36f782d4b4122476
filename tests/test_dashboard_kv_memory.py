"""Lesson 02's KV-memory dashboard and the attention modifications it applies to real models."""
import pytest

from lessonlib.costs import variants
from lessonlib.costs.memory import largest_batch, memory_breakdown
from lessonlib.costs.presets import model_preset, model_preset_names
from lessonlib.dashboards.kv_memory import kv_memory_dashboard, kv_memory_report, value_choices

LLAMA2 = model_preset("llama-2-7b")


def test_modifications_change_the_cache_as_their_structure_says():
    gqa, mqa = variants.with_kv_heads(LLAMA2, 8), variants.with_kv_heads(LLAMA2, 1)
    per_token = LLAMA2.kv_cache_bytes_per_token()
    assert gqa.kv_cache_bytes_per_token() * 4 == per_token == mqa.kv_cache_bytes_per_token() * 32
    window = variants.with_window(LLAMA2, 1024)
    assert window.kv_cache_bytes(8192) == LLAMA2.kv_cache_bytes(1024) and window.n_params() == LLAMA2.n_params()
    latent = variants.with_latent_kv(LLAMA2, 512)
    assert latent.kv_cache_bytes_per_token() == 32 * (512 + 64) * 2
    assert gqa.n_params() < LLAMA2.n_params() and latent.n_params() < LLAMA2.n_params()
    assert variants.apply(LLAMA2, "as built") is LLAMA2
    with pytest.raises(ValueError, match="must divide the 32 query heads"):
        variants.with_kv_heads(LLAMA2, 5)
    with pytest.raises(ValueError, match="already caches a latent"):
        variants.with_kv_heads(model_preset("deepseek-v3"), 8)


@pytest.mark.parametrize("model", ["llama-2-7b", "mistral-7b", "gemma-2b", "gpt2"])
def test_largest_batch_fits_and_one_more_does_not(model):
    spec = model_preset(model)
    batch = largest_batch(spec, 80e9, "bf16", 4096)
    assert batch > 0
    need = lambda b: sum(memory_breakdown(spec, "bf16", 4096, b).values())  # noqa: E731
    assert need(batch) <= 80e9 < need(batch + 1)
    assert largest_batch(model_preset("deepseek-v3"), 80e9, "bf16", 4096) == 0


@pytest.mark.parametrize("model", ["llama-2-7b", "mistral-7b", "gemma-2b", "gpt2"])
@pytest.mark.parametrize("context", [4096, 32768])
def test_largest_batch_without_activations_is_the_lessons_formula(model, context):
    """Lesson 02 (its formula, Exercise 3 and the dashboard): (memory - weights) // KV bytes of one sequence."""
    spec = model_preset(model)
    per_sequence = spec.kv_cache_bytes(context, 1, 2)
    room = 80e9 - spec.weight_bytes(2)
    assert largest_batch(spec, 80e9, "bf16", context, activations="none") == room // per_sequence
    # Activations reserved once for one prefill cost at most one sequence's room; for the whole batch, more.
    once = largest_batch(spec, 80e9, "bf16", context, activations="one sequence")
    assert once == (room - spec.activation_bytes(context, 1, 2)) // per_sequence
    assert largest_batch(spec, 80e9, "bf16", context) <= once


def test_llama_2_7b_on_an_a100_holds_30_conversations_then_126_with_8_kv_heads():
    """The numbers lesson 02's formula gives (cell 3, Exercise 3's test, Exercise 4a) and the dashboard shows."""
    a100 = 80e9
    assert largest_batch(LLAMA2, a100, "bf16", 4096, activations="none") == 30
    assert largest_batch(variants.with_kv_heads(LLAMA2, 8), a100, "bf16", 4096, activations="none") == 126
    html, _ = kv_memory_report("llama-2-7b", "grouped-query", 8, "a100-80gb", "bf16", 4096)
    assert "<b>30</b>" in html and "<b>126</b>" in html
    with pytest.raises(ValueError, match="activations must be one of"):
        largest_batch(LLAMA2, a100, "bf16", 4096, activations="some")


@pytest.mark.parametrize("kind", variants.KINDS)
def test_report_for_every_modification_and_model(kind):
    for model in model_preset_names():
        spec = model_preset(model)
        if spec.latent_attention:
            continue
        choices = value_choices(spec, kind) or [None]
        html, svg = kv_memory_report(model, kind, choices[-1], "a100-80gb", "bf16", 8192)
        assert "largest batch" in html and "<svg" in svg and "<polyline" in svg, (model, kind)


def test_bad_settings_give_a_message_not_a_traceback():
    html, svg = kv_memory_report("llama-2-7b", "grouped-query", 5)
    assert "Cannot evaluate" in html and "divide" in html and svg is None
    html, svg = kv_memory_report("no-such-model", "latent", 512)
    assert "Cannot evaluate" in html and svg is None
    html, _ = kv_memory_report("llama-2-7b", "as built", None, "jetson-orin-nano", "int4", 131072)
    assert "not even one sequence fits" in html and "weights alone" not in html
    html, _ = kv_memory_report("llama-2-70b", "as built", None, "raspberry-pi-5", "bf16", 131072)
    assert "do not fit" in html


def test_the_widget_builds_and_answers():
    box = kv_memory_dashboard()
    report, chart = box.children[-1].children
    assert "Llama-2-7B" in report.value
    kind = box.children[1]
    kind.value = "latent"
    assert "latent" in report.value and "<svg" in chart.value
