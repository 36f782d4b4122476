"""Matplotlib figures the lessons share."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..costs.hardware import HardwareSpec
from ..costs.roofline import PassCost


def roofline(ax, hardware: Sequence[HardwareSpec], precision: str = "bf16", passes: Iterable[PassCost] = (),
             labels: Iterable[str] = ()) -> None:
    """Draw the roofline of each hardware (attainable FLOP/s = min(peak, intensity x bandwidth)) on log axes,
    and each pass as a point at (its intensity, the FLOP/s it attains on its own hardware)."""
    intensity = np.logspace(-1, 5, 200)
    for hw in hardware:
        roof = np.minimum(hw.flops_for(precision), intensity * hw.memory_bandwidth)
        line, = ax.loglog(intensity, roof, lw=2, label=f"{hw.label}")
        ax.plot([hw.ridge_point(precision)], [hw.flops_for(precision)], "o", color=line.get_color(), ms=4)
    for step, label in zip(passes, labels, strict=True):
        ax.plot([step.arithmetic_intensity], [step.flops / step.seconds], "k*" if step.phase == "decode" else "kD",
                ms=9)
        ax.annotate(label, (step.arithmetic_intensity, step.flops / step.seconds), textcoords="offset points",
                    xytext=(6, -12), fontsize=8)
    ax.set(xlabel="arithmetic intensity (FLOP per byte moved)", ylabel="attainable FLOP/s",
           title=f"Roofline ({precision}); dots mark each chip's ridge point")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
