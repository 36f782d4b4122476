"""Lesson 03's live dashboards on the shipped tiny models: the MoE routing view and the pruning slider. Plain
callbacks, checked against the models' own code, never raising on an impossible setting."""
import math
import sys
import time
from pathlib import Path

import pytest
import torch

from lessonlib.dashboards.moe_routing import (
    EXAMPLES,
    RoutingModel,
    check_prompt,
    load_router_variants,
    moe_routing_dashboard,
    routing_report,
)
from lessonlib.dashboards.pruning_sparsity import (
    PruningModel,
    answers_right,
    pruning_dashboard,
    pruning_report,
    questions,
)
from lessonlib.models import pruning
from lessonlib.models.corpus import TOKENIZER
from lessonlib.models.evaluation import exact_match


@pytest.fixture(scope="module")
def routing():
    return RoutingModel()


@pytest.fixture(scope="module")
def pruner():
    return PruningModel()


# -- MoE routing ---------------------------------------------------------------------------------------------
def test_routing_is_what_the_model_itself_routes(routing):
    r = routing.route("s hdbgca>")
    assert r.tokens == "\ns hdbgca>" and (r.n_experts, r.k) == (8, 2) and len(r.layers) == 4
    with torch.no_grad():
        out = routing.model(torch.tensor([TOKENIZER.encode(r.tokens)]))
    for layer, stats in zip(r.layers, out.moe, strict=True):
        assert layer.experts == stats.routing.experts.tolist()
        assert sum(layer.counts) == len(r.tokens) * r.k and layer.capacity is None
        assert 0 < layer.balance_loss <= r.n_experts / r.k


def test_the_model_answers_a_question_and_the_report_says_whether_it_is_right(routing):
    assert routing.route("r wolfram>").answer == "marflow"
    assert routing.route("t the red dog").answer is None
    html = routing_report(routing, "r wolfram>")
    assert "marflow" in html and "right" in html and "balance loss" in html


def test_a_capacity_factor_drops_assignments_over_each_experts_capacity(routing):
    r = routing.route("c kqzmwxyv>", capacity_factor=0.5)
    for layer in r.layers:
        assert layer.capacity == math.ceil(0.5 * len(r.tokens) * 2 / 8)
        assert all(c <= layer.capacity for c in layer.counts)
        assert sum(layer.wanted) == len(r.tokens) * 2
    assert sum(sum(layer.wanted) - sum(layer.counts) for layer in r.layers) > 0
    html = routing_report(routing, "c kqzmwxyv>", 0.5)
    assert "assignments dropped" in html and "&#215;" in html
    assert "no capacity limit" in routing_report(routing, "c kqzmwxyv>", 0.0)


@pytest.mark.parametrize("prompt, capacity, message", [
    ("", 0.0, "type a prompt"), ("Hello!", 0.0, "remove"), ("c " + "a" * 200, 0.0, "keep it to"),
    ("c ab>", -1.0, "capacity factor"), ("c ab>", float("nan"), "capacity factor"), (None, 0.0, "type a prompt")])
def test_bad_prompts_and_settings_give_a_message_not_a_traceback(routing, prompt, capacity, message):
    html = routing_report(routing, prompt, capacity)
    assert "Cannot route this prompt" in html and message in html


def test_an_unknown_balance_weight_is_explained(routing):
    assert "no routers trained with balance weight 7" in routing_report(routing, "c ab>", 0.0, "7")
    routing.use_alpha("shipped")


def test_every_example_prompt_is_readable():
    for prompt in EXAMPLES:
        assert check_prompt(prompt) == prompt


def test_retrained_routers_change_the_routing_and_switching_back_restores_the_shipped_ones(routing):
    variants, report = load_router_variants()
    if not variants:
        pytest.skip("no retrained routers shipped (scripts/train_moe_routers.py writes them)")
    assert routing.alphas[0] == "shipped" and set(routing.alphas) >= {"0.0", "0.01", "1.0"} and "variants" in report
    shipped = routing.route("a 12+34>", alpha="shipped").layers
    other = routing.route("a 12+34>", alpha="1.0").layers
    assert [layer.experts for layer in shipped] != [layer.experts for layer in other]
    assert "retrained 200 steps with balance weight alpha = 1.0" in routing_report(routing, "a 12+34>", 0, "1.0")
    # A higher weight evened the load on the validation text, and cost some loss (the report's numbers).
    variants_report = report["variants"]
    assert max(variants_report["1.0"]["balance_loss_per_layer"]) < max(variants_report["0.0"]["balance_loss_per_layer"])
    assert variants_report["1.0"]["validation_loss"] > variants_report["0.0"]["validation_loss"]
    assert routing.route("a 12+34>", alpha="shipped").layers == shipped
    for block, router in zip(routing.model.h, routing.shipped, strict=True):
        assert torch.equal(block.mlp.router, router)


