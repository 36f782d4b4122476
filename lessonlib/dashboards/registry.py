"""Every dashboard presenter mode shows, by lesson: one line each.

Presenter mode (``make demo``, :mod:`lessonlib.dashboards.presenter`) builds one page per lesson that has a
dashboard here, in the order of ``LESSONS``, plus an index. To add a lesson's dashboard, add one ``Demo`` line
to ``DEMOS``; its page, its place in the index and its browser test follow:

    Demo("05_new_lesson", "Title", "One sentence of context.", "module:function", control="slider label"),

A dashboard whose inputs its lesson measures gets a builder without required arguments that measures them from
the shipped models (:mod:`lessonlib.dashboards.shipped`).

``dashboard`` is ``"module:function"``: a module of ``lessonlib.dashboards`` (or a full dotted path), and a
function that returns the widget to display, called with ``kwargs``. ``control`` is the description of a
slider the browser test moves to check the dashboard answers (tests/test_browser_presenter.py).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

# The presenter pages' titles, in course order. A lesson listed here without a Demo gets no page yet.
LESSONS = {
    "00_orientation": "Where inference cost comes from",
    "01_inference_costs": "Inference costs: FLOPs, bytes and the roofline",
    "02_efficient_architectures": "Efficient attention: fewer KV heads, windows, latents",
    "03a_mixture_of_experts": "Mixture of experts: few parameters active, all in memory",
    "03b_pruning_and_the_edge": "Pruning, and which to deploy on an edge device",
    "04_cascading": "Cascades, early exit and speculative decoding",
}


@dataclass(frozen=True)
class Demo:
    lesson: str                  # assignment id, a key of LESSONS (an unknown one gets a page titled by its id)
    title: str
    context: str                 # one sentence for the room: what to look at, what to try
    dashboard: str               # "module:function" in lessonlib.dashboards, or "package.module:function"
    kwargs: dict[str, Any] = field(default_factory=dict)
    control: str = ""            # description of a slider that changes the output (the browser test moves it)

    def function(self) -> Callable:
        module, _, name = self.dashboard.partition(":")
        if not name:
            raise ValueError(f"dashboard {self.dashboard!r} must be 'module:function'")
        path = module if module.startswith("lessonlib.") else f"lessonlib.dashboards.{module}"
        return getattr(importlib.import_module(path), name)

    def build(self):
        return self.function()(**self.kwargs)


DEMOS = [
    Demo("00_orientation", "One decode step, live",
         "Memory traffic against arithmetic: the longer bar sets the step time. Try batch 1 against 256, a long "
         "context, int8 and int4, and what twice the bandwidth would buy.",
         "decode_step:decode_step_dashboard", control="batch"),
    Demo("01_inference_costs", "Any model on any hardware",
         "What must fit, the time to first token and per token, and where both phases sit on the roofline. Try "
         "Llama-2-70B on one A100 in bf16, int8 and int4.",
         "cost_model:cost_model_dashboard", control="batch"),
    Demo("01_inference_costs", "Serving: tokens per second against the wait per token",
         "Batching multiplies throughput while decode is memory-bound; each user then waits a little longer per "
         "token. Move the latency target and watch the batch a service would pick.",
         "serving:serving_dashboard", control="target / token"),
    Demo("02_efficient_architectures", "Shrinking the KV cache",
         "Grouped-query, multi-query, a sliding window or a latent on a real model: the cache of one conversation, "
         "the batch that fits, the time per token.",
         "kv_memory:kv_memory_dashboard", control="context"),
    Demo("03a_mixture_of_experts", "Where each token goes: mixture-of-experts routing",
         "tiny-moe's router picks two of eight experts for every character, layer by layer. Lower the capacity "
         "factor to drop assignments and watch the answer; compare the balance weights.",
         "moe_routing:moe_routing_dashboard", control="capacity factor"),
    Demo("03b_pruning_and_the_edge", "Pruning tiny-gpt, live",
         "Remove more and more of tiny-gpt's weights and watch its answers and its accuracy; the diamonds were "
         "fine-tuned after pruning, the slider is not.",
         "pruning_sparsity:pruning_dashboard", control="sparsity"),
    Demo("03b_pruning_and_the_edge", "Will it run on the phone?",
         "An MoE keeps every expert in memory; pruning shrinks the model for good. Compare them on an edge device's "
         "memory budget.",
         "edge_device:edge_dashboard_shipped", control="sparsity"),
    Demo("04_cascading", "Cascade, then speculative decoding",
         "Raise the threshold and more questions go on to the larger models: accuracy bought with compute. Lengthen "
         "the draft and watch when speculative decoding stops paying.",
         "shipped:cascading_dashboard_shipped", control="draft length"),
]


def lesson_number(lesson: str) -> str:
    """The short name of a lesson in navigation and headings: its id up to the first underscore ("03a")."""
    return lesson.split("_", 1)[0]


def lesson_title(lesson: str) -> str:
    return LESSONS.get(lesson, lesson.replace("_", " "))


def pages(demos: list[Demo] | None = None) -> dict[str, list[Demo]]:
    """Lesson id -> its demos, lessons in course order (those LESSONS does not list last, by id)."""
    demos = DEMOS if demos is None else demos
    order = {lesson: i for i, lesson in enumerate(LESSONS)}
    grouped: dict[str, list[Demo]] = {}
    for demo in sorted(demos, key=lambda d: (order.get(d.lesson, len(order)), d.lesson)):
        grouped.setdefault(demo.lesson, []).append(demo)
    return grouped
