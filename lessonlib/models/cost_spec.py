"""The cost model's view of a TinyGPT: the :class:`~lessonlib.costs.spec.ModelSpec` of the same shape, so that
predictions, fits and edge-device budgets can be computed for the course's own models."""
from __future__ import annotations

import dataclasses

from ..costs.spec import ModelSpec


def spec_of(model, name: str = "tiny-gpt") -> ModelSpec:
    """The ModelSpec of a TinyGPT, exact (the parameter counts agree) for every variant the course builds:
    grouped-query attention, pruned heads (n_heads * head_dim below hidden_size), a narrower MLP, and
    mixture-of-experts MLPs (``n_experts`` experts of width ``intermediate_size``, ``experts_per_token`` per
    token), a sliding window, and latent attention (an MLA without the RoPE key or latent norm: the course's
    positions are learned embeddings)."""
    c = model.config
    base = ModelSpec.from_hf_config({"model_type": "gpt2", "vocab_size": c.vocab_size,
                                     "n_positions": c.max_position_embeddings, "n_embd": c.hidden_size,
                                     "n_layer": c.n_layers, "n_head": 1, "n_inner": c.intermediate_size}, name=name)
    return dataclasses.replace(base, n_heads=c.n_heads, n_kv_heads=c.n_kv_heads, head_dim=c.head_dim,
                               mlp_bias=c.bias, qkv_bias=c.bias, out_bias=c.bias,
                               norm="layernorm" if c.bias else "rmsnorm",  # a LayerNorm without bias: weight only
                               n_experts=c.n_experts, experts_per_token=c.experts_per_token if c.is_moe else 1,
                               sliding_window=c.sliding_window, kv_lora_rank=c.kv_lora_rank,
                               latent_norms=False)
