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


# What largest_batch reserves for activations beside the weights and the KV caches.
ACTIVATIONS = {
    "whole batch": "every sequence's whole context prefilled in one pass (the worst case; grows with the batch)",
    "one sequence": "one sequence's whole context prefilled at a time (reserved once, whatever the batch)",
    "none": "nothing: weights and KV caches only, (memory - weights) // KV bytes per sequence",
}


def largest_batch(model: ModelSpec, memory_bytes: float, precision: str, context_len: int,
                  limit: int = 1 << 20, activations: str = "whole batch") -> int:
    """The most sequences of ``context_len`` tokens whose weights and KV caches fit in ``memory_bytes`` together
    with the activations ``activations`` says to reserve (a key of :data:`ACTIVATIONS`; 0 when not even one
    sequence fits):

    - ``"whole batch"`` (the default, lessons 00 and 01's memory wall): the peak activations of prefilling every
      sequence's whole context in one pass, as :func:`memory_breakdown` counts them;
    - ``"one sequence"``: a server that prefills one conversation at a time (or in chunks) and decodes the rest
      reserves one ``context_len`` prefill's activations once;
    - ``"none"``: weights and KV caches only, the textbook estimate ``(memory - weights) // per-sequence KV``.

    Everything that grows with the batch grows linearly, so the answer is a division, checked against the bytes
    needed (capped at ``limit``)."""
    require_count("context_len", context_len)
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activations!r}")

    def needed(batch: int) -> float:
        parts = memory_breakdown(model, precision, context_len, batch)
        if activations == "none":
            parts["activations"] = 0.0
        elif activations == "one sequence":
            parts["activations"] = model.activation_bytes(context_len, 1, kv_bytes(precision))
        return MemoryFit(parts, memory_bytes).needed

    one, two = needed(1), needed(2)
    per_sequence, fixed = two - one, 2 * one - two
    if fixed + per_sequence > memory_bytes:
        return 0
    batch = min(limit, int((memory_bytes - fixed) // per_sequence))
    while batch > 1 and needed(batch) > memory_bytes:
        batch -= 1   # guard against rounding at the boundary
    return batch
