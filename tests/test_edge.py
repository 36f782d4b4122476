"""lessonlib.costs.edge and its dashboard: memory, bytes read and FLOPs of MoE and pruned candidates, the fit
against a device budget, the quality curve, and a fast, never-crashing dashboard callback."""
import itertools
import time

import pytest

from lessonlib.costs.edge import Candidate, assess, prunable_params, prune, structured_spec
from lessonlib.costs.hardware import hardware_preset
from lessonlib.costs.presets import model_preset
from lessonlib.costs.spec import ModelSpec
from lessonlib.dashboards.edge_device import candidates, edge_dashboard, edge_report
from lessonlib.lessons.quality_curve import QualityCurve

PHONE = hardware_preset("phone-snapdragon-8-gen-3")
MIXTRAL, MISTRAL = model_preset("mixtral-8x7b"), model_preset("mistral-7b")


def test_prunable_params_are_the_block_matrices():
    # Mistral: 32 layers, hidden 4096, 32 heads / 8 KV heads of 128, SwiGLU MLP of 14336.
    attention = 4096 * (4096 + 2 * 1024) + 4096 * 4096
    mlp = 3 * 4096 * 14336
    assert MISTRAL.attention_weight_params() == attention and MISTRAL.expert_weight_params() == mlp
    assert prunable_params(MISTRAL) == 32 * (attention + mlp)
    assert prunable_params(MIXTRAL) == 32 * (attention + 8 * mlp)


def test_an_moe_keeps_every_expert_in_memory_but_reads_only_the_chosen_ones_at_batch_1():
    moe = Candidate("Mixtral", MIXTRAL)
    assert moe.kind == "moe"
    assert moe.weight_bytes("bf16") == MIXTRAL.n_params() * 2
    assert moe.n_active_params() == MIXTRAL.n_active_params() < MIXTRAL.n_params() / 3
    one, many = moe.weight_bytes_read(1, "bf16"), moe.weight_bytes_read(64, "bf16")
    assert one == pytest.approx(MIXTRAL.matmul_params_per_token() * 2)
    # 64 tokens almost surely touch all 8 experts of every layer: nearly the whole model is read.
    assert many > 0.99 * (MIXTRAL.n_params() - MIXTRAL.embedding_params() + MIXTRAL.lm_head_matmul_params()) * 2


