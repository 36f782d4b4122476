"""Dashboard: a model (a preset or a pasted config.json) on hardware. Memory breakdown and fit, predicted
prefill and decode time, tokens/s, and where each phase sits on the roofline."""
from __future__ import annotations

import html
import json

from ..core.units import human_bytes, human_duration
from ..costs.hardware import hardware_preset, what_if
from ..costs.precision import DESCRIPTIONS, kv_bytes
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.roofline import PassCost, decode_step, prefill
from ..costs.spec import ConfigError, ModelSpec
from ..display.palette import ACTIVATIONS, BAD, BLACK, BLUE, GREY, KV_CACHE, LIMIT, ORANGE, WEIGHTS, verdict
from ..display.svgchart import Axis, Chart, short_number
from .controls import LABEL_STYLE, dropdown_layout, hardware_controls, outputs_box, problem, what_if_controls

CUSTOM = "custom"
MEMORY_COLORS = {"weights": WEIGHTS, "KV cache": KV_CACHE, "activations": ACTIVATIONS}


def parse_model(choice: str, config_text: str = "") -> ModelSpec:
    """A preset by name, or the pasted config.json when ``choice`` is "custom"."""
    if choice != CUSTOM:
        return model_preset(choice)
    try:
        config = json.loads(config_text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"the pasted config.json is not valid JSON ({error.msg} at line {error.lineno}, "
                          f"column {error.colno})") from None
    return ModelSpec.from_hf_config(config, name=config.get("_name_or_path") or "pasted config")


ROOFLINE_X = Axis(0.1, 1e5, log=True, label="arithmetic intensity (FLOP per byte moved)")
ROOFLINE_Y = Axis(1e-5, 1.5, log=True, label="share of peak FLOP/s attained",
                  ticks=((1e-5, "1e-5"), (1e-4, "1e-4"), (1e-3, "0.001"), (1e-2, "0.01"), (0.1, "0.1"), (1, "peak")))
PHASE_MARKERS = {"prefill": ("square", ORANGE), "decode": ("circle", BLUE)}


def roofline_chart(passes: list[PassCost]) -> str:
    """Both phases on the roofline of their hardware, as SVG. A phase whose intensity lies past the axis (a long
    prefill of a large batch reaches millions of FLOP per byte) is drawn at the edge as an arrow, with its value."""
    hw, precision = passes[0].hardware, passes[0].precision
    peak, ridge = hw.flops_for(precision), hw.ridge_point(precision)
    chart = Chart(ROOFLINE_X, ROOFLINE_Y, title=f"{hw.label}, {precision}: peak {peak / 1e12:,.3g} TFLOP/s")
    intensities = [0.1, ridge, 1e5] if 0.1 < ridge < 1e5 else [0.1, 1e5]
    chart.line(intensities, [min(i / ridge, 1.0) for i in intensities], BLACK, 3, label="roofline")
    chart.vline(ridge, GREY, "2 4", label=f"ridge point {ridge:,.0f} FLOP/byte", width=1.5)
    for step in passes:
        marker, color = PHASE_MARKERS[step.phase]
        x, y = step.arithmetic_intensity, step.flops / step.seconds / peak
        chart.points([x], [y], color, marker, 8, label=step.phase, texts=[step.phase],
                     off_axis=[f"({short_number(x)} FLOP/byte)"])
    return chart.svg()


def _memory_bar(parts: dict[str, float], capacity: float) -> str:
    scale = max(sum(parts.values()), capacity)
    cells = "".join(
        f'<div title="{name}" style="width:{100 * value / scale:.3f}%;background:{MEMORY_COLORS[name]};'
        f'height:1.2em;display:inline-block"></div>' for name, value in parts.items() if value > 0)
    marker = f'<div style="position:absolute;left:{100 * capacity / scale:.2f}%;top:-0.25em;height:1.7em;' \
             f'border-left:0.2em solid {LIMIT}" title="device memory"></div>'
    return (f'<div style="position:relative;width:100%;background:#e8e8e8;white-space:nowrap;font-size:inherit;'
            f'line-height:0">{cells}{marker}</div>')


