"""Lesson 03b's quality measurements of the tiny models by kind of modification, as the edge-device dashboard
reads them: how much of a quality metric a model keeps when it is an MoE, or pruned by each kind at each
measured sparsity."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..costs.edge import PRUNING_KINDS


@dataclass
class QualityCurve:
    """A quality metric measured on the course's tiny models: for the dense model, the MoE model, and the
    dense model pruned by each kind at the sparsities measured (e.g. exact-match accuracy on the sub-tasks'
    answers). ``change`` is the relative change against the reference, interpolated linearly between
    measured sparsities, and None outside them (no extrapolation). The reference of the pruned kinds is
    ``control`` when given: the dense model trained for as many extra steps as the pruned models were fine-tuned,
    so that a change measures the pruning, not the extra training."""
    metric: str                    # what was measured, for display: "exact match"
    dense: float
    moe: float | None = None
    pruned: dict[str, list[tuple[float, float]]] = field(default_factory=dict)   # kind -> [(sparsity, value)]
    control: float | None = None   # the dense model after the pruned models' extra training steps

    def _reference(self, kind: str) -> float:
        return self.control if kind in PRUNING_KINDS and self.control is not None else self.dense

    def value(self, kind: str, sparsity: float = 0.0) -> float | None:
        if kind == "dense" or (kind in PRUNING_KINDS and sparsity == 0):
            return self._reference(kind)
        if kind == "moe":
            return self.moe
        points = sorted({0.0: self._reference(kind), **dict(self.pruned.get(kind, []))}.items())
        if len(points) < 2 or not points[0][0] <= sparsity <= points[-1][0]:
            return None
        i = bisect.bisect_left([s for s, _ in points], sparsity)
        if points[i][0] == sparsity:
            return points[i][1]
        (s0, v0), (s1, v1) = points[i - 1], points[i]
        return v0 + (v1 - v0) * (sparsity - s0) / (s1 - s0)

    def change(self, kind: str, sparsity: float = 0.0) -> float | None:
        """Relative change against the reference (-0.2: 20% lower; pruned kinds against ``control`` if given)."""
        value = self.value(kind, sparsity)
        return None if value is None else value / self._reference(kind) - 1
