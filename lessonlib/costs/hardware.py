"""Hardware the cost model runs on: peak compute per precision, memory bandwidth, memory size.

Presets come from vendor datasheets (``lessonlib/data/hardware.json`` keeps each number's source).
``this_machine()`` measures the learner's own computer with two short probes (a matrix product and a memory
copy) so that lessons can put their predictions next to what this CPU really does.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

from ..core.timing import min_time
from .precision import COMPUTED_AS

THIS_MACHINE = "this-machine"


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    label: str
    kind: str
    peak_flops: Mapping[str, float]      # FLOP/s (int8: OP/s) per precision, dense
    memory_bandwidth: float              # bytes/s
    memory_bytes: float
    source: str = ""

    def flops_for(self, precision: str) -> float:
        if precision not in self.peak_flops and precision in COMPUTED_AS:
            precision = COMPUTED_AS[precision]     # int4 weights are multiplied at the int8 rate
        if precision not in self.peak_flops:
            raise KeyError(f"{self.label} has no peak figure for {precision!r}; "
                           f"known: {', '.join(self.peak_flops)}")
        return self.peak_flops[precision]

    def ridge_point(self, precision: str) -> float:
        """Arithmetic intensity (FLOPs per byte moved) above which work is compute-bound on this hardware."""
        return self.flops_for(precision) / self.memory_bandwidth


@lru_cache(maxsize=None)
def _presets() -> dict[str, HardwareSpec]:
    raw = json.loads((resources.files("lessonlib") / "data" / "hardware.json").read_text())
    return {name: HardwareSpec(name=name, **entry) for name, entry in raw.items() if not name.startswith("_")}


def hardware_preset_names(include_this_machine: bool = True) -> list[str]:
    names = sorted(_presets(), key=lambda n: _presets()[n].memory_bandwidth)
    return names + [THIS_MACHINE] if include_this_machine else names


def hardware_preset(name: str) -> HardwareSpec:
    if name == THIS_MACHINE:
        return this_machine()
    if name not in _presets():
        raise KeyError(f"no hardware preset {name!r}; choose one of: {', '.join(hardware_preset_names())}")
    return _presets()[name]


@lru_cache(maxsize=1)
def this_machine() -> HardwareSpec:
    """Measure this computer once per session: best-of-several matmul FLOP/s and memory-copy bandwidth."""
    import torch

    n = 1024
    flops = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        flops[precision] = 2 * n**3 / min_time(lambda a=a, b=b: a @ b, repeats=5)
    flops["int8"] = flops["fp32"]  # torch has no general int8 matmul on CPU: quantized work runs at fp32 speed

    source = torch.empty(256 * 2**20 // 4, dtype=torch.float32)  # 256 MiB: far larger than CPU caches
    target = torch.empty_like(source)
    seconds = min_time(lambda: target.copy_(source), repeats=5)
    bandwidth = 2 * source.numel() * 4 / seconds  # a copy reads and writes every byte

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = float("nan")
    return HardwareSpec(
        name=THIS_MACHINE, label=f"This machine ({torch.get_num_threads()} threads, measured)", kind="measured",
        peak_flops=flops, memory_bandwidth=bandwidth, memory_bytes=float(memory),
        source="measured now: best of 5 runs of a 1024x1024 matmul (fp32, bf16) and a 256 MiB tensor copy")
