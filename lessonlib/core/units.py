"""Numbers for people: bytes and durations in the unit that reads best."""
from __future__ import annotations

import math


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    if not math.isfinite(n):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def human_duration(seconds: float) -> str:
    """0.00042 -> '420.0 µs', 0.25 -> '250.00 ms', 3.2 -> '3.20 s', 1897 -> '31.6 min', 90000 -> '25.0 h',
    2e7 -> '231 days', 1e9 -> '31.7 years'."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds >= 2 * 365.25 * 86400:
        return f"{seconds / (365.25 * 86400):,.1f} years"
    if seconds >= 3 * 86400:
        return f"{seconds / 86400:,.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"
