"""Lesson 03's measurements (lessonlib.lessons.mixture_of_experts and .moe_vs_pruning): the side-by-side
measurement counts parameters, zeros and FLOPs exactly and times every model (timings are only checked to be
positive: this machine is too noisy for more); the learner's masks and dispatch run inside a model exactly as
lessonlib's do; and every printed conclusion follows the numbers it is given, including the opposite ones."""
import dataclasses

import pytest
import torch

from lessonlib.core.timing import Timing
from lessonlib.lessons import references
from lessonlib.lessons.mixture_of_experts import (
    DispatchTiming,
    PayoffRow,
    balance_summary,
    balance_sweep,
    check_dispatch,
    dispatch_summary,
    every_expert_on_every_token,
    layer_timing_summary,
    learner_moe,
    moe_payoff,
    payoff_summary,
    random_experts,
    routing_summary,
    time_dispatch,
    time_moe_layer,
)
from lessonlib.lessons.moe_vs_pruning import (
    Measured,
    comparison_summary,
    count_zeros,
    learner_magnitude_masks,
    learner_n_m_masks,
    measure,
    pruning_sweep_summary,
    sparse_matmul_summary,
    time_sparse_matmul,
)
from lessonlib.measure.decode import torch_threads
from lessonlib.models import corpus, moe, pruning
from lessonlib.models.cost_spec import spec_of
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig


def small_model(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, max_position_embeddings=64, n_layers=2, n_heads=2, hidden_size=32) | changes
    return TinyGPT(TinyGPTConfig(**config)).eval()


def test_measure_reports_counts_flops_and_loss_of_each_model():
    dense = small_model()
    zeroed = small_model()
    with torch.no_grad():
        zeroed.h[0].mlp.c_fc.weight[:, :10] = 0          # 32 x 10 weights pruned
    narrow = small_model(intermediate_size=64)
    batches = corpus.split("validation", n_lines=200).fixed_batches(2, 4, 32)
    rows = measure({"dense": (dense, "dense"), "zeroed": (zeroed, "unstructured"), "narrow": (narrow, "structured")},
                   batches, context_len=8, batch_size=4, prompt_len=16, repeats=2,
                   lines=corpus.make_lines(6, seed=3, tasks=["c", "a"]))
    by_name = {r.name: r for r in rows}
    assert by_name["zeroed"].zeros == 320 and by_name["dense"].zeros == 0
    assert by_name["zeroed"].nonzero_params == dense.n_params() - 320
    assert by_name["zeroed"].flops_per_token == by_name["dense"].flops_per_token == spec_of(dense).flops_per_token(8)
    assert by_name["zeroed"].useful_flops_per_token == by_name["dense"].flops_per_token - 640
    assert by_name["narrow"].params == narrow.n_params() < dense.n_params()
    for row in rows:
        assert row.decode_ms > 0 and row.batch_decode_ms > 0 and row.prefill_ms > 0 and 0 < row.val_loss < 10
        assert 0 < row.answer_loss < 10 and 0 <= row.exact_match <= 1


def test_count_zeros_counts_exact_zeros_of_block_weights_only():
    model = small_model()
    with torch.no_grad():
        model.h[1].attn.c_proj.weight[0, :5] = 0
        model.h[1].attn.c_proj.weight[1, :5] = 1e-12
        model.h[1].attn.c_proj.bias[:3] = 0               # biases are not what pruning removes
    assert count_zeros(small_model()) == 0
    assert count_zeros(model) == 5


def test_sparse_matmul_timing_returns_a_ratio_per_sparsity():
    timing = time_sparse_matmul(sparsities=(0.5, 0.9), batch_size=2, n_in=64, n_out=128, repeats=2)
    assert timing.sparsities == (0.5, 0.9) and timing.dense_ms > 0
    for ratios in (timing.zeros_in_dense, timing.sparse_csr, timing.compacted):
        assert len(ratios) == 2 and all(r > 0 for r in ratios)


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="sparsities"):
        time_sparse_matmul(sparsities=(1.0,))
    with pytest.raises(ValueError, match="at least one model"):
        measure({}, [])


