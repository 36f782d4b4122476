"""Lesson 01: what the measurements of section 5 show, in sentences that follow the numbers.

Each function takes what a cell measured and returns one paragraph of Markdown. A conclusion is drawn only
from timings that reproduced their fastest run (:class:`~lessonlib.core.timing.Timing`) and from a calibration
that passed its own checks; otherwise the paragraph says the machine is busy and draws none. When a reliable
measurement shows the opposite of what the lesson expects, the paragraph says that.
"""
from __future__ import annotations

import statistics
from typing import Sequence

from ..core.timing import Timing, busy_machine_note
from ..core.units import human_bytes
from ..costs.roofline import PassCost
from ..measure.calibration import Calibration


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def cache_summary(contexts: Sequence[int], cached: Sequence[Timing], recomputed: Sequence[Timing],
                  floors: Sequence[float], weight_bytes: float, bandwidth: float) -> str:
    """Section 5.1: the cache's speed-up at the longest context, and how far a cached step is from the
    roofline's floor."""
    head = (f"`tiny-gpt`'s weights are {human_bytes(weight_bytes)}; at the copy bandwidth measured on one thread "
            f"they stream in about {_us(weight_bytes / bandwidth)}.")
    if not all(t.reliable for t in (*cached, *recomputed)):
        return head + " " + busy_machine_note("the same decode steps", (*cached, *recomputed))
    speedup = recomputed[-1].seconds / cached[-1].seconds
    if speedup >= 1.25:
        cache = f"The cache made a step at {contexts[-1]} tokens of context **{speedup:.1f}x** faster."
    elif speedup <= 0.8:
        cache = (f"On this run a cached step at {contexts[-1]} tokens of context was **slower** than recomputing "
                 f"the prefix ({1 / speedup:.1f}x): the opposite of what the cache is for.")
    else:
        cache = (f"At {contexts[-1]} tokens of context the cache made no clear difference on this run "
                 f"(ratio {speedup:.2f}).")
    gap = statistics.median(t.seconds / f for t, f in zip(cached, floors, strict=True))
    if gap >= 2:
        floor = (f"A cached step took **{gap:,.0f}x** as long as the roofline's floor (median over the contexts): "
                 "bytes and FLOPs explain only a small part of it, so the time goes elsewhere.")
    elif gap >= 0.5:
        floor = (f"A cached step took {gap:.1f}x the roofline's floor (median over the contexts): on this "
                 "machine the floor is within a factor of two of a real step.")
    else:
        floor = (f"A cached step took only {gap:.2f}x the roofline's floor, faster than streaming the weights from "
                 "main memory allows: they fit in the CPU's own caches, which are faster than the memory the "
                 "bandwidth probe measures.")
    return f"{cache} {head} {floor}"


def calibration_summary(calibration: Calibration, n_layers: int, roofline_seconds: float,
                        model: str = "`tiny-gpt`") -> str:
    """Section 5.2: the fitted overheads, whether to trust them, and what they mean for the lesson's model."""
    o = calibration.overheads
    times = f"{calibration.attempts} time{'s' if calibration.attempts > 1 else ''}"
    numbers = (f"Calibration on this machine: **{_us(o.per_layer)} per layer** and **{_us(o.per_pass)} per "
               f"pass**; the fitted line explains {100 * max(calibration.r_squared, 0):.0f}% of how the time left "
               f"after the roofline varies with depth (measured {times}).")
    if not calibration.reliable:
        if calibration.noisy:
            why = busy_machine_note("the calibration's decode steps", calibration.timings)
        else:
            why = ("The timings themselves were steady: it is the model, roofline plus a fixed cost per layer, that "
                   "does not describe them on this machine. One reason can be the CPU's caches: the roofline "
                   "streams every weight from main memory, while models this small may sit in faster caches.")
        return (f"{numbers} **Not to be trusted on this run**: {calibration.problem}. {why} Section 5.3 uses these "
                "overheads all the same, so its comparison is no test of the cost model on this run.")
    overhead = o.seconds(n_layers)
    verdict = ("overhead, not bytes or FLOPs, sets the time of its decode steps here" if overhead > roofline_seconds
               else "the roofline's term is the larger one here")
    return (f"{numbers} For {model} ({n_layers} layers) that is {_us(overhead)} of every step, against "
            f"{roofline_seconds * 1e6:,.1f} µs of roofline time: {verdict}.")


