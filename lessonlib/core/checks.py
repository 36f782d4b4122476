"""Argument checks shared by the layers: each raises ``ValueError`` with a message that says what to fix."""
from __future__ import annotations

from typing import Any


def require_count(name: str, value: Any, allow_zero: bool = False) -> None:
    """``value`` must be a whole number (not a bool), positive, or non-negative with ``allow_zero``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")


def require_sparsity(value: Any, name: str = "sparsity") -> None:
    """A fraction of weights removed: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} is the fraction of weights removed, a number in [0, 1); got {value!r}")
