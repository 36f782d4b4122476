"""Dashboard: what an attention modification does to a real model's KV cache, the batch that fits on a device
(weights and KV caches, as lesson 02's formula counts them), and the time per token. A model preset, a
modification (grouped-query, multi-query, sliding window, latent) and its setting, the device, the precision
and the context length."""
from __future__ import annotations

import html
import io
from functools import lru_cache

import numpy as np

from ..core.units import human_bytes, human_duration
from ..costs import variants
from ..costs.hardware import hardware_preset
from ..costs.memory import largest_batch
from ..costs.precision import kv_bytes, weight_bytes
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.roofline import decode_step
from ..costs.spec import ModelSpec
from .controls import CONTEXT_CHOICES, hardware_controls

CONTEXTS = np.array([2**k for k in range(7, 18)])     # 128 ... 131072 tokens, the plot's x axis


def value_choices(spec: ModelSpec, kind: str) -> list[int]:
    """The settings a modification offers for ``spec``: KV head counts that divide its heads, windows, ranks."""
    if kind == "grouped-query":
        return [n for n in range(1, spec.n_heads + 1) if spec.n_heads % n == 0]
    if kind == "sliding window":
        return [2**k for k in range(8, 16)]
    if kind == "latent":
        return [64, 128, 256, 512, 1024]
    return []


class KVPlot:
    """One figure reused for every update: KV cache of one sequence against the context, before and after. The
    axes are fixed (log10 of the context against log10 of GiB, with readable tick labels), so a redraw moves
    data only: re-laying out log-scale ticks on every draw is what makes a naive redraw slow."""

    Y_RANGE = (-4, 4)   # 0.1 MiB ... 10 TiB

    def __init__(self):
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5.4, 3.4), dpi=80)
        self.figure.subplots_adjust(left=0.17, right=0.97, bottom=0.16, top=0.88)
        ax = self.ax = self.figure.add_subplot()
        ax.set(xlim=(np.log10(CONTEXTS[0]), np.log10(CONTEXTS[-1])), ylim=self.Y_RANGE,
               xlabel="context (tokens)", ylabel="KV cache, one sequence")
        ax.set_xticks(np.log10(CONTEXTS[::2]), [f"{c // 1024}k" if c >= 1024 else str(c) for c in CONTEXTS[::2]])
        ax.set_yticks(range(-4, 5), ["0.1 MiB", "1 MiB", "10 MiB", "0.1 GiB", "1 GiB", "10 GiB", "100 GiB",
                                      "1 TiB", "10 TiB"])
        ax.grid(True, alpha=0.3)
        self.before, = ax.plot([], [], "-", color="#4C72B0", lw=2, label="as built")
        self.after, = ax.plot([], [], "--", color="#DD8452", lw=2, label="modified")
        self.room, = ax.plot([], [], "-", color="#b00", lw=1, label="memory left after the weights")
        ax.legend(loc="upper left", fontsize=8)

    def png(self, before: ModelSpec, after: ModelSpec, room: float, precision: str) -> bytes:
        b = kv_bytes(precision)
        x = np.log10(CONTEXTS)
        for line, spec in ((self.before, before), (self.after, after)):
            gib = np.array([spec.kv_cache_bytes(int(c), 1, b) for c in CONTEXTS]) / 2**30
            line.set_data(x, np.clip(np.log10(gib), *self.Y_RANGE))
        self.room.set_data(x[[0, -1]], [np.clip(np.log10(max(room, 1) / 2**30), *self.Y_RANGE)] * 2)
        self.ax.set_title(after.name, fontsize=9)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


@lru_cache(maxsize=1)
def _plot() -> KVPlot:
    return KVPlot()


