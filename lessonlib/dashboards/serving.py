"""Dashboard: the serving trade-off. Tokens per second against the wait per token, across batch sizes, for a
model on a device: batching multiplies throughput while decode is memory-bound, then the arithmetic (or the
memory for every sequence's KV cache) runs out. A latency target picks the batch a service would run.
The arithmetic is :mod:`lessonlib.costs.serving`; this module lays it out."""
from __future__ import annotations

import html
import math

from ..core.units import human_bytes, human_duration
from ..costs.hardware import hardware_preset, what_if
from ..costs.precision import DESCRIPTIONS
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.serving import BATCH_SIZES, ServingPoint, best_within, serving_curve
from ..display.palette import BAD, BLUE, LIMIT, ORANGE, verdict
from ..display.svgchart import Axis, Chart, short_number
from .controls import LABEL_STYLE, dropdown_layout, hardware_controls, outputs_box, problem, what_if_controls

TARGETS_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000)    # per-token latency targets offered by the slider
LABELLED_BATCHES = {1, 4, 16, 64, 256, 1024}


def _decades(lo: float, hi: float) -> tuple[float, float]:
    lo, hi = 10.0 ** math.floor(math.log10(lo)), 10.0 ** math.ceil(math.log10(hi))
    return (lo, hi * 10) if lo == hi else (lo, hi)


def serving_chart(points: list[ServingPoint], target_s: float, best: ServingPoint | None) -> str:
    """Throughput against latency per token, one marker per batch size (SVG)."""
    latencies_ms = [1e3 * p.latency for p in points]
    rates = [p.throughput for p in points]
    x = Axis(*_decades(min(latencies_ms + [1e3 * target_s]), max(latencies_ms + [1e3 * target_s])), log=True,
             label="wait per token for each user (ms, log scale)")
    y = Axis(*_decades(min(rates), max(rates)), log=True, label="tokens/s, whole batch")
    chart = Chart(x, y)
    chart.line(latencies_ms, rates, BLUE, 3)
    fit = [(lat, r, p) for lat, r, p in zip(latencies_ms, rates, points, strict=True) if p.fits]
    over = [(lat, r, p) for lat, r, p in zip(latencies_ms, rates, points, strict=True) if not p.fits]
    for group, color, marker, label in ((fit, BLUE, "circle", "batch that fits"),
                                        (over, BAD, "triangle", "batch that does not fit in memory")):
        if group:
            chart.points([g[0] for g in group], [g[1] for g in group], color, marker, 7, label,
                         texts=[f"{g[2].batch_size}" if g[2].batch_size in LABELLED_BATCHES else "" for g in group])
    chart.vline(1e3 * target_s, LIMIT, "7 4", f"target: {short_number(1e3 * target_s)} ms per token", 2.5)
    if best is not None:
        chart.points([1e3 * best.latency], [best.throughput], ORANGE, "diamond", 11,
                     f"most tokens/s within the target (batch {best.batch_size})")
    return chart.svg()


