"""Dashboard: a model (a preset or a pasted config.json) on hardware. Memory breakdown and fit, predicted
prefill and decode time, tokens/s, and where each phase sits on the roofline."""
from __future__ import annotations

import html
import io
import json
from functools import lru_cache

from ..core.units import human_bytes, human_duration
from ..costs.hardware import hardware_preset
from ..costs.precision import kv_bytes
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.roofline import PassCost, decode_step, prefill
from ..costs.spec import ConfigError, ModelSpec
from .controls import hardware_controls

CUSTOM = "custom"
MEMORY_COLORS = {"weights": "#4C72B0", "KV cache": "#DD8452", "activations": "#8172B2"}


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


class RooflinePlot:
    """One matplotlib figure reused for every update. Axes are fixed: log10 of arithmetic intensity against
    log10 of the fraction of peak FLOP/s attained, so a redraw moves data only (log-scale tick layout on
    every draw is what makes a naive redraw slow)."""

    def __init__(self):
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5.2, 3.4), dpi=80)
        self.figure.subplots_adjust(left=0.17, right=0.97, bottom=0.15, top=0.9)  # fixed: no layout engine
        ax = self.ax = self.figure.add_subplot()
        ax.set(xlim=(-1, 5), ylim=(-5, 0.4), xlabel="arithmetic intensity (FLOP / byte)",
               ylabel="fraction of peak FLOP/s")
        ax.set_xticks(range(-1, 6), ["0.1", "1", "10", "100", "1k", "10k", "100k"])
        ax.set_yticks(range(-5, 1), ["1e-5", "1e-4", "0.001", "0.01", "0.1", "peak"])
        ax.grid(True, alpha=0.3)
        self.roof, = ax.plot([], [], "k-", lw=2, label="roofline")
        self.points = {phase: ax.plot([], [], marker, ms=9, label=phase)[0]
                       for phase, marker in (("prefill", "s"), ("decode", "o"))}
        ax.legend(loc="lower right", fontsize=8)

    def png(self, passes: list[PassCost]) -> bytes:
        import numpy as np

        hw, precision = passes[0].hardware, passes[0].precision
        peak = hw.flops_for(precision)
        log_intensity = np.linspace(-1, 5, 61)
        self.roof.set_data(log_intensity, np.minimum(log_intensity - np.log10(hw.ridge_point(precision)), 0))
        for step in passes:
            attained = step.flops / step.seconds / peak
            self.points[step.phase].set_data([np.log10(step.arithmetic_intensity)], [np.log10(attained)])
        self.ax.set_title(f"{hw.label}, {precision}: peak {peak / 1e12:,.3g} TFLOP/s", fontsize=9)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # fast encode, small image
        return buffer.getvalue()


@lru_cache(maxsize=1)
def _plot() -> RooflinePlot:
    return RooflinePlot()


def _memory_bar(parts: dict[str, float], capacity: float) -> str:
    scale = max(sum(parts.values()), capacity)
    cells = "".join(
        f'<div title="{name}" style="width:{100 * value / scale:.3f}%;background:{MEMORY_COLORS[name]};'
        f'height:20px;display:inline-block"></div>' for name, value in parts.items() if value > 0)
    marker = f'<div style="position:absolute;left:{100 * capacity / scale:.2f}%;top:-3px;height:26px;' \
             f'border-left:3px solid #b00" title="device memory"></div>'
    return (f'<div style="position:relative;width:100%;background:#eee;white-space:nowrap;font-size:0">'
            f'{cells}{marker}</div>')


