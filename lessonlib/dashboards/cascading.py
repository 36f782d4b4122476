"""Dashboard of lesson 04: a cascade's threshold moves its accuracy, cost and deferral rate along the
cost/accuracy frontier; a draft length (with an acceptance rate and a draft-to-target cost ratio) sets what
speculative decoding yields per target pass and its speedup.

Both callbacks work on numbers computed before the dashboard starts (the family's per-query results, the
measured acceptance rates), so a control move costs a few array operations and an SVG chart written as text
(:mod:`lessonlib.display.svgchart`):

    view = CascadeView.of(results, cost="flops")
    html, svg = cascade_report(view, 0.6)
    html, svg = speculative_report(0.8, 4, 0.3, measured={4: MeasuredDraft(0.78, 3.1, 1.4)})
"""
from __future__ import annotations

import html
import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..costs.speculative import best_draft_len, expected_speedup, expected_tokens_per_pass
from ..display.palette import BLACK, BLUE, BLUISH_GREEN, GREY, LIMIT, ORANGE, REDDISH_PURPLE, SKY_BLUE
from ..display.svgchart import Axis, Chart
from ..models.cascade import CascadeResults, evaluate_cascade, pareto_frontier, single_models

MAX_DRAFT_LEN = 16
FLOP_UNITS = {"kFLOP": 1e3, "MFLOP": 1e6, "GFLOP": 1e9}
MODEL_MARKERS = ("diamond", "square", "triangle", "circle")
MODEL_COLORS = (ORANGE, BLUISH_GREEN, REDDISH_PURPLE, SKY_BLUE)      # apart from the target (LIMIT) and the ring


def _error(message: str) -> tuple[str, None]:
    return f'<p style="color:#b00"><b>Cannot show this setting:</b> {html.escape(message)}</p>', None


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# -- the cascade ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)     # hashed by identity: the figure of a view is cached
class CascadeView:
    """What the cascade panel shows: per-query results, the curve over a threshold grid and its frontier."""
    results: CascadeResults
    cost_kind: str
    scale: float                   # cost units per shown unit (1e9: GFLOP)
    unit: str                      # the shown unit, "GFLOP" or "ms"
    grid: np.ndarray               # (K,) thresholds of the drawn curve
    accuracy: np.ndarray           # (K,)
    cost: np.ndarray               # (K,) mean per query, shown units
    frontier: np.ndarray           # indices into the grid, by increasing cost
    single_accuracy: np.ndarray    # (M,)
    single_cost: np.ndarray        # (M,) shown units
    target: float | None = None    # an accuracy to beat (e.g. the largest model's), drawn as a line

    @classmethod
    def of(cls, results: CascadeResults, cost: str = "flops", target: float | None = None,
           flops_unit: str = "GFLOP") -> CascadeView:
        """The view of ``results`` with costs in ``cost`` ("flops", shown in ``flops_unit``: kFLOP, MFLOP or
        GFLOP; or measured "seconds", shown in ms) and an optional accuracy ``target`` line."""
        if flops_unit not in FLOP_UNITS:
            raise ValueError(f"flops_unit must be one of {', '.join(FLOP_UNITS)}, got {flops_unit!r}")
        scale, unit = (FLOP_UNITS[flops_unit], flops_unit) if cost == "flops" else (1e-3, "ms")
        grid = np.append(np.arange(101) / 100, np.inf)
        curve = evaluate_cascade(results, grid, cost)
        alone = single_models(results, cost)
        frontier = pareto_frontier(np.stack([curve.cost, curve.accuracy], axis=1))
        return cls(results, cost, scale, unit, grid, curve.accuracy, curve.cost / scale, frontier,
                   alone["accuracy"], alone["cost"] / scale, target)


def _cascade_chart(view: CascadeView, cost: float, accuracy: float, title: str) -> str:
    """The curve over every threshold, its Pareto frontier, each model alone, the target, and a ring at the
    current threshold: SVG text, drawn afresh in well under a millisecond."""
    costs = np.concatenate([view.cost, view.single_cost])
    low, high = float(costs.min()), float(costs.max())
    pad = 0.05 * (high - low) or 0.05 * max(abs(high), 1e-12)
    chart = Chart(Axis(low - pad, high + pad, label=f"mean cost per query ({view.unit})"),
                  Axis(-0.02, 1.02, label="accuracy", ticks=tuple((v, f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1))),
                  title=title)
    chart.line(view.cost, view.accuracy, color=GREY, width=2, label="cascade, every threshold")
    chart.points(view.cost[view.frontier], view.accuracy[view.frontier], color=BLUE, size=4, label="Pareto frontier")
    for m, name in enumerate(view.results.names):
        chart.points([view.single_cost[m]], [view.single_accuracy[m]], color=MODEL_COLORS[m % len(MODEL_COLORS)],
                     marker=MODEL_MARKERS[m % len(MODEL_MARKERS)], size=8, label=f"{name} alone")
    if view.target is not None:
        chart.hline(view.target, color=LIMIT, label="target")
    chart.points([cost], [accuracy], color=BLACK, size=9, label="this threshold")
    return chart.svg()


