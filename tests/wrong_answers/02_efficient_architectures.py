"""Submissions for 02_efficient_architectures graded end to end (see 00_orientation.py for the format)."""

ATTENTION = '''
def grouped_query_attention(q, k, v):
    group = q.shape[1] // k.shape[1]
    k = {share_k}
    v = {share_v}
    scores = q @ k.transpose(-1, -2) / {scale}
    steps = q.shape[2]
    future = torch.ones(steps, steps, dtype=torch.bool).triu({diagonal})
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim={axis}) @ v
'''
RIGHT_ATTENTION = dict(share_k="k.repeat_interleave(group, dim=1)", share_v="v.repeat_interleave(group, dim=1)",
                       scale="math.sqrt(q.shape[-1])", diagonal="1", axis="-1")


def attention_with(**changes):
    return ATTENTION.format(**{**RIGHT_ATTENTION, **changes})


RING = '''
def ring_write(ring_keys, ring_values, k, v, position):
    slot = {slot}
    ring_keys[:, :, slot] = k
    ring_values[:, :, slot] = v


def ring_read(ring_keys, ring_values, length):
    window = ring_keys.shape[2]
    slots = {slots}
    return ring_keys[:, :, slots], ring_values[:, :, slots]
'''
RIGHT_RING = dict(slot="position % ring_keys.shape[2]",
                  slots="[p % window for p in range(max(0, length - window), length)]")


def ring_with(**changes):
    return RING.format(**{**RIGHT_RING, **changes})


SIZES = '''
def kv_bytes_per_token(config, bytes_per_value=2):
    heads = config["num_attention_heads"]
    kv_heads = {kv_heads}
    head_dim = {head_dim}
    return {factor} * config["num_hidden_layers"] * kv_heads * head_dim * bytes_per_value


def largest_batch(n_params, kv_per_token, memory_bytes, context_len, bytes_per_param=2):
    room = memory_bytes - {weights}
    if room {empty}:
        return 0
    return {rounding}
'''
RIGHT_SIZES = dict(kv_heads='config.get("num_key_value_heads") or heads',
                   head_dim='config.get("head_dim") or config["hidden_size"] // heads', factor="2",
                   weights="n_params * bytes_per_param", empty="<= 0",
                   rounding="int(room // (kv_per_token * context_len))")


def sizes_with(**changes):
    return SIZES.format(**{**RIGHT_SIZES, **changes})


NUMBERS = '''
mha_per_token = kv_bytes_per_token({mha_config})
gqa_per_token = kv_bytes_per_token(LLAMA2_GQA_CONFIG)
q4_mha_batch = largest_batch(N_PARAMS_MHA, mha_per_token, MEMORY_BYTES, CONTEXT)
q4_gqa_batch = largest_batch({gqa_params}, gqa_per_token, MEMORY_BYTES, CONTEXT)
q4_gqa_ms = 1e3 * ({read}) / BANDWIDTH
q4_serves_target = {serves}
'''
RIGHT_NUMBERS = dict(mha_config="LLAMA2_MHA_CONFIG", gqa_params="N_PARAMS_GQA",
                     read="N_PARAMS_GQA * 2 + USERS * CONTEXT * gqa_per_token",
                     serves="q4_gqa_batch >= USERS and q4_gqa_ms <= LATENCY_MS")


def numbers_with(**changes):
    return NUMBERS.format(**{**RIGHT_NUMBERS, **changes})


