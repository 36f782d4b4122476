"""Controls the cost dashboards share, so that every dashboard offers the same hardware, precisions, context
lengths and batch sizes."""
from __future__ import annotations

from ..costs.hardware import THIS_MACHINE, hardware_preset, hardware_preset_names
from ..costs.precision import PRECISIONS

CONTEXT_CHOICES = [2**k for k in range(0, 18)]       # 1 ... 131072 tokens
BATCH_CHOICES = [2**k for k in range(0, 11)]         # 1 ... 1024 sequences


def hardware_label(name: str) -> str:
    """A preset's label for a dropdown (this machine's without measuring it: that happens when chosen)."""
    return "This machine (measured)" if name == THIS_MACHINE else hardware_preset(name).label


def hardware_controls(hardware: str, precision: str, context_len: int, batch_size: int, width: str = "520px",
                      precisions=PRECISIONS):
    """The controls every cost dashboard shares: hardware, precision (one of ``precisions``), context and batch
    sliders."""
    import ipywidgets as widgets

    hardware_box = widgets.Dropdown(
        options=[(hardware_label(n), n) for n in hardware_preset_names()], value=hardware, description="hardware")
    precision_box = widgets.ToggleButtons(options=list(precisions), value=precision, description="precision")
    wide = widgets.Layout(width=width)
    context_box = widgets.SelectionSlider(options=CONTEXT_CHOICES, value=context_len, description="context",
                                          layout=wide)
    batch_box = widgets.SelectionSlider(options=BATCH_CHOICES, value=batch_size, description="batch", layout=wide)
    return hardware_box, precision_box, context_box, batch_box
