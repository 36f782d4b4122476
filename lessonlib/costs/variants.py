"""Architectural modifications of a real model's attention, as cost-model specs: what the same model would cost
with fewer key/value heads, a sliding window, or latent (low-rank) key/value compression. The rest of the
model is unchanged, so the parameter count moves only by the attention weights the change adds or removes.

    gqa = with_kv_heads(model_preset("llama-2-7b"), 8)      # Llama-2-7B with 8 KV heads (as Ainslie et al.)
    window = with_window(model_preset("llama-2-7b"), 4096)
    latent = with_latent_kv(model_preset("llama-2-7b"), 512)
"""
from __future__ import annotations

import dataclasses

from .spec import ModelSpec

KINDS = ("as built", "grouped-query", "multi-query", "sliding window", "latent")


def _check_plain_attention(spec: ModelSpec) -> None:
    if spec.latent_attention:
        raise ValueError(f"{spec.name} already caches a latent: start from a model with ordinary attention")


def with_kv_heads(spec: ModelSpec, n_kv_heads: int) -> ModelSpec:
    """``spec`` with ``n_kv_heads`` key/value heads shared by its query heads (1: multi-query)."""
    _check_plain_attention(spec)
    if isinstance(n_kv_heads, bool) or not isinstance(n_kv_heads, int) or n_kv_heads < 1 \
            or spec.n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads must divide the {spec.n_heads} query heads of {spec.name}, got {n_kv_heads!r}")
    label = "multi-query" if n_kv_heads == 1 else f"{n_kv_heads} KV heads"
    return dataclasses.replace(spec, name=f"{spec.name}, {label}", n_kv_heads=n_kv_heads)


def with_window(spec: ModelSpec, window: int) -> ModelSpec:
    """``spec`` with every layer attending to (and caching) only the last ``window`` positions."""
    _check_plain_attention(spec)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive number of positions, got {window!r}")
    return dataclasses.replace(spec, name=f"{spec.name}, window {window:,}", sliding_window=window, layer_types=None,
                               attention_chunk_size=None)


def with_latent_kv(spec: ModelSpec, rank: int, rope_dim: int = 64) -> ModelSpec:
    """``spec`` with DeepSeek-style latent attention: a ``rank``-wide latent plus a ``rope_dim``-wide shared RoPE
    key cached per position and layer; every query head gets its keys and values back from the latent (the
    head width stays, ``rope_dim`` of it carrying positions)."""
    _check_plain_attention(spec)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive number of values, got {rank!r}")
    rope_dim = min(rope_dim, spec.head_dim // 2)
    return dataclasses.replace(spec, name=f"{spec.name}, latent {rank}", n_kv_heads=spec.n_heads,
                               kv_lora_rank=rank, qk_rope_head_dim=rope_dim, v_head_dim=spec.value_head_dim,
                               qkv_bias=False, qk_norm="none")


def apply(spec: ModelSpec, kind: str, value: int | None = None) -> ModelSpec:
    """One of ``KINDS`` with its setting (KV heads, window, rank); "as built" returns ``spec``."""
    if kind == "as built":
        return spec
    if kind == "grouped-query":
        return with_kv_heads(spec, value)
    if kind == "multi-query":
        return with_kv_heads(spec, 1)
    if kind == "sliding window":
        return with_window(spec, value)
    if kind == "latent":
        return with_latent_kv(spec, value)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