WRONG = {
    # Exercise 1: grouped-query attention (1 + 1 visible, 1 + 1 hidden, a gate).
    "q1_shares_heads_round_robin": {   # head h reads KV head h % G instead of h // (H / G): right for MHA and MQA
        "replace": {"q1_answer": attention_with(share_k="k.repeat(1, group, 1, 1)",
                                                share_v="v.repeat(1, group, 1, 1)")},
        "expect": {"q1_tests": 2}},
    "q1_scales_by_head_dim_not_its_root": {
        "replace": {"q1_answer": attention_with(scale="q.shape[-1]")}, "expect": {"q1_tests": 0}},
    "q1_forgets_the_causal_mask": {
        "replace": {"q1_answer": attention_with(diagonal="steps")}, "expect": {"q1_tests": 0}},
    "q1_softmax_over_the_queries": {
        "replace": {"q1_answer": attention_with(axis="-2")}, "expect": {"q1_tests": 0}},
    "q1_returns_float64": {   # right numbers, in a dtype the model's float32 layers cannot take (instructions: q's)
        "replace": {"q1_answer": '''
def grouped_query_attention(q, k, v):
    q, k, v = q.double(), k.double(), v.double()          # "more precise"
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    future = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
'''}, "expect": {"q1_tests": 0}},
    "q1_calls_the_fused_kernel": {
        "replace": {"q1_answer": '''
def grouped_query_attention(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
'''}, "expect": {"q1_tests": 0}},
    "q1_calls_lessonlib_through_a_helper": {
        "replace": {"q1_answer": '''
from lessonlib.models import attention as _library


def _helper(q, k, v):
    return _library.attend(q, k, v, 0, None, None)


def grouped_query_attention(q, k, v):
    return _helper(q, k, v)
'''}, "expect": {"q1_tests": 0}},
    # Exercise 2: the rolling cache (1 + 1 visible, 1 hidden, a gate).
    "q2_reads_the_ring_in_storage_order": {   # right until the ring wraps; one-token decoding cannot tell
        "replace": {"q2_answer": ring_with(slots="list(range(min(length, window)))")}, "expect": {"q2_tests": 1}},
    "q2_reads_empty_slots_before_the_ring_fills": {   # forgets max(0, ...): W positions even when fewer were written
        "replace": {"q2_answer": ring_with(slots="[p % window for p in range(length - window, length)]")},
        "expect": {"q2_tests": 2}},
    "q2_reads_newest_first": {
        "replace": {"q2_answer": ring_with(
            slots="[p % window for p in reversed(range(max(0, length - window), length))]")},
        "expect": {"q2_tests": 0}},
    "q2_off_by_one_window": {   # keeps one position too many once past the window
        "replace": {"q2_answer": ring_with(slots="[p % window for p in range(max(0, length - window - 1), length)]")},
        "expect": {"q2_tests": 1}},
    "q2_uses_lessonlibs_ring": {
        "replace": {"q2_answer": '''
from lessonlib.models.kv_cache import RollingKV


def ring_write(ring_keys, ring_values, k, v, position):
    ring = RollingKV.__new__(RollingKV)
    ring.keys, ring.values, ring.window = ring_keys, ring_values, ring_keys.shape[2]
    ring.update(k[:, :, None], v[:, :, None], position)


def ring_read(ring_keys, ring_values, length):
    window = ring_keys.shape[2]
    slots = [p % window for p in range(max(0, length - window), length)]
    return ring_keys[:, :, slots], ring_values[:, :, slots]
'''}, "expect": {"q2_tests": 0}},
    # Exercise 3: sizes (1 + 1 visible; 1 + 0.5 + 0.5 hidden). Exercise 4a uses these functions: every mistake here
    # is carried forward there without a second charge (a test cell not named in "expect" must score full marks).
    "q3_counts_query_heads": {
        "replace": {"q3_answer": sizes_with(kv_heads="heads")}, "expect": {"q3_tests": 3}},
    "q3_forgets_values": {
        "replace": {"q3_answer": sizes_with(factor="1")}, "expect": {"q3_tests": 2}},
    "q3_ignores_explicit_head_dim": {
        "replace": {"q3_answer": sizes_with(head_dim='config["hidden_size"] // heads')}, "expect": {"q3_tests": 3}},
    "q3_rounds_the_batch_up": {
        "replace": {"q3_answer": sizes_with(rounding="int(-(-room // (kv_per_token * context_len)))")},
        "expect": {"q3_tests": 3}},
    "q3_negative_batch_when_weights_do_not_fit": {
        "replace": {"q3_answer": sizes_with(empty="< -1e30")}, "expect": {"q3_tests": 3.5}},
    "q3_weights_in_parameters_not_bytes": {
        "replace": {"q3_answer": sizes_with(weights="n_params")}, "expect": {"q3_tests": 2}},
    "q3_hard_codes_two_bytes_per_parameter": {   # right for bf16, which is all Exercise 4 asks
        "replace": {"q3_answer": sizes_with(weights="n_params * 2")}, "expect": {"q3_tests": 3.5}},
    # Exercise 4a: the modification in numbers (1 visible, 3 hidden); mistakes carried over from exercise 3 are not
    # charged.
    "q4_keeps_the_old_parameter_count": {
        "replace": {"q4_numbers_answer": numbers_with(gqa_params="N_PARAMS_MHA",
                                                      read="N_PARAMS_MHA * 2 + USERS * CONTEXT * gqa_per_token")},
        "expect": {"q4_numbers_tests": 2}, "requires": ("q3_answer",)},
    "q4_reads_one_conversation_per_step": {
        "replace": {"q4_numbers_answer": numbers_with(read="N_PARAMS_GQA * 2 + CONTEXT * gqa_per_token")},
        "expect": {"q4_numbers_tests": 3}, "requires": ("q3_answer",)},
    "q4_ignores_the_latency_target": {
        "replace": {"q4_numbers_answer": numbers_with(serves="q4_gqa_batch >= 400")},
        "expect": {"q4_numbers_tests": 3}, "requires": ("q3_answer",)},
    "q4_converted_config_before_the_change_too": {   # copies the GQA config into the "before" line
        "replace": {"q4_numbers_answer": numbers_with(mha_config="LLAMA2_GQA_CONFIG")},
        "expect": {"q4_numbers_tests": 3}, "requires": ("q3_answer",)},
    # Exercise 4b: the recommendation (2 hidden).
    "q4_four_times_faster": {"replace": {"q4_choice_answer": 'q4_answer = "A"'}, "expect": {"q4_choice_tests": 0}},
    "q4_fewer_flops_and_compute_bound": {
        "replace": {"q4_choice_answer": 'q4_answer = "C"'}, "expect": {"q4_choice_tests": 0}},
    "q4_tiny_models_lost_points": {
        "replace": {"q4_choice_answer": 'q4_answer = "D"'}, "expect": {"q4_choice_tests": 0}},
}

