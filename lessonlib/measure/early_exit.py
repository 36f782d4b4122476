"""Early exit timed on this machine: decoding with exits at several thresholds against the model's own decoding,
on the same prompts, so that the saving in layers can be read as a saving in time (or not: the exit heads and
the per-layer Python loop cost something too)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

from ..core.timing import Timing, interleaved_timings
from ..models.decoding import generate
from ..models.early_exit import ExitHeads, early_exit_generate


@dataclass
class EarlyExitTiming:
    threshold: float
    seconds: float            # all prompts, fastest of the repeats
    plain_seconds: float      # the model's own cached decoding of the same prompts
    mean_layers: float        # blocks run per new token
    timing: Timing | None = None         # every repeat, with exits
    plain_timing: Timing | None = None   # every repeat, without

    @property
    def reliable(self) -> bool:
        """Whether both timings reproduced their fastest run (lessonlib.core.timing.Timing)."""
        return self.timing is not None and self.timing.reliable and self.plain_timing.reliable

    @property
    def speedup(self) -> float:
        """Plain decoding time over early-exit time (above 1: early exit is faster here)."""
        return self.plain_seconds / self.seconds


def _decode_all(fn, prompts) -> list:
    return [fn(p) for p in prompts]


def measure_early_exit(model, heads: ExitHeads, prompts, max_new_tokens: int, thresholds: Sequence[float],
                       repeats: int = 3, warmup: int = 1, max_repeats: int | None = None) -> list[EarlyExitTiming]:
    """Time greedy decoding of ``max_new_tokens`` tokens after each prompt (a list of (1, T) tensors, or the rows
    of a (B, T) tensor; batch size 1) with exits at each threshold and without, interleaved
    (:func:`lessonlib.core.timing.interleaved_timings`, up to ``max_repeats`` rounds while a timing does not
    reproduce)."""
    prompts = [p.view(1, -1) for p in (prompts if isinstance(prompts, (list, tuple)) else prompts.unbind(0))]
    if not prompts:
        raise ValueError("give at least one prompt to time")
    runs = {"plain": functools.partial(_decode_all, lambda p: generate(model, p, max_new_tokens), prompts)}
    for threshold in thresholds:
        step = functools.partial(early_exit_generate, model, heads, max_new_tokens=max_new_tokens,
                                 threshold=threshold)
        runs[threshold] = functools.partial(_decode_all, lambda p, step=step: step(idx=p), prompts)
    timed = interleaved_timings(runs, repeats=repeats, warmup=warmup, max_repeats=max_repeats or repeats)
    timings = []
    for threshold in thresholds:
        used = [n for out in runs[threshold]() for n in out.layers_used]
        timings.append(EarlyExitTiming(float(threshold), timed[threshold].seconds, timed["plain"].seconds,
                                       sum(used) / len(used), timed[threshold], timed["plain"]))
    return timings
