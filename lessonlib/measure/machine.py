"""This machine's peak FLOP/s and memory bandwidth with PyTorch on a given number of threads.

:func:`lessonlib.costs.hardware.this_machine` measures with every thread PyTorch uses. Lessons that time a
tiny model on one thread (see :func:`lessonlib.measure.decode.torch_threads`) compare it with a roofline of
the same machine measured the same way, so that the prediction and the measurement use the same cores.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

from ..core.checks import require_count
from ..costs.hardware import HardwareSpec, this_machine
from .decode import torch_threads


@lru_cache(maxsize=None)
def this_machine_on(threads: int = 1) -> HardwareSpec:
    """This machine measured by the same two probes as ``this_machine()`` (a matrix product, a memory copy),
    with PyTorch on ``threads`` threads; measured once per session."""
    require_count("threads", threads)
    with torch_threads(threads):
        measured = this_machine.__wrapped__()
    plural = "s" if threads != 1 else ""
    return dataclasses.replace(measured, name=f"this-machine-{threads}-thread{plural}",
                               label=f"This machine ({threads} thread{plural}, measured)")
