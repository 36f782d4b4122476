"""This machine's peak FLOP/s and memory bandwidth with PyTorch on a given number of threads.

:func:`lessonlib.costs.hardware.this_machine` measures with every thread PyTorch uses. On a machine where other
programs hold the cores, threads that wait for each other make that probe slow and its numbers erratic, so the
lessons that time tiny models on one thread (see :func:`lessonlib.measure.decode.torch_threads`) measure the
machine the same way: the same two probes (a matrix product, a memory copy) on ``threads`` threads, so that the
roofline and the measurement use the same cores.
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch

from ..core.checks import require_count
from ..core.timing import grading_run, min_time
from ..costs.hardware import HardwareSpec
from .decode import torch_threads


@lru_cache(maxsize=None)
def this_machine_on(threads: int = 1) -> HardwareSpec:
    """Best-of-5 FLOP/s of a 1024x1024 matrix product (fp32, bf16) and bandwidth of a 256 MiB copy, with PyTorch
    on ``threads`` threads; measured once per session (once, and smaller, in a grading run)."""
    require_count("threads", threads)
    repeats, n, copy_mib = (1, 512, 64) if grading_run() else (5, 1024, 256)
    with torch_threads(threads):
        flops = {}
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            flops[precision] = 2 * n**3 / min_time(lambda a=a, b=b: a @ b, repeats=repeats)
        # fp16 on a small product: on many CPUs it runs a slow fallback kernel (under 1 GFLOP/s here).
        a, b = torch.randn(128, 128, dtype=torch.float16), torch.randn(128, 128, dtype=torch.float16)
        flops["fp16"] = 2 * 128**3 / min_time(lambda: a @ b, repeats=min(repeats, 2))
        flops["int8"] = flops["fp32"]  # no general int8 matmul in torch on a CPU: quantized work runs at fp32 speed
        source = torch.empty(copy_mib * 2**20 // 4, dtype=torch.float32)  # far larger than CPU caches
        target = torch.empty_like(source)
        bandwidth = 2 * source.numel() * 4 / min_time(lambda: target.copy_(source), repeats=repeats)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = float("nan")
    plural = "s" if threads != 1 else ""
    return HardwareSpec(
        name=f"this-machine-{threads}-thread{plural}", label=f"This machine ({threads} thread{plural}, measured)",
        kind="measured", peak_flops=flops, memory_bandwidth=bandwidth, memory_bytes=float(memory),
        source=f"measured now on {threads} thread{plural}: best of {repeats} runs of a {n}x{n} matmul (fp32, bf16) "
               f"(and 128x128 for fp16) and a {copy_mib} MiB tensor copy")
