"""Causal self-attention, written once per variant for both ways through the model.

Each variant is one function of the layer's input and its weights as plain tensors. The ``nn.Module`` forward
pass (training, scoring) calls it without a cache; the cached inference path calls it with the layer's store
of :mod:`lessonlib.models.kv_cache`, which writes the new positions and returns what they attend to. The same
arithmetic serves both, so the two cannot drift apart (the tests check they give the same logits).

* :func:`grouped_query_attention`: multi-head (``n_kv_heads == n_heads``), grouped-query (each of ``n_kv_heads``
  key/value heads serves ``n_heads / n_kv_heads`` query heads) and multi-query (one key/value head), with an
  optional sliding window (each position attends to the last ``window`` positions, itself included).
* :func:`latent_attention`: keys and values rebuilt from a small latent per position (``rank`` values, as in
  multi-head latent attention): the cache holds the latent only. At decode it runs in the *absorbed* form that
  never builds the keys and values of the cached positions: ``q . (c W_uk) = (q W_uk^T) . c``, so each query is
  first folded into latent space (D -> r), attends over the latents themselves, and the weighted latent is
  unfolded by ``W_uv`` (r -> D). Same result (tested); per cached position and query head it multiplies r
  numbers instead of rebuilding D-wide keys and values for every KV head.

Shapes: B batch, T new positions, S attended positions, C hidden size, H query heads, G key/value heads,
D head_dim, r latent rank.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class AttentionShape(NamedTuple):
    n_heads: int
    n_kv_heads: int
    head_dim: int
    window: int | None = None      # sliding window (positions attended, itself included), None: all


class AttentionWeights(NamedTuple):
    """Multi-head / grouped-query / multi-query attention's weights, stored (in, out)."""
    qkv_weight: torch.Tensor            # (C, (H + 2G) D): q, k and v in one product
    qkv_bias: torch.Tensor | None
    out_weight: torch.Tensor            # (H D, C)
    out_bias: torch.Tensor | None


class LatentAttentionWeights(NamedTuple):
    """Latent attention's weights, stored (in, out)."""
    q_weight: torch.Tensor              # (C, H D)
    q_bias: torch.Tensor | None
    down_weight: torch.Tensor           # (C, r): the latent of a position
    down_bias: torch.Tensor | None
    k_up_weight: torch.Tensor           # (r, G D): keys from the latent
    v_up_weight: torch.Tensor           # (r, G D): values from the latent
    out_weight: torch.Tensor            # (H D, C)
    out_bias: torch.Tensor | None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight + bias`` for x (rows, in) and weight (in, out): one fused product when there is a bias."""
    return x @ weight if bias is None else torch.addmm(bias, x, weight)


def attention_mask(steps: int, start: int, n_keys: int, positions: torch.Tensor | None, window: int | None,
                   device: torch.device) -> tuple[torch.Tensor | None, bool]:
    """(mask, is_causal) for ``steps`` queries at positions ``start``... over ``n_keys`` keys: a key is attended
    when it is not in the future and, with a window, fewer than ``window`` positions back. Keys are positions
    0..n_keys-1 unless ``positions`` says otherwise. The common cases need no mask tensor: one query over keys
    it may all see (a decode step), or a causal prefill from position 0 without a window."""
    if steps == 1 and (positions is None and (window is None or n_keys <= window)):
        return None, False
    if positions is None and window is None:
        if start == 0 and n_keys == steps:
            return None, True
        return torch.ones(steps, n_keys, dtype=torch.bool, device=device).tril(start), False
    query_pos = torch.arange(start, start + steps, device=device)[:, None]            # (T, 1)
    key_pos = (torch.arange(n_keys, device=device) if positions is None else positions)[None, :]   # (1, S)
    mask = key_pos <= query_pos
    if window is not None:
        mask &= key_pos > query_pos - window
    return mask, False


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int, positions: torch.Tensor | None,
           window: int | None, dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v with causal (and window) masking: q (B, H, T, d) at positions start..., keys
    and values (B, G, S, d) with G dividing H. Returns (B, H, T, d)."""
    gqa = q.shape[1] != keys.shape[1]
    if q.shape[2] == 1 and positions is None and (window is None or keys.shape[2] <= window):
        # A decode step that sees every key it is given (the hot path: no mask to build)
        return F.scaled_dot_product_attention(q, keys, values, dropout_p=dropout_p, enable_gqa=gqa, scale=scale)
    mask, causal = attention_mask(q.shape[2], start, keys.shape[2], positions, window, q.device)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal, dropout_p=dropout_p,
                                          enable_gqa=gqa, scale=scale)


