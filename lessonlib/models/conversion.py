"""Turning a trained multi-head model into a grouped-query one (Ainslie et al., 2023, "GQA").

Each group of ``n_heads / n_kv_heads`` key heads becomes one key head whose projection is the mean of the
group's projections (the same for values); query heads are untouched and each now reads its group's shared
head. Nothing else changes, but each query head was trained against its own key head, and the mean of several
heads is none of them: how much the pooled model loses depends on how alike the pooled heads were. Ainslie et
al. found their T5-XXL with 8 key/value groups reasonable right after pooling, before any uptraining;
tiny-gpt's 4 heads, pooled into 2, start worse than a uniform guess over the vocabulary (the report of
tiny-gpt-pooled-gqa records the loss before uptraining). A short uptraining (a few percent of the original
training steps in the paper) recovers most of what was lost.

    gqa = to_grouped_query(mha_model, n_kv_heads=2)      # a new TinyGPT; the input model is not changed
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .attention import CausalSelfAttention
from .tinygpt import TinyGPT


@torch.no_grad()
def to_grouped_query(model: TinyGPT, n_kv_heads: int) -> TinyGPT:
    """A copy of ``model`` with ``n_kv_heads`` key/value heads, each the mean of the group of heads it replaces.
    ``model`` must use grouped-query attention with a multiple of ``n_kv_heads`` key/value heads (multi-head
    is the usual start)."""
    config = model.config
    if config.kv_lora_rank or any(type(block.attn) is not CausalSelfAttention for block in model.h):
        raise ValueError("only multi-head or grouped-query attention can be pooled into fewer key/value heads")
    if isinstance(n_kv_heads, bool) or not isinstance(n_kv_heads, int) or n_kv_heads < 1 \
            or config.n_kv_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads must be a whole number that divides the model's {config.n_kv_heads} key/value "
                         f"heads, got {n_kv_heads!r}")
    pooled = config.n_kv_heads // n_kv_heads          # old KV heads averaged into each new one
    q_width, old_kv_width = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    state = {name: t.clone() for name, t in model.state_dict().items()}
    for i in range(config.n_layers):
        for suffix in ("weight", "bias"):
            name = f"h.{i}.attn.c_attn.{suffix}"
            if name not in state:
                continue
            t = state[name]                                                     # (C, q + 2 kv) or (q + 2 kv,)
            q, k, v = t.split((q_width, old_kv_width, old_kv_width), dim=-1)
            k, v = (_mean_over_groups(x, n_kv_heads, pooled, config.head_dim) for x in (k, v))
            state[name] = torch.cat([q, k, v], dim=-1).contiguous()
    with torch.device("meta"):
        smaller = TinyGPT(replace(config, n_kv_heads=n_kv_heads))
    smaller.load_state_dict(state, assign=True)
    return smaller.train(model.training)


def _mean_over_groups(x: torch.Tensor, n_groups: int, per_group: int, head_dim: int) -> torch.Tensor:
    """(..., n_groups * per_group * head_dim) -> (..., n_groups * head_dim): heads g*per_group ... averaged."""
    shape = x.shape[:-1]
    return x.reshape(*shape, n_groups, per_group, head_dim).mean(dim=-2).reshape(*shape, n_groups * head_dim)
