"""How fast the dashboards answer: every callback swept over its controls, p50 and p95 per dashboard.

    python benchmarks/bench_dashboards.py

Targets (COURSE_DESIGN): analytic dashboards p95 <= 50 ms per callback (compute and redraw together). The unit
tests only check a loose sanity bound; this is where the target is measured, in one run, on this machine.
"""
from __future__ import annotations

import itertools
import statistics
import time

from lessonlib.costs.presets import model_preset_names
from lessonlib.dashboards.cascading import CascadeView, MeasuredDraft, cascade_report, speculative_report
from lessonlib.dashboards.controls import BATCH_CHOICES, CONTEXT_CHOICES
from lessonlib.dashboards.cost_model import cost_model_report
from lessonlib.dashboards.decode_step import decode_step_report
from lessonlib.dashboards.edge_device import edge_report
from lessonlib.dashboards.kv_memory import kv_memory_report, value_choices

TARGET_P95_MS = 50
HARDWARE = ("a100-80gb", "raspberry-pi-5", "phone-snapdragon-8-gen-3", "h100-sxm", "jetson-orin-nano")


def sweeps():
    """(dashboard name, list of zero-argument calls covering its controls)."""
    models = model_preset_names()
    yield "decode step", [lambda m=m, h=h, c=c, b=b: decode_step_report(m, h, "bf16", c, b)
                          for m, h, c, b in itertools.product(models, HARDWARE[:2], CONTEXT_CHOICES[::3],
                                                              BATCH_CHOICES[::5])]
    yield "cost model", [lambda m=m, h=h, c=c, p=p: cost_model_report(m, h, p, c, 4)
                         for m, h, c, p in itertools.product(models, HARDWARE[:2], CONTEXT_CHOICES[::4],
                                                             ("bf16", "int8"))]
    yield "edge device", [lambda h=h, f=f, k=k, s=s: edge_report(h, f, "int8", "mistral-7b", "mixtral-8x7b", k, s)
                          for h, f, k, s in itertools.product(HARDWARE, (0.3, 0.6, 1.0),
                                                              ("unstructured", "2:4", "structured"), (0.0, 0.5, 0.9))]
    yield "KV memory", list(_kv_memory_calls())
    view = _cascade_view()
    yield "cascade", [lambda t=t: cascade_report(view, t) for t in [i / 100 for i in range(0, 102)] + [2.0]]
    measured = {k: MeasuredDraft(0.75, 2.5, 1.2) for k in (1, 2, 4, 8)}
    yield "speculative", [lambda a=a, k=k, c=c: speculative_report(a, k, c, measured)
                          for a, k, c in itertools.product((0.0, 0.5, 0.8, 0.95, 1.0), (1, 2, 4, 8, 16),
                                                           (0.05, 0.3, 1.0))]


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
    from lessonlib.costs.presets import model_preset

    for m in model_preset_names():
        spec = model_preset(m)
        if spec.latent_attention:
            continue
        for kind in ("as built", "grouped-query", "multi-query", "sliding window", "latent"):
            for value in (value_choices(spec, kind) or [None])[::2]:
                for c in CONTEXT_CHOICES[8::3]:
                    yield lambda m=m, kind=kind, value=value, c=c: kv_memory_report(m, kind, value, "a100-80gb",
                                                                                    "bf16", c)


def percentile(times: list[float], q: float) -> float:
    return sorted(times)[min(len(times) - 1, int(q * len(times)))]


def main() -> list[tuple[str, int, float, float, bool]]:
    rows = []
    for name, calls in sweeps():
        calls[0]()   # first call builds figures and caches
        times = []
        for call in calls:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        p50, p95 = 1e3 * statistics.median(times), 1e3 * percentile(times, 0.95)
        rows.append((name, len(calls), p50, p95, p95 <= TARGET_P95_MS))
    print(f"{'dashboard':<14}{'calls':>7}{'p50 ms':>10}{'p95 ms':>10}  target p95 <= {TARGET_P95_MS} ms")
    for name, n, p50, p95, ok in rows:
        print(f"{name:<14}{n:>7}{p50:>10.2f}{p95:>10.2f}  {'met' if ok else 'MISSED'}")
    return rows


if __name__ == "__main__":
    main()
