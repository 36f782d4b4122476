"""Where a step's time goes: operator time shares from ``torch.profiler``, and the bandwidth attention achieves
when it reads a KV cache."""
from __future__ import annotations

import contextlib
import os
import sys

import torch
import torch.nn.functional as F

from ..core.timing import Timing, grading_run, timing


@contextlib.contextmanager
def _silenced_stderr_fd():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_shares(fn, repeats: int = 5) -> dict[str, float]:
    """Where the CPU time of ``fn()`` goes, by PyTorch operator: matrix products, attention, and everything
    else (LayerNorm, GELU, additions, copies: elementwise work the cost model does not count). Fractions
    of the operators' own time, from ``torch.profiler``."""
    from torch.profiler import profile

    if grading_run():
        return {}  # starting the profiler costs seconds, and no test cell depends on it
    fn()
    with _silenced_stderr_fd(), profile() as prof:  # the profiler's C++ layer logs start/stop on fd 2
        for _ in range(repeats):
            fn()
    groups = {"matrix products": 0.0, "attention": 0.0, "other operators": 0.0}
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        if event.key in ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul"):
            group = "matrix products"
        elif "scaled_dot_product" in event.key:
            group = "attention"
        else:
            group = "other operators"
        groups[group] += event.self_cpu_time_total
    total = sum(groups.values()) or 1.0
    return {name: value / total for name, value in groups.items()}


def attention_read_timing(model, context_len: int, batch_size: int, repeats: int = 10) -> tuple[float, Timing]:
    """One layer's single-token attention over a KV cache of this model's shape: the bytes it reads (keys and
    values) and how long it took (:class:`~lessonlib.core.timing.Timing`)."""
    config = model.config
    cache = model.new_cache(batch_size, context_len + 1)
    q = torch.randn(batch_size, config.n_heads, 1, config.head_dim)
    k = cache.layers[0].keys.normal_()[:, :, :context_len + 1]
    v = cache.layers[0].values.normal_()[:, :, :context_len + 1]
    with torch.inference_mode():
        measured = timing(lambda: F.scaled_dot_product_attention(
            q, k, v, enable_gqa=config.n_kv_heads != config.n_heads), repeats, max_repeats=3 * repeats)
    return 2 * k.numel() * k.element_size(), measured


def achieved_attention_bandwidth(model, context_len: int, batch_size: int, repeats: int = 10) -> float:
    """Bytes/s that one layer's single-token attention reads from a KV cache of this model's shape (fastest
    of the timed runs)."""
    read, measured = attention_read_timing(model, context_len, batch_size, repeats)
    return read / measured.seconds