RIGHT = {
    "q1_by_reshaping_into_groups_with_einsum": {
        "replace": {"q1_answer": '''
import warnings


def grouped_query_attention(q, k, v):
    batch, n_heads, steps, dim = q.shape
    n_kv = k.shape[1]
    warnings.warn("grouping heads by reshaping")           # a warning must not cost points
    qg = q.reshape(batch, n_kv, n_heads // n_kv, steps, dim)
    scores = torch.einsum("bgmtd,bgsd->bgmts", qg, k) * dim ** -0.5
    mask = torch.tril(torch.ones(steps, steps)).bool()
    weights = scores.masked_fill(~mask, -1e30).softmax(-1)
    return torch.einsum("bgmts,bgsd->bgmtd", weights, v).reshape(batch, n_heads, steps, dim)
'''}},
    "q1_computes_in_float64_and_returns_q_dtype": {
        "replace": {"q1_answer": '''
def grouped_query_attention(q, k, v):
    n_rep = q.shape[1] // k.shape[1]
    qd, kd, vd = q.double(), k.double(), v.double()
    out = []
    for h in range(q.shape[1]):                            # one head at a time
        g = h // n_rep
        scores = qd[:, h] @ kd[:, g].transpose(-1, -2) / math.sqrt(q.shape[-1])
        causal = torch.tril(torch.ones(scores.shape[-2:], dtype=torch.bool))
        out.append(torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ vd[:, g])
    return torch.stack(out, dim=1).to(q.dtype)
'''}},
    "q2_with_a_loop_and_numpy_style_indexing": {
        "replace": {"q2_answer": '''
def ring_write(ring_keys, ring_values, k, v, position):
    w = ring_keys.size(2)
    ring_keys[:, :, position - (position // w) * w, :] = k
    ring_values[:, :, position - (position // w) * w, :] = v
    print("wrote", position)


def ring_read(ring_keys, ring_values, length):
    w = ring_keys.size(2)
    if length <= w:
        return ring_keys[:, :, :length], ring_values[:, :, :length]
    start = length % w      # the oldest position still held
    order = torch.cat([torch.arange(start, w), torch.arange(0, start)])
    return ring_keys.index_select(2, order), ring_values.index_select(2, order)
'''}},
    "q3_with_math_floor_numpy_and_logging_to_stderr": {
        "replace": {"q3_answer": '''
import logging
import os

import numpy as np

logging.basicConfig(level=logging.INFO)            # its handler keeps the kernel's stderr


def kv_bytes_per_token(config, bytes_per_value=2):
    logging.info("kv_bytes_per_token(%s)", config)
    os.write(2, b"debug output on file descriptor 2\\n")
    n_heads = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", None)
    n_kv = n_heads if n_kv is None else n_kv
    d = config.get("head_dim", None) or config["hidden_size"] // n_heads
    return int(np.prod([2, config["num_hidden_layers"], n_kv, d, bytes_per_value]))


def largest_batch(n_params, kv_per_token, memory_bytes, context_len, bytes_per_param=2):
    free = memory_bytes - n_params * bytes_per_param
    return max(0, math.floor(free / (kv_per_token * context_len)))
'''}},
    "q4_numbers_with_intermediate_variables": {
        "replace": {"q4_numbers_answer": '''
per_token_before = kv_bytes_per_token({"num_hidden_layers": 32, "num_attention_heads": 32, "hidden_size": 4096})
per_token_after = kv_bytes_per_token(LLAMA2_GQA_CONFIG)
q4_mha_batch = largest_batch(N_PARAMS_MHA, per_token_before, MEMORY_BYTES, CONTEXT)
q4_gqa_batch = largest_batch(N_PARAMS_GQA, per_token_after, MEMORY_BYTES, CONTEXT)
bytes_per_step = 2 * N_PARAMS_GQA + USERS * CONTEXT * per_token_after
q4_gqa_ms = bytes_per_step / BANDWIDTH * 1000
q4_serves_target = bool(np.float64(q4_gqa_ms) <= LATENCY_MS) and USERS <= q4_gqa_batch
'''}, "requires": ("q3_answer",)},
    "q4_choice_written_in_words": {"replace": {"q4_choice_answer": 'q4_answer = " (b) "'}},
}
