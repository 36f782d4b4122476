"""Live dashboards for lectures and self-study. Each one is a plain, tested callback (inputs -> HTML, with charts as
SVG) wrapped in ipywidgets; the callback is what the tests time and what never raises on an extreme slider value.

decode_step, cost_model, serving, kv_memory, edge_device    analytic (no PyTorch): answer in a millisecond or two
cascading                                                     lesson 04's cascade and speculative decoding
moe_routing, pruning_sparsity                                 lessons 03a and 03b's tiny models, live
registry, presenter, shipped                                  presenter mode (`make demo`): one Demo line per page
"""
from .decode_step import decode_step_dashboard, decode_step_report

__all__ = ["decode_step_dashboard", "decode_step_report"]
