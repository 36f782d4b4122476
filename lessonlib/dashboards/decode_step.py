"""Dashboard: how much of one decode step is weight reads, KV-cache reads and compute."""
from __future__ import annotations

import html

from ..core.units import human_bytes, human_duration
from ..costs.hardware import hardware_preset, what_if
from ..costs.precision import DESCRIPTIONS
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.roofline import decode_step
from ..display.palette import BAD, COMPUTE, KV_CACHE, WEIGHTS, verdict
from .controls import LABEL_STYLE, dropdown_layout, hardware_controls, problem, what_if_controls

COLORS = {"weights": WEIGHTS, "kv": KV_CACHE, "compute": COMPUTE}


def _bar(segments: list[tuple[str, float, str]], scale: float) -> str:
    cells = "".join(
        f'<div title="{html.escape(label)}" style="width:{100 * value / scale:.3f}%;background:{color};'
        f'height:1.4em;display:inline-block"></div>' for label, value, color in segments if value > 0)
    return f'<div style="width:100%;background:#e8e8e8;white-space:nowrap;line-height:0">{cells}</div>'


def decode_step_report(model: str, hardware: str, precision: str = "bf16", context_len: int = 1024,
                       batch_size: int = 1, bandwidth_x: float = 1.0, flops_x: float = 1.0) -> str:
    """The dashboard's callback: an HTML report of one decode step. Never raises: a bad input is reported
    in the returned HTML with what to change. ``bandwidth_x`` and ``flops_x`` scale the hardware (what if)."""
    try:
        hw = what_if(hardware_preset(hardware), float(bandwidth_x), float(flops_x))
        context_len, batch_size = int(context_len), int(batch_size)
        step = decode_step(model_preset(model), hw, precision, context_len, batch_size)
    except (KeyError, ValueError, TypeError) as error:
        return problem("Cannot compute this step", error)

    scale = max(step.t_memory, step.t_compute)
    memory_bar = _bar([("weight reads", step.t_weights, COLORS["weights"]),
                       ("KV-cache reads", step.t_kv, COLORS["kv"])], scale)
    compute_bar = _bar([("compute", step.t_compute, COLORS["compute"])], scale)
    hw = step.hardware
    limit = (f"<b>{step.bound}-bound</b>: the {'memory traffic' if step.bound == 'memory' else 'arithmetic'} "
               f"takes {max(step.t_memory, step.t_compute) / max(min(step.t_memory, step.t_compute), 1e-30):,.1f}x "
               f"as long as the {'arithmetic' if step.bound == 'memory' else 'memory traffic'}")
    fits = verdict(step.fits)
    notes = []
    spec = step.model
    if spec.max_position_embeddings and context_len > spec.max_position_embeddings:
        notes.append(f"{spec.name} was trained for at most {spec.max_position_embeddings:,} tokens of context.")
    windowed = spec.layer_kinds().count("sliding")
    if windowed and context_len > spec.sliding_window:
        which = ("every layer caches" if windowed == spec.n_layers
                 else f"{windowed} of its {spec.n_layers} layers cache")
        notes.append(f"sliding window: {which} and attend{'s' if windowed == spec.n_layers else ''} to only the last "
                     f"{spec.sliding_window:,} tokens.")
    rate = (f"{human_duration(step.seconds)} &rarr; <b>{step.tokens_per_second:,.1f} tokens/s</b> in all "
            f"({step.tokens_per_second / batch_size:,.1f} per sequence)")
    headline = (f"One step = {rate}." if step.fits else
                f'<span style="color:{BAD}"><b>&#10008; This does not run</b>: it needs '
                f"{human_bytes(step.memory_needed)} of {human_bytes(hw.memory_bytes)}.</span> "
                f"Only if it fit would one step take {rate}.")
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""
<div style="font-family:sans-serif;max-width:52em">
<p><b>{html.escape(spec.name)}</b> on <b>{html.escape(hw.label)}</b>, {precision}
({DESCRIPTIONS[precision]}), batch {batch_size}, {context_len:,} tokens of context. {headline}</p>
<table style="width:100%;border-collapse:collapse">
<tr><td style="width:9em;white-space:nowrap">memory traffic</td><td>{memory_bar}</td>
<td style="width:6em;text-align:right;white-space:nowrap">{human_duration(step.t_memory)}</td></tr>
<tr><td>compute</td><td>{compute_bar}</td>
<td style="text-align:right;white-space:nowrap">{human_duration(step.t_compute)}</td></tr>
</table>
<p style="font-size:90%">
<span style="color:{COLORS['weights']}">&#9632;</span> weight reads {human_bytes(step.weight_bytes_read)}
({human_duration(step.t_weights)})
&nbsp; <span style="color:{COLORS['kv']}">&#9632;</span> KV-cache reads {human_bytes(step.kv_bytes_read)}
({human_duration(step.t_kv)})
&nbsp; <span style="color:{COLORS['compute']}">&#9632;</span> compute {step.flops / 1e9:,.1f} GFLOP
({human_duration(step.t_compute)})</p>
<p>{limit}. Arithmetic intensity {step.arithmetic_intensity:,.1f} FLOP/byte vs this hardware's ridge point
{hw.ridge_point(precision):,.1f}.<br>
Memory: {human_bytes(step.memory_needed)} needed (weights + KV cache + activations) of
{human_bytes(hw.memory_bytes)}: {fits}.</p>
{f'<ul style="font-size:90%">{notes_html}</ul>' if notes else ''}
</div>"""


def decode_step_dashboard(model: str = "llama-2-7b", hardware: str = "a100-80gb", precision: str = "bf16",
                          context_len: int = 4096, batch_size: int = 1):
    """Dropdowns, sliders and what-if knobs around :func:`decode_step_report`. Returns the widget to display."""
    import ipywidgets as widgets

    model_box = widgets.Dropdown(options=[(model_preset_label(n), n) for n in model_preset_names()], value=model,
                                 description="model", style=LABEL_STYLE,
                                 layout=dropdown_layout())
    hardware_box, precision_box, context_box, batch_box = hardware_controls(hardware, precision, context_len,
                                                                            batch_size)
    bandwidth_box, flops_box = what_if_controls()
    report = widgets.HTML()
    controls = (model_box, hardware_box, precision_box, context_box, batch_box, bandwidth_box, flops_box)

    def update(_change=None):
        report.value = decode_step_report(model_box.value, hardware_box.value, precision_box.value,
                                          context_box.value, batch_box.value, bandwidth_box.value, flops_box.value)

    for control in controls:
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([model_box, hardware_box], layout=widgets.Layout(flex_flow="row wrap")),
                         precision_box, context_box, batch_box, bandwidth_box, flops_box, report])
