"""lessonlib.models.conversion: pooling a multi-head model's key/value heads into grouped-query attention."""
import pytest
import torch

from lessonlib.models.conversion import to_grouped_query
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig

PROMPTS = torch.randint(0, 41, (2, 9), generator=torch.Generator().manual_seed(1))


def make(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, max_position_embeddings=32, n_layers=2, n_heads=4, hidden_size=32) | changes
    return TinyGPT(TinyGPTConfig(**config)).eval()


def test_pooling_into_as_many_heads_changes_nothing():
    model = make()
    same = to_grouped_query(model, 4)
    torch.testing.assert_close(same(PROMPTS).logits, model(PROMPTS).logits)


def test_heads_that_are_already_equal_within_each_group_pool_without_loss():
    """When the two key (and value) heads of each pair are equal, their mean is each of them: the grouped-query
    model computes exactly what the multi-head one did (tolerance 1e-5)."""
    model = make()
    with torch.no_grad():
        for block in model.h:
            w = block.attn.c_attn.weight.view(32, 3, 4, 8)      # (C, q/k/v, heads, head_dim)
            w[:, 1:, 1::2] = w[:, 1:, 0::2]                      # key and value head 2j+1 := head 2j
            b = block.attn.c_attn.bias.view(3, 4, 8)
            b[1:, 1::2] = b[1:, 0::2]
    pooled = to_grouped_query(model, 2)
    assert pooled.config.n_kv_heads == 2 and pooled.n_params() < model.n_params()
    torch.testing.assert_close(pooled(PROMPTS).logits, model(PROMPTS).logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(pooled.generate(PROMPTS, 8), pooled.generate(PROMPTS, 8, use_cache=False))


def test_pooling_averages_each_group_and_leaves_the_queries_alone():
    model = make()
    pooled = to_grouped_query(model, 1)
    old = model.h[0].attn.c_attn.weight.view(32, 3, 4, 8)
    new = pooled.h[0].attn.c_attn.weight.view(32, 6, 8)          # 4 query heads, 1 key head, 1 value head
    torch.testing.assert_close(new[:, :4], old[:, 0])
    torch.testing.assert_close(new[:, 4], old[:, 1].mean(dim=1))
    torch.testing.assert_close(new[:, 5], old[:, 2].mean(dim=1))


def test_bad_conversions_fail_clearly():
    with pytest.raises(ValueError, match="divides the model's 4 key/value heads"):
        to_grouped_query(make(), 3)
    with pytest.raises(ValueError, match="only multi-head or grouped-query"):
        to_grouped_query(make(kv_lora_rank=8), 2)
