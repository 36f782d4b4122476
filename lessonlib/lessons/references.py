"""Reference answers to the coding exercises of lessons 00, 01, 03a, 03b and 04.

A notebook falls back on these while an exercise is unanswered, so that the cells after it still run (and say
so): see :func:`lessonlib.course.answers.yours_or_reference`. They are the worked solutions, in the open like
``solutions/``; an answer that calls them (or the lessonlib implementation its exercise forbids) scores 0 for its
exercise. Lesson 04's capstone is the exception: it builds on lessonlib's cost model on purpose.
"""
from __future__ import annotations

import numpy as np

from ..costs.memory import largest_batch
from ..costs.roofline import decode_step

# -- lesson 00 ----------------------------------------------------------------------------------------------


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    """Exercise 00-3a: one key and one value vector per layer, KV head and token, for every sequence."""
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value


def flops_saved_by_kv_cache(n_params, prefix_len):
    """Exercise 00-3b: without a cache the prefix's ``prefix_len`` positions are run again, 2 FLOPs per
    parameter each."""
    return 2 * n_params * prefix_len


# -- lesson 01 ----------------------------------------------------------------------------------------------


def count_params(config):
    """Exercise 01-1: parameters of a Llama-family config (no biases)."""
    d, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or d // heads
    per_layer = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim + 3 * d * config["intermediate_size"] + 2 * d
    tables = 1 if config.get("tie_word_embeddings", False) else 2
    return tables * config["vocab_size"] * d + config["num_hidden_layers"] * per_layer + d