def test_moe_layer_timing_counts_the_experts_a_batch_touches():
    timing = time_moe_layer(batch_sizes=(1, 4, 64), hidden_size=32, intermediate_size=16, n_experts=8,
                            experts_per_token=2,
                            repeats=2)
    assert timing.experts_touched[0] == 2 and timing.experts_touched[-1] == 8   # 64 tokens choose every expert
    assert timing.expected_touched[0] == pytest.approx(2)
    assert timing.expected_touched[1] == pytest.approx(8 * (1 - 0.75 ** 4))
    assert timing.weight_bytes == 2 * 8 * 32 * 16 * 4
    assert all(t > 0 for t in timing.moe_ms + timing.dense_active_ms + timing.dense_total_ms)
    with pytest.raises(ValueError, match="experts_per_token"):
        time_moe_layer(experts_per_token=9)
    yours = time_moe_layer(batch_sizes=(1, 4), hidden_size=32, intermediate_size=16, repeats=1,
                           moe_forward=references.moe_forward)
    assert len(yours.moe) == 2 and yours.experts_touched[0] == 2


# -- lesson 03a ------------------------------------------------------------------------------------------------


def test_the_balance_sweep_rises_from_one_towards_n_over_k():
    losses = balance_sweep(references.top_k_routing, references.load_balancing_loss, [0, 3, 12], 8, 2, n_tokens=2000)
    assert losses[0] == pytest.approx(1, abs=0.03) and losses == sorted(losses) and losses[-1] <= 4 + 1e-6
    assert losses[-1] > 3.9
    assert "N/k = 4" in balance_summary(losses, 8, 2) and "not what the derivation says" not in \
        balance_summary(losses, 8, 2)
    # a loss that breaks the bound (the Mixtral normalization fed to a Switch-normalized plot) is called out
    assert "not what the derivation says" in balance_summary([2.0, 5.0, 7.9], 8, 2)


def test_every_expert_on_every_token_and_the_reference_dispatch_equal_lessonlibs_layer():
    w = random_experts(16, 24, 6)
    x = torch.randn(10, 16, generator=torch.Generator().manual_seed(0))
    expected = moe.moe_mlp(x, w, 2, renormalize=True)[0]
    torch.testing.assert_close(every_expert_on_every_token(x, w, 2), expected, atol=1e-5, rtol=1e-5)
    from lessonlib.lessons.mixture_of_experts import expert_functions
    torch.testing.assert_close(references.moe_forward(x, w.router, expert_functions(w), 2), expected,
                               atol=1e-5, rtol=1e-5)


def test_the_learners_dispatch_runs_inside_the_model_and_is_removed_afterwards():
    model = small_model(n_experts=4, experts_per_token=2, intermediate_size=16)
    batches = corpus.split("validation", n_lines=200).fixed_batches(1, 2, 32)
    check = check_dispatch(model, references.moe_forward, batches)
    assert check.max_logit_difference < 1e-4 and check.your_loss == pytest.approx(check.own_loss, abs=1e-5)
    calls = []

    def spy(x, router_weight, experts, k):
        calls.append(k)
        return references.moe_forward(x, router_weight, experts, k)

    with learner_moe(model, spy):
        model(batches[0][0])
    assert calls == [2, 2]                      # one call per MoE layer
    model(batches[0][0])
    assert calls == [2, 2]                      # and gone after the block
    with pytest.raises(ValueError, match="mixture-of-experts"):
        with learner_moe(small_model(), spy):
            pass


def timing_of(seconds, reliable=True):
    return Timing((seconds,) * 5 if reliable else (seconds, 3 * seconds, 5 * seconds), shortened=False)


