"""lessonlib.lessons.moe_vs_pruning: the side-by-side measurement counts parameters, zeros and FLOPs exactly and times
every model (timings are only checked to be positive: this machine is too noisy for more)."""
import pytest
import torch

from lessonlib.lessons.moe_vs_pruning import count_zeros, measure, time_moe_layer, time_sparse_matmul
from lessonlib.models import corpus
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
