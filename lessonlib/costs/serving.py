"""The serving trade-off: batching more sequences into each decode step raises the tokens/s a device produces
(the weights are read once per step, whatever the batch) and slows every sequence's next token (the step does
more work), until the arithmetic or the memory runs out.

    points = serving_curve(model_preset("llama-3-8b"), hardware_preset("a100-80gb"), "bf16", context_len=2048)
    best = best_within(points, latency_target=0.05)   # the most tokens/s with each token within 50 ms

Each point is one decode step (the roofline of :mod:`lessonlib.costs.roofline`) with ``context_len`` tokens
cached per sequence: latency is that step's time (what each user waits per token), throughput is the batch
divided by it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .hardware import HardwareSpec
from .roofline import PassCost, decode_step
from .spec import ModelSpec

BATCH_SIZES = tuple(2**k for k in range(0, 11))      # 1 ... 1024


@dataclass(frozen=True)
class ServingPoint:
    step: PassCost

    @property
    def batch_size(self) -> int:
        return self.step.batch_size

    @property
    def latency(self) -> float:
        """Seconds each sequence waits for its next token."""
        return self.step.seconds

    @property
    def throughput(self) -> float:
        """Tokens per second over the whole batch."""
        return self.step.tokens_per_second

    @property
    def fits(self) -> bool:
        return self.step.fits


def serving_curve(model: ModelSpec, hardware: HardwareSpec, precision: str = "bf16", context_len: int = 2048,
                  batch_sizes: Sequence[int] = BATCH_SIZES) -> list[ServingPoint]:
    """One decode step at each batch size (whether or not it fits: each point says)."""
    if not batch_sizes:
        raise ValueError("give at least one batch size")
    return [ServingPoint(decode_step(model, hardware, precision, context_len, b)) for b in batch_sizes]


def best_within(points: Sequence[ServingPoint], latency_target: float) -> ServingPoint | None:
    """The point with the most tokens/s among those that fit and keep each token within ``latency_target``
    seconds; None when none does."""
    if not (isinstance(latency_target, (int, float)) and latency_target > 0 and math.isfinite(latency_target)):
        raise ValueError(f"the latency target is a time per token in seconds, a positive number; "
                         f"got {latency_target!r}")
    ok = [p for p in points if p.fits and p.latency <= latency_target]
    return max(ok, key=lambda p: p.throughput) if ok else None
