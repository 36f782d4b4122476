"""Dashboards whose inputs a lesson measures, built instead from the shipped tiny models, for presenter mode (no
lesson notebook has run on a presenter page). Each function takes no required argument and returns the widget.

Lesson 03b's edge dashboard with the shipped checkpoints' quality is :func:`lessonlib.dashboards.edge_device.
edge_dashboard_shipped`; lesson 04's cascade and speculative-decoding panels are :func:`cascading_dashboard_shipped`.
"""
from __future__ import annotations


def cascading_dashboard_shipped(n_queries: int = 160, spec_prompts: int = 4, spec_tokens: int = 20):
    """Lesson 04's dashboard on its own data, measured the way the lesson measures it (smaller: a presenter page
    builds it when its kernel starts): the small/medium/large family answering ``n_queries`` questions of the
    lesson's traffic, the large model's acceptance of the small model's drafts at draft lengths 1, 2, 4 and 6, and
    one timing of speculative against plain decoding at draft length 4 (its cost ratio, and its speedup when
    the timing is steady)."""
    import torch

    from ..lessons.cascading import acceptance_by_draft_len, load_family, prompt_tokens, traffic
    from ..measure.decode import torch_threads
    from ..measure.speculative import measure_speculative_speedup
    from ..models.cascade import cascade_results, single_models
    from .cascading import CascadeView, MeasuredDraft, cascading_dashboard

    with torch_threads(1):
        models = load_family()
        lines, _ = traffic(n_queries, seed=4)
        results = cascade_results(list(models.values()), lines, list(models))
        view = CascadeView.of(results, target=float(single_models(results)["accuracy"][-1]), flops_unit="MFLOP")
        prompts = [prompt_tokens(line) for line in traffic(spec_prompts, seed=6)[0]]
        sweep = acceptance_by_draft_len(models["large"], models["small"], prompts, spec_tokens, [1, 2, 4, 6])
        speed = measure_speculative_speedup(models["large"], models["small"], [torch.tensor([p]) for p in prompts],
                                            spec_tokens, draft_len=4, repeats=1, max_repeats=2)
    alpha = next(p.stats.acceptance_rate for p in sweep if p.draft_len == 4)
    measured = {p.draft_len: MeasuredDraft(p.stats.acceptance_rate, p.stats.tokens_per_target_pass,
                                           speed.speedup if p.draft_len == 4 and speed.reliable else None)
                for p in sweep}
    return cascading_dashboard(view, alpha, speed.cost_ratio, measured)
