"""How many bytes a weight and a cached key or value take at each precision the course models, and which
arithmetic a pass at that precision runs on.

* ``fp32``, ``bf16``, ``fp16``: weights, KV cache and arithmetic all at that precision.
* ``int8``: weights in one byte (one scale per output channel, negligible), arithmetic on the int8 units
  (W8A8, as SmoothQuant-style serving does); the KV cache stays 16-bit, as common int8 setups keep it.
* ``int4``: weights in four bits in groups of 128 that share a 16-bit scale and a 16-bit zero point (the
  GPTQ / AWQ layout): 0.5 + 4/128 bytes per weight. They are unpacked to a 16-bit float for the arithmetic
  (W4A16), whichever of fp16 and bf16 the hardware multiplies faster (the same on GPUs; fp16 on a Cortex-A76,
  which has no bf16 arithmetic); the KV cache stays 16-bit.

Every byte count in the cost model, the dashboards and the lessons reads these tables.
"""
from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
INT4_GROUP = 128                                   # weights sharing one scale and zero point
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int4": 0.5 + 4 / INT4_GROUP}
KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 2, "int4": 2}
# The arithmetic a pass at each precision can run on (the hardware's fastest of them is used): a hardware preset
# gives peak FLOP/s for these.
COMPUTE = {"fp32": ("fp32",), "bf16": ("bf16",), "fp16": ("fp16",), "int8": ("int8",), "int4": ("fp16", "bf16")}
COMPUTE_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DESCRIPTIONS = {
    "fp32": "32-bit floats everywhere",
    "bf16": "16-bit bfloat weights, cache and arithmetic",
    "fp16": "16-bit float weights, cache and arithmetic",
    "int8": "8-bit integer weights and arithmetic, 16-bit KV cache",
    "int4": "4-bit weights (groups of 128 with a 16-bit scale and zero), unpacked to 16 bits for the arithmetic; "
            "16-bit KV cache",
}


def check_precision(precision: str) -> None:
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def weight_bytes(precision: str) -> float:
    """Bytes per stored weight (int4: half a byte plus its share of the group's scale and zero point)."""
    check_precision(precision)
    return WEIGHT_BYTES[precision]


def kv_bytes(precision: str) -> int:
    """Bytes per cached key or value element."""
    check_precision(precision)
    return KV_BYTES[precision]


def compute_precisions(precision: str) -> tuple[str, ...]:
    """The arithmetic a pass at ``precision`` can run on; the hardware's fastest of them is the one used (int4
    weights are multiplied in fp16 or bf16)."""
    check_precision(precision)
    return COMPUTE[precision]
