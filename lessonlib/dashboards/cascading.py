"""Dashboard of lesson 04: a cascade's threshold moves its accuracy, cost and deferral rate along the
cost/accuracy frontier; a draft length (with an acceptance rate and a draft-to-target cost ratio) sets what
speculative decoding yields per target pass and its speedup.

Both callbacks work on numbers computed before the dashboard starts (the family's per-query results, the
measured acceptance rates), so a control move costs a few array operations and a redraw:

    view = CascadeView.of(results, cost="flops")
    html, png = cascade_report(view, 0.6)
    html, png = speculative_report(0.8, 4, 0.3, measured={4: MeasuredDraft(0.78, 3.1, 1.4)})
"""
from __future__ import annotations

import html
import io
import math
import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..costs.speculative import best_draft_len, expected_speedup, expected_tokens_per_pass
from ..models.cascade import CascadeResults, evaluate_cascade, pareto_frontier, single_models

MAX_DRAFT_LEN = 16
FLOP_UNITS = {"kFLOP": 1e3, "MFLOP": 1e6, "GFLOP": 1e9}
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2")


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


class _CascadePlot:
    """One figure reused for every update: the curve, frontier and single models are drawn once per view; a
    control move only moves the marker of the current threshold."""

    def __init__(self, view: CascadeView):
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5.2, 3.5), dpi=80)
        self.figure.subplots_adjust(left=0.14, right=0.97, bottom=0.15, top=0.9)
        ax = self.ax = self.figure.add_subplot()
        costs = np.concatenate([view.cost, view.single_cost])
        ax.plot(view.cost, view.accuracy, "-", color="#999", lw=1, label="cascade, every threshold")
        ax.plot(view.cost[view.frontier], view.accuracy[view.frontier], "o", ms=3, color="#333",
                label="Pareto frontier")
        for m, name in enumerate(view.results.names):
            ax.plot(view.single_cost[m], view.single_accuracy[m], "*", ms=12, color=COLORS[m % len(COLORS)],
                    label=f"{name} alone")
        if view.target is not None:
            ax.axhline(view.target, color="#b00", lw=0.8, ls="--", label="target")
        self.marker, = ax.plot([], [], "o", ms=11, mfc="none", mec="#b00", mew=2)
        low, high = costs.min(), costs.max()
        ax.set(xlim=(low - 0.05 * (high - low), high + 0.05 * (high - low)), ylim=(-0.02, 1.02),
               xlabel=f"mean cost per query ({view.unit})", ylabel="accuracy")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)

    def png(self, cost: float, accuracy: float, title: str) -> bytes:
        self.marker.set_data([cost], [accuracy])
        self.ax.set_title(title, fontsize=9)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


@lru_cache(maxsize=4)
def _cascade_plot(view: CascadeView) -> _CascadePlot:
    return _CascadePlot(view)


def cascade_report(view: CascadeView, threshold: float) -> tuple[str, bytes | None]:
    """The cascade panel's callback: (HTML, PNG) at ``threshold`` (one for every stage; 0 never defers, above 1
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
    return report, _cascade_plot(view).png(cost, accuracy, setting)


# -- speculative decoding ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasuredDraft:
    """What a run of speculative decoding measured at one draft length."""
    acceptance_rate: float
    tokens_per_pass: float
    speedup: float | None = None   # measured time of plain target decoding over speculative decoding


class _SpeculativePlot:
    def __init__(self):
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5.2, 3.5), dpi=80)
        self.figure.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.9)
        ax = self.ax = self.figure.add_subplot()
        ks = np.arange(1, MAX_DRAFT_LEN + 1)
        self.ks = ks
        self.tokens, = ax.plot(ks, np.ones_like(ks, dtype=float), "-", color="#4C72B0",
                               label="expected tokens per target pass")
        self.speedup, = ax.plot(ks, np.ones_like(ks, dtype=float), "-", color="#DD8452", label="expected speedup")
        self.measured_tokens, = ax.plot([], [], "s", color="#4C72B0", ms=5, label="measured tokens per pass")
        self.measured_speedup, = ax.plot([], [], "D", color="#DD8452", ms=5, label="measured speedup")
        self.marker, = ax.plot([], [], "o", ms=11, mfc="none", mec="#b00", mew=2)
        ax.axhline(1, color="#777", lw=0.8, ls="--")
        ax.set(xlim=(0.5, MAX_DRAFT_LEN + 0.5), ylim=(0, MAX_DRAFT_LEN + 1.5), xlabel="draft length k",
               ylabel="per target pass / speedup")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)

    def png(self, acceptance_rate: float, draft_len: int, cost_ratio: float, measured) -> bytes:
        tokens = np.array([expected_tokens_per_pass(acceptance_rate, int(k)) for k in self.ks])
        speedups = np.array([expected_speedup(acceptance_rate, int(k), cost_ratio) for k in self.ks])
        self.tokens.set_ydata(tokens)
        self.speedup.set_ydata(speedups)
        ks = sorted(k for k in measured if 1 <= k <= MAX_DRAFT_LEN)
        self.measured_tokens.set_data(ks, [measured[k].tokens_per_pass for k in ks])
        timed = [k for k in ks if measured[k].speedup is not None]
        self.measured_speedup.set_data(timed, [measured[k].speedup for k in timed])
        shown = min(draft_len, MAX_DRAFT_LEN)
        self.marker.set_data([shown], [speedups[shown - 1]])
        top = max(2.0, float(tokens.max()), *(measured[k].tokens_per_pass for k in ks))
        self.ax.set_ylim(0, 1.1 * top)
        self.ax.set_title(f"acceptance {acceptance_rate:.2f}, draft step = {cost_ratio:.2f} target steps",
                          fontsize=9)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


@lru_cache(maxsize=1)
def _speculative_plot() -> _SpeculativePlot:
    return _SpeculativePlot()


def speculative_report(acceptance_rate: float, draft_len: int, cost_ratio: float,
                       measured: dict[int, MeasuredDraft] | None = None) -> tuple[str, bytes | None]:
    """The speculative panel's callback: (HTML, PNG) of Leviathan et al.'s expected tokens per target pass and
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
    return report, _speculative_plot().png(alpha, k, c, measured)


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
    cascade_png, spec_png = widgets.Image(format="png"), widgets.Image(format="png")

    def show(html_box, image, result):
        html_box.value, png = result
        image.layout.display = "none" if png is None else ""
        if png is not None:
            image.value = png

    def update_cascade(_change=None):
        value = threshold_box.value
        show(cascade_html, cascade_png, cascade_report(view, np.inf if value > 1 else value))

    def update_speculative(_change=None):
        show(spec_html, spec_png, speculative_report(alpha_box.value, draft_box.value, ratio_box.value, measured))

    threshold_box.observe(update_cascade, names="value")
    for box in (draft_box, alpha_box, ratio_box):
        box.observe(update_speculative, names="value")
    update_cascade()
    update_speculative()
    cascade_panel = widgets.VBox([widgets.HTML("<b>Cascade</b> (above 1.00: always defer)"), threshold_box,
                                  cascade_png, cascade_html])
    speculative_panel = widgets.VBox([widgets.HTML("<b>Speculative decoding</b>"), draft_box, alpha_box, ratio_box,
                                      spec_png, spec_html])
    return widgets.HBox([cascade_panel, speculative_panel])
