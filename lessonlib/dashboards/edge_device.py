"""Dashboard: which model fits an edge device, how fast it decodes, and what it costs in quality.

Candidates: a mixture-of-experts model (all experts in memory, a few active per token), a dense model, that
dense model pruned (unstructured, 2:4 or structured, at a chosen sparsity), and the course's tiny models
measured in lesson 03b. How unstructured and 2:4 zeros are stored and read is a setting (``sparse_kernel``):
off by default, as lesson 03b measures on a CPU. Quality: the real models' published scores where the course
has a sourced one (:mod:`lessonlib.costs.published`), blank otherwise (a pruned real model included); the tiny
models' change measured in lesson 03b. Arithmetic lives in :mod:`lessonlib.costs.edge`; this module only lays it
out.
"""
from __future__ import annotations

import html

from ..core.units import human_bytes, human_duration
from ..costs.edge import PRUNING_KINDS, Assessment, Candidate, assess, prune
from ..costs.hardware import hardware_preset
from ..costs.precision import EDGE_PRECISIONS
from ..costs.presets import model_preset, model_preset_label, model_preset_names
from ..costs.published import published_metric, published_score
from ..costs.spec import ModelSpec
from ..lessons.quality_curve import QualityCurve
from .controls import hardware_controls

COLORS = {"weights": "#4C72B0", "KV cache": "#DD8452"}


def dense_preset_names() -> list[str]:
    return [n for n in model_preset_names() if model_preset(n).n_experts == 1]


def moe_preset_names() -> list[str]:
    return [n for n in model_preset_names() if model_preset(n).n_experts > 1]


def candidates(dense: str, moe: str, kind: str, sparsity: float, tiny_dense: ModelSpec | None = None,
               tiny_moe: ModelSpec | None = None, sparse_kernel: bool = False) -> list[Candidate]:
    """The rows of the dashboard, real models first, then the course's tiny ones (when given)."""
    if kind == "2:4":
        sparsity = 0.5
    kernel = sparse_kernel and kind != "structured"
    dense_spec, moe_spec = model_preset(dense), model_preset(moe)
    rows = [Candidate(model_preset_label(moe), moe_spec), Candidate(model_preset_label(dense), dense_spec),
            prune(dense_spec, kind, sparsity, f"{model_preset_label(dense)}, pruned {kind} {sparsity:.0%}", kernel)]
    if tiny_moe is not None:
        rows.append(Candidate("tiny-moe (lesson 03a)", tiny_moe))
    if tiny_dense is not None:
        rows += [Candidate("tiny-gpt (lesson 03b)", tiny_dense),
                 prune(tiny_dense, kind, sparsity, f"tiny-gpt, pruned {kind} {sparsity:.0%}", kernel)]
    return rows


def _published(preset: str | None) -> str:
    score = None if preset is None else published_score(preset)
    return "" if score is None else f"{score.value:.1f}% {score.metric.split(',')[0]} (published)"


def _quality(candidate: Candidate, quality: QualityCurve | None) -> str:
    """A tiny model's measured change against tiny-gpt."""
    if candidate.kind == "dense":
        return "reference"
    if quality is None:
        return "not measured"
    change = quality.change(candidate.kind, round(candidate.sparsity, 4))
    if change is None:
        return "not measured at this sparsity"
    return f"{change:+.0%} {quality.metric}"


def _memory_bar(a: Assessment) -> str:
    """Weights and KV cache against the budget (the black line, at the middle): the bar spans twice the
    budget, and a model needing more than that is cut off with an arrow."""
    scale = 2 * a.budget_bytes
    cells, used = [], 0.0
    for name, b in a.memory.items():
        width = min(b, max(scale - used, 0))
        used += width
        if width > 0:
            cells.append(f'<div title="{name}: {human_bytes(b)}" style="width:{100 * width / scale:.3f}%;'
                         f'background:{COLORS[name]};height:16px;display:inline-block"></div>')
    overflow = '<span style="position:absolute;right:-12px;top:-1px;font-size:12px">&#9654;</span>' \
        if a.memory_needed > scale else ""
    budget = '<div style="position:absolute;left:50%;top:-2px;height:20px;border-left:2px solid #000" ' \
             'title="memory budget"></div>'
    return (f'<div style="position:relative;width:100%;background:#eee;white-space:nowrap;font-size:0">'
            f'{"".join(cells)}{budget}{overflow}</div>')