def grouped_query_attention(x: torch.Tensor, w: AttentionWeights, shape: AttentionShape, batch: int, steps: int,
                            start: int = 0, cache=None, dropout_p: float = 0.0, kernel=attend) -> torch.Tensor:
    """Attention of ``steps`` new positions (starting at ``start``) of ``batch`` sequences, ``x`` (B T, C) with
    the rows of each sequence together. Without a cache the positions attend among themselves (``start`` must
    be 0); with a layer store they attend to what it returns. ``kernel`` computes the attention itself from
    q, keys and values (signature of :func:`attend`; a lesson swaps in the learner's). Returns (B T, C)."""
    n_heads, n_kv_heads, head_dim, window = shape
    qkv = linear(x, w.qkv_weight, w.qkv_bias).view(batch, steps, -1, head_dim).transpose(1, 2)  # (B, H+2G, T, D)
    q, k, v = qkv.split((n_heads, n_kv_heads, n_kv_heads), dim=1)   # (B, H, T, D), (B, G, T, D), (B, G, T, D)
    keys, values, positions = (k, v, None) if cache is None else cache.update(k, v, start)  # (B, G, S, D) x2
    y = kernel(q, keys, values, start, positions, window, dropout_p)                               # (B, H, T, D)
    y = y.transpose(1, 2).reshape(batch * steps, n_heads * head_dim)                                # (B T, H D)
    return linear(y, w.out_weight, w.out_bias)                                                      # (B T, C)


def latent_attention(x: torch.Tensor, w: LatentAttentionWeights, shape: AttentionShape, batch: int, steps: int,
                     start: int = 0, cache=None, dropout_p: float = 0.0, absorbed: bool | None = None
                     ) -> torch.Tensor:
    """Latent attention of ``steps`` new positions; arguments as :func:`grouped_query_attention`. ``absorbed``
    chooses the form: None (default) absorbs for a single new token (a decode step) and rebuilds keys and
    values otherwise (prefill and training, where every position's keys are needed anyway)."""
    n_heads, n_kv_heads, head_dim, window = shape
    q = linear(x, w.q_weight, w.q_bias).view(batch, steps, n_heads, head_dim).transpose(1, 2)      # (B, H, T, D)
    c = linear(x, w.down_weight, w.down_bias).view(batch, steps, -1)                                # (B, T, r)
    latents = c if cache is None else cache.update(c, start)[0]                                     # (B, S, r)
    rank, n_keys = latents.shape[-1], latents.shape[1]
    if absorbed is None:
        absorbed = steps == 1
    if absorbed:
        group = n_heads // n_kv_heads
        k_up = w.k_up_weight.view(rank, n_kv_heads, head_dim)                                       # (r, G, D)
        v_up = w.v_up_weight.view(rank, n_kv_heads, head_dim)
        q_grouped = q.reshape(batch, n_kv_heads, group, steps, head_dim)                            # (B, G, H/G, T, D)
        q_latent = torch.einsum("bgmtd,rgd->bgmtr", q_grouped, k_up).reshape(batch, n_heads, steps, rank)
        lat = latents[:, None]                                                                       # (B, 1, S, r)
        a = attend(q_latent, lat, lat, start, None, window, dropout_p, scale=1 / math.sqrt(head_dim))  # (B, H, T, r)
        y = torch.einsum("bgmtr,rgd->bgmtd", a.reshape(batch, n_kv_heads, group, steps, rank), v_up)
        y = y.reshape(batch, n_heads, steps, head_dim)                                               # (B, H, T, D)
    else:
        k = (latents @ w.k_up_weight).view(batch, n_keys, n_kv_heads, head_dim).transpose(1, 2)     # (B, G, S, D)
        v = (latents @ w.v_up_weight).view(batch, n_keys, n_kv_heads, head_dim).transpose(1, 2)
        y = attend(q, k, v, start, None, window, dropout_p)                                          # (B, H, T, D)
    y = y.transpose(1, 2).reshape(batch * steps, n_heads * head_dim)
    return linear(y, w.out_weight, w.out_bias)                                                       # (B T, C)