def test_dispatch_summary_follows_the_measurement():
    flops = dict.fromkeys(("yours", "lessonlib"), 1e6) | {"every expert on every token": 4e6}

    def summary(yours, every, reliable=True):
        return dispatch_summary(DispatchTiming(128, 8, 2, flops, {
            "yours": timing_of(yours, reliable), "lessonlib": timing_of(1e-3), "every expert on every token":
            timing_of(every)}))

    assert "took **3.0x** as long" in summary(1e-3, 3e-3)
    assert "less than the 4x its FLOPs predict" in summary(1e-3, 3e-3)
    assert "about the 4x its FLOPs predict" in summary(1e-3, 3.9e-3)
    assert "faster** than your dispatch" in summary(3e-3, 1e-3)
    assert "about as long" in summary(1e-3, 1.1e-3) and "about the same time" in summary(1e-3, 1.1e-3)
    assert "busy" in summary(1e-3, 3e-3, reliable=False) and "took **" not in summary(1e-3, 3e-3, reliable=False)


def test_layer_timing_summary_says_what_batch_1_shows():
    timing = time_moe_layer(batch_sizes=(1, 64), hidden_size=32, intermediate_size=16, repeats=1)

    def with_times(moe_ms, total_ms, reliable=True):
        return dataclasses.replace(timing, moe=tuple(timing_of(m / 1e3, reliable) for m in moe_ms),
                                   dense_active=(timing_of(1e-3), timing_of(2e-3)),
                                   dense_total=tuple(timing_of(t / 1e3) for t in total_ms))

    assert "reads only the experts" in layer_timing_summary(with_times((1, 8), (4, 8)), "1 MB")
    assert "did not show up" in layer_timing_summary(with_times((4, 8), (4, 8)), "1 MB")
    assert "shrinks" in layer_timing_summary(with_times((1, 8), (4, 8)), "1 MB")
    assert "busy" in layer_timing_summary(with_times((1, 8), (4, 8), reliable=False), "1 MB")


def payoff_row(name, params, active, flops, val_loss, em, prefill):
    return PayoffRow(name, params, active, flops, val_loss, 0.5, em, timing_of(prefill))


def test_payoff_summary_says_whether_the_moe_bought_quality_at_equal_compute():
    dense = payoff_row("d", 800, 800, 1e6, 1.14, 0.75, 1e-3)
    large = payoff_row("L", 2700, 2700, 3e6, 1.10, 0.80, 3e-3)
    losing = payoff_row("m", 2400, 800, 1e6, 1.16, 0.70, 1.5e-3)
    winning = dataclasses.replace(losing, val_loss=1.12, exact_match=0.78)
    assert "did **not** buy quality" in payoff_summary([dense, large, losing], "m", "d", "L")
    assert "bought quality with memory" in payoff_summary([dense, large, winning], "m", "d", "L")
    text = payoff_summary([dense, large, losing], "m", "d", "L")
    assert "took 2.0x the MoE's time" in text and "routing and dispatch cost time" in text
    equal = payoff_summary([dense, large, dataclasses.replace(losing, prefill=timing_of(1.1e-3))], "m", "d", "L")
    assert "routing and dispatch cost time" not in equal
    # exact match on 800 questions: 5 points is a clear difference, 0.9 points is noise
    assert "-5.0 points" in text and "a clear difference" in text
    noisy = payoff_summary([dense, large, dataclasses.replace(losing, exact_match=0.741)], "m", "d", "L")
    assert "-0.9 points" in noisy and "within noise" in noisy
    # the validation loss says better, exact match says clearly worse: no claim either way
    mixed = payoff_summary([dense, large, dataclasses.replace(losing, val_loss=1.12)], "m", "d", "L")
    assert "no clear quality" in mixed and "bought quality with memory" not in mixed and "**not**" not in mixed


# -- lesson 03b ------------------------------------------------------------------------------------------------


def test_the_learners_masks_make_the_same_masks_as_lessonlib():
    model = small_model()
    for scope in ("global", "layer"):
        ours = pruning.magnitude_masks(model, 0.5, scope=scope)
        theirs = learner_magnitude_masks(model, references.magnitude_mask, 0.5, scope)
        assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    ours, theirs = pruning.n_m_masks(model, 2, 4), learner_n_m_masks(model, references.n_m_mask, 2, 4)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    with pytest.raises(ValueError, match="shape"):
        learner_magnitude_masks(model, lambda w, s: torch.ones(3), 0.5, "layer")


