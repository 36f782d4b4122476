"""Dashboard: what an attention modification does to a real model's KV cache, the batch that fits on a device
(weights and KV caches, as lesson 02's formula counts them), and the time per token. A model preset, a
modification (grouped-query, multi-query, sliding window, latent) and its setting, the device, the precision
and the context length."""
from __future__ import annotations

import html

import numpy as np

from ..core.units import human_bytes, human_duration
from ..costs import variants
from ..costs.hardware import hardware_preset
from ..costs.memory import largest_batch
from ..costs.precision import kv_bytes, weight_bytes
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.roofline import decode_step
from ..costs.spec import ModelSpec
from ..display.palette import BAD, BLUE, LIMIT, ORANGE
from ..display.svgchart import Axis, Chart
from .controls import CONTEXT_CHOICES, LABEL_STYLE, dropdown_layout, hardware_controls, outputs_box, problem

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


KV_X = Axis(float(CONTEXTS[0]), float(CONTEXTS[-1]), log=True, label="context (tokens)",
            ticks=tuple((float(c), f"{c // 1024}k" if c >= 1024 else str(c)) for c in CONTEXTS[::2]))
KV_Y = Axis(1e-4, 1e4, log=True, label="KV cache of one sequence (GiB)",
            ticks=tuple((10.0**k, label) for k, label in zip(range(-4, 5), (
                "0.1 MiB", "1 MiB", "10 MiB", "0.1 GiB", "1 GiB", "10 GiB", "100 GiB", "1 TiB", "10 TiB"),
                strict=True)))


def kv_chart(before: ModelSpec, after: ModelSpec, room: float, precision: str) -> str:
    """KV cache of one sequence against the context, as built and modified, and the memory the weights leave
    (SVG). Lines off the top are drawn along the edge."""
    b = kv_bytes(precision)
    chart = Chart(KV_X, KV_Y, title=after.name, margin=(14, 20, 58, 100))
    for spec, color, dash, label in ((before, BLUE, "", "as built"), (after, ORANGE, "9 5", "modified")):
        gib = [spec.kv_cache_bytes(int(c), 1, b) / 2**30 for c in CONTEXTS]
        chart.line([float(c) for c in CONTEXTS], gib, color, 4, dash, label)
    if room > 0:
        chart.hline(room / 2**30, LIMIT, "2 4", "memory left after the weights", 2.5)
    else:
        chart.text(float(CONTEXTS[0]) * 1.3, 3e3, "the weights alone fill the device", LIMIT)
    return chart.svg()


