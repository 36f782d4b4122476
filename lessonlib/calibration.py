"""Measuring the software overhead the roofline leaves out.

On a CPU, a model of a few million parameters moves so few bytes per token that the roofline predicts
microseconds, yet each decode step takes a millisecond or more: every layer costs a fixed few microseconds of
operator dispatch (Python, PyTorch's dispatcher, small-kernel launches) whatever its size. We measure that
cost the honest way, on models *other* than the one we then predict: decode steps of otherwise identical
models with 1, 2, 4 and 8 layers. The time left after the roofline's share grows linearly with the depth:

    measured(L) - roofline(L)  =  per_pass + L * per_layer

and a least-squares line through the points gives both terms.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .costs import ModelSpec
from .hardware import HardwareSpec
from .roofline import Overheads, decode_step
from .timing import median_time


@dataclass(frozen=True)
class OverheadFit:
    overheads: Overheads
    depths: tuple[int, ...]
    measured: tuple[float, ...]       # seconds per decode step at each depth
    roofline: tuple[float, ...]       # the roofline's prediction at each depth (no overhead)

    @property
    def residuals(self) -> tuple[float, ...]:
        fitted = [self.overheads.seconds(d) for d in self.depths]
        return tuple(m - r - f for m, r, f in zip(self.measured, self.roofline, fitted))


def fit_overheads(depths: Sequence[int], measured: Sequence[float], roofline: Sequence[float]) -> OverheadFit:
    """Least-squares line through (depth, measured - roofline). Negative terms are clipped to 0: overhead
    cannot save time."""
    if len(depths) < 2 or len(set(depths)) < 2:
        raise ValueError("need decode-step times of at least two different depths to separate the per-layer "
                         "overhead from the per-pass overhead")
    if not (len(depths) == len(measured) == len(roofline)):
        raise ValueError("depths, measured and roofline must have the same length")
    excess = np.asarray(measured, dtype=float) - np.asarray(roofline, dtype=float)
    per_layer, per_pass = np.polyfit(np.asarray(depths, dtype=float), excess, 1)
    return OverheadFit(Overheads(per_pass=max(float(per_pass), 0.0), per_layer=max(float(per_layer), 0.0)),
                       tuple(depths), tuple(measured), tuple(roofline))


# -- timing the tiny model --------------------------------------------------------------------------------
def spec_of(model, name: str = "tiny-gpt") -> ModelSpec:
    """The cost model's view of a TinyGPT, exact (the parameter counts agree) for every variant the course
    builds: grouped-query attention, pruned heads (n_head * head_dim below n_embd), a narrower MLP, and
    mixture-of-experts MLPs (``n_expert`` experts of width ``n_inner``, ``expert_top_k`` per token)."""
    c = model.config
    base = ModelSpec.from_hf_config({"model_type": "gpt2", "vocab_size": c.vocab_size, "n_positions": c.block_size,
                                     "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": 1, "n_inner": c.n_inner},
                                    name=name)
    n_expert = getattr(c, "n_expert", 0)
    return dataclasses.replace(base, n_heads=c.n_head, n_kv_heads=c.n_kv_head, head_dim=c.head_dim,
                               mlp_bias=c.bias, qkv_bias=c.bias, out_bias=c.bias,
                               norm="layernorm" if c.bias else "rmsnorm",  # a LayerNorm without bias: weight only
                               n_experts=max(n_expert, 1),
                               experts_per_token=getattr(c, "expert_top_k", 1) if n_expert else 1)


def decode_steps(model, context_len: int, batch_size: int = 1, steps: int = 8) -> Callable[[], None]:
    """A function that runs ``steps`` cached decode steps of ``batch_size`` sequences with ``context_len``
    tokens already cached, rewinding the cache first, so that every call does the same work (for timing)."""
    import torch

    if context_len < 1:
        raise ValueError("context_len must be at least 1 (the prompt)")
    ids = torch.randint(0, model.config.vocab_size, (batch_size, context_len),
                        generator=torch.Generator().manual_seed(0))
    cache = model.new_cache(batch_size, context_len + steps)
    token = ids[:, -1]
    with torch.inference_mode():
        model.prefill(ids, cache)

    def run() -> None:
        with torch.inference_mode():
            cache.length = context_len  # rewind: the next steps overwrite the same slots
            for _ in range(steps):
                model.decode_step(token, cache)
    return run


def time_decode_step(model, context_len: int, batch_size: int = 1, steps: int = 8, repeats: int = 5) -> float:
    """Seconds per cached decode step with ``context_len`` tokens already cached (median over repeats of
    ``steps`` consecutive steps)."""
    return median_time(decode_steps(model, context_len, batch_size, steps), repeats) / steps


def time_recompute_step(model, context_len: int, batch_size: int = 1, repeats: int = 5) -> float:
    """Seconds for one decode step *without* a cache: the whole prefix (context_len + 1 tokens) again."""
    import torch

    ids = torch.randint(0, model.config.vocab_size, (batch_size, context_len + 1),
                        generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return median_time(lambda: model.next_token_logits(ids), repeats)


def calibrate_overheads(hardware: HardwareSpec, width: int = 128, n_head: int = 4, depths=(1, 2, 4, 8),
                        context_len: int = 16, vocab_size: int = 41, block_size: int = 256) -> OverheadFit:
    """Time batch-1 decode steps of random models that differ only in depth, subtract the roofline's
    prediction (fp32, as the model runs), and fit the per-pass and per-layer overheads."""
    import torch

    from .tinygpt import TinyGPT, TinyGPTConfig

    measured, roofline = [], []
    for depth in depths:
        torch.manual_seed(0)
        model = TinyGPT(TinyGPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=depth,
                                      n_head=n_head, n_embd=width)).eval()
        measured.append(time_decode_step(model, context_len))
        roofline.append(decode_step(spec_of(model), hardware, "fp32", context_len, 1).seconds)
    return fit_overheads(depths, measured, roofline)


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


def achieved_attention_bandwidth(model, context_len: int, batch_size: int, repeats: int = 10) -> float:
    """Bytes/s that one layer's single-token attention reads from a KV cache of this model's shape."""
    import torch
    import torch.nn.functional as F

    config = model.config
    cache = model.new_cache(batch_size, context_len + 1)
    q = torch.randn(batch_size, config.n_head, 1, config.head_dim)
    k = cache.keys[0].normal_()[:, :, :context_len + 1]
    v = cache.values[0].normal_()[:, :, :context_len + 1]
    with torch.inference_mode():
        seconds = median_time(lambda: F.scaled_dot_product_attention(
            q, k, v, enable_gqa=config.n_kv_head != config.n_head), repeats)
    return 2 * k.numel() * k.element_size() / seconds
