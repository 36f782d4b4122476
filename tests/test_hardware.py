"""lessonlib.costs.hardware: sourced presets and the live probe of this machine."""
import pytest

from lessonlib.costs.hardware import hardware_preset, hardware_preset_names, this_machine, what_if
from lessonlib.costs.precision import COMPUTE_PRECISIONS, PRECISIONS, compute_precisions, kv_bytes, weight_bytes
from lessonlib.costs.presets import model_preset
from lessonlib.costs.roofline import decode_step


@pytest.mark.parametrize("name", hardware_preset_names(include_this_machine=False))
def test_presets_are_complete_and_sourced(name):
    hw = hardware_preset(name)
    assert set(hw.peak_flops) == set(COMPUTE_PRECISIONS)
    assert all(v > 0 for v in hw.peak_flops.values())
    assert hw.memory_bandwidth > 0 and hw.memory_bytes > 0
    assert "http" in hw.source, f"{name} needs a source for its numbers"


def test_the_required_devices_are_there():
    names = set(hardware_preset_names())
    assert {"a100-80gb", "h100-sxm", "apple-m2-laptop", "raspberry-pi-5", "jetson-orin-nano",
            "this-machine"} <= names


def test_datacenter_ridge_points_are_far_above_one_flop_per_byte():
    assert hardware_preset("a100-80gb").ridge_point("bf16") > 100
    assert hardware_preset("h100-sxm").ridge_point("bf16") > hardware_preset("a100-80gb").ridge_point("bf16")


def test_this_machine_is_measured_once_and_plausible():
    hw = this_machine()
    assert hw is this_machine(), "the probe runs once per session"
    assert 1e9 < hw.peak_flops["fp32"] < 1e15
    assert 1e8 < hw.memory_bandwidth < 1e13
    assert hw.memory_bytes > 2**28


def test_unknown_preset_and_precision_say_what_exists():
    with pytest.raises(KeyError, match="choose one of"):
        hardware_preset("tpu-v9")
    with pytest.raises(KeyError, match="known: fp32"):
        hardware_preset("a100-80gb").flops_for("fp8")


def test_every_precision_has_bytes_and_an_arithmetic_rate_on_every_preset():
    assert PRECISIONS == ("fp32", "bf16", "fp16", "int8", "int4")
    assert [weight_bytes(p) for p in PRECISIONS] == [4, 2, 2, 1, 0.5 + 4 / 128]
    assert {kv_bytes(p) for p in ("bf16", "fp16", "int8", "int4")} == {2}
    assert compute_precisions("int4") == ("fp16", "bf16")
    for name in hardware_preset_names(include_this_machine=False):
        hw = hardware_preset(name)
        assert hw.flops_for("int4") == max(hw.flops_for("fp16"), hw.flops_for("bf16")) >= hw.flops_for("fp32")


def test_bf16_runs_at_the_fp32_rate_where_the_cores_have_no_bf16_arithmetic():
    pi = hardware_preset("raspberry-pi-5")           # Cortex-A76, Armv8.2-A: fp16 arithmetic, no bf16
    assert pi.flops_for("bf16") == pi.flops_for("fp32") == pi.flops_for("fp16") / 2
    for name in ("a100-80gb", "h100-sxm", "jetson-orin-nano", "phone-snapdragon-8-gen-3"):
        assert hardware_preset(name).flops_for("bf16") == hardware_preset(name).flops_for("fp16"), name


def test_int4_halves_the_weight_reads_of_int8_and_so_batch_one_decode_time():
    llama, a100 = model_preset("llama-2-7b"), hardware_preset("a100-80gb")
    int8, int4 = decode_step(llama, a100, "int8", 0, 1), decode_step(llama, a100, "int4", 0, 1)
    assert int4.weight_bytes_read / int8.weight_bytes_read == pytest.approx(0.53125)
    assert int4.bound == "memory" and int4.seconds < 0.6 * int8.seconds


def test_what_if_scales_bandwidth_and_flops_and_names_the_change():
    a100 = hardware_preset("a100-80gb")
    assert what_if(a100) is a100
    faster = what_if(a100, bandwidth=2, flops=0.5)
    assert faster.memory_bandwidth == 2 * a100.memory_bandwidth
    assert faster.flops_for("bf16") == 0.5 * a100.flops_for("bf16")
    assert faster.memory_bytes == a100.memory_bytes
    assert "what if 2x bandwidth and 0.5x FLOP/s" in faster.label
    assert faster.ridge_point("bf16") == pytest.approx(a100.ridge_point("bf16") / 4)


@pytest.mark.parametrize("factor", [0, -1, 1000, float("nan"), float("inf"), "2", True])
def test_what_if_refuses_impossible_factors_with_a_message(factor):
    with pytest.raises(ValueError, match="between 1/64 and 64"):
        what_if(hardware_preset("a100-80gb"), bandwidth=factor)