def kv_memory_report(model: str = "llama-2-7b", kind: str = "grouped-query", value: int | None = 8,
                     hardware: str = "a100-80gb", precision: str = "bf16", context_len: int = 4096
                     ) -> tuple[str, bytes | None]:
    """The dashboard's callback: (HTML report, PNG). Never raises; bad input is explained in the HTML."""
    try:
        before = model_preset(model)
        after = variants.apply(before, kind, value)
        hw = hardware_preset(hardware)
        rows = []
        for spec in (before, after):
            batch = largest_batch(spec, hw.memory_bytes, precision, int(context_len), activations="none")
            step = decode_step(spec, hw, precision, int(context_len), max(batch, 1))
            rows.append((spec, batch, step))
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        return f'<p style="color:#b00"><b>Cannot evaluate this setting:</b> {html.escape(str(message))}</p>', None

    b = kv_bytes(precision)
    body = []
    for spec, batch, step in rows:
        fits = (f"<b>{batch:,}</b>" if batch else '<b style="color:#b00">0: the weights alone do not fit</b>')
        timing = (human_duration(step.seconds) if batch
                  else f"({human_duration(step.seconds)} if it fitted)")
        body.append(
            f"<tr><td>{html.escape(spec.name)}</td><td style='text-align:right'>{spec.n_params() / 1e9:,.2f} B</td>"
            f"<td style='text-align:right'>{human_bytes(spec.kv_cache_bytes_per_token(b))}</td>"
            f"<td style='text-align:right'>{human_bytes(spec.kv_cache_bytes(int(context_len), 1, b))}</td>"
            f"<td style='text-align:right'>{fits}</td><td style='text-align:right'>{timing}</td>"
            f"<td style='text-align:right'>{step.tokens_per_second:,.0f}</td>"
            f"<td style='text-align:right'>{spec.flops_per_token(int(context_len)) / 1e9:,.2f}</td></tr>")
    (_, batch_before, _), (_, batch_after, _) = rows
    if batch_before and batch_after:
        verdict = f"The modification serves <b>{batch_after / batch_before:,.2f}x</b> as many sequences at once."
    elif batch_after:
        verdict = "Only the modified model fits this device at this context."
    else:
        verdict = "The modified model does not fit this device at this context."
    room = hw.memory_bytes - after.weight_bytes(weight_bytes(precision))
    report = f"""
<div style="font-family:sans-serif;font-size:90%;max-width:720px">
<p><b>{html.escape(model_preset_label(model))}</b> on <b>{html.escape(hw.label)}</b>
({human_bytes(hw.memory_bytes)}), {precision}, {int(context_len):,} tokens per conversation. {verdict}</p>
<table style="border-collapse:collapse"><tr><th style="text-align:left">model</th><th>parameters</th>
<th>KV / token</th><th>KV / sequence</th><th>largest batch</th><th>time / token</th><th>tokens/s</th>
<th>GFLOP / token</th></tr>{''.join(body)}</table>
<p style="font-size:90%">Largest batch: the weights and every sequence's KV cache within the device's memory
(lesson 02's formula; a step's activations are left out). Time per token: one decode step of that batch on the
roofline (the slower of memory traffic and arithmetic); tokens/s: the whole batch's tokens per second.</p></div>"""
    return report, _plot().png(before, after, room, precision)


def kv_memory_dashboard(model: str = "llama-2-7b", kind: str = "grouped-query", value: int = 8,
                        hardware: str = "a100-80gb", precision: str = "bf16", context_len: int = 4096):
    """Dropdowns and sliders around :func:`kv_memory_report`. Returns the widget to display."""
    import ipywidgets as widgets

    dense = [n for n in model_preset_names() if not model_preset(n).latent_attention]
    model_box = widgets.Dropdown(options=[(model_preset_label(n), n) for n in dense], value=model,
                                 description="model")
    kind_box = widgets.ToggleButtons(options=list(variants.KINDS), value=kind, description="change")
    value_box = widgets.Dropdown(description="setting")
    hardware_box, precision_box, context_box, _ = hardware_controls(hardware, precision, context_len, 1)
    context_box.options = [c for c in CONTEXT_CHOICES if c >= 128]
    context_box.value = context_len
    report = widgets.HTML()
    plot = widgets.Image(format="png")

    def refresh_values(preferred=None):
        choices = value_choices(model_preset(model_box.value), kind_box.value)
        value_box.options = choices or [0]
        value_box.disabled = not choices
        value_box.value = preferred if preferred in choices else (choices[len(choices) // 2] if choices else 0)

    def update(_change=None):
        html_text, png = kv_memory_report(model_box.value, kind_box.value, value_box.value or None,
                                          hardware_box.value, precision_box.value, context_box.value)
        report.value = html_text
        plot.layout.display = "none" if png is None else ""
        if png is not None:
            plot.value = png

    def on_structure(_change):
        refresh_values(value_box.value)
        update()

    refresh_values(value)
    model_box.observe(on_structure, names="value")
    kind_box.observe(on_structure, names="value")
    for control in (value_box, hardware_box, precision_box, context_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([model_box, hardware_box]), kind_box, value_box, precision_box, context_box,
                         widgets.HBox([report, plot])])
