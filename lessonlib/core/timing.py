"""Timing small pieces of work on a noisy machine."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable, Mapping


def _times(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()  # allocations, thread-pool start-up, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def min_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Fastest of ``repeats`` calls: the best a piece of work can do here (for peak-rate probes)."""
    return min(_times(fn, repeats, warmup))


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median of ``repeats`` calls: typical time, robust to the scheduler's hiccups (for predictions)."""
    return statistics.median(_times(fn, repeats, warmup))


def interleaved_min_times(runs: Mapping[Hashable, Callable[[], object]], repeats: int = 5,
                          warmup: int = 1) -> dict[Hashable, float]:
    """Fastest call of each of ``runs``, timed in turns: every repeat calls every run once, so a burst of
    background load slows all of them alike and the ratios between them hold (for side-by-side comparisons)."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best