def conversation_kv_bytes(config, n_tokens, bytes_per_value=2):
    """Exercise 01-2a: KV-cache bytes of one conversation."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * n_tokens * bytes_per_value


def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    """Exercise 01-2b: whole sequences whose caches fit next to the weights; 0 when the weights alone fill or
    exceed the device."""
    free = device_bytes - n_params * bytes_per_param
    return max(0, int(free // kv_bytes_per_sequence))


def decode_intensity(n_params, batch_size, context_len, kv_bytes_per_token, bytes_per_param=2):
    """Exercise 01-3a: FLOPs per byte of one decode step (weights once, every sequence's cache)."""
    return 2 * n_params * batch_size / (n_params * bytes_per_param + batch_size * context_len * kv_bytes_per_token)


def prefill_intensity(n_params, n_tokens, bytes_per_param=2):
    """Exercise 01-3b: FLOPs per byte of a prefill pass, the weights as the only bytes moved."""
    return 2 * n_tokens / bytes_per_param


def is_memory_bound(intensity, peak_flops, bandwidth):
    """Exercise 01-3c: below the ridge point; exactly at it, not memory-bound."""
    return bool(intensity < peak_flops / bandwidth)


def decode_latency(n_params, bytes_per_param, bandwidth, peak_flops):
    """Exercise 01-4a: the roofline's batch-1 decode step, weights only."""
    return max(n_params * bytes_per_param / bandwidth, 2 * n_params / peak_flops)


# -- lesson 03a: mixture of experts ----------------------------------------------------------------------------


def top_k_routing(router_logits, k):
    """Exercise 03a-1a: the k most probable experts of each token and their softmax probabilities renormalized
    over the k."""
    import torch

    probs = torch.softmax(router_logits, dim=-1)
    top, experts = torch.topk(probs, k, dim=-1)
    return top / top.sum(dim=-1, keepdim=True), experts


def load_balancing_loss(router_probs, experts, n_experts):
    """Exercise 03a-1b: N * sum_i f_i P_i, f_i the share of the T x k assignments that went to expert i."""
    import torch

    f = torch.bincount(experts.flatten(), minlength=n_experts).to(router_probs.dtype) / experts.numel()
    return n_experts * torch.sum(f * router_probs.mean(dim=0))


def moe_forward(x, router_weight, experts, k):
    """Exercise 03a-2: route each token to its k experts (gates renormalized over the k), run every expert once
    on the tokens routed to it, and add the gated outputs back in each token's row."""
    import torch

    gates, chosen = top_k_routing(x @ router_weight, k)
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        tokens, slot = torch.nonzero(chosen == e, as_tuple=True)
        if len(tokens):
            out.index_add_(0, tokens, expert(x[tokens]) * gates[tokens, slot, None])
    return out


# -- lesson 03b: pruning and the edge ----------------------------------------------------------------------------


def magnitude_mask(weight, sparsity):
    """Exercise 03b-1a: True where kept; the round(sparsity * numel) smallest |w| removed."""
    import torch

    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[weight.detach().abs().flatten().argsort(stable=True)[:round(sparsity * weight.numel())]] = False
    return mask.view(weight.shape)


def n_m_mask(weight, n, m):
    """Exercise 03b-1b: in each row, the n largest |w| of every m consecutive columns."""
    import torch

    rows, columns = weight.shape
    groups = weight.detach().abs().reshape(rows, columns // m, m)
    keep = groups.topk(n, dim=-1).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True).reshape(rows, columns)


def moe_params(config):
    """Exercise 03b-2: (total, active) parameters of a Mixtral-style config."""
    d, f = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    n_experts, k = config["num_local_experts"], config["num_experts_per_tok"]
    head_dim = d // heads
    expert = 3 * d * f
    per_layer = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim + n_experts * expert + d * n_experts + 2 * d
    total = 2 * config["vocab_size"] * d + config["num_hidden_layers"] * per_layer + d
    return total, total - config["num_hidden_layers"] * (n_experts - k) * expert


def fits(config, memory_bytes, bytes_per_param):
    """Exercise 03b-2: every weight in memory; exactly filling it fits."""
    return bool(moe_params(config)[0] * bytes_per_param <= memory_bytes)


def plan(scenario, x_config, y_base_config, y_kept):
    """Exercise 03b-4a: (x_fits, y_fits, x_ms, y_ms, choice) for design X (an MoE config) against design Y (a
    fraction ``y_kept`` of a dense config's parameters) under ``scenario``; see the notebook for the rules."""
    b, budget, bandwidth = scenario["bytes_per_param"], scenario["budget_bytes"], scenario["bandwidth"]
    x_total, x_active = moe_params(x_config)
    y_params = y_kept * moe_params(y_base_config)[0]
    expert = 3 * x_config["hidden_size"] * x_config["intermediate_size"] * x_config["num_hidden_layers"]
    if scenario["experts_in_flash"]:
        all_experts, active_experts = expert * x_config["num_local_experts"], expert * x_config["num_experts_per_tok"]
        x_fits = (x_total - all_experts) * b <= budget
        x_ms = 1e3 * ((x_active - active_experts) * b / bandwidth + active_experts * b / scenario["flash_bandwidth"])
    else:
        x_fits, x_ms = x_total * b <= budget, 1e3 * x_active * b / bandwidth
    y_fits, y_ms = y_params * b <= budget, 1e3 * y_params * b / bandwidth
    fitting = {name: ms for name, ok, ms in (("X", x_fits, x_ms), ("Y", y_fits, y_ms)) if ok}
    return x_fits, y_fits, x_ms, y_ms, (min(fitting, key=fitting.get) if fitting else None)


# -- lesson 04 ----------------------------------------------------------------------------------------------


def cascade_decision(confidences, threshold):
    """Exercise 04-1a: the first model whose confidence reaches ``threshold`` answers; the last model answers
    whatever its confidence. ``confidences`` (M, N); returns (N,) model indices."""
    confidences = np.asarray(confidences, dtype=float)
    confident = confidences[:-1] >= threshold                                  # (M - 1, N)
    return np.where(confident.any(axis=0), confident.argmax(axis=0), len(confidences) - 1)


def cascade_cost(costs, answering):
    """Exercise 04-1b: mean over queries of what each paid: every model up to and including the one that
    answered. ``costs`` (M, N), ``answering`` (N,)."""
    costs = np.asarray(costs, dtype=float)
    paid = np.cumsum(costs, axis=0)[np.asarray(answering, dtype=int), np.arange(costs.shape[1])]
    return float(paid.mean())


def cheapest_threshold(correct, confidence, costs, thresholds, target, decide=cascade_decision,
                       mean_cost=cascade_cost):
    """Exercise 04-2: the threshold whose cascade reaches ``target`` accuracy at the lowest mean cost (of equal
    costs the most accurate, then the smallest threshold); None when no threshold reaches it."""
    correct = np.asarray(correct, dtype=bool)
    queries = np.arange(correct.shape[1])
    best = None
    for threshold in thresholds:
        answering = np.asarray(decide(confidence, threshold), dtype=int)
        accuracy = correct[answering, queries].mean()
        if accuracy < target:
            continue
        key = (mean_cost(costs, answering), -accuracy, threshold)
        if best is None or key < best[0]:
            best = (key, threshold)
    return None if best is None else best[1]


def speculative_greedy(target, draft, prompt, max_new_tokens, k):
    """Exercise 04-3: greedy speculative decoding with models as functions of a token list (logits at every
    position): k draft calls and one target call per round; the new tokens, exactly the target's greedy ones."""
    tokens = list(prompt)
    while len(tokens) - len(prompt) < max_new_tokens:
        drafted = []
        for _ in range(k):
            drafted.append(int(draft(tokens + drafted)[-1].argmax()))
        logits = target(tokens + drafted)[len(tokens) - 1:]           # (k + 1, V): after the last kept token
        choices = logits.argmax(-1).tolist()
        n = 0
        while n < k and drafted[n] == choices[n]:
            n += 1
        tokens += drafted[:n] + [choices[n]]
    return tokens[len(prompt):len(prompt) + max_new_tokens]


def conversations_per_gpu(spec, precision, hardware, context_len, latency_seconds):
    """Exercise 04-4a: the most conversations one device serves at once: their weights, KV caches and
    activations fit (lessonlib.costs.memory.largest_batch) and one decode step of all of them takes at most
    ``latency_seconds`` (lessonlib.costs.roofline.decode_step)."""
    batch = largest_batch(spec, hardware.memory_bytes, precision, context_len)
    while batch > 0 and decode_step(spec, hardware, precision, context_len, batch).seconds > latency_seconds:
        batch -= 1
    return batch
