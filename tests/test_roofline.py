"""lessonlib.costs.roofline: one decode step's bytes, FLOPs and time."""
import pytest

from lessonlib.costs.hardware import hardware_preset
from lessonlib.costs.memory import memory_breakdown
from lessonlib.costs.overheads import Overheads
from lessonlib.costs.presets import model_preset
from lessonlib.costs.roofline import decode_step, generation, prefill

A100 = hardware_preset("a100-80gb")
LLAMA = model_preset("llama-2-7b")


def test_batch_one_decode_is_memory_bound_near_one_flop_per_byte():
    step = decode_step(LLAMA, A100, "bf16", context_len=0, batch_size=1)
    assert step.bound == "memory"
    assert step.arithmetic_intensity == pytest.approx(1.0, rel=0.01)
    expected = (LLAMA.matmul_params_per_token() * 2 + LLAMA.kv_cache_bytes(1)) / A100.memory_bandwidth
    assert step.seconds == pytest.approx(expected)


def test_batching_shares_weight_reads_until_compute_bound():
    small = decode_step(LLAMA, A100, "bf16", context_len=0, batch_size=1)
    big = decode_step(LLAMA, A100, "bf16", context_len=0, batch_size=1024)
    assert big.weight_bytes_read == small.weight_bytes_read
    assert big.tokens_per_second > 100 * small.tokens_per_second
    assert big.bound == "compute"


def test_kv_reads_grow_with_context_and_batch():
    a = decode_step(LLAMA, A100, "bf16", context_len=1000, batch_size=2)
    assert a.kv_bytes_read == LLAMA.kv_cache_bytes(1001, 2, 2)  # read 1000 cached, write the new one
    assert decode_step(LLAMA, A100, "fp32", 1000, 2).kv_bytes_read == 2 * a.kv_bytes_read


def test_int8_halves_weight_traffic_and_memory_need():
    bf16 = decode_step(LLAMA, A100, "bf16", 0, 1)
    int8 = decode_step(LLAMA, A100, "int8", 0, 1)
    assert int8.weight_bytes_read == bf16.weight_bytes_read / 2


def test_fit_check_counts_weights_and_cache():
    pi = hardware_preset("raspberry-pi-5")
    assert not decode_step(LLAMA, pi, "bf16", 1024, 1).fits  # 13.5 GB of weights > 8 GB
    assert decode_step(model_preset("gpt2"), pi, "bf16", 1024, 1).fits


def test_moe_batch_reads_more_experts_than_one_token():
    mixtral = model_preset("mixtral-8x7b")
    one = decode_step(mixtral, A100, "bf16", 0, 1)
    many = decode_step(mixtral, A100, "bf16", 0, 256)
    assert one.weight_bytes_read == pytest.approx(2 * mixtral.matmul_params_per_token())
    assert many.weight_bytes_read > 3 * one.weight_bytes_read
    assert mixtral.expected_experts_touched(1) == pytest.approx(2)
    assert mixtral.expected_experts_touched(1000) == pytest.approx(8)


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp8"}, "precision must be one of"),
    ({"context_len": -1}, "context_len"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_inputs_say_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decode_step(LLAMA, A100, **kwargs)


def test_prefill_is_compute_bound_and_processes_the_prompt_in_one_pass():
    step = prefill(LLAMA, A100, "bf16", n_tokens=2048)
    assert step.bound == "compute"
    assert step.flops == LLAMA.prefill_flops(2048)
    assert step.tokens == 2048
    assert step.weight_bytes_read == decode_step(LLAMA, A100, "bf16", 0, 1).weight_bytes_read


def test_generation_sums_the_decode_steps_over_the_growing_context():
    for model in (LLAMA, model_preset("mistral-7b")):  # mistral: the sliding window caps the cache
        gen = generation(model, A100, "bf16", prompt_len=4000, new_tokens=200, batch_size=2)
        steps = [decode_step(model, A100, "bf16", c, 2) for c in range(4000, 4200)]
        assert gen.decode_seconds == pytest.approx(sum(s.seconds for s in steps), rel=1e-9)
        assert gen.time_to_first_token == prefill(model, A100, "bf16", 4000, 2).seconds
        assert gen.tokens_per_second == pytest.approx(2 * 200 / gen.decode_seconds)


def test_overheads_add_per_layer_and_can_dominate_a_small_model():
    tiny = model_preset("gpt2")
    slow = Overheads(per_pass=1e-3, per_layer=1e-4)
    step = decode_step(tiny, A100, "bf16", 10, 1, overheads=slow)
    assert step.overhead_seconds == pytest.approx(1e-3 + 12 * 1e-4)
    assert step.bound == "overhead"
    assert step.seconds == pytest.approx(step.t_roofline + step.overhead_seconds)


def test_memory_breakdown_names_weights_kv_and_activations():
    parts = memory_breakdown(LLAMA, "bf16", context_len=4096, batch_size=2)
    assert parts["weights"] == LLAMA.n_params() * 2
    assert parts["KV cache"] == LLAMA.kv_cache_bytes(4096, 2, 2)
    assert 0 < parts["activations"] < parts["KV cache"]
