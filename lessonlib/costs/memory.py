"""What must sit in memory to serve a model, and whether it fits: the one place that compares bytes needed
with bytes available (the roofline's passes, the edge simulator and the dashboards all ask here)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..core.checks import require_count
from .precision import kv_bytes, weight_bytes
from .spec import ModelSpec


@dataclass(frozen=True)
class MemoryFit:
    """Bytes needed, part by part (weights, KV cache, ...), against the bytes ``available`` for them."""
    parts: Mapping[str, float]
    available: float

    @property
    def needed(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        """True when everything needed fits; a model that exactly fills the memory fits."""
        return self.needed <= self.available

    @property
    def spare(self) -> float:
        """Bytes left over (negative: how much is missing)."""
        return self.available - self.needed


def memory_breakdown(model: ModelSpec, precision: str, context_len: int, batch_size: int = 1) -> dict[str, float]:
    """Bytes that must be resident to serve ``batch_size`` sequences of ``context_len`` tokens: the weights,
    the KV cache, and the peak activations (a prefill of the whole context is the worst case)."""
    require_count("context_len", context_len, allow_zero=True)
    require_count("batch_size", batch_size)
    return {
        "weights": model.weight_bytes(weight_bytes(precision)),
        "KV cache": model.kv_cache_bytes(context_len, batch_size, kv_bytes(precision)),
        "activations": model.activation_bytes(max(context_len, 1), batch_size, kv_bytes(precision)),
    }


def largest_batch(model: ModelSpec, memory_bytes: float, precision: str, context_len: int,
                  limit: int = 1 << 20) -> int:
    """The most sequences of ``context_len`` tokens whose weights, KV caches and activations fit in
    ``memory_bytes`` (0 when not even one does). Everything but the weights grows linearly with the batch, so
    the answer is a division, checked against :func:`memory_breakdown` (capped at ``limit``)."""
    require_count("context_len", context_len)
    one, two = (sum(memory_breakdown(model, precision, context_len, b).values()) for b in (1, 2))
    per_sequence, fixed = two - one, 2 * one - two
    if fixed + per_sequence > memory_bytes:
        return 0
    batch = min(limit, int((memory_bytes - fixed) // per_sequence))
    while batch > 1 and not MemoryFit(memory_breakdown(model, precision, context_len, batch), memory_bytes).fits:
        batch -= 1   # guard against rounding at the boundary
    return batch
