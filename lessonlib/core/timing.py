"""Timing small pieces of work on a noisy machine.

Other programs on the same CPU only ever add time to a measurement, and they add it in bursts (a time slice
lost to another process costs milliseconds). So the fastest of several calls estimates what the work itself
costs, and the fastest is trustworthy only when several calls reproduce it. :class:`Timing` keeps every sample
and says whether that held (``reliable``); :func:`timing` and :func:`interleaved_timings` take more samples,
up to a limit, while it does not, and a lesson prints "this machine is busy" instead of a conclusion when it
never does.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

AGREE = 0.10     # samples within 10% of the fastest reproduce it
NEEDED = 3       # ... and this many of them make the fastest trustworthy


def grading_run() -> bool:
    """True while nbgrader executes the notebook (it sets NBGRADER_EXECUTION): demonstrations that no test cell
    depends on are cut short then, and their timings say so instead of drawing conclusions."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


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


@dataclass(frozen=True)
class Timing:
    """Seconds taken by repeated calls of the same work, in the order they were taken.

    ``seconds`` is the fastest call. It is ``reliable`` when at least ``NEEDED`` calls came within ``AGREE``
    (10%) of it: then it is what the work costs here, not a lucky outlier. ``spread`` says how far the typical
    call was from the fastest (0.05: the median call took 5% longer)."""
    samples: tuple[float, ...]
    shortened: bool = False    # a grading run took one sample only: never reliable

    def __post_init__(self):
        if not self.samples:
            raise ValueError("a Timing needs at least one sample")

    @property
    def seconds(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Median over fastest, minus 1."""
        return self.median / self.seconds - 1 if self.seconds > 0 else 0.0

    @property
    def agreeing(self) -> int:
        """How many calls came within AGREE of the fastest (the fastest included)."""
        return sum(1 for s in self.samples if s <= self.seconds * (1 + AGREE))

    @property
    def reliable(self) -> bool:
        return not self.shortened and self.agreeing >= min(NEEDED, len(self.samples))

    def per(self, n: float) -> Timing:
        """The same timing divided by ``n`` (seconds per step when each call ran ``n`` steps)."""
        return Timing(tuple(s / n for s in self.samples), self.shortened)


def timing(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, max_repeats: int = 15) -> Timing:
    """Time ``repeats`` calls of ``fn``; while the fastest is not reproduced (see :class:`Timing`), take more
    calls, ``repeats`` at a time, up to ``max_repeats`` in all. In a grading run: one call, no warm-up."""
    if grading_run():
        return Timing(tuple(_times(fn, 1, 0)), shortened=True)
    samples = _times(fn, repeats, warmup)
    while not Timing(tuple(samples)).reliable and len(samples) < max_repeats:
        samples += _times(fn, min(repeats, max_repeats - len(samples)), 0)
    return Timing(tuple(samples))


def interleaved_timings(runs: Mapping[Hashable, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                        max_repeats: int = 15) -> dict[Hashable, Timing]:
    """Time each of ``runs`` in turns (every round calls every run once, so a burst of background load hits all
    of them alike), adding rounds while any of them is not reliable, up to ``max_repeats`` rounds. In a grading
    run: one round, no warm-up."""
    if grading_run():
        repeats, warmup, max_repeats = 1, 0, 1
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    samples: dict[Hashable, list[float]] = {key: [] for key in runs}

    def one_round() -> None:
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)

    for _ in range(repeats):
        one_round()
    while (len(next(iter(samples.values()), [])) < max_repeats
           and not all(Timing(tuple(s)).reliable for s in samples.values())):
        one_round()
    return {key: Timing(tuple(s), shortened=grading_run()) for key, s in samples.items()}


def load_per_core() -> float | None:
    """The 1-minute load average divided by the number of CPUs (about 1 or more: other programs compete for
    every core), or None where the operating system does not report it."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


def busy_machine_note(what: str, timings) -> str:
    """The sentence a lesson prints instead of a conclusion when ``timings`` (Timing objects) are not reliable:
    what was measured, how far repeated runs disagreed, and the machine's load where the system reports it."""
    timings = list(timings)
    if any(t.shortened for t in timings):
        return ("**A grading run** (nbgrader sets NBGRADER_EXECUTION) times each step once to save time, so no "
                "conclusion is drawn from these numbers; run the notebook yourself to see what your machine shows.")
    worst = max((t.spread for t in timings), default=0.0)
    load = load_per_core()
    busy = (f"; the load average is {load:.1f} programs per CPU core, so other programs are competing for it"
            if load is not None and load >= 0.8 else "")
    return (f"**This machine is busy, so these numbers are not to be trusted.** Repeated runs of {what} did not "
            f"reproduce their fastest time (a typical run took up to {100 * worst:.0f}% longer){busy}. "
            f"Re-run the cell when fewer programs are running; no conclusion is drawn from this run.")


def progress(items, what: str, label=str):
    """Yield each of ``items`` while one line of output says how far the loop has got ("timing contexts: 3/6,
    8 to 64 done"), rewritten in place, and ends with how long it took: a long measurement shows it is
    working instead of printing nothing until it finishes. ``label`` names an item in that line."""
    items = list(items)
    start = time.perf_counter()
    for index, item in enumerate(items):
        print(f"\r{what}: {index + 1}/{len(items)} ({label(item)})   ", end="", flush=True)
        yield item
    print(f"\r{what}: {len(items)}/{len(items)} done in {time.perf_counter() - start:.1f} s   ", flush=True)