def matmul_timing(zeros, csr, compact, reliable=True):
    base = time_sparse_matmul(sparsities=(0.5, 0.95), batch_size=1, n_in=16, n_out=32, repeats=1)
    return dataclasses.replace(base, zeros_in_dense=zeros, sparse_csr=csr, compacted=compact,
                               timings={"dense": timing_of(1e-3, reliable)})


def test_sparse_matmul_summary_follows_the_measurement():
    assert "paid for its index lookups below 95%" in sparse_matmul_summary(
        [matmul_timing((1.0, 1.0), (1.6, 0.3), (0.5, 0.05))])
    assert "faster at every sparsity" in sparse_matmul_summary([matmul_timing((1.0, 1.0), (0.7, 0.3), (0.5, 0.05))])
    assert "never clearly faster" in sparse_matmul_summary([matmul_timing((1.0, 1.0), (1.6, 1.2), (0.5, 0.05))])
    assert "busy" in sparse_matmul_summary([matmul_timing((1.0, 1.0), (1.6, 0.3), (0.5, 0.05), reliable=False)])


def test_pruning_sweep_summary_says_whether_the_ranking_follows_the_freedom_of_the_pattern():
    expected = {"global magnitude": 1.3, "per-layer magnitude": 1.25, "2:4": 1.5, "structured (50%)": 2.5}
    assert "That is the order" in pruning_sweep_summary(expected, 1.14, 1.25, 1.3)
    assert "Per-layer beats global" in pruning_sweep_summary(expected, 1.14, 1.25, 1.3)
    assert "**not** the order" in pruning_sweep_summary(dict(expected, **{"2:4": 3.0}), 1.14, 1.25, 1.3)
    assert "uniform guess" not in pruning_sweep_summary(expected, 1.14, 1.25, 1.3, uniform_loss=3.71)
    worse = pruning_sweep_summary(dict(expected, **{"structured (50%)": 4.4}), 1.14, 1.25, 1.3, uniform_loss=3.71)
    assert "structured (50%) scores worse than a uniform guess over the vocabulary (3.71)" in worse


def measured(name, kind, params=800, zeros=0, active=800, decode=1e-3, batch=2e-3, prefill=4e-3, em=0.75,
             reliable=True):
    return Measured(name, kind, params, zeros, active, 1e6, 1e6, timing_of(decode, reliable), timing_of(batch),
                    timing_of(prefill), 1.14, 0.5, em)


def test_comparison_summary_follows_the_measurement_and_judges_quality_against_the_control():
    rows = [measured("dense", "dense"), measured("control", "dense", em=0.80),
            measured("moe", "moe", params=2400, decode=1.5e-3), measured("m80", "unstructured", zeros=500, em=0.70),
            measured("s50", "structured", params=400, active=400, decode=0.9e-3, batch=1e-3, prefill=2e-3, em=0.72)]
    text = comparison_summary(rows, "dense", "control", "moe", "m80", "s50")
    assert "**no time saved**" in text and "a real saving" in text and "extra operations" in text
    assert "m80 -10.0 points" in text and "s50 -8.0 points" in text and "+5.0 points" in text
    assert "extra training, not the pruning" in text and "2 of the 2 pruned" not in text
    assert "All 2 pruned models lost quality beyond noise" in text and "the same 300 extra steps" not in text
    assert "the same 300 extra steps" in comparison_summary(rows, "dense", "control", "moe", "m80", "s50",
                                                            extra_steps=300)
    # on 800 questions, 1.8 points is noise (the control) and so is a 1-point loss; 10 points is not
    close = [measured("dense", "dense"), measured("control", "dense", em=0.768), rows[2],
             measured("m80", "unstructured", zeros=500, em=0.668), measured("s50", "structured", params=400, em=0.758)]
    text = comparison_summary(close, "dense", "control", "moe", "m80", "s50")
    assert "within noise, so the extra steps alone" in text and "extra training, not the pruning" not in text
    assert "1 of the 2 pruned models lost quality beyond noise" in text and "the most m80" in text
    none = comparison_summary([*close[:3], dataclasses.replace(close[3], exact_match=0.76), close[4]],
                              "dense", "control", "moe", "m80", "s50")
    assert "None lost quality beyond noise" in none
    faster_moe = comparison_summary([*rows[:2], measured("moe", "moe", params=2400, decode=0.5e-3), *rows[3:]],
                                    "dense", "control", "moe", "m80", "s50")
    assert "faster than the dense one's on this run" in faster_moe and "extra operations" not in faster_moe
    busy = comparison_summary([measured("dense", "dense", reliable=False), *rows[1:]], "dense", "control", "moe",
                              "m80", "s50")
    assert "busy" in busy and "no time saved" not in busy


