"""Matplotlib figures the lessons share."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..costs.hardware import HardwareSpec
from ..costs.roofline import PassCost


def _merged_labels(points: Sequence[tuple[float, float, str]], closer_than: float = 0.08):
    """Points closer than ``closer_than`` decades on both axes share one label ("a / b"), so that labels of
    coinciding points are not printed on top of each other."""
    groups: list[list[tuple[float, float, str]]] = []
    for x, y, label in points:
        for group in groups:
            gx, gy, _ = group[0]
            if abs(np.log10(x / gx)) < closer_than and abs(np.log10(y / gy)) < closer_than:
                group.append((x, y, label))
                break
        else:
            groups.append([(x, y, label)])
    return [(g[0][0], g[0][1], " / ".join(label for _, _, label in g)) for g in groups]


def roofline(ax, hardware: Sequence[HardwareSpec], precision: str = "bf16", passes: Iterable[PassCost] = (),
             labels: Iterable[str] = ()) -> None:
    """Draw the roofline of each hardware (attainable FLOP/s = min(peak, intensity x bandwidth)) on log axes,
    and each pass as a point at (its intensity, the FLOP/s it attains on its own hardware). The legend sits
    outside the axes, so it never covers a line; labels of points that coincide are merged."""
    intensity = np.logspace(-1, 5, 200)
    for hw in hardware:
        roof = np.minimum(hw.flops_for(precision), intensity * hw.memory_bandwidth)
        line, = ax.loglog(intensity, roof, lw=2, label=f"{hw.label}")
        ax.plot([hw.ridge_point(precision)], [hw.flops_for(precision)], "o", color=line.get_color(), ms=4)
    points = []
    for step, label in zip(passes, labels, strict=True):
        x, y = step.arithmetic_intensity, step.flops / step.seconds
        ax.plot([x], [y], "k*" if step.phase == "decode" else "kD", ms=9)
        points.append((x, y, label))
    for x, y, label in _merged_labels(points):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set(xlabel="arithmetic intensity (FLOP per byte moved)", ylabel="attainable FLOP/s",
           title=f"Roofline ({precision}); dots mark each chip's ridge point")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