def edge_report(device: str = "phone-snapdragon-8-gen-3", memory_fraction: float = 0.6, precision: str = "int8",
                dense: str = "mistral-7b", moe: str = "mixtral-8x7b", kind: str = "structured",
                sparsity: float = 0.5, context_len: int = 2048, batch_size: int = 1,
                tiny_dense: ModelSpec | None = None, tiny_moe: ModelSpec | None = None,
                quality: QualityCurve | None = None, sparse_kernel: bool = False) -> str:
    """The dashboard's callback: an HTML table of every candidate on the device. Never raises: a bad input
    is reported in the returned HTML with what to change."""
    try:
        hw = hardware_preset(device)
        rows = [assess(c, hw, precision, int(context_len), int(batch_size), float(memory_fraction))
                for c in candidates(dense, moe, kind, float(sparsity), tiny_dense, tiny_moe, bool(sparse_kernel))]
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        return f'<p style="color:#b00"><b>Cannot assess these settings:</b> {html.escape(str(message))}</p>'

    budget = rows[0].budget_bytes
    real, tiny = rows[:3], rows[3:]
    published = [_published(moe), _published(dense), ""]      # no source evaluates the pruned real model
    body = []
    for group in (real, tiny):
        if not group:
            continue
        for i, a in enumerate(group):
            c = a.candidate
            fits = ('<b style="color:#080">fits</b>' if a.fits else '<b style="color:#b00">does not fit</b>')
            score = published[i] if group is real else _quality(c, quality)
            body.append(
                f"<tr><td>{html.escape(c.label)}</td><td>{c.kind}</td>"
                f"<td style='text-align:right'>{c.n_params() / 1e9:,.3g} B</td>"
                f"<td style='text-align:right'>{c.n_active_params() / 1e9:,.3g} B</td>"
                f"<td style='width:180px'>{_memory_bar(a)}</td>"
                f"<td style='text-align:right'>{human_bytes(a.memory_needed)}</td><td>{fits}</td>"
                f"<td style='text-align:right'>{human_duration(a.seconds_per_step)}</td>"
                f"<td style='text-align:right'>{a.tokens_per_second:,.1f}</td><td>{a.step.bound}</td>"
                f"<td>{html.escape(score)}</td></tr>")
        if group is real and tiny:
            measured = f"the change in {quality.metric} measured in lesson 03b" if quality else "not measured"
            body.append("<tr><td colspan='11' style='border-top:1px solid #999;font-size:85%;color:#555'>"
                        "the course's tiny models (parameters in billions, so 0.000831 B = 831 thousand); quality: "
                        f"{html.escape(measured)}, against tiny-gpt"
                        + (" (pruned ones against tiny-gpt trained for their extra fine-tuning steps)"
                           if quality is not None and quality.control is not None else "") + "</td></tr>")
    header = ("<tr><th>model</th><th>kind</th><th>params in memory</th><th>active / token</th>"
              "<th>memory vs budget</th><th>needed</th><th>fits?</th><th>decode step</th><th>tokens/s</th>"
              "<th>bound</th><th>quality</th></tr>")
    metric, source = published_metric()
    notes = []
    if kind == "2:4":
        notes.append("2:4 pruning always removes half of the weights: the sparsity slider is ignored.")
    if kind in ("unstructured", "2:4"):
        if sparse_kernel:
            notes.append("Sparse kernel ON: the zeros are stored compressed (a bitmask, or 2:4's 2-bit indices) and "
                         "skipped when read, so memory and bytes read shrink; FLOPs are still counted dense. This "
                         "needs hardware or a kernel that does it (2:4: NVIDIA sparse tensor cores, Ampere and "
                         "later; unstructured: a sparse matrix-vector kernel that beats dense at this sparsity).")
        else:
            notes.append("Sparse kernel OFF (as measured in lesson 03b on a CPU): the zeros are stored and "
                         "multiplied like any value, so this pruned model costs what the dense one costs.")
    if precision == "int4":
        notes.append("int4: weights in half a byte (weight-only quantization), KV cache in bf16, arithmetic "
                     "counted at the int8 rate.")
    notes.append(f"Real models' quality: {metric} as published in {source}; blank where that source has no "
                 "figure, as for every pruned real model.")
    return f"""
<div style="font-family:sans-serif;font-size:90%">
<p><b>{html.escape(hw.label)}</b>: {human_bytes(hw.memory_bytes)} of memory, {memory_fraction:.0%} of it
left for the model = <b>{human_bytes(budget)}</b> (the black line; bars span twice that);
{hw.memory_bandwidth / 1e9:,.0f} GB/s;
{precision} weights, batch {batch_size}, {context_len:,} tokens of context.</p>
<table style="border-collapse:collapse">{header}{''.join(body)}</table>
<p style="font-size:90%"><span style="color:{COLORS['weights']}">&#9632;</span> weights
&nbsp; <span style="color:{COLORS['KV cache']}">&#9632;</span> KV cache. {' '.join(html.escape(n) for n in notes)}</p>
</div>"""