def test_routing_widget_answers_its_controls(routing):
    box = moe_routing_dashboard(model=routing)
    prompt, examples, capacity, _alpha, report = box.children
    before = report.value
    capacity.value = 0.5
    assert report.value != before and "capacity factor 0.5" in report.value
    examples.value = "r wolfram>"
    assert prompt.value == "r wolfram>" and "marflow" in report.value


# -- pruning -------------------------------------------------------------------------------------------------
def test_teacher_forced_exact_match_agrees_with_greedy_decoding(pruner):
    pruner.prune("magnitude", 0.6)      # a model that gets some answers right and some wrong
    lines = questions()
    right = answers_right(pruner.working, lines)
    assert 0 < right.float().mean() < 1
    assert right.float().mean().item() == pytest.approx(exact_match(pruner.working, lines))
    assert [bool(r) for r in right[:12]] == [exact_match(pruner.working, [line]) == 1.0 for line in lines[:12]]


def test_magnitude_masks_are_the_lessons_own(pruner):
    for sparsity in (0.0, 0.35, 0.9):
        ours, theirs = pruner.masks("magnitude", sparsity), pruning.magnitude_masks(pruner.original, sparsity)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_accuracy_falls_with_sparsity_and_the_original_is_never_touched(pruner):
    before = {k: v.clone() for k, v in pruner.original.state_dict().items()}
    dense = pruner.evaluate("magnitude", 0.0)
    sparse = pruner.evaluate("magnitude", 0.9)
    assert dense[0] > 0.85 and sparse[0] < dense[0] and sparse[3] == pytest.approx(0.9, abs=1e-3)
    assert all(torch.equal(before[k], v) for k, v in pruner.original.state_dict().items())
    structured = pruner.evaluate("structured", 0.5)
    assert 0.45 < structured[3] < 0.55


def test_report_shows_answers_accuracy_and_the_fine_tuned_checkpoints(pruner):
    html, svg = pruning_report(pruner, "magnitude", 0.5)
    assert "wolfram" in html and "Exact-match accuracy on 48 questions" in html and "No fine-tuning" in html
    assert "pruned, then fine-tuned (shipped)" in svg
    html, _ = pruning_report(pruner, "2:4", 0.9)
    assert "at 50%" in html        # 2:4 always removes half, whatever the slider says


@pytest.mark.parametrize("kind, sparsity, message", [
    ("magic", 0.5, "must be one of"), ("magnitude", 1.0, "[0, 1)"), ("magnitude", -0.1, "[0, 1)"),
    ("magnitude", float("nan"), "[0, 1)"), ("structured", "half", "[0, 1)")])
def test_impossible_settings_give_a_message_not_a_traceback(pruner, kind, sparsity, message):
    html, svg = pruning_report(pruner, kind, sparsity)
    assert "Cannot prune this way" in html and message in html and svg is None


def test_pruning_widget_locks_the_slider_for_two_four(pruner):
    box = pruning_dashboard(model=pruner)
    kind, sparsity, outputs = box.children
    report = outputs.children[0]
    sparsity.value = 0.3
    assert "at 30%" in report.value
    kind.value = "2:4"
    assert sparsity.disabled and sparsity.value == 0.5 and "at 50%" in report.value
    kind.value = "magnitude"
    assert not sparsity.disabled and sparsity.value == 0.3


def test_callbacks_answer_without_stalling(routing, pruner):
    """A generous sanity bound (3 s; the target, 300 ms p95, is measured by benchmarks/bench_dashboards.py)."""
    for call in (lambda: routing_report(routing, "s zyxwvut>", 1.25),
                 lambda: pruning_report(pruner, "magnitude", 0.45)):
        start = time.perf_counter()
        call()
        assert time.perf_counter() - start < 3.0


def test_shipped_router_variants_follow_their_recipe_and_fit_the_model():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_moe_routers

    variants, report = load_router_variants()
    if not variants:
        pytest.skip("no retrained routers shipped")
    assert report["training"] == train_moe_routers.RECIPE
    assert sorted(variants, key=float) == [str(a) for a in train_moe_routers.ALPHAS]
    assert all(r.shape == (128, 8) and r.dtype == torch.float16 for routers in variants.values() for r in routers)


def test_the_answer_under_a_capacity_limit_is_the_cached_generation_with_that_limit(routing):
    """The dashboard decodes without the limit after the prompt: the same tokens as the cached path with the
    limit on every call (a single token never overflows an expert)."""
    routing.use_alpha("shipped")
    for prompt, factor in (("s zyxwvutsrq>", 1.0), ("r abcdefghij>", 0.5), ("c kqzmw>", 0.25)):
        answer = routing.route(prompt, factor).answer
        ids = torch.tensor([TOKENIZER.encode("\n" + prompt)])
        routing.model.config.capacity_factor = factor
        try:
            out = routing.model.generate(ids, len(answer) + 1)[0, ids.shape[1]:].tolist()
        finally:
            routing.model.config.capacity_factor = None
        assert TOKENIZER.decode(out) == answer + "\n", (prompt, factor)