def cascade_report(view: CascadeView, threshold: float) -> tuple[str, str | None]:
    """The cascade panel's callback: (HTML, SVG chart) at ``threshold`` (one for every stage; 0 never defers, above 1
    always defers to the last model). Never raises: a bad threshold is explained in the HTML."""
    if not _is_number(threshold) or math.isnan(threshold) or threshold < 0:
        return _error(f"the threshold must be a number from 0 (never defer) upwards (above 1: always defer); "
                      f"got {threshold!r}")
    curve = evaluate_cascade(view.results, [float(threshold)], view.cost_kind)
    point = curve.point(0)
    names = view.results.names
    accuracy, cost = point["accuracy"], point["cost"] / view.scale
    largest = view.single_cost[-1]
    shares = ", ".join(f"{name} {share:.0%}" for name, share in zip(names, point["answered_by"], strict=True))
    deferred = ", ".join(f"past {name}: {rate:.0%}" for name, rate in zip(names, point["deferral_rate"],
                                                                           strict=False))
    setting = "always defers" if threshold > 1 else f"threshold {threshold:.2f}"
    verdict = (f"{cost / largest:.0%} of the cost of {html.escape(names[-1])} alone "
               f"({view.single_accuracy[-1]:.1%} accurate)")
    report = f"""
<div style="font-family:sans-serif;font-size:90%;max-width:430px">
<p><b>{setting}</b>: accuracy <b>{accuracy:.1%}</b> at <b>{cost:,.3g} {view.unit}</b> per query, {verdict}.</p>
<p>Answered by: {shares}.<br>Deferral rate {deferred}.</p>
<p style="font-size:90%">A query pays for every model it passed through. Confidence: the least confident answer
token's probability; a model keeps a query when its confidence reaches the threshold.</p></div>"""
    return report, _cascade_chart(view, cost, accuracy, setting)


# -- speculative decoding ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasuredDraft:
    """What a run of speculative decoding measured at one draft length."""
    acceptance_rate: float
    tokens_per_pass: float
    speedup: float | None = None   # measured time of plain target decoding over speculative decoding


def _speculative_chart(acceptance_rate: float, draft_len: int, cost_ratio: float, measured) -> str:
    """Expected tokens per target pass and speedup over every draft length, what was measured, and a ring at the
    chosen draft length: SVG text."""
    ks = list(range(1, MAX_DRAFT_LEN + 1))
    tokens = [expected_tokens_per_pass(acceptance_rate, k) for k in ks]
    speedups = [expected_speedup(acceptance_rate, k, cost_ratio) for k in ks]
    seen = sorted(k for k in measured if 1 <= k <= MAX_DRAFT_LEN)
    top = max(2.0, max(tokens), *(measured[k].tokens_per_pass for k in seen))
    chart = Chart(Axis(0.5, MAX_DRAFT_LEN + 0.5, label="draft length k",
                       ticks=tuple((k, str(k)) for k in (1, 4, 8, 12, 16))),
                  Axis(0, 1.1 * top, label="per target pass / speedup"),
                  title=f"acceptance {acceptance_rate:.2f}, draft step = {cost_ratio:.2f} target steps")
    chart.hline(1, color=GREY, width=1.5)
    chart.line(ks, tokens, color=BLUE, label="expected tokens per target pass")
    chart.line(ks, speedups, color=ORANGE, dash="8 4", label="expected speedup")
    chart.points(seen, [measured[k].tokens_per_pass for k in seen], color=BLUE, marker="square", size=5,
                 label="measured tokens per pass")
    timed = [k for k in seen if measured[k].speedup is not None]
    chart.points(timed, [measured[k].speedup for k in timed], color=ORANGE, marker="diamond", size=5,
                 label="measured speedup")
    shown = min(draft_len, MAX_DRAFT_LEN)
    chart.points([shown], [speedups[shown - 1]], color=BLACK, size=8, label="this draft length")
    return chart.svg()


