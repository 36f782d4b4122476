"""How many bytes a weight and a cached key or value take at each precision the course models.

"int8" stores weights in one byte and keeps the KV cache in bf16, as common int8 serving setups do. "int4" is
weight-only quantization (half a byte per weight, as llama.cpp's 4-bit formats and GPTQ/AWQ store them, scales
aside), with the KV cache in bf16; no datasheet quotes a 4-bit rate for the course's hardware, so its arithmetic
is counted at the int8 rate (the weights are unpacked before they are multiplied). The dashboards shared by
lessons 00-02 offer ``PRECISIONS``; the edge dashboard of lessons 03a and 03b adds int4 (``EDGE_PRECISIONS``).
Every byte count in the cost model, the dashboards and the lessons reads these tables.
"""
from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "int8")
EDGE_PRECISIONS = PRECISIONS + ("int4",)
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "int8": 1, "int4": 0.5}
KV_BYTES = {"fp32": 4, "bf16": 2, "int8": 2, "int4": 2}
COMPUTED_AS = {"int4": "int8"}     # a precision no hardware figure is quoted for, and the rate it runs at


def check_precision(precision: str) -> None:
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {', '.join(EDGE_PRECISIONS)}, got {precision!r}")


def weight_bytes(precision: str) -> float:
    """Bytes per stored weight."""
    check_precision(precision)
    return WEIGHT_BYTES[precision]


def kv_bytes(precision: str) -> int:
    """Bytes per cached key or value element."""
    check_precision(precision)
    return KV_BYTES[precision]