def edge_dashboard(tiny_dense: ModelSpec | None = None, tiny_moe: ModelSpec | None = None,
                   quality: QualityCurve | None = None, device: str = "phone-snapdragon-8-gen-3",
                   precision: str = "int8", context_len: int = 2048, batch_size: int = 1):
    """Dropdowns and sliders around :func:`edge_report`. Returns the widget to display."""
    import ipywidgets as widgets

    hardware_box, precision_box, context_box, batch_box = hardware_controls(device, precision, context_len,
                                                                            batch_size, precisions=EDGE_PRECISIONS)
    wide = widgets.Layout(width="520px")
    fraction_box = widgets.FloatSlider(value=0.6, min=0.05, max=1.0, step=0.05, description="memory for model",
                                       readout_format=".0%", layout=wide, style={"description_width": "120px"})
    dense_box = widgets.Dropdown(options=[(model_preset_label(n), n) for n in dense_preset_names()],
                                 value="mistral-7b", description="dense model")
    moe_box = widgets.Dropdown(options=[(model_preset_label(n), n) for n in moe_preset_names()],
                               value="mixtral-8x7b", description="MoE model")
    kind_box = widgets.ToggleButtons(options=list(PRUNING_KINDS), value="structured", description="pruning")
    sparsity_box = widgets.FloatSlider(value=0.5, min=0.0, max=0.9, step=0.05, description="sparsity",
                                       readout_format=".0%", layout=wide)
    kernel_box = widgets.Checkbox(value=False, description="sparse kernel (zeros stored compressed and skipped)",
                                  layout=wide, style={"description_width": "initial"})
    report = widgets.HTML()
    controls = (hardware_box, fraction_box, precision_box, dense_box, moe_box, kind_box, sparsity_box,
                kernel_box, context_box, batch_box)

    def update(_change=None):
        report.value = edge_report(hardware_box.value, fraction_box.value, precision_box.value, dense_box.value,
                                   moe_box.value, kind_box.value, sparsity_box.value, context_box.value,
                                   batch_box.value, tiny_dense, tiny_moe, quality, kernel_box.value)

    for control in controls:
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([hardware_box, dense_box, moe_box]), fraction_box, precision_box,
                         kind_box, sparsity_box, kernel_box, context_box, batch_box, report])
