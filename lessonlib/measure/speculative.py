"""Speculative decoding timed against plain decoding of the target on this machine: the measured speedup beside
the one Leviathan et al.'s formula expects from the measured acceptance rate and cost ratio."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.timing import Timing, interleaved_timings
from ..models.decoding import (
    SpeculativeStats,
    expected_speedup,
    expected_tokens_per_pass,
    generate,
    speculative_generate,
)


@dataclass
class SpeculativeTiming:
    """One side-by-side measurement over the same prompts (seconds: the fastest of the repeats, all prompts)."""
    target_seconds: float          # plain cached decoding with the target
    draft_seconds: float           # plain cached decoding with the draft (for the cost ratio c)
    speculative_seconds: float
    stats: SpeculativeStats        # summed over the prompts
    identical: bool                # speculative output == the target's own output, every prompt (greedy runs)
    draft_len: int
    timings: dict[str, Timing] = field(default_factory=dict)   # every repeat of "target", "draft", "speculative"

    @property
    def reliable(self) -> bool:
        """Whether every one of the three timings reproduced its fastest run (see lessonlib.core.timing.Timing):
        when not, the machine was too busy for the ratios to be trusted."""
        return bool(self.timings) and all(t.reliable for t in self.timings.values())

    @property
    def speedup(self) -> float:
        """Plain target time over speculative time (above 1: speculative decoding is faster here)."""
        return self.target_seconds / self.speculative_seconds

    @property
    def cost_ratio(self) -> float:
        """c: a draft step's time over a target step's, from the two plain runs (same number of steps)."""
        return self.draft_seconds / self.target_seconds

    @property
    def expected_tokens_per_pass(self) -> float:
        return expected_tokens_per_pass(self.stats.acceptance_rate, self.draft_len)

    @property
    def expected_speedup(self) -> float:
        """Leviathan et al.'s expected speedup at the measured acceptance rate and cost ratio."""
        return expected_speedup(self.stats.acceptance_rate, self.draft_len, self.cost_ratio)


def measure_speculative_speedup(target, draft, prompts, max_new_tokens: int, draft_len: int = 4,
                                temperature: float = 0.0, repeats: int = 3, warmup: int = 1,
                                seed: int = 0, max_repeats: int | None = None) -> SpeculativeTiming:
    """Time plain target decoding, plain draft decoding and speculative decoding of ``max_new_tokens`` tokens
    after each prompt (a list of (1, T) tensors, or the rows of a (B, T) tensor; one at a time, batch size 1),
    interleaved (:func:`lessonlib.core.timing.interleaved_timings`: more rounds while a timing does not reproduce,
    up to ``max_repeats``, default ``repeats``) so background load slows all three alike. Sampling runs
    (``temperature`` > 0) reseed one generator with ``seed`` at every call."""
    prompts = [p.view(1, -1) for p in (prompts if isinstance(prompts, (list, tuple)) else prompts.unbind(0))]
    if not prompts:
        raise ValueError("give at least one prompt to time")

    def plain(model):
        def run():
            generator = torch.Generator().manual_seed(seed)
            return [generate(model, p, max_new_tokens, temperature=temperature, generator=generator)
                    for p in prompts]
        return run

    def speculative():
        generator = torch.Generator().manual_seed(seed)
        return [speculative_generate(target, draft, p, max_new_tokens, draft_len, temperature, generator=generator)
                for p in prompts]

    timings = interleaved_timings({"target": plain(target), "draft": plain(draft), "speculative": speculative},
                                  repeats=repeats, warmup=warmup, max_repeats=max_repeats or repeats)
    seconds = {key: t.seconds for key, t in timings.items()}
    outputs = speculative()
    stats = sum((out.stats for out in outputs), SpeculativeStats())
    identical = temperature == 0 and all(torch.equal(out.tokens, ref)
                                         for out, ref in zip(outputs, plain(target)(), strict=True))
    return SpeculativeTiming(seconds["target"], seconds["draft"], seconds["speculative"], stats, identical,
                             draft_len, timings)
