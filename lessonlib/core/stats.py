"""How far a measured share can be from the truth, and whether two models really differ.

A model that answers 140 of 200 questions right has a share of 0.70, but another 200 questions of the same kind
could give 0.65 or 0.75: the standard error says by how much such numbers move. Two models scored on the *same*
questions are compared question by question (a paired comparison): the questions both get right or both get wrong
say nothing about which is better, so only the questions they disagree on count, and the difference is known far
more precisely than two separate shares would suggest.

    a, b = Share.of(right_a), Share.of(right_b)          # one bool per question, the same questions in order
    print(a)                                             # "70.0% ± 6.4 (of 200)": a 95% interval
    gap = paired_difference(right_a, right_b)            # a minus b, in shares
    gap.clear                                            # True when |gap| is at least twice its standard error
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.96      # a normal 95% interval: the estimate ± 1.96 standard errors
CLEAR = 2.0     # a difference of at least this many standard errors is called clear (not noise)


def _outcomes(right: Sequence[bool], what: str) -> tuple[bool, ...]:
    values = tuple(right)
    if not values:
        raise ValueError(f"{what}: give at least one outcome (a bool per question)")
    if not all(isinstance(v, bool) or v in (0, 1) for v in values):
        raise ValueError(f"{what}: outcomes must be True/False (or 1/0) per question")
    return tuple(bool(v) for v in values)


@dataclass(frozen=True)
class Share:
    """``right`` of ``n`` questions answered right."""
    right: int
    n: int

    def __post_init__(self):
        if self.n < 1 or not 0 <= self.right <= self.n:
            raise ValueError(f"a share needs 0 <= right <= n and n >= 1, got {self.right} of {self.n}")

    @classmethod
    def of(cls, outcomes: Sequence[bool]) -> Share:
        values = _outcomes(outcomes, "Share.of")
        return cls(sum(values), len(values))

    @property
    def value(self) -> float:
        return self.right / self.n

    @property
    def stderr(self) -> float:
        """Standard error of the share, sqrt(p (1 - p) / n); at least that of one question in n, so that 0 of
        200 is not reported as exact."""
        p = min(max(self.value, 0.5 / self.n), 1 - 0.5 / self.n)
        return math.sqrt(p * (1 - p) / self.n)

    def __format__(self, spec: str) -> str:
        """``f"{share}"``: "70.0% ± 6.4 (of 200)"; ``f"{share:short}"``: "70% ± 6"."""
        if spec == "short":
            return f"{100 * self.value:.0f}% ± {100 * Z95 * self.stderr:.0f}"
        return f"{100 * self.value:.1f}% ± {100 * Z95 * self.stderr:.1f} (of {self.n:,})"

    def __str__(self) -> str:
        return format(self)


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b`` (shares), with its standard error, from ``n`` questions both answered."""
    value: float
    stderr: float
    n: int
    a_only: int = 0     # questions only a got right
    b_only: int = 0     # questions only b got right

    @property
    def z(self) -> float:
        """The difference in standard errors (0 when both models gave the same verdict on every question)."""
        return self.value / self.stderr if self.stderr > 0 else 0.0

    @property
    def clear(self) -> bool:
        """At least CLEAR standard errors from zero: not what chance alone would give on this many questions."""
        return abs(self.z) >= CLEAR

    @property
    def interval(self) -> tuple[float, float]:
        return self.value - Z95 * self.stderr, self.value + Z95 * self.stderr

    def __format__(self, spec: str) -> str:
        """``f"{gap}"``: "-2.0 points (95% interval -3.4 to -0.6)"."""
        low, high = self.interval
        return f"{100 * self.value:+.1f} points (95% interval {100 * low:+.1f} to {100 * high:+.1f})"

    def __str__(self) -> str:
        return format(self)

    @property
    def flat(self) -> str:
        """The same without parentheses, to sit inside a sentence's own: "-2.0 points, 95% interval -3.4 to -0.6"."""
        low, high = self.interval
        return f"{100 * self.value:+.1f} points, 95% interval {100 * low:+.1f} to {100 * high:+.1f}"


def paired_difference(a: Sequence[bool], b: Sequence[bool]) -> Difference:
    """Share of ``a`` minus share of ``b`` on the same questions, in the same order. Its standard error is the
    one of the mean of the per-question differences (each -1, 0 or +1), so only the questions on which the two
    disagree make it move."""
    a, b = _outcomes(a, "paired_difference"), _outcomes(b, "paired_difference")
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs the same questions for both: got {len(a)} and {len(b)} outcomes")
    n = len(a)
    a_only = sum(x and not y for x, y in zip(a, b, strict=True))
    b_only = sum(y and not x for x, y in zip(a, b, strict=True))
    mean = (a_only - b_only) / n
    # Sample variance of the per-question differences d (d**2 is 1 exactly where the two disagree).
    variance = ((a_only + b_only) - n * mean**2) / (n - 1) if n > 1 else 0.0
    return Difference(mean, math.sqrt(max(variance, 0.0) / n), n, a_only, b_only)


def share_difference(a: float, b: float, n: int) -> Difference:
    """Share ``a`` minus share ``b``, each measured on ``n`` questions, when only the two shares are known (not
    which questions each model got right): the standard error treats them as independent, sqrt(se_a² + se_b²).
    On the same questions that overstates the noise (a paired comparison, :func:`paired_difference`, is
    tighter), so a difference this calls clear is clear."""
    if n < 1:
        raise ValueError(f"share_difference needs the number of questions behind each share (n >= 1), got {n}")
    if not (0 <= a <= 1 and 0 <= b <= 1):
        raise ValueError(f"shares must be between 0 and 1, got {a} and {b}")
    stderr = math.hypot(Share(round(a * n), n).stderr, Share(round(b * n), n).stderr)
    return Difference(a - b, stderr, n)
