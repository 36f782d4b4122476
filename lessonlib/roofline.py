"""Where the time of one decode step goes: weight reads, KV-cache reads and compute.

One decode step produces one token for each of ``batch_size`` sequences. It must stream every weight the
step uses from memory once (shared by the whole batch), read each sequence's cached keys and values, and do
the arithmetic. A roofline view: memory traffic and arithmetic overlap, so the step takes as long as the
slower of the two,

    t_step = max((weight bytes + KV bytes) / bandwidth,  FLOPs / peak FLOP/s).

Lesson 01 grows this into the full model (prefill, per-layer overhead measured on this machine).
"""
from __future__ import annotations

from dataclasses import dataclass

from .costs import ModelSpec
from .hardware import HardwareSpec

# Bytes per weight and per cached key/value at each precision. int8 stores weights in one byte and keeps
# the KV cache in bf16, as common int8 serving setups do.
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "int8": 1}
KV_BYTES = {"fp32": 4, "bf16": 2, "int8": 2}


@dataclass(frozen=True)
class DecodeStep:
    model: ModelSpec
    hardware: HardwareSpec
    precision: str
    context_len: int
    batch_size: int
    weight_bytes_read: float
    kv_bytes_read: float
    flops: float
    memory_needed: float

    @property
    def t_weights(self) -> float:
        return self.weight_bytes_read / self.hardware.memory_bandwidth

    @property
    def t_kv(self) -> float:
        return self.kv_bytes_read / self.hardware.memory_bandwidth

    @property
    def t_memory(self) -> float:
        return self.t_weights + self.t_kv

    @property
    def t_compute(self) -> float:
        return self.flops / self.hardware.flops_for(self.precision)

    @property
    def seconds(self) -> float:
        return max(self.t_memory, self.t_compute)

    @property
    def bound(self) -> str:
        return "memory" if self.t_memory >= self.t_compute else "compute"

    @property
    def tokens_per_second(self) -> float:
        return self.batch_size / self.seconds

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved; compare with ``hardware.ridge_point(precision)``."""
        return self.flops / (self.weight_bytes_read + self.kv_bytes_read)

    @property
    def fits(self) -> bool:
        return self.memory_needed <= self.hardware.memory_bytes


def expected_experts_touched(n_experts: int, experts_per_token: int, batch_size: int) -> float:
    """Distinct experts a layer must read when ``batch_size`` tokens each pick ``experts_per_token`` of
    ``n_experts`` uniformly: each expert is missed by one token with probability (E-k)/E."""
    missed_by_all = ((n_experts - experts_per_token) / n_experts) ** batch_size
    return n_experts * (1 - missed_by_all)


def decode_step(model: ModelSpec, hardware: HardwareSpec, precision: str = "bf16", context_len: int = 1024,
                batch_size: int = 1) -> DecodeStep:
    """The bytes, FLOPs and time of one decode step with ``context_len`` tokens already cached."""
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {', '.join(WEIGHT_BYTES)}, got {precision!r}")
    for name, value in (("context_len", context_len), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "context_len" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'context_len' else 'positive'} "
                             f"integer, got {value!r}")
    params_read = model.matmul_params_per_token()  # what one token multiplies by
    if model.n_experts > 1:  # a batch of tokens routes to more experts than one token does
        extra_experts = expected_experts_touched(model.n_experts, model.experts_per_token, batch_size) \
            - model.experts_per_token
        params_read += model.n_layers * extra_experts * model.expert_params()
    weight_bytes = WEIGHT_BYTES[precision]
    kv_bytes = model.kv_cache_bytes(context_len, batch_size, KV_BYTES[precision])
    return DecodeStep(
        model=model, hardware=hardware, precision=precision, context_len=context_len, batch_size=batch_size,
        weight_bytes_read=params_read * weight_bytes,
        kv_bytes_read=kv_bytes,
        flops=batch_size * model.flops_per_token(context_len),
        memory_needed=model.weight_bytes(weight_bytes) + model.kv_cache_bytes(context_len + 1, batch_size,
                                                                              KV_BYTES[precision]),
    )
