"""Calibrating the overhead term of the roofline on this machine.

We measure the fixed per-layer and per-pass cost the honest way, on models *other* than the one we then
predict: batch-1 decode steps of random models that differ only in depth (1, 2, 4 and 8 layers). The
roofline's share is subtracted and :func:`lessonlib.costs.overheads.fit_overheads` fits the line through the
rest. A calibration knows whether to trust itself: every timing must reproduce its fastest run, and the line
must explain the timings (R² >= ``MIN_R_SQUARED``) with both terms positive. When a first attempt fails that
test it is measured again; when the second fails too, ``reliable`` is False and ``problem`` says why.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.timing import Timing, grading_run, progress
from ..costs.hardware import HardwareSpec
from ..costs.overheads import OverheadFit, Overheads, fit_overheads
from ..costs.roofline import decode_step
from ..models.cost_spec import spec_of
from ..models.tinygpt import TinyGPT, TinyGPTConfig
from .decode import decode_step_timing

MIN_R_SQUARED = 0.9


@dataclass(frozen=True)
class Calibration:
    """The fitted overheads, the timings they came from, and whether they can be trusted."""
    fit: OverheadFit
    timings: tuple[Timing, ...]      # seconds per decode step at each depth
    attempts: int = 1

    @property
    def overheads(self) -> Overheads:
        return self.fit.overheads

    @property
    def depths(self) -> tuple[int, ...]:
        return self.fit.depths

    @property
    def measured(self) -> tuple[float, ...]:
        return self.fit.measured

    @property
    def roofline(self) -> tuple[float, ...]:
        return self.fit.roofline

    @property
    def r_squared(self) -> float:
        return self.fit.r_squared

    @property
    def noisy(self) -> bool:
        """Some timing never reproduced its fastest run (or a grading run timed each step once)."""
        return not all(t.reliable for t in self.timings)

    @property
    def problem(self) -> str:
        """Why this calibration is not to be trusted ("" when it is)."""
        if any(t.shortened for t in self.timings):
            return "a grading run times each step once"
        reasons = []
        noisy = [d for d, t in zip(self.depths, self.timings, strict=True) if not t.reliable]
        if noisy:
            reasons.append(f"the timings at {', '.join(map(str, noisy))} layers never reproduced their fastest run")
        if self.fit.r_squared < MIN_R_SQUARED:
            reasons.append(f"a straight line explains only {100 * max(self.fit.r_squared, 0):.0f}% of how the "
                           f"time left after the roofline varies with depth")
        for term in self.fit.clipped:
            reasons.append(f"the fitted cost {term} came out negative")
        return "; ".join(reasons)

    @property
    def reliable(self) -> bool:
        return not self.problem


def _measure(hardware: HardwareSpec, models, context_len: int, report: str = "") -> Calibration:
    timings, roofline = [], []
    for model in (progress(models, report, label=lambda m: m.config.n_layers) if report else models):
        timings.append(decode_step_timing(model, context_len))
        roofline.append(decode_step(spec_of(model), hardware, "fp32", context_len, 1).seconds)
    depths = tuple(model.config.n_layers for model in models)
    return Calibration(fit_overheads(depths, [t.seconds for t in timings], roofline), tuple(timings))


def calibrate_overheads(hardware: HardwareSpec, hidden_size: int = 128, n_heads: int = 4, depths=(1, 2, 4, 8),
                        context_len: int = 16, vocab_size: int = 41, max_position_embeddings: int = 256,
                        attempts: int = 2, show_progress: bool = False) -> Calibration:
    """Time batch-1 decode steps of random models that differ only in depth, subtract the roofline's
    prediction (fp32, as the model runs), and fit the per-pass and per-layer overheads. Measured again, up to
    ``attempts`` times in all, while the result is not reliable; the last attempt is returned. With
    ``show_progress``, one line of output follows the measurement."""
    models = []
    for depth in depths:
        torch.manual_seed(0)
        models.append(TinyGPT(TinyGPTConfig(vocab_size=vocab_size, max_position_embeddings=max_position_embeddings,
                                            n_layers=depth, n_heads=n_heads, hidden_size=hidden_size)).eval())
    def report(attempt: int) -> str:
        return f"calibrating, attempt {attempt}, models of depth" if show_progress else ""

    attempt, result = 1, _measure(hardware, models, context_len, report(1))
    while not result.reliable and attempt < attempts and not grading_run():
        attempt, result = attempt + 1, _measure(hardware, models, context_len, report(attempt + 1))
    return Calibration(result.fit, result.timings, attempt)