def cost_model_report(model: str, hardware: str, precision: str = "bf16", context_len: int = 4096,
                      batch_size: int = 1, config_text: str = "") -> tuple[str, bytes | None]:
    """The dashboard's callback: (HTML report, roofline PNG). Never raises; bad input is explained in the
    HTML (and no plot is returned)."""
    try:
        spec = parse_model(model, config_text)
        hw = hardware_preset(hardware)
        first = prefill(spec, hw, precision, max(int(context_len), 1), int(batch_size))
        step = decode_step(spec, hw, precision, int(context_len), int(batch_size))
    except (ConfigError, KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        return (f'<p style="color:#b00"><b>Cannot evaluate this setting:</b> {html.escape(str(message))}</p>',
                None)

    memory = step.memory_fit
    parts, needed = memory.parts, memory.needed
    if memory.fits:
        fit = f'<span style="color:#080"><b>fits</b></span>, {human_bytes(memory.spare)} to spare'
    else:
        fit = f'<span style="color:#b00"><b>does not fit</b></span>: {human_bytes(-memory.spare)} short'
    legend = " &nbsp; ".join(f'<span style="color:{MEMORY_COLORS[n]}">&#9632;</span> {n} {human_bytes(v)}'
                             for n, v in parts.items())
    rows = "".join(
        f"<tr><td>{p.phase}</td><td style='text-align:right'>{human_duration(p.seconds)}</td>"
        f"<td style='text-align:right'>{p.tokens_per_second:,.1f}</td>"
        f"<td style='text-align:right'>{p.arithmetic_intensity:,.1f}</td><td><b>{p.bound}</b>-bound</td></tr>"
        for p in (first, step))
    active = (f" ({spec.n_active_params() / 1e9:,.2f} B active per token)"
              if spec.n_active_params() != spec.n_params() else "")
    report = f"""
<div style="font-family:sans-serif;max-width:640px">
<p><b>{html.escape(spec.name)}</b>: {spec.n_params() / 1e9:,.3f} B parameters{active};
KV cache {human_bytes(spec.kv_cache_bytes_per_token(kv_bytes(precision)))} per token.<br>
<b>{html.escape(hw.label)}</b>, {precision}, batch {batch_size}, {context_len:,} tokens of context.</p>
<p>Memory: {human_bytes(needed)} of {human_bytes(hw.memory_bytes)}: {fit}</p>
{_memory_bar(parts, hw.memory_bytes)}
<p style="font-size:90%">{legend} &nbsp; <span style="color:#b00">|</span> device memory</p>
{'' if memory.fits else '<p style="color:#b00">The times below are what the roofline predicts <b>if it fit</b>; '
   'as set, this does not run.</p>'}
<table style="width:100%"><tr><th style='text-align:left'>phase</th><th>time</th><th>tokens/s</th>
<th>FLOP/byte</th><th style='text-align:left'>limit</th></tr>{rows}</table>
<p style="font-size:90%">Time to first token (prefill of the {context_len:,}-token prompt):
{human_duration(first.seconds)}.
Then {human_duration(step.seconds)} per generated token for each sequence. Ridge point of this hardware:
{hw.ridge_point(precision):,.0f} FLOP/byte.</p>
</div>"""
    return report, _plot().png([first, step])


def cost_model_dashboard(model: str = "llama-3-8b", hardware: str = "a100-80gb", precision: str = "bf16",
                         context_len: int = 4096, batch_size: int = 1):
    import ipywidgets as widgets

    model_box = widgets.Dropdown(
        options=[(model_preset_label(n), n) for n in model_preset_names()] + [("paste a config.json", CUSTOM)],
        value=model, description="model")
    config_box = widgets.Textarea(
        value=json.dumps({"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048,
                          "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
                          "num_key_value_heads": 4, "tie_word_embeddings": False}, indent=1),
        description="config", layout=widgets.Layout(width="420px", height="160px", display="none"))
    hardware_box, precision_box, context_box, batch_box = hardware_controls(hardware, precision, context_len,
                                                                            batch_size, width="420px")
    report = widgets.HTML()
    plot = widgets.Image(format="png")

    def update(_change=None):
        config_box.layout.display = "" if model_box.value == CUSTOM else "none"
        html_text, png = cost_model_report(model_box.value, hardware_box.value, precision_box.value,
                                           context_box.value, batch_box.value, config_box.value)
        report.value = html_text
        plot.layout.display = "none" if png is None else ""
        if png is not None:
            plot.value = png

    for control in (model_box, config_box, hardware_box, precision_box, context_box, batch_box):
        control.observe(update, names="value")
    update()
    controls = widgets.VBox([model_box, config_box, hardware_box, precision_box, context_box, batch_box])
    return widgets.VBox([controls, widgets.HBox([report, plot])])
