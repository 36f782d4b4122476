"""Hardware the cost model runs on: peak compute per precision, memory bandwidth, memory size.

Presets come from vendor datasheets (``lessonlib/data/hardware.json`` keeps each number's source).
``this_machine()`` measures the learner's own computer with two short probes (a matrix product and a memory
copy) so that lessons can put their predictions next to what this CPU really does.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

from ..core.timing import min_time
from .precision import COMPUTE

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
        """Peak FLOP/s of the arithmetic a pass at ``precision`` runs on (int4 weights: the faster of the fp16
        and bf16 rates)."""
        known = [self.peak_flops[a] for a in COMPUTE.get(precision, (precision,)) if a in self.peak_flops]
        if not known:
            raise KeyError(f"{self.label} has no peak figure for {precision!r}; "
                           f"known: {', '.join(self.peak_flops)}")
        return max(known)

    def ridge_point(self, precision: str) -> float:
        """Arithmetic intensity (FLOPs per byte moved) above which work is compute-bound on this hardware."""
        return self.flops_for(precision) / self.memory_bandwidth


WHAT_IF_LIMITS = (1 / 64, 64.0)   # a what-if factor outside this range is refused with a message


def what_if(hw: HardwareSpec, bandwidth: float = 1.0, flops: float = 1.0) -> HardwareSpec:
    """``hw`` with its memory bandwidth and every peak FLOP/s multiplied by the given factors: "what if we buy
    a chip with twice the bandwidth?". Factors of 1 return ``hw`` itself; others name the change in the label."""
    for name, factor in (("bandwidth", bandwidth), ("flops", flops)):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) \
                or not WHAT_IF_LIMITS[0] <= factor <= WHAT_IF_LIMITS[1]:
            raise ValueError(f"the {name} factor must be a number between 1/64 and 64 (1 = as built), "
                             f"got {factor!r}")
    if bandwidth == 1 and flops == 1:
        return hw
    changes = [f"{factor:g}x {what}" for what, factor in (("bandwidth", bandwidth), ("FLOP/s", flops))
               if factor != 1]
    return dataclasses.replace(
        hw, name=f"{hw.name}*bw{bandwidth:g}*flops{flops:g}", label=f"{hw.label}, what if {' and '.join(changes)}",
        peak_flops={p: v * flops for p, v in hw.peak_flops.items()}, memory_bandwidth=hw.memory_bandwidth * bandwidth,
        source=f"{hw.source} (scaled: {', '.join(changes)})")


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

    flops = {}
    # fp16 on a smaller product: on many CPUs it runs a slow fallback kernel (under 1 GFLOP/s here).
    for precision, dtype, n in (("fp32", torch.float32, 1024), ("bf16", torch.bfloat16, 1024),
                                ("fp16", torch.float16, 128)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        flops[precision] = 2 * n**3 / min_time(lambda a=a, b=b: a @ b, repeats=5 if n > 128 else 2)
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
        source="measured now: best of 5 runs of a 1024x1024 matmul (fp32, bf16), of 2 of a 128x128 one (fp16), "
               "and a 256 MiB tensor copy")
