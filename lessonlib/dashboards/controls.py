"""Controls and layout the dashboards share, so that every dashboard offers the same hardware, precisions,
context lengths, batch sizes and what-if knobs, and lays out the same way in a notebook and on a projector.

Labels are sized in ``em`` (they grow with the font, so presenter mode's large type never truncates them), and a
dashboard's outputs sit in a box that wraps: side by side on a wide screen, one under the other on a narrow one.
"""
from __future__ import annotations

import html

from ..costs.hardware import THIS_MACHINE, hardware_preset, hardware_preset_names
from ..costs.precision import DESCRIPTIONS, PRECISIONS
from ..display.palette import BAD

CONTEXT_CHOICES = [2**k for k in range(0, 18)]       # 1 ... 131072 tokens
BATCH_CHOICES = [2**k for k in range(0, 11)]         # 1 ... 1024 sequences
WHAT_IF_CHOICES = [("1/4x", 0.25), ("1/2x", 0.5), ("1x (as built)", 1.0), ("2x", 2.0), ("4x", 4.0), ("8x", 8.0)]
LABEL_STYLE = {"description_width": "9.5em"}        # wide enough for every label the dashboards use


def dropdown_layout():
    """Wide enough for the longest model or hardware name at any font size, never wider than the page."""
    import ipywidgets as widgets

    return widgets.Layout(width="32em", max_width="100%")


def hardware_label(name: str) -> str:
    """A preset's label for a dropdown (this machine's without measuring it: that happens when chosen)."""
    return "This machine (measured)" if name == THIS_MACHINE else hardware_preset(name).label


def hardware_controls(hardware: str, precision: str, context_len: int, batch_size: int, width: str = "36em"):
    """The controls every cost dashboard shares: hardware, precision, context and batch sliders."""
    import ipywidgets as widgets

    hardware_box = widgets.Dropdown(
        options=[(hardware_label(n), n) for n in hardware_preset_names()], value=hardware, description="hardware",
        style=LABEL_STYLE, layout=dropdown_layout())
    precision_box = precision_buttons(precision)
    wide = widgets.Layout(width=width, max_width="100%")
    context_box = widgets.SelectionSlider(options=CONTEXT_CHOICES, value=context_len, description="context",
                                          layout=wide, style=LABEL_STYLE)
    batch_box = widgets.SelectionSlider(options=BATCH_CHOICES, value=batch_size, description="batch", layout=wide,
                                        style=LABEL_STYLE)
    return hardware_box, precision_box, context_box, batch_box


def precision_buttons(precision: str):
    import ipywidgets as widgets

    return widgets.ToggleButtons(options=list(PRECISIONS), value=precision, description="precision",
                                 tooltips=[DESCRIPTIONS[p] for p in PRECISIONS], style=LABEL_STYLE)


def what_if_controls(width: str = "36em"):
    """Two knobs for "what if we bought a faster chip?": scale the memory bandwidth, scale the peak FLOP/s."""
    import ipywidgets as widgets

    wide = widgets.Layout(width=width, max_width="100%")
    bandwidth = widgets.SelectionSlider(options=WHAT_IF_CHOICES, value=1.0, description="bandwidth",
                                        layout=wide, style=LABEL_STYLE)
    flops = widgets.SelectionSlider(options=WHAT_IF_CHOICES, value=1.0, description="FLOP/s", layout=wide,
                                    style=LABEL_STYLE)
    return bandwidth, flops


def outputs_box(*children):
    """Outputs side by side while the screen is wide enough, one under the other when not; never stretched."""
    import ipywidgets as widgets

    for child in children:
        child.layout.flex = "1 1 26em"
        child.layout.min_width = "0"
    return widgets.Box(list(children), layout=widgets.Layout(display="flex", flex_flow="row wrap",
                                                             align_items="flex-start", width="100%"))


def lock_sparsity_for_2_4(kind_box, sparsity_box) -> None:
    """2:4 pruning always removes half: while it is chosen, the sparsity slider shows 50% and is locked; it gets
    back the value it had when another kind is chosen again. Register it before the dashboard's own observers."""
    chosen = [sparsity_box.value]

    def on_kind(change):
        if change["new"] == "2:4":
            chosen[0] = sparsity_box.value
            sparsity_box.disabled = True
            sparsity_box.value = 0.5
        elif change["old"] == "2:4":
            sparsity_box.disabled = False
            sparsity_box.value = chosen[0]

    kind_box.observe(on_kind, names="value")
    on_kind({"new": kind_box.value, "old": None})       # a dashboard that opens on 2:4


def problem(what: str, error: Exception) -> str:
    """A setting the model cannot evaluate, explained in a sentence (never a traceback)."""
    message = error.args[0] if error.args else str(error)
    return (f'<p style="color:{BAD}"><b>&#9888; {html.escape(what)}:</b> {html.escape(str(message))}</p>')
