"""How many bytes a weight and a cached key or value take at each precision the course models.

"int8" stores weights in one byte and keeps the KV cache in bf16, as common int8 serving setups do.
Every byte count in the cost model, the dashboards and the lessons reads these tables.
"""
from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "int8")
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "int8": 1}
KV_BYTES = {"fp32": 4, "bf16": 2, "int8": 2}


def check_precision(precision: str) -> None:
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def weight_bytes(precision: str) -> int:
    """Bytes per stored weight."""
    check_precision(precision)
    return WEIGHT_BYTES[precision]


def kv_bytes(precision: str) -> int:
    """Bytes per cached key or value element."""
    check_precision(precision)
    return KV_BYTES[precision]