def speculative_report(acceptance_rate: float, draft_len: int, cost_ratio: float,
                       measured: dict[int, MeasuredDraft] | None = None) -> tuple[str, str | None]:
    """The speculative panel's callback: (HTML, SVG chart) of Leviathan et al.'s expected tokens per target pass and
    speedup at this acceptance rate (alpha), draft length (k) and cost ratio (c: a draft step over a target
    step), beside what was measured (``measured``: draft length -> :class:`MeasuredDraft`). Never raises."""
    measured = measured or {}
    if not _is_number(acceptance_rate) or not 0 <= acceptance_rate <= 1:
        return _error(f"the acceptance rate is a probability in [0, 1]; got {acceptance_rate!r}")
    if isinstance(draft_len, bool) or not isinstance(draft_len, numbers.Integral) or draft_len < 1:
        return _error(f"the draft length is a whole number of tokens, at least 1; got {draft_len!r}")
    if not _is_number(cost_ratio) or math.isnan(cost_ratio) or cost_ratio < 0 or math.isinf(cost_ratio):
        return _error(f"the cost ratio is a draft step's time over a target step's, a number >= 0; "
                      f"got {cost_ratio!r}")
    k, alpha, c = int(draft_len), float(acceptance_rate), float(cost_ratio)
    tokens, speedup = expected_tokens_per_pass(alpha, k), expected_speedup(alpha, k, c)
    best = best_draft_len(alpha, c, MAX_DRAFT_LEN)
    if speedup >= 1:
        verdict = f"<b>{speedup:.2f}x</b> faster than plain decoding of the target"
    else:
        verdict = (f"<b>slower</b> than plain decoding ({speedup:.2f}x): the {k} draft steps cost more than the "
                   f"accepted tokens save")
    seen = measured.get(k)
    if seen is None:
        observed = "not measured at this draft length"
    else:
        observed = (f"acceptance {seen.acceptance_rate:.2f}, {seen.tokens_per_pass:.2f} tokens per target pass"
                    + (f", speedup {seen.speedup:.2f}x" if seen.speedup is not None else ""))
    report = f"""
<div style="font-family:sans-serif;font-size:90%;max-width:430px">
<p>Draft <b>{k}</b> tokens per round: the target yields <b>{tokens:.2f}</b> tokens per pass on average,
{verdict}. Best draft length here: <b>{best}</b> ({expected_speedup(alpha, best, c):.2f}x).</p>
<p>Measured on this machine: {observed}.</p>
<p style="font-size:90%">Expected tokens per pass (1 - &alpha;<sup>k+1</sup>) / (1 - &alpha;); speedup that over
(c k + 1), counting a verify pass as one target step (Leviathan et al., 2023).</p></div>"""
    return report, _speculative_chart(alpha, k, c, measured)


# -- the widget ----------------------------------------------------------------------------------------------
def cascading_dashboard(view: CascadeView, acceptance_rate: float, cost_ratio: float,
                        measured: dict[int, MeasuredDraft] | None = None, threshold: float = 0.5,
                        draft_len: int = 4):
    """Sliders around :func:`cascade_report` and :func:`speculative_report`. Returns the widget to display."""
    import ipywidgets as widgets

    wide = widgets.Layout(width="420px")
    threshold_box = widgets.FloatSlider(value=threshold, min=0.0, max=1.01, step=0.01, description="threshold",
                                        readout_format=".2f", layout=wide)
    draft_box = widgets.IntSlider(value=draft_len, min=1, max=MAX_DRAFT_LEN, description="draft length",
                                  layout=wide)
    alpha_box = widgets.FloatSlider(value=round(float(acceptance_rate), 2), min=0.0, max=1.0, step=0.01,
                                    description="acceptance", readout_format=".2f", layout=wide)
    ratio_box = widgets.FloatSlider(value=round(float(cost_ratio), 2), min=0.0, max=1.5, step=0.01,
                                    description="cost ratio c", readout_format=".2f", layout=wide)
    style = {"description_width": "90px"}
    for box in (threshold_box, draft_box, alpha_box, ratio_box):
        box.style = style
    cascade_html, spec_html = widgets.HTML(), widgets.HTML()
    # the charts scale to their box: give each panel's chart the width of its sliders
    cascade_chart, spec_chart = (widgets.HTML(layout=widgets.Layout(width="420px", max_width="100%"))
                                 for _ in range(2))

    def show(html_box, chart, result):
        html_box.value, svg = result
        chart.value = svg or ""

    def update_cascade(_change=None):
        value = threshold_box.value
        show(cascade_html, cascade_chart, cascade_report(view, np.inf if value > 1 else value))

    def update_speculative(_change=None):
        show(spec_html, spec_chart, speculative_report(alpha_box.value, draft_box.value, ratio_box.value, measured))

    threshold_box.observe(update_cascade, names="value")
    for box in (draft_box, alpha_box, ratio_box):
        box.observe(update_speculative, names="value")
    update_cascade()
    update_speculative()
    cascade_panel = widgets.VBox([widgets.HTML("<b>Cascade</b> (above 1.00: always defer)"), threshold_box,
                                  cascade_chart, cascade_html])
    speculative_panel = widgets.VBox([widgets.HTML("<b>Speculative decoding</b>"), draft_box, alpha_box, ratio_box,
                                      spec_chart, spec_html])
    return widgets.HBox([cascade_panel, speculative_panel])