def kv_memory_report(model: str = "llama-2-7b", kind: str = "grouped-query", value: int | None = 8,
                     hardware: str = "a100-80gb", precision: str = "bf16", context_len: int = 4096
                     ) -> tuple[str, str | None]:
    """The dashboard's callback: (HTML report, SVG chart). Never raises; bad input is explained in the HTML."""
    try:
        before = model_preset(model)
        after = variants.apply(before, kind, value)
        hw = hardware_preset(hardware)
        rows = []
        for spec in (before, after):
            batch = largest_batch(spec, hw.memory_bytes, precision, int(context_len), activations="none")
            step = decode_step(spec, hw, precision, int(context_len), max(batch, 1))
            rows.append((spec, batch, step))
    except (KeyError, ValueError, TypeError) as error:
        return problem("Cannot evaluate this setting", error), None

    b = kv_bytes(precision)
    body = []
    num = "text-align:right;white-space:nowrap"
    for spec, batch, step in rows:
        if batch:
            fits = f"<b>{batch:,}</b>"
        elif spec.weight_bytes(weight_bytes(precision)) > hw.memory_bytes:
            fits = f'<b style="color:{BAD}">&#10008;&nbsp;0</b> (the weights alone do not fit)'
        else:
            fits = f'<b style="color:{BAD}">&#10008;&nbsp;0</b> (not even one sequence fits)'
        timing = (human_duration(step.seconds) if batch
                  else f"({human_duration(step.seconds)} if it fitted)")
        body.append(
            f"<tr><td>{html.escape(spec.name)}</td><td style='{num}'>{spec.n_params() / 1e9:,.2f} B</td>"
            f"<td style='{num}'>{human_bytes(spec.kv_cache_bytes_per_token(b))}</td>"
            f"<td style='{num}'>{human_bytes(spec.kv_cache_bytes(int(context_len), 1, b))}</td>"
            f"<td style='text-align:right'>{fits}</td><td style='{num}'>{timing}</td>"
            f"<td style='{num}'>{step.tokens_per_second:,.0f}</td>"
            f"<td style='{num}'>{spec.flops_per_token(int(context_len)) / 1e9:,.2f}</td></tr>")
    (_, batch_before, _), (_, batch_after, _) = rows
    if batch_before and batch_after:
        verdict = f"The modification serves <b>{batch_after / batch_before:,.2f}x</b> as many sequences at once."
    elif batch_after:
        verdict = "Only the modified model fits this device at this context."
    else:
        verdict = "The modified model does not fit this device at this context."
    room = hw.memory_bytes - after.weight_bytes(weight_bytes(precision))
    report = f"""
<div style="font-family:sans-serif;font-size:90%;max-width:50em">
<p><b>{html.escape(model_preset_label(model))}</b> on <b>{html.escape(hw.label)}</b>
({human_bytes(hw.memory_bytes)}), {precision}, {int(context_len):,} tokens per conversation. {verdict}</p>
<div style="overflow-x:auto;max-width:calc(100vw - 3em)"><table style="border-collapse:collapse" cellpadding="4">
<tr><th style="text-align:left">model</th><th>parameters</th><th>KV / token</th><th>KV / sequence</th>
<th>largest batch</th><th>time / token</th><th>tokens/s</th><th>GFLOP / token</th></tr>{''.join(body)}</table></div>
<p style="font-size:90%">Largest batch: the weights and every sequence's KV cache within the device's memory
(lesson 02's formula; a step's activations are left out). Time per token: one decode step of that batch on the
roofline (the slower of memory traffic and arithmetic); tokens/s: the whole batch's tokens per second.</p></div>"""
    return report, kv_chart(before, after, room, precision)


def kv_memory_dashboard(model: str = "llama-2-7b", kind: str = "grouped-query", value: int = 8,
                        hardware: str = "a100-80gb", precision: str = "bf16", context_len: int = 4096):
    """Dropdowns and sliders around :func:`kv_memory_report`. Returns the widget to display."""
    import ipywidgets as widgets

    dense = [n for n in model_preset_names() if not model_preset(n).latent_attention]
    model_box = widgets.Dropdown(options=[(model_preset_label(n), n) for n in dense], value=model,
                                 description="model", style=LABEL_STYLE,
                                 layout=dropdown_layout())
    kind_box = widgets.ToggleButtons(options=list(variants.KINDS), value=kind, description="change",
                                     style=LABEL_STYLE)
    value_box = widgets.Dropdown(description="setting", style=LABEL_STYLE, layout=widgets.Layout(width="16em"))
    hardware_box, precision_box, context_box, _ = hardware_controls(hardware, precision, context_len, 1)
    context_box.options = [c for c in CONTEXT_CHOICES if c >= 128]
    context_box.value = context_len
    report, chart = widgets.HTML(), widgets.HTML()
    quiet = [False]   # while the structure changes, the setting's own change must not redraw half-way

    def refresh_values(preferred=None):
        choices = value_choices(model_preset(model_box.value), kind_box.value)
        quiet[0] = True
        try:
            value_box.options = choices or [0]
            value_box.disabled = not choices
            value_box.value = preferred if preferred in choices else (choices[len(choices) // 2] if choices else 0)
        finally:
            quiet[0] = False

    def update(_change=None):
        if quiet[0]:
            return
        report.value, svg = kv_memory_report(model_box.value, kind_box.value, value_box.value or None,
                                             hardware_box.value, precision_box.value, context_box.value)
        chart.value = svg or ""

    def on_structure(_change):
        refresh_values(value_box.value)
        update()

    refresh_values(value)
    model_box.observe(on_structure, names="value")
    kind_box.observe(on_structure, names="value")
    for control in (value_box, hardware_box, precision_box, context_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([model_box, hardware_box], layout=widgets.Layout(flex_flow="row wrap")),
                         kind_box, value_box, precision_box, context_box, outputs_box(report, chart)])