def serving_report(model: str = "llama-3-8b", hardware: str = "a100-80gb", precision: str = "bf16",
                   context_len: int = 2048, target_ms: float = 50, bandwidth_x: float = 1.0,
                   flops_x: float = 1.0) -> tuple[str, str | None]:
    """The dashboard's callback: (HTML report, SVG chart). Never raises; a bad input is explained in the HTML
    (and no chart is returned)."""
    try:
        spec = model_preset(model)
        hw = what_if(hardware_preset(hardware), float(bandwidth_x), float(flops_x))
        target_s = float(target_ms) / 1e3
        points = serving_curve(spec, hw, precision, int(context_len), BATCH_SIZES)
        best = best_within(points, target_s)
    except (KeyError, ValueError, TypeError) as error:
        return problem("Cannot evaluate this setting", error), None

    one = points[0]
    fitting = [p for p in points if p.fits]
    cell = "padding:0.15em 0.6em;white-space:nowrap"
    num = f"{cell};text-align:right"
    rows = []
    for p in points:
        mark = " style='background:#fde9c9'" if p is best else ""
        wait = human_duration(p.latency) if p.fits else f"({human_duration(p.latency)} if it fit)"
        rows.append(f"<tr{mark}><td style='{num}'>{p.batch_size:,}</td><td style='{num}'>{wait}</td>"
                    f"<td style='{num}'>{p.throughput:,.0f}</td><td style='{num}'>{human_bytes(p.step.memory_needed)}"
                    f"</td><td style='{cell}'>{verdict(p.fits)}</td><td style='{cell}'>{p.step.bound}</td></tr>")
    if not one.fits:
        headline = (f'<span style="color:{BAD}"><b>&#10008; Not even one sequence fits</b></span>: it needs '
                    f"{human_bytes(one.step.memory_needed)} of {human_bytes(hw.memory_bytes)}. The curve shows what "
                    "the roofline predicts if it did.")
    elif best is None:
        headline = (f"<b>No batch meets {human_duration(target_s)} per token</b> here: even batch 1 waits "
                    f"{human_duration(one.latency)} per token. Relax the target, or pick faster hardware.")
    else:
        gain = best.throughput / one.throughput
        headline = (f"Batch 1: {one.throughput:,.0f} tokens/s, {human_duration(one.latency)} per token. Within "
                    f"{human_duration(target_s)} per token the best is <b>batch {best.batch_size:,}: "
                    f"{best.throughput:,.0f} tokens/s</b> ({gain:,.1f}x batch 1), each user waiting "
                    f"{human_duration(best.latency)} per token.")
    largest = (f"Largest batch that fits: {fitting[-1].batch_size:,} (of the sizes shown)." if fitting else "")
    report = f"""
<div style="font-family:sans-serif;max-width:44em">
<p><b>{html.escape(spec.name)}</b> on <b>{html.escape(hw.label)}</b>, {precision} ({DESCRIPTIONS[precision]}),
{int(context_len):,} tokens cached per sequence.</p>
<p>{headline} {largest}</p>
<div style="overflow-x:auto;max-width:calc(100vw - 3em)"><table style="border-collapse:collapse">
<tr><th style='{num}'>batch</th><th style='{num}'>wait / token</th><th style='{num}'>tokens/s</th>
<th style='{num}'>memory</th><th style='{cell};text-align:left'>fits?</th><th style='{cell};text-align:left'>bound</th>
</tr>{''.join(rows)}</table></div>
<p style="font-size:90%">One decode step per batch size on the roofline: the weights are read once per step for
the whole batch, so while the step is memory-bound a bigger batch costs each user little extra time.</p>
</div>"""
    return report, serving_chart(points, target_s, best)


def serving_dashboard(model: str = "llama-3-8b", hardware: str = "a100-80gb", precision: str = "bf16",
                      context_len: int = 2048, target_ms: float = 50):
    """Dropdowns, sliders and what-if knobs around :func:`serving_report`. Returns the widget to display."""
    import ipywidgets as widgets

    model_box = widgets.Dropdown(options=[(model_preset_label(n), n) for n in model_preset_names()], value=model,
                                 description="model", style=LABEL_STYLE,
                                 layout=dropdown_layout())
    hardware_box, precision_box, context_box, _ = hardware_controls(hardware, precision, context_len, 1)
    target_box = widgets.SelectionSlider(options=[(f"{t:,} ms", t) for t in TARGETS_MS], value=target_ms,
                                         description="target / token", style=LABEL_STYLE,
                                         layout=widgets.Layout(width="36em", max_width="100%"))
    bandwidth_box, flops_box = what_if_controls()
    report, chart = widgets.HTML(), widgets.HTML()
    controls = (model_box, hardware_box, precision_box, context_box, target_box, bandwidth_box, flops_box)

    def update(_change=None):
        report.value, svg = serving_report(model_box.value, hardware_box.value, precision_box.value,
                                           context_box.value, target_box.value, bandwidth_box.value, flops_box.value)
        chart.value = svg or ""

    for control in controls:
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([model_box, hardware_box], layout=widgets.Layout(flex_flow="row wrap")),
                         *controls[2:], outputs_box(chart, report)])
