"""What a ``config.json`` leaves implicit, by ``model_type``: the structural traits of each model family, the
defaults transformers assumes for absent size keys, and the different spellings of the same size key.

Adding a family is a few lines here: its traits and defaults. :class:`~lessonlib.costs.spec.ModelSpec` reads
them; nothing else in the package branches on ``model_type``.
"""
from __future__ import annotations

from typing import Any

# -- architecture traits that a config.json leaves implicit ------------------------------------------------
# norm: "layernorm" has weight and bias, "rmsnorm" a weight only.
# qkv_bias / out_bias: biases on the q, k, v projections and on the output projection.
# positions: "learned" adds a position-embedding table (GPT-2); "rotary" adds no parameters.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt2": dict(norm="layernorm", gated_mlp=False, mlp_bias=True, qkv_bias=True, out_bias=True,
                 positions="learned", tie_word_embeddings=True),
    "llama": dict(norm="rmsnorm", gated_mlp=True, mlp_bias=False, qkv_bias=False, out_bias=False,
                  positions="rotary", tie_word_embeddings=False),
    "mistral": dict(norm="rmsnorm", gated_mlp=True, mlp_bias=False, qkv_bias=False, out_bias=False,
                    positions="rotary", tie_word_embeddings=False),
    "mixtral": dict(norm="rmsnorm", gated_mlp=True, mlp_bias=False, qkv_bias=False, out_bias=False,
                    positions="rotary", tie_word_embeddings=False),
    "qwen2": dict(norm="rmsnorm", gated_mlp=True, mlp_bias=False, qkv_bias=True, out_bias=False,
                  positions="rotary", tie_word_embeddings=False),
    "gemma": dict(norm="rmsnorm", gated_mlp=True, mlp_bias=False, qkv_bias=False, out_bias=False,
                  positions="rotary", tie_word_embeddings=True),
}

# What transformers assumes for a size key that a config leaves out (an explicit null means "derive it":
# KV heads = attention heads, head_dim = hidden / heads). Mirrored so that counts stay exact.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": {}, "llama": {},
    "mistral": {"num_key_value_heads": 8, "sliding_window": 4096},
    "mixtral": {"num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen2": {"num_key_value_heads": 32},
    "gemma": {"num_key_value_heads": 16, "head_dim": 256},
}

# config.json spells the same quantity differently across families; the first key present wins.
FIELD_NAMES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "n_layers": ("num_hidden_layers", "n_layer"),
    "n_heads": ("num_attention_heads", "n_head"),
    "vocab_size": ("vocab_size",),
}