def _agreement(ratios: Sequence[float]) -> str:
    low, high = min(ratios), max(ratios)
    if 0.67 <= low and high <= 1.5:
        return f"agree: predicted / measured between **{low:.2f} and {high:.2f}**"
    if high < 1:
        return f"the model **under-predicts**: predicted / measured between {low:.2f} and {high:.2f}"
    if low > 1:
        return f"the model **over-predicts**: predicted / measured between {low:.2f} and {high:.2f}"
    return f"predicted / measured range from {low:.2f} to {high:.2f}, off in both directions"


def prediction_summary(batch1: Sequence[tuple[Timing, PassCost]], others: Sequence[tuple[Timing, PassCost]],
                       calibration: Calibration, roofline_gap: float) -> str:
    """Section 5.3: how the calibrated cost model's predictions compare with the measurements, for the
    batch-1 cached steps it was calibrated for and for the other settings."""
    timings = [t for t, _ in (*batch1, *others)]
    unsteady = [t for t in timings if not t.reliable]
    if unsteady:
        return "No verdict on this run. " + busy_machine_note("these decode steps", unsteady)
    if not calibration.reliable:
        return ("No verdict on this run: the calibration in 5.2 did not pass its own checks, so the predictions "
                "above rest on overheads that are not to be trusted.")
    first = [p.seconds / t.seconds for t, p in batch1]
    rest = [p.seconds / t.seconds for t, p in others]
    share = batch1[0][1].overhead_seconds / batch1[0][1].seconds
    return (f"Batch-1 cached steps, the case the calibration was made for: prediction and measurement "
            f"{_agreement(first)} (the roofline alone was off by {roofline_gap:,.1f}x). Overhead is "
            f"{100 * share:.0f}% of such a predicted step.\n\n"
            f"No cache and larger batches, where arithmetic and the KV cache grow: {_agreement(rest)} "
            f"(median {statistics.median(rest):.2f} over {len(rest)} settings).")


def kernel_summary(shares: dict[str, float], n_tokens: int, attention_bytes: float, attention: Timing,
                   copy_bandwidth: float, batch: int) -> str:
    """Section 5.3: two things the cost model leaves out, as measured (nothing in a grading run, which skips
    the profile)."""
    if not shares or attention.shortened:
        return busy_machine_note("the profile", [attention])
    attention_rate = attention_bytes / attention.seconds
    fraction = attention_rate / copy_bandwidth
    if fraction < 0.5:
        tail = ("well short of the bandwidth the roofline assumes: kernels on small shapes fall short of its "
                "ideal rates, and closing that gap is what inference engines work on")
    elif fraction <= 1.2:
        tail = "close to the bandwidth the roofline assumes"
    else:
        tail = ("faster than the main-memory copy: caches of this size sit in the CPU's own caches, so here the "
                "roofline's bandwidth over-states what reading them costs")
    if not attention.reliable:
        tail = "no conclusion about it on this run: " + busy_machine_note("the attention kernel", [attention])
    return (f"In a no-cache step over {n_tokens} tokens, **{100 * shares['other operators']:.0f}%** of the operator "
            f"time went to LayerNorms, GELUs, additions and copies that the cost model counts neither as FLOPs "
            f"nor as bytes. Attention over a batch of {batch} caches read them at "
            f"**{attention_rate / 1e9:,.1f} GB/s**, {100 * fraction:.0f}% of the copy bandwidth the probe "
            f"measured: {tail}.")


def first_true(predicate, low: int, high: int) -> int | None:
    """The smallest whole number n in [low, high] for which ``predicate(n)`` is true, assuming it stays true
    from there on (a ridge point, once passed, stays passed), found by bisection in a few dozen calls; None
    when it is false even at ``high``."""
    if high < low or not predicate(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle + 1
    return low
