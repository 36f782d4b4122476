"""Calibrating the overhead term of the roofline on this machine.

We measure the fixed per-layer and per-pass cost the honest way, on models *other* than the one we then
predict: batch-1 decode steps of random models that differ only in depth (1, 2, 4 and 8 layers). The
roofline's share is subtracted and :func:`lessonlib.costs.overheads.fit_overheads` fits the line through the
rest.
"""
from __future__ import annotations

import torch

from ..costs.hardware import HardwareSpec
from ..costs.overheads import OverheadFit, fit_overheads
from ..costs.roofline import decode_step
from ..models.cost_spec import spec_of
from ..models.tinygpt import TinyGPT, TinyGPTConfig
from .decode import time_decode_step


def calibrate_overheads(hardware: HardwareSpec, hidden_size: int = 128, n_heads: int = 4, depths=(1, 2, 4, 8),
                        context_len: int = 16, vocab_size: int = 41,
                        max_position_embeddings: int = 256) -> OverheadFit:
    """Time batch-1 decode steps of random models that differ only in depth, subtract the roofline's
    prediction (fp32, as the model runs), and fit the per-pass and per-layer overheads."""
    measured, roofline = [], []
    for depth in depths:
        torch.manual_seed(0)
        model = TinyGPT(TinyGPTConfig(vocab_size=vocab_size, max_position_embeddings=max_position_embeddings,
                                      n_layers=depth, n_heads=n_heads, hidden_size=hidden_size)).eval()
        measured.append(time_decode_step(model, context_len))
        roofline.append(decode_step(spec_of(model), hardware, "fp32", context_len, 1).seconds)
    return fit_overheads(depths, measured, roofline)
