"""How fast the dashboards answer: every callback swept over its controls, p50 and p95 per dashboard.

    python benchmarks/bench_dashboards.py

A callback is what runs when a control moves: compute and the whole redraw (HTML and the SVG chart) together.
Targets (COURSE_DESIGN): analytic dashboards p95 <= 50 ms; a dashboard that runs a tiny model shows its result
within 300 ms p95 on a 2-core machine. The tiny-model dashboards keep what they computed, so a control returning
to a setting answers at once; this sweep only ever asks for settings not yet computed (the slow case). The unit
tests only check a loose sanity bound; this is where the targets are measured, in one run, on this machine.
The browser side (key press to changed output, transport and rendering included) is bench_dashboards_browser.py.
"""
from __future__ import annotations

import itertools
import os
import statistics
import time

from lessonlib.costs.precision import PRECISIONS
from lessonlib.costs.presets import model_preset, model_preset_names
from lessonlib.dashboards.cascading import CascadeView, MeasuredDraft, cascade_report, speculative_report
from lessonlib.dashboards.controls import BATCH_CHOICES, CONTEXT_CHOICES, WHAT_IF_CHOICES
from lessonlib.dashboards.cost_model import cost_model_report
from lessonlib.dashboards.decode_step import decode_step_report
from lessonlib.dashboards.edge_device import edge_report
from lessonlib.dashboards.kv_memory import kv_memory_report, value_choices
from lessonlib.dashboards.serving import TARGETS_MS, serving_report

ANALYTIC_P95_MS, TINY_MODEL_P95_MS = 50, 300
HARDWARE = ("a100-80gb", "raspberry-pi-5", "phone-snapdragon-8-gen-3", "h100-sxm", "jetson-orin-nano")
FACTORS = [value for _, value in WHAT_IF_CHOICES]


def sweeps():
    """(dashboard name, target p95 in ms, list of zero-argument calls covering its controls)."""
    models = model_preset_names()
    yield "decode step", ANALYTIC_P95_MS, [
        lambda m=m, h=h, p=p, c=c, b=b, f=f: decode_step_report(m, h, p, c, b, f, 1 / f)
        for m, h, p, c, b, f in itertools.product(models, HARDWARE[:2], PRECISIONS, CONTEXT_CHOICES[::6],
                                                  BATCH_CHOICES[::5], FACTORS[::2])]
    yield "cost model", ANALYTIC_P95_MS, [
        lambda m=m, h=h, c=c, p=p, f=f: cost_model_report(m, h, p, c, 4, "", f, f)
        for m, h, c, p, f in itertools.product(models, HARDWARE[:2], CONTEXT_CHOICES[::6], PRECISIONS, FACTORS[::2])]
    yield "serving", ANALYTIC_P95_MS, [
        lambda m=m, h=h, p=p, c=c, t=t: serving_report(m, h, p, c, t)
        for m, h, p, c, t in itertools.product(models, HARDWARE[:2], PRECISIONS, CONTEXT_CHOICES[::8],
                                               TARGETS_MS[::3])]
    yield "edge device", ANALYTIC_P95_MS, [
        lambda h=h, f=f, p=p, k=k, s=s: edge_report(h, f, p, "mistral-7b", "mixtral-8x7b", k, s)
        for h, f, p, k, s in itertools.product(HARDWARE, (0.3, 1.0), PRECISIONS, ("unstructured", "2:4", "structured"),
                                               (0.0, 0.5, 0.9))]
    yield "KV memory", ANALYTIC_P95_MS, list(_kv_memory_calls())
    view = _cascade_view()
    yield "cascade", ANALYTIC_P95_MS, [lambda t=t: cascade_report(view, t)
                                       for t in [i / 100 for i in range(0, 102)] + [2.0]]
    measured = {k: MeasuredDraft(0.75, 2.5, 1.2) for k in (1, 2, 4, 8)}
    yield "speculative", ANALYTIC_P95_MS, [lambda a=a, k=k, c=c: speculative_report(a, k, c, measured)
                                           for a, k, c in itertools.product((0.0, 0.5, 0.8, 0.95, 1.0),
                                                                            (1, 2, 4, 8, 16), (0.05, 0.3, 1.0))]
    yield "MoE routing", TINY_MODEL_P95_MS, list(_routing_calls())
    yield "pruning", TINY_MODEL_P95_MS, list(_pruning_calls())


def _cascade_view():
    """Lesson 04's cascade panel over 400 queries and three models (synthetic: the callback's cost does not
    depend on what the numbers are)."""
    import numpy as np

    from lessonlib.models.cascade import CascadeResults

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0, 1, (3, 400))
    correct = rng.uniform(0, 1, (3, 400)) < np.array([[0.3], [0.6], [0.8]]) + 0.2 * confidence
    flops = np.array([[2.7e6], [2.1e7], [6.5e7]]) * rng.uniform(0.8, 1.2, (3, 400))
    return CascadeView.of(CascadeResults(["small", "medium", "large"], correct, confidence, flops), target=0.8)


def _kv_memory_calls():
    for m in model_preset_names():
        spec = model_preset(m)
        if spec.latent_attention:
            continue
        for kind in ("as built", "grouped-query", "multi-query", "sliding window", "latent"):
            for value in (value_choices(spec, kind) or [None])[::2]:
                for c, p in itertools.product(CONTEXT_CHOICES[8::3], ("bf16", "int4")):
                    yield lambda m=m, kind=kind, value=value, c=c, p=p: kv_memory_report(m, kind, value, "a100-80gb",
                                                                                        p, c)


def _routing_calls():
    from lessonlib.dashboards.moe_routing import CAPACITY_CHOICES, EXAMPLES, RoutingModel, routing_report

    model = RoutingModel()
    prompts = list(EXAMPLES) + ["s zyxwvutsrq>", "r abcdefghij>", "c hello>"]
    for prompt, (_, capacity), alpha in itertools.product(prompts, CAPACITY_CHOICES[::2], model.alphas[::2]):
        yield lambda p=prompt, c=capacity, a=alpha: routing_report(model, p, c, a)


def _pruning_calls():
    from lessonlib.dashboards.pruning_sparsity import KINDS, PruningModel, fine_tuned_accuracy, pruning_report

    model = PruningModel()
    fine_tuned_accuracy()          # measured once when the dashboard is built, not per move
    for kind in KINDS:
        for sparsity in ([0.5] if kind == "2:4" else [i / 20 for i in range(20)]):
            yield lambda k=kind, s=sparsity: pruning_report(model, k, s)


def percentile(times: list[float], q: float) -> float:
    return sorted(times)[min(len(times) - 1, int(q * len(times)))]


def main() -> list[tuple[str, int, float, float, int, bool]]:
    rows = []
    for name, target, calls in sweeps():
        calls[0]()   # first call imports and builds what later calls reuse
        times = []
        for call in calls[1:]:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        p50, p95 = 1e3 * statistics.median(times), 1e3 * percentile(times, 0.95)
        rows.append((name, len(times), p50, p95, target, p95 <= target))
    print(markdown(rows))
    return rows


def markdown(rows) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Load average (1 min) after the run: {load:.2f}.", "",
             "| dashboard | calls | p50 ms | p95 ms | target p95 | |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {n} | {p50:.2f} | {p95:.2f} | {target} ms | {'met' if ok else 'MISSED'} |"
              for name, n, p50, p95, target, ok in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
