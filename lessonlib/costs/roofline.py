"""Predicted time of the two phases of generation on given hardware: the roofline, plus measured overheads.

Prefill processes the whole prompt in one pass; each decode step produces one token for each of
``batch_size`` sequences. A pass must stream its weights from memory (once, shared by every token in it),
read or write the KV cache, and do the arithmetic. Memory traffic and arithmetic overlap, so the roofline
says the pass takes as long as the slower of the two:

    t = max((weight bytes + KV bytes) / bandwidth,  FLOPs / peak FLOP/s)  +  overhead

The overhead term is zero for the datasheet presets (an ideal implementation). On a CPU running a small
PyTorch model it is not: each layer costs a fixed few microseconds of operator dispatch whatever its size.
:class:`~lessonlib.costs.overheads.Overheads` holds that cost, measured on this machine by
:mod:`lessonlib.measure.calibration`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.checks import require_count
from .hardware import HardwareSpec
from .memory import MemoryFit, memory_breakdown
from .overheads import NO_OVERHEAD, Overheads
from .precision import check_precision, kv_bytes, weight_bytes
from .spec import ModelSpec


@dataclass(frozen=True)
class PassCost:
    """One forward pass: a prefill of ``n_tokens`` prompt tokens, or one decode step."""
    phase: str                    # "prefill" or "decode"
    model: ModelSpec
    hardware: HardwareSpec
    precision: str
    context_len: int              # decode: tokens already cached; prefill: prompt length
    batch_size: int
    weight_bytes_read: float
    kv_bytes_read: float          # KV-cache bytes read and written
    flops: float
    memory: dict[str, float] = field(default_factory=dict)   # what must be resident: weights, KV, activations
    overhead_seconds: float = 0.0

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
    def t_roofline(self) -> float:
        return max(self.t_memory, self.t_compute)

    @property
    def seconds(self) -> float:
        return self.t_roofline + self.overhead_seconds

    @property
    def bound(self) -> str:
        """What sets the time: "memory", "compute", or "overhead" when fixed costs exceed both."""
        if self.overhead_seconds > self.t_roofline:
            return "overhead"
        return "memory" if self.t_memory >= self.t_compute else "compute"

    @property
    def tokens(self) -> int:
        return self.batch_size * (self.context_len if self.phase == "prefill" else 1)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved; compare with ``hardware.ridge_point(precision)``."""
        return self.flops / (self.weight_bytes_read + self.kv_bytes_read)

    @property
    def memory_fit(self) -> MemoryFit:
        """What must be resident against the hardware's memory."""
        return MemoryFit(self.memory, self.hardware.memory_bytes)

    @property
    def memory_needed(self) -> float:
        return self.memory_fit.needed

    @property
    def fits(self) -> bool:
        return self.memory_fit.fits


def check_pass(precision: str, **counts: int) -> None:
    """A known precision, and counts that are whole numbers: ``context_len`` may be 0, the others must be
    positive."""
    check_precision(precision)
    for name, value in counts.items():
        require_count(name, value, allow_zero=name == "context_len")


def decode_step(model: ModelSpec, hardware: HardwareSpec, precision: str = "bf16", context_len: int = 1024,
                batch_size: int = 1, overheads: Overheads = NO_OVERHEAD) -> PassCost:
    """One decode step with ``context_len`` tokens already cached, for ``batch_size`` sequences."""
    check_pass(precision, context_len=context_len, batch_size=batch_size)
    return PassCost(
        phase="decode", model=model, hardware=hardware, precision=precision, context_len=context_len,
        batch_size=batch_size,
        weight_bytes_read=model.weight_bytes_read(batch_size, weight_bytes(precision)),
        kv_bytes_read=model.decode_kv_bytes(context_len, batch_size, kv_bytes(precision)),
        flops=batch_size * model.flops_per_token(context_len),
        memory=memory_breakdown(model, precision, context_len + 1, batch_size),
        overhead_seconds=overheads.seconds(model.n_layers))


def prefill(model: ModelSpec, hardware: HardwareSpec, precision: str = "bf16", n_tokens: int = 1024,
            batch_size: int = 1, overheads: Overheads = NO_OVERHEAD) -> PassCost:
    """Processing an ``n_tokens`` prompt for each of ``batch_size`` sequences in one forward pass."""
    check_pass(precision, n_tokens=n_tokens, batch_size=batch_size)
    return PassCost(
        phase="prefill", model=model, hardware=hardware, precision=precision, context_len=n_tokens,
        batch_size=batch_size,
        weight_bytes_read=model.weight_bytes_read(n_tokens * batch_size, weight_bytes(precision)),
        kv_bytes_read=model.kv_cache_bytes(n_tokens, batch_size, kv_bytes(precision)),
        flops=model.prefill_flops(n_tokens, batch_size),
        memory=memory_breakdown(model, precision, n_tokens, batch_size),
        overhead_seconds=overheads.seconds(model.n_layers))


@dataclass(frozen=True)
class Generation:
    """A whole request: prefill of the prompt, then ``new_tokens`` decode steps as the context grows."""
    prefill: PassCost
    new_tokens: int
    decode_seconds: float
    last_step: PassCost

    @property
    def time_to_first_token(self) -> float:
        return self.prefill.seconds

    @property
    def seconds(self) -> float:
        return self.prefill.seconds + self.decode_seconds

    @property
    def seconds_per_token(self) -> float:
        """Mean decode latency per generated token (what a reader of a streamed answer feels)."""
        return self.decode_seconds / self.new_tokens

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second over all sequences of the batch, decode phase."""
        return self.prefill.batch_size * self.new_tokens / self.decode_seconds


def generation(model: ModelSpec, hardware: HardwareSpec, precision: str = "bf16", prompt_len: int = 512,
               new_tokens: int = 256, batch_size: int = 1, overheads: Overheads = NO_OVERHEAD) -> Generation:
    """Predicted time of a request: the decode steps are summed in closed form over the growing context
    (vectorized, so a 100k-token answer costs microseconds to predict)."""
    check_pass(precision, prompt_len=prompt_len, new_tokens=new_tokens, batch_size=batch_size)
    first = prefill(model, hardware, precision, prompt_len, batch_size, overheads)
    contexts = np.arange(prompt_len, prompt_len + new_tokens, dtype=np.float64)
    kv_moved = batch_size * kv_bytes(precision) * model.decode_kv_values(contexts)
    t_memory = (model.weight_bytes_read(batch_size, weight_bytes(precision)) + kv_moved) / hardware.memory_bandwidth
    t_compute = batch_size * (2 * model.matmul_params_per_token() + model.attention_flops_per_token(contexts)) \
        / hardware.flops_for(precision)
    decode_seconds = float(np.maximum(t_memory, t_compute).sum()) + new_tokens * overheads.seconds(model.n_layers)
    last = decode_step(model, hardware, precision, prompt_len + new_tokens - 1, batch_size, overheads)
    return Generation(first, new_tokens, decode_seconds, last)
