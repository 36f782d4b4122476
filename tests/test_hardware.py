"""lessonlib.costs.hardware: sourced presets and the live probe of this machine."""
import pytest

from lessonlib.costs.hardware import hardware_preset, hardware_preset_names, this_machine
from lessonlib.costs.precision import PRECISIONS


@pytest.mark.parametrize("name", hardware_preset_names(include_this_machine=False))
def test_presets_are_complete_and_sourced(name):
    hw = hardware_preset(name)
    assert set(hw.peak_flops) == set(PRECISIONS)
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
