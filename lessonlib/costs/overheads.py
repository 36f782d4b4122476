"""The fixed software cost of a forward pass that the roofline leaves out, and fitting it to measurements.

On a CPU, a model of a few million parameters moves so few bytes per token that the roofline predicts
microseconds, yet each decode step takes a millisecond or more: every layer costs a fixed few microseconds of
operator dispatch (Python, PyTorch's dispatcher, small-kernel launches) whatever its size. Measured on models
of several depths (:mod:`lessonlib.measure.calibration` does the timing), the time left after the roofline's
share grows linearly with the depth:

    measured(L) - roofline(L)  =  per_pass + L * per_layer

and a least-squares line through the points gives both terms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Overheads:
    """Fixed software costs of one forward pass, independent of the data size."""
    per_pass: float = 0.0    # seconds per forward call: Python, embedding lookup, sampling
    per_layer: float = 0.0   # seconds per layer per forward call: operator dispatch, kernel launches

    def seconds(self, n_layers: int) -> float:
        return self.per_pass + n_layers * self.per_layer


NO_OVERHEAD = Overheads()


@dataclass(frozen=True)
class OverheadFit:
    overheads: Overheads
    depths: tuple[int, ...]
    measured: tuple[float, ...]       # seconds per decode step at each depth
    roofline: tuple[float, ...]       # the roofline's prediction at each depth (no overhead)

    fitted: tuple[float, float] = (0.0, 0.0)   # (per_pass, per_layer) as fitted, before negatives are clipped

    @property
    def clipped(self) -> tuple[str, ...]:
        """Which fitted terms came out negative and were set to 0 ("per pass", "per layer")."""
        return tuple(name for name, value in zip(("per pass", "per layer"), self.fitted, strict=True) if value < 0)

    @property
    def residuals(self) -> tuple[float, ...]:
        fitted = [self.overheads.seconds(d) for d in self.depths]
        return tuple(m - r - f for m, r, f in zip(self.measured, self.roofline, fitted, strict=True))

    @property
    def r_squared(self) -> float:
        """The share of the variation of (measured - roofline) across depths that the fitted line explains:
        near 1 when each layer really adds a fixed cost; near 0 (or below, after clipping) when the timings
        are noise, e.g. on a machine busy with other work."""
        excess = np.asarray(self.measured, dtype=float) - np.asarray(self.roofline, dtype=float)
        total = float(((excess - excess.mean()) ** 2).sum())
        if total == 0.0:
            return 1.0 if max(abs(r) for r in self.residuals) == 0.0 else 0.0
        return 1.0 - float((np.asarray(self.residuals) ** 2).sum()) / total


def fit_overheads(depths: Sequence[int], measured: Sequence[float], roofline: Sequence[float]) -> OverheadFit:
    """Least-squares line through (depth, measured - roofline). Negative terms are clipped to 0 (overhead
    cannot save time) and the fit says which (``clipped``); ``r_squared`` says how well the line explains the
    timings."""
    if len(depths) < 2 or len(set(depths)) < 2:
        raise ValueError("need decode-step times of at least two different depths to separate the per-layer "
                         "overhead from the per-pass overhead")
    if not (len(depths) == len(measured) == len(roofline)):
        raise ValueError("depths, measured and roofline must have the same length")
    excess = np.asarray(measured, dtype=float) - np.asarray(roofline, dtype=float)
    per_layer, per_pass = np.polyfit(np.asarray(depths, dtype=float), excess, 1)
    return OverheadFit(Overheads(per_pass=max(float(per_pass), 0.0), per_layer=max(float(per_layer), 0.0)),
                       tuple(depths), tuple(measured), tuple(roofline), fitted=(float(per_pass), float(per_layer)))