def test_structured_pruning_gives_a_smaller_dense_model_with_fewer_flops():
    half = structured_spec(MISTRAL, 0.5)
    assert (half.n_kv_heads, half.n_heads, half.intermediate_size) == (4, 16, 7168)
    # The same shape parsed from a config gives the same counts.
    config = {"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 16,
              "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 7168, "vocab_size": 32000}
    assert half.n_params() == ModelSpec.from_hf_config(config).n_params()
    pruned = prune(MISTRAL, "structured", 0.5)
    assert pruned.n_params() == half.n_params()
    assert pruned.flops_per_token(1000) < 0.55 * MISTRAL.flops_per_token(1000)
    assert pruned.weight_bytes("int8") == half.n_params()


def test_a_structured_cut_keeps_at_least_one_head_group():
    nearly_all = structured_spec(MISTRAL, 0.99)
    assert nearly_all.n_kv_heads == 1 and nearly_all.n_heads == 4


def test_by_default_unstructured_and_2_4_zeros_cost_what_the_dense_model_costs():
    """The default kernel is the one lesson 03b measures on a CPU: zeros stored and multiplied as dense values."""
    dense = Candidate("m", MISTRAL)
    for pruned in (prune(MISTRAL, "unstructured", 0.75), prune(MISTRAL, "2:4", 0.5)):
        assert not pruned.sparse_kernel
        assert pruned.weight_bytes("int8") == dense.weight_bytes("int8")
        assert pruned.weight_bytes_read(1, "int8") == dense.weight_bytes_read(1, "int8")
        assert pruned.n_params() == dense.n_params() and pruned.n_active_params() == dense.n_active_params()
        assert assess(pruned, PHONE, "int8").seconds_per_step == assess(dense, PHONE, "int8").seconds_per_step


def test_a_sparse_kernel_is_a_setting_of_unstructured_and_2_4_pruning_only():
    with pytest.raises(ValueError, match="sparse_kernel"):
        Candidate("x", MISTRAL, "dense", sparse_kernel=True)
    assert prune(MISTRAL, "structured", 0.5, sparse_kernel=True).sparse_kernel is False   # already smaller


def test_unstructured_zeros_shrink_memory_and_bytes_read_but_not_flops_with_a_sparse_kernel():
    s = 0.75
    pruned = prune(MISTRAL, "unstructured", s, sparse_kernel=True)
    prunable = prunable_params(MISTRAL)
    dense_rest = MISTRAL.n_params() - prunable
    # bf16: each kept value 2 bytes, plus one bit of bitmask per original position.
    assert pruned.weight_bytes("bf16") == pytest.approx(dense_rest * 2 + prunable * ((1 - s) * 2 + 1 / 8))
    assert pruned.flops_per_token(500) == MISTRAL.flops_per_token(500)
    assert pruned.weight_bytes_read(1, "bf16") < 0.4 * MISTRAL.weight_bytes_read(1, 2)
    assert pruned.n_params() == MISTRAL.n_params() - round(s * prunable)


def test_a_sparse_format_costs_more_than_dense_at_low_sparsity():
    # At 5% zeros, the bitmask (1/8 byte per position) outweighs the saved values in int8 (1 byte each).
    assert prune(MISTRAL, "unstructured", 0.05, sparse_kernel=True).weight_bytes("int8") > \
        Candidate("m", MISTRAL).weight_bytes("int8")


def test_two_four_stores_half_the_values_and_a_two_bit_index_each():
    pruned = prune(MISTRAL, "2:4", 0.5, sparse_kernel=True)
    prunable = prunable_params(MISTRAL)
    assert pruned.weight_bytes("bf16") == pytest.approx((MISTRAL.n_params() - prunable) * 2 + prunable * 1.125)
    with pytest.raises(ValueError, match="half"):
        prune(MISTRAL, "2:4", 0.6)


def test_assess_compares_weights_and_kv_cache_with_the_budget():
    dense = assess(Candidate("Mistral", MISTRAL), PHONE, "int8", context_len=2048, memory_fraction=1.0)
    assert dense.memory["weights"] == MISTRAL.n_params()
    assert dense.memory["KV cache"] == MISTRAL.kv_cache_bytes(2048, 1, 2)
    assert dense.fits  # 7.5 GB on an 8 GB phone, if the model may use all of it
    assert not assess(Candidate("Mistral", MISTRAL), PHONE, "int8", 2048, memory_fraction=0.6).fits
    assert not assess(Candidate("Mixtral", MIXTRAL), PHONE, "int8", 2048, memory_fraction=1.0).fits
    # Batch-1 decode on the phone is memory-bound; Mixtral reads its 13B active parameters per token.
    moe = assess(Candidate("Mixtral", MIXTRAL), PHONE, "int8")
    assert moe.step.bound == "memory"
    assert moe.seconds_per_step == pytest.approx(moe.step.t_memory)
    assert moe.seconds_per_step > dense.seconds_per_step


def test_int4_stores_about_half_the_weight_bytes_of_int8_and_computes_at_the_fp16_rate():
    moe = Candidate("Mixtral", MIXTRAL)
    int4, int8, fp16 = (assess(moe, PHONE, p) for p in ("int4", "int8", "fp16"))
    # 4-bit weights in groups of 128 sharing a 16-bit scale and zero: (0.5 + 4/128) bytes against int8's 1.
    assert int4.memory["weights"] == pytest.approx(int8.memory["weights"] * (0.5 + 4 / 128))
    assert int4.memory["KV cache"] == int8.memory["KV cache"]            # the cache stays 16-bit
    assert int4.step.t_compute == pytest.approx(fp16.step.t_compute)   # unpacked to fp16 to multiply (W4A16)
    # Mixtral-8x7B needs about 25 GB at int4: not on the 8 GB phone.
    assert not int4.fits


@pytest.mark.parametrize("bad, message", [
    (dict(memory_fraction=0), "memory_fraction"), (dict(memory_fraction=1.5), "memory_fraction"),
    (dict(precision="fp8"), "precision"), (dict(batch_size=0), "batch_size"), (dict(context_len=-1), "context_len")])
def test_impossible_settings_fail_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        assess(Candidate("Mistral", MISTRAL), PHONE, **bad)


def test_bad_candidates_fail_clearly():
    with pytest.raises(ValueError, match="sparsity"):
        prune(MISTRAL, "unstructured", 1.0)
    with pytest.raises(ValueError, match="pruning kind"):
        prune(MISTRAL, "random", 0.5)
    with pytest.raises(ValueError, match="kind must be"):
        Candidate("x", MISTRAL, "sparse")
    with pytest.raises(ValueError, match="prune"):
        Candidate("x", MISTRAL, "dense", 0.5)


def test_quality_curve_interpolates_between_measured_sparsities_and_refuses_to_extrapolate():
    curve = QualityCurve("loss", dense=1.0, moe=0.98, pruned={"unstructured": [(0.5, 1.1), (0.9, 1.5)]})
    assert curve.change("dense") == 0 and curve.change("unstructured", 0.0) == 0
    assert curve.change("unstructured", 0.25) == pytest.approx(0.05)   # between (0, 1.0) and (0.5, 1.1)
    assert curve.change("unstructured", 0.7) == pytest.approx(0.3)
    assert curve.change("moe") == pytest.approx(-0.02)
    assert curve.change("unstructured", 0.95) is None and curve.change("structured", 0.5) is None


TINY = ModelSpec.from_hf_config({"model_type": "gpt2", "vocab_size": 41, "n_positions": 256, "n_embd": 128,
                                 "n_layer": 4, "n_head": 4})


def test_dashboard_rows_are_the_moe_the_dense_model_its_pruned_version_and_the_tiny_models():
    rows = candidates("mistral-7b", "mixtral-8x7b", "2:4", 0.8, tiny_dense=TINY)
    assert [r.kind for r in rows] == ["moe", "dense", "2:4", "dense", "2:4"]
    assert rows[2].sparsity == 0.5  # 2:4 ignores the slider


def test_dashboard_callback_never_raises_and_is_fast():
    quality = QualityCurve("exact match", 0.74, 0.76, {"structured": [(0.5, 0.65)]})
    settings = itertools.product(["phone-snapdragon-8-gen-3", "raspberry-pi-5", "this-machine"], [0.05, 1.0],
                                 ["fp32", "int8"], ["unstructured", "2:4", "structured"], [0.0, 0.9],
                                 [1, 131072], [1, 1024])
    times = []
    for device, fraction, precision, kind, sparsity, context, batch in settings:
        start = time.perf_counter()
        page = edge_report(device, fraction, precision, "mistral-7b", "mixtral-8x7b", kind, sparsity, context, batch,
                           tiny_dense=TINY, quality=quality)
        times.append(time.perf_counter() - start)
        assert "Mixtral" in page and "tiny-gpt" in page and "exact match" in page
    times.sort()
    assert times[int(0.95 * len(times))] < 0.05
    assert "Cannot assess" in edge_report(memory_fraction=0) and "Cannot assess" in edge_report(kind="magic")


def test_real_models_quality_is_their_published_score_or_blank():
    from lessonlib.costs.published import published_score

    assert published_score("mixtral-8x7b").value > published_score("mistral-7b").value      # 70.6 vs 62.5
    assert "2401.04088" in published_score("mistral-7b").source
    assert published_score("qwen3-8b") is None
    page = edge_report(kind="structured", tiny_dense=TINY, quality=QualityCurve("exact match", 0.8, 0.7))
    rows = [r for r in page.split("<tr>") if r.startswith("<td")]
    assert "70.6% MMLU (published)" in rows[0] and "62.5% MMLU (published)" in rows[1]
    assert "published" not in rows[2] and "proxy" not in page                  # the pruned Mistral: blank
    assert "reference" in rows[3] or "reference" in rows[4]                    # tiny models keep their measurement


def test_the_dashboard_says_which_kernel_it_assumes():
    off = edge_report(kind="unstructured", sparsity=0.5)
    on = edge_report(kind="unstructured", sparsity=0.5, sparse_kernel=True)
    assert "Sparse kernel OFF" in off and "Sparse kernel ON" in on
    assert "sparse tensor cores" in on


def test_dashboard_widget_updates_its_report_when_a_slider_moves():
    widget = edge_dashboard(tiny_dense=TINY)
    report = widget.children[-1]
    sparsity = widget.children[4]
    before = report.value
    sparsity.value = 0.8
    assert report.value != before and "80%" in report.value


def test_dashboard_locks_the_sparsity_slider_at_half_while_2_4_is_chosen():
    widget = edge_dashboard(tiny_dense=TINY)
    report, kind, sparsity = widget.children[-1], widget.children[3], widget.children[4]
    sparsity.value = 0.7
    kind.value = "2:4"
    assert sparsity.disabled and sparsity.value == 0.5 and "pruned 2:4 50%" in report.value
    kind.value = "structured"
    assert not sparsity.disabled and sparsity.value == 0.7 and "pruned structured 70%" in report.value


def test_pruned_kinds_are_judged_against_the_control_when_one_is_given():
    curve = QualityCurve("exact match", dense=0.70, moe=0.63, control=0.80, pruned={"structured": [(0.5, 0.72)]})
    assert curve.change("structured", 0.5) == pytest.approx(0.72 / 0.80 - 1)     # against the control
    assert curve.change("structured", 0.25) == pytest.approx((0.80 + 0.72) / 2 / 0.80 - 1)
    assert curve.change("moe") == pytest.approx(0.63 / 0.70 - 1)                  # the MoE had no extra steps
    assert "trained for their extra fine-tuning steps" in edge_report(tiny_dense=TINY, quality=curve)
