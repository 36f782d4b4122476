"""lessonlib.roofline: one decode step's bytes, FLOPs and time."""
import pytest

from lessonlib.costs import model_preset
from lessonlib.hardware import hardware_preset
from lessonlib.roofline import decode_step, expected_experts_touched

A100 = hardware_preset("a100-80gb")
LLAMA = model_preset("llama-2-7b")


def test_batch_one_decode_is_memory_bound_near_one_flop_per_byte():
    step = decode_step(LLAMA, A100, "bf16", context_len=0, batch_size=1)
    assert step.bound == "memory"
    assert step.arithmetic_intensity == pytest.approx(1.0, rel=0.01)
    assert step.seconds == pytest.approx(LLAMA.matmul_params_per_token() * 2 / A100.memory_bandwidth)


def test_batching_shares_weight_reads_until_compute_bound():
    small = decode_step(LLAMA, A100, "bf16", context_len=0, batch_size=1)
    big = decode_step(LLAMA, A100, "bf16", context_len=0, batch_size=1024)
    assert big.weight_bytes_read == small.weight_bytes_read
    assert big.tokens_per_second > 100 * small.tokens_per_second
    assert big.bound == "compute"


def test_kv_reads_grow_with_context_and_batch():
    a = decode_step(LLAMA, A100, "bf16", context_len=1000, batch_size=2)
    assert a.kv_bytes_read == LLAMA.kv_cache_bytes(1000, 2, 2)
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
    assert expected_experts_touched(8, 2, 1) == pytest.approx(2)
    assert expected_experts_touched(8, 2, 1000) == pytest.approx(8)


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp8"}, "precision must be one of"),
    ({"context_len": -1}, "context_len"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_inputs_say_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decode_step(LLAMA, A100, **kwargs)
