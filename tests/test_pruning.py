"""lessonlib.models.pruning: masks remove exactly what they say, stay applied through fine-tuning, the compacted model
computes what the masked one does (and costs fewer FLOPs), and the size report's byte counts are right."""
import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lessonlib.models import corpus
from lessonlib.models.pruning import (
    apply_masks,
    fine_tune,
    is_n_m,
    magnitude_masks,
    n_m_masks,
    prunable_weights,
    size_report,
    sparsity,
    structured_masks,
    structured_prune,
)
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig


def make(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, max_position_embeddings=64, n_layers=2, n_heads=4, hidden_size=32) | changes
    model = TinyGPT(TinyGPTConfig(**config)).eval()
    with torch.no_grad():   # random biases too, so that masking a bias matters
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(std=0.1)
    return model


TOKENS = torch.randint(0, 41, (3, 20), generator=torch.Generator().manual_seed(1))
N_PRUNABLE = 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32)   # layers x (qkv, attn proj, fc, mlp proj)


def removed(mask):
    return int((~mask).sum())


def test_prunable_weights_are_the_block_matrices_only():
    model = make()
    weights = prunable_weights(model)
    assert list(weights) == [f"h.{i}.{layer}.weight" for i in range(2)
                             for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    params = dict(model.named_parameters())
    assert all(weights[name] is params[name] for name in weights)
    assert sum(w.numel() for w in weights.values()) == N_PRUNABLE


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.0, 0.1, 0.5, 0.8, 0.95])
def test_magnitude_masks_reach_the_requested_sparsity_exactly(scope, target):
    model = make()
    masks = magnitude_masks(model, target, scope)
    total = sum(removed(m) for m in masks.values())
    if scope == "global":
        assert total == round(target * N_PRUNABLE)
    else:   # each matrix rounds its own count
        assert all(removed(m) == round(target * m.numel()) for m in masks.values())
    apply_masks(model, masks)
    # The weights were random, so none was zero before: the zeros are exactly the pruned ones.
    assert sparsity(model) == total / N_PRUNABLE
    assert sparsity(model) == pytest.approx(target, abs=8 / N_PRUNABLE)   # at most half a weight per matrix off


def test_magnitude_masks_remove_the_smallest_weights():
    model = make()
    weights = prunable_weights(model)
    for scope in ("global", "layer"):
        masks = magnitude_masks(model, 0.6, scope)
        for name, w in weights.items():
            kept, gone = w.abs()[masks[name]], w.abs()[~masks[name]]
            if scope == "layer":
                assert gone.max() <= kept.min(), name
        if scope == "global":
            all_kept = torch.cat([w.abs()[masks[n]] for n, w in weights.items()])
            all_gone = torch.cat([w.abs()[~masks[n]] for n, w in weights.items()])
            assert all_gone.max() <= all_kept.min()


def test_ties_are_broken_deterministically_and_the_count_stays_exact():
    model = make()
    with torch.no_grad():
        for w in prunable_weights(model).values():
            w.fill_(0.5)   # every weight tied
    masks = magnitude_masks(model, 0.3)
    assert sum(removed(m) for m in masks.values()) == round(0.3 * N_PRUNABLE)
    again = magnitude_masks(model, 0.3)
    assert all(torch.equal(masks[n], again[n]) for n in masks)


def test_global_and_per_layer_masks_differ_when_layers_are_scaled_differently():
    model = make()
    with torch.no_grad():
        model.h[0].mlp.c_fc.weight.mul_(10)   # one layer's weights 10x larger than the rest
    global_masks, layer_masks = magnitude_masks(model, 0.5, "global"), magnitude_masks(model, 0.5, "layer")
    name = "h.0.mlp.c_fc.weight"
    assert removed(layer_masks[name]) == round(0.5 * layer_masks[name].numel())
    # Globally, the large layer is barely touched, so the others together lose more than half.
    assert removed(global_masks[name]) < 0.05 * global_masks[name].numel()
    others = [m for n, m in global_masks.items() if n != name]
    assert sum(removed(m) for m in others) > 0.58 * sum(m.numel() for m in others)