def cost_model_report(model: str, hardware: str, precision: str = "bf16", context_len: int = 4096,
                      batch_size: int = 1, config_text: str = "", bandwidth_x: float = 1.0,
                      flops_x: float = 1.0) -> tuple[str, str | None]:
    """The dashboard's callback: (HTML report, roofline chart as SVG). Never raises; bad input is explained in
    the HTML (and no chart is returned). ``bandwidth_x`` and ``flops_x`` scale the hardware (what if)."""
    try:
        spec = parse_model(model, config_text)
        hw = what_if(hardware_preset(hardware), float(bandwidth_x), float(flops_x))
        first = prefill(spec, hw, precision, max(int(context_len), 1), int(batch_size))
        step = decode_step(spec, hw, precision, int(context_len), int(batch_size))
    except (ConfigError, KeyError, ValueError, TypeError) as error:
        return problem("Cannot evaluate this setting", error), None

    memory = step.memory_fit
    parts, needed = memory.parts, memory.needed
    if memory.fits:
        fit = f'{verdict(True)}, {human_bytes(memory.spare)} to spare'
    else:
        fit = f'{verdict(False)}: {human_bytes(-memory.spare)} short'
    legend = " &nbsp; ".join(f'<span style="color:{MEMORY_COLORS[n]}">&#9632;</span> {n} {human_bytes(v)}'
                             for n, v in parts.items())
    cell = "padding:0.15em 0.6em;white-space:nowrap"
    num = f"{cell};text-align:right"
    rows = "".join(
        f"<tr><td style='{cell}'>{p.phase}</td><td style='{num}'>{human_duration(p.seconds)}</td>"
        f"<td style='{num}'>{p.tokens_per_second:,.1f}</td><td style='{num}'>{p.arithmetic_intensity:,.1f}</td>"
        f"<td style='{cell}'><b>{p.bound}</b>-bound</td></tr>" for p in (first, step))
    active = (f" ({spec.n_active_params() / 1e9:,.2f} B active per token)"
              if spec.n_active_params() != spec.n_params() else "")
    report = f"""
<div style="font-family:sans-serif;max-width:44em">
<p><b>{html.escape(spec.name)}</b>: {spec.n_params() / 1e9:,.3f} B parameters{active};
KV cache {human_bytes(spec.kv_cache_bytes_per_token(kv_bytes(precision)))} per token.<br>
<b>{html.escape(hw.label)}</b>, {precision} ({DESCRIPTIONS[precision]}), batch {batch_size},
{context_len:,} tokens of context.</p>
<p>Memory: {human_bytes(needed)} of {human_bytes(hw.memory_bytes)}: {fit}</p>
{_memory_bar(parts, hw.memory_bytes)}
<p style="font-size:90%">{legend} &nbsp; <span style="color:{LIMIT}"><b>|</b></span> device memory</p>
{'' if memory.fits else f'<p style="color:{BAD}">&#9888; The times below are what the roofline predicts '
   '<b>if it fit</b>; as set, this does not run.</p>'}
<table style="border-collapse:collapse"><tr><th style='text-align:left;{cell}'>phase</th><th style='{cell}'>time</th>
<th style='{cell}'>tokens/s</th><th style='{cell}'>FLOP/byte</th><th style='text-align:left;{cell}'>limit</th></tr>
{rows}</table>
<p style="font-size:90%">Time to first token (prefill of the {context_len:,}-token prompt):
{human_duration(first.seconds)}{'' if memory.fits else ' (if it fit)'}.
Then {human_duration(step.seconds)} per generated token for each sequence. Ridge point of this hardware:
{hw.ridge_point(precision):,.0f} FLOP/byte.</p>
</div>"""
    return report, roofline_chart([first, step])


def cost_model_dashboard(model: str = "llama-3-8b", hardware: str = "a100-80gb", precision: str = "bf16",
                         context_len: int = 4096, batch_size: int = 1):
    """Dropdowns, sliders and what-if knobs around :func:`cost_model_report`. Returns the widget to display."""
    import ipywidgets as widgets

    model_box = widgets.Dropdown(
        options=[(model_preset_label(n), n) for n in model_preset_names()] + [("paste a config.json", CUSTOM)],
        value=model, description="model", style=LABEL_STYLE,
                                 layout=dropdown_layout())
    config_box = widgets.Textarea(
        value=json.dumps({"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048,
                          "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
                          "num_key_value_heads": 4, "tie_word_embeddings": False}, indent=1),
        description="config", continuous_update=False, style=LABEL_STYLE,
        layout=widgets.Layout(width="36em", max_width="100%", height="12em", display="none"))
    hardware_box, precision_box, context_box, batch_box = hardware_controls(hardware, precision, context_len,
                                                                            batch_size)
    bandwidth_box, flops_box = what_if_controls()
    report, chart = widgets.HTML(), widgets.HTML()

    def update(_change=None):
        config_box.layout.display = "" if model_box.value == CUSTOM else "none"
        report.value, svg = cost_model_report(model_box.value, hardware_box.value, precision_box.value,
                                              context_box.value, batch_box.value, config_box.value,
                                              bandwidth_box.value, flops_box.value)
        chart.value = svg or ""

    controls = (model_box, config_box, hardware_box, precision_box, context_box, batch_box, bandwidth_box, flops_box)
    for control in controls:
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.VBox(list(controls)), outputs_box(report, chart)])