def test_dispatch_timing_times_three_ways_and_counts_their_expert_flops():
    t = time_dispatch(references.moe_forward, n_tokens=8, hidden_size=16, intermediate_size=8, repeats=1)
    assert set(t.timings) == {"yours", "lessonlib", "every expert on every token"}
    assert t.expert_flops["every expert on every token"] == 4 * t.expert_flops["yours"]


def test_reported_scores_read_a_checkpoints_report_and_measure_uses_them_instead_of_scoring():
    from lessonlib.models.checkpoints import load_pretrained
    from lessonlib.models.evaluation import Scores, reported_scores

    _, report = load_pretrained("tiny-gpt")
    scores = reported_scores(report)
    assert scores.val_loss == report["validation_loss"]
    assert scores.exact_match == pytest.approx(sum(report["exact_match_per_task"][t]["mixed"]
                                                   for t in ("copy", "reverse", "sort", "add")) / 4)
    with pytest.raises(KeyError, match="exact_match_per_task"):
        reported_scores({"name": "x", "validation_loss": 1.0, "answer_loss_per_task": {}})
    given = Scores(1.5, 0.25, 0.5)
    rows = measure({"dense": (small_model(), "dense")}, [], context_len=8, batch_size=2, prompt_len=16, repeats=1,
                   scores={"dense": given})
    assert (rows[0].val_loss, rows[0].answer_loss, rows[0].exact_match) == (1.5, 0.25, 0.5)


def test_rescoring_a_checkpoint_gives_the_numbers_its_report_recorded():
    """What RESCORE = True runs in lessons 03a and 03b: the report's batches and questions, so the same numbers."""
    from lessonlib.models.checkpoints import load_pretrained
    from lessonlib.models.evaluation import report_scores, reported_scores

    model, report = load_pretrained("tiny-gpt-small")
    batches = corpus.split("validation").fixed_batches(8, 16, 256)
    with torch_threads(1):
        live = report_scores(model, batches)
    recorded = reported_scores(report)
    assert live.val_loss == pytest.approx(recorded.val_loss, abs=1e-6)
    assert live.answer_loss == pytest.approx(recorded.answer_loss, abs=1e-4)     # the report rounds to 4 places
    assert live.exact_match == recorded.exact_match
    rows = moe_payoff({"tiny-gpt-small": model}, batches[:1], repeats=1)         # default: the report's questions
    assert rows[0].exact_match == recorded.exact_match



def test_routing_summary_says_whether_tokens_of_one_kind_are_routed_alike():
    names = ["copy", "reverse", "sort", "add", "text"]
    letters, digits, words = [0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6], [0.1, 0.6, 0.2, 0.1]
    by_kind = torch.tensor([[letters, letters, letters, digits, words]] * 2)
    text = routing_summary(by_kind, names)
    assert "sorts tokens by kind" in text and "Copy, reverse and sort (the same random letters) send" in text
    assert "same busiest expert in 2 of 2 layers" in text
    skewed = torch.tensor([[letters, digits, words, letters, letters]] * 2)   # same-kind tasks routed apart
    assert "without sorting tokens by kind" in routing_summary(skewed, names)
    assert "close to uniform" in routing_summary(torch.full((2, 5, 4), 0.25), names)
    with pytest.raises(ValueError, match="one row per task name"):
        routing_summary(by_kind, names[:3])