def test_2_of_4_keeps_the_2_largest_of_every_4_along_the_input_dimension():
    model = make()
    masks = n_m_masks(model, 2, 4)
    for name, w in prunable_weights(model).items():
        n_in, n_out = w.shape
        mask = masks[name]
        groups = mask.view(n_in // 4, 4, n_out)              # 4 consecutive rows (inputs) within each column
        assert (groups.sum(dim=1) == 2).all(), name
        magnitudes = w.abs().view(n_in // 4, 4, n_out)
        kept_min = magnitudes.masked_fill(~groups, float("inf")).min(dim=1).values
        gone_max = magnitudes.masked_fill(groups, -1.0).max(dim=1).values
        assert (gone_max <= kept_min).all(), name
        assert is_n_m(mask), name
    apply_masks(model, masks)
    assert sparsity(model) == 0.5


def test_2_of_4_on_a_hand_made_column():
    model = make(n_layers=1)
    with torch.no_grad():
        w = model.h[0].attn.c_proj.weight
        w.fill_(1.0)
        w[:4, 0] = torch.tensor([0.1, -3.0, 2.0, -0.5])   # keep rows 1 and 2 (the largest |w|), not 0 and 3
    mask = n_m_masks(model)["h.0.attn.c_proj.weight"]
    assert mask[:4, 0].tolist() == [False, True, True, False]
    assert mask[:4, 1].tolist() == [True, True, False, False]   # a tie: the earlier rows are kept
    assert is_n_m(mask) and not is_n_m(torch.ones_like(mask)) and not is_n_m(mask[:6])


def test_masks_stay_applied_through_fine_tuning():
    torch.manual_seed(0)
    model = TinyGPT(TinyGPTConfig(vocab_size=corpus.TOKENIZER.vocab_size, max_position_embeddings=64, n_layers=1,
                                  n_heads=2,
                                  hidden_size=32))
    masks = magnitude_masks(model, 0.7)
    masks |= {"h.0.mlp.c_fc.bias": torch.rand(128, generator=torch.Generator().manual_seed(0)) > 0.5}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    val = corpus.split("validation", 100).fixed_batches(1, 4, 64)
    history = fine_tune(model, masks, corpus.split("train", 300), val, steps=20, batch_size=4, seq_len=64, lr=1e-2,
                        warmup=2, progress=False)
    assert len(history.train_loss) == 20
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert (params[name][~mask] == 0).all(), f"{name}: a pruned weight moved"
        assert (params[name][mask] != before[name][mask]).float().mean() > 0.99, f"{name}: kept weights did not train"
    assert sparsity(model, masks) == sum(removed(m) for m in masks.values()) / sum(m.numel() for m in masks.values())
    # The hooks are gone afterwards: ordinary training moves the pruned weights again.
    model.train()
    model(*corpus.split("train", 50).fixed_batches(1, 2, 64)[0])[1].backward()
    assert params["h.0.mlp.c_fc.weight"].grad[~masks["h.0.mlp.c_fc.weight"]].abs().sum() > 0


VARIANTS = {"with biases": {}, "no biases": {"bias": False}}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mlp_keep, heads_keep", [(0.5, 2), (40, 3), (1, 1), (1.0, 4)])
def test_compacted_model_gives_the_masked_models_logits(variant, mlp_keep, heads_keep):
    # Tolerance 1e-5 (abs and rel): the same sums, but the compacted products have other shapes and so may
    # add in another order; the masked model also adds exact zeros.
    model = make(**VARIANTS[variant])
    small = structured_prune(model, mlp_keep, heads_keep)
    masked = copy.deepcopy(model)
    apply_masks(masked, structured_masks(model, mlp_keep, heads_keep))
    with torch.inference_mode():
        torch.testing.assert_close(small(TOKENS)[0], masked(TOKENS)[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(small.generate(TOKENS, 25), masked.generate(TOKENS, 25))   # cached path
        cache = small.new_cache(3, 40)
        steps = [small.prefill(TOKENS, cache)] + [small.decode_step(TOKENS[:, t], cache) for t in range(5)]
        full = masked(torch.cat([TOKENS, TOKENS[:, :5]], dim=1))[0][:, 19:]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    if (mlp_keep, heads_keep) != (1.0, 4):
        assert not torch.allclose(model(TOKENS)[0], masked(TOKENS)[0], atol=1e-3)   # pruning did something


def test_compacted_model_has_the_expected_config_and_fewer_parameters():
    model = make()
    small = structured_prune(model, 0.5, 2)
    c = small.config
    assert (c.intermediate_size, c.n_heads, c.n_kv_heads, c.head_dim) == (64, 2, 2, 8)
    assert (small.config.hidden_size, small.config.n_layers, small.config.vocab_size) == (32, 2, 41)
    removed_per_layer = (32 * 48 + 48) + 16 * 32 + (32 * 64 + 64) + 64 * 32   # qkv (+bias), proj, fc (+bias), proj
    assert small.n_params() == model.n_params() - 2 * removed_per_layer
    assert not small.training and all(p.requires_grad and p.device.type == "cpu" for p in small.parameters())
    assert model.config.intermediate_size == 128   # the input model is unchanged


def test_structured_pruning_keeps_the_most_important_units_chosen_per_layer():
    model = make()
    with torch.no_grad():
        # Layer 0: make MLP channel 7 and head 3 the strongest; layer 1: channel 100 and head 0.
        model.h[0].mlp.c_proj.weight[7] *= 50
        model.h[0].attn.c_proj.weight[24:32] *= 50
        model.h[1].mlp.c_proj.weight[100] *= 50
        model.h[1].attn.c_proj.weight[0:8] *= 50
    masks = structured_masks(model, 1, 1)
    assert masks["h.0.mlp.c_fc.bias"].nonzero().flatten().tolist() == [7]
    assert masks["h.1.mlp.c_fc.bias"].nonzero().flatten().tolist() == [100]
    assert masks["h.0.attn.c_proj.weight"][:, 0].nonzero().flatten().tolist() == list(range(24, 32))
    assert masks["h.1.attn.c_attn.bias"].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7,
                                                                          32, 33, 34, 35, 36, 37, 38, 39,
                                                                          64, 65, 66, 67, 68, 69, 70, 71]


def counted_flops(model, tokens):
    """Multiply-add FLOPs of one forward pass, counted by PyTorch's FlopCounterMode (every mm/addmm)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(tokens)
    return counter.get_total_flops()


def test_structured_pruning_cuts_the_matmul_flops_of_a_forward_pass():
    model = make()
    small = structured_prune(model, 0.5, 2)
    tokens = TOKENS[:1]
    dense, pruned = counted_flops(model, tokens), counted_flops(small, tokens)
    # Counted, not timed: 2 FLOPs per multiply-add of every block weight per token, plus the output layer.
    output_layer = 2 * 20 * 41 * 32
    assert dense == 2 * 20 * N_PRUNABLE + output_layer
    assert pruned == 2 * 20 * N_PRUNABLE // 2 + output_layer
    assert pruned < 0.55 * dense
    # Unstructured pruning leaves every matrix its shape: a dense kernel does the same work.
    apply_masks(model, magnitude_masks(model, 0.5))
    assert counted_flops(model, tokens) == dense


def test_size_report_bytes_on_a_hand_checkable_example():
    model = make(n_layers=1)
    mask = torch.ones(32, 32, dtype=torch.bool)
    mask.view(8, 4, 32)[:, 2:] = False          # 2:4 along the input dimension: 512 of 1024 kept
    mask[0, :16] = False                        # and 16 more removed: 496 kept
    report = size_report(model, {"h.0.attn.c_proj.weight": mask})
    row = report.rows[0]
    assert (row.params, row.zeros, row.sparsity) == (1024, 528, 528 / 1024)
    assert row.dense_bytes == 1024 * 2                          # fp16
    assert row.csr_bytes == 496 * 2 + 496 * 4 + (32 + 1) * 4  # values, int32 column indices, row pointers
    assert row.bitmask_bytes == 496 * 2 + 1024 // 8
    assert row.two_four_bytes == 512 * 2 + 512 * 2 // 8        # half the values, 2 bits of index each
    assert report.total == row.__class__(**{**row.__dict__, "name": "total"})
    fp32 = size_report(model, {"h.0.attn.c_proj.weight": mask}, bytes_per_value=4).rows[0]
    assert (fp32.dense_bytes, fp32.bitmask_bytes) == (4096, 496 * 4 + 128)


def test_size_report_has_no_2_of_4_size_where_the_mask_is_not_2_of_4():
    model = make()
    masks = magnitude_masks(model, 0.5)
    report = size_report(model, masks)
    assert all(r.two_four_bytes is None for r in report.rows) and report.total.two_four_bytes is None
    assert report.total.params == N_PRUNABLE and report.total.zeros == N_PRUNABLE // 2
    assert len(report.table_rows()) == len(masks) + 1 and len(report.table_rows()[0]) == len(report.header)
    two_four = size_report(model, n_m_masks(model))
    assert two_four.total.two_four_bytes == N_PRUNABLE // 2 * 2 + N_PRUNABLE // 2 * 2 // 8
    # At 50% the 2:4 metadata (2 bits per kept value) is 1 bit per position, as a bitmask: both save 44% of
    # fp16, while CSR (a 4-byte index per value) costs more than dense.
    assert two_four.total.two_four_bytes == two_four.total.bitmask_bytes < two_four.total.dense_bytes \
        < two_four.total.csr_bytes


def test_bad_input_fails_clearly():
    model = make()
    for bad in (-0.1, 1.0, 1.5, "0.5", True):
        with pytest.raises(ValueError, match=r"sparsity is the fraction of weights removed, a number in \[0, 1\)"):
            magnitude_masks(model, bad)
    with pytest.raises(ValueError, match="scope must be one of global, layer"):
        magnitude_masks(model, 0.5, scope="row")
    with pytest.raises(ValueError, match="1 <= n <= m"):
        n_m_masks(model, 4, 2)
    with pytest.raises(ValueError, match="input dimension 32, which m=5 does not divide"):
        n_m_masks(model, 2, 5)
    with pytest.raises(ValueError, match="grouped-query"):
        structured_prune(make(n_kv_heads=2), 0.5, 2)
    with pytest.raises(ValueError, match="grouped-query"):
        structured_masks(make(n_kv_heads=1), 0.5, 2)
    with pytest.raises(ValueError, match="heads_keep must be between 1 and 4, got 5"):
        structured_prune(model, 0.5, 5)
    with pytest.raises(ValueError, match=r"mlp_keep as a fraction must be in \(0, 1\]"):
        structured_prune(model, 1.5, 2)
    with pytest.raises(ValueError, match="mlp_keep must be between 1 and 128, got 0"):
        structured_prune(model, 0, 2)
    with pytest.raises(KeyError, match="not a parameter of this model"):
        apply_masks(model, {"h.7.mlp.c_fc.weight": torch.ones(32, 128, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"must be a bool tensor of shape \(32, 128\)"):
        apply_masks(model, {"h.0.mlp.c_fc.weight": torch.ones(128, 32, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"must be a bool tensor"):
        sparsity(model, {"h.0.mlp.c_fc.weight": torch.ones(32, 128)})
    with pytest.raises(ValueError, match="no masks given"):
        size_report(model, {})
    with pytest.raises(ValueError, match="after_step"):
        fine_tune(model, {}, None, [], steps=1, after_step=print)
    model.h[1].mlp = torch.nn.Identity()
    with pytest.raises(TypeError, match="block 1 has Identity as its mlp"):
        magnitude_masks(model, 0.5)