# -- the modules (they hold the parameters and call the functions above) --------------------------------------
class Linear(nn.Module):
    """``x @ weight + bias`` with the weight stored (in, out), as GPT-2 stores it. For a single token (a
    one-row input, every decode step) this is markedly faster on CPU than ``nn.Linear``'s ``x @ weight.T``:
    the kernel walks the contiguous weight row by row."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)                # (rows, n_out)
        return out.view(*x.shape[:-1], out.shape[-1])                                   # (..., n_out)


class CausalSelfAttention(nn.Module):
    """Multi-head, grouped-query or multi-query attention, with an optional sliding window."""

    def __init__(self, config):
        super().__init__()
        self.shape = AttentionShape(config.n_heads, config.n_kv_heads, config.head_dim, config.sliding_window)
        self.c_attn = Linear(config.hidden_size, (config.n_heads + 2 * config.n_kv_heads) * config.head_dim,
                             bias=config.bias)  # q, k and v in one product
        self.c_proj = Linear(config.n_heads * config.head_dim, config.hidden_size, bias=config.bias)
        self.attn_dropout = config.dropout  # on the attention weights, inside the fused kernel
        self.resid_dropout = nn.Dropout(config.dropout)
        self.kernel = attend   # what computes softmax(q k^T / sqrt(d)) v in the forward pass (a lesson may swap it)

    def weights(self) -> AttentionWeights:
        return AttentionWeights(self.c_attn.weight, self.c_attn.bias, self.c_proj.weight, self.c_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, hidden = x.shape                                                   # x: (B, T, C)
        y = grouped_query_attention(x.reshape(batch * steps, hidden), self.weights(), self.shape, batch, steps,
                                    dropout_p=self.attn_dropout if self.training else 0.0, kernel=self.kernel)
        return self.resid_dropout(y.view(batch, steps, hidden))


class LatentSelfAttention(nn.Module):
    """Latent attention: a rank-``kv_lora_rank`` latent per position, keys and values rebuilt from it."""

    def __init__(self, config):
        super().__init__()
        self.shape = AttentionShape(config.n_heads, config.n_kv_heads, config.head_dim, config.sliding_window)
        kv_width = config.n_kv_heads * config.head_dim
        # Biases where DeepSeek's MLA has them (on the latent and the output, not on the query projection).
        self.c_q = Linear(config.hidden_size, config.n_heads * config.head_dim, bias=False)
        self.c_kv_down = Linear(config.hidden_size, config.kv_lora_rank, bias=config.bias)
        self.c_k_up = Linear(config.kv_lora_rank, kv_width, bias=False)
        self.c_v_up = Linear(config.kv_lora_rank, kv_width, bias=False)
        self.c_proj = Linear(config.n_heads * config.head_dim, config.hidden_size, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def weights(self) -> LatentAttentionWeights:
        return LatentAttentionWeights(self.c_q.weight, self.c_q.bias, self.c_kv_down.weight, self.c_kv_down.bias,
                                      self.c_k_up.weight, self.c_v_up.weight, self.c_proj.weight, self.c_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, hidden = x.shape
        y = latent_attention(x.reshape(batch * steps, hidden), self.weights(), self.shape, batch, steps,
                             dropout_p=self.attn_dropout if self.training else 0.0)
        return self.resid_dropout(y.view(batch, steps, hidden))
