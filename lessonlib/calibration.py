"""Measuring the software overhead the roofline leaves out.

On a CPU, a model of a few million parameters moves so few bytes per token that the roofline predicts
microseconds, yet each decode step takes a millisecond or more: every layer costs a fixed few microseconds of
operator dispatch (Python, PyTorch's dispatcher, small-kernel launches) whatever its size. We measure that
cost the honest way, on models *other* than the one we then predict: decode steps of otherwise identical
models with 1, 2, 4 and 8 layers. The time left after the roofline's share grows linearly with the depth:

    measured(L) - roofline(L)  =  per_pass + L * per_layer

and a least-squares line through the points gives both terms.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .roofline import Overheads


def best_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median of ``repeats`` timed calls after ``warmup`` untimed ones (the median resists the scheduler's
    hiccups better than the mean; the minimum flatters)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class OverheadFit:
    overheads: Overheads
    depths: tuple[int, ...]
    measured: tuple[float, ...]       # seconds per decode step at each depth
    roofline: tuple[float, ...]       # the roofline's prediction at each depth (no overhead)

    @property
    def residuals(self) -> tuple[float, ...]:
        fitted = [self.overheads.seconds(d) for d in self.depths]
        return tuple(m - r - f for m, r, f in zip(self.measured, self.roofline, fitted))


def fit_overheads(depths: Sequence[int], measured: Sequence[float], roofline: Sequence[float]) -> OverheadFit:
    """Least-squares line through (depth, measured - roofline). Negative terms are clipped to 0: overhead
    cannot save time."""
    if len(depths) < 2 or len(set(depths)) < 2:
        raise ValueError("need decode-step times of at least two different depths to separate the per-layer "
                         "overhead from the per-pass overhead")
    if not (len(depths) == len(measured) == len(roofline)):
        raise ValueError("depths, measured and roofline must have the same length")
    excess = np.asarray(measured, dtype=float) - np.asarray(roofline, dtype=float)
    per_layer, per_pass = np.polyfit(np.asarray(depths, dtype=float), excess, 1)
    return OverheadFit(Overheads(per_pass=max(float(per_pass), 0.0), per_layer=max(float(per_layer), 0.0)),
                       tuple(depths), tuple(measured), tuple(roofline))
