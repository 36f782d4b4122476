"""Submissions for 01_inference_costs graded end to end (see 00_orientation.py for the format)."""

COUNT_PARAMS = '''
def count_params(config):
    d = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = {kv_heads}
    head_dim = {head_dim}
    layers = config["num_hidden_layers"]
    vocab = config["vocab_size"]
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    mlp = 3 * d * config["intermediate_size"]
    norms = {norms}
    head = {head}
    return vocab * d + layers * (attention + mlp + norms) + {final_norm} + head
'''
RIGHT_PARTS = dict(kv_heads='config.get("num_key_value_heads") or heads',
                   head_dim='config.get("head_dim") or d // heads', norms="2 * d",
                   head='0 if config.get("tie_word_embeddings", False) else vocab * d', final_norm="d")


def count_params_with(**changes):
    return COUNT_PARAMS.format(**{**RIGHT_PARTS, **changes})


INTENSITY = '''
def decode_intensity(n_params, batch_size, context_len, kv_bytes_per_token, bytes_per_param=2):
    return {decode}


def prefill_intensity(n_params, n_tokens, bytes_per_param=2):
    return {prefill}


def is_memory_bound(intensity, peak_flops, bandwidth):
    return {bound}
'''
RIGHT_INTENSITY = dict(
    decode="2 * n_params * batch_size / (n_params * bytes_per_param + batch_size * context_len * kv_bytes_per_token)",
    prefill="2 * n_tokens / bytes_per_param",
    bound="intensity < peak_flops / bandwidth")


def intensity_with(**changes):
    return INTENSITY.format(**{**RIGHT_INTENSITY, **changes})


NUMBERS = '''
gemma_2b = model_preset("gemma-2b")
pi5, h100_sxm = hardware_preset("raspberry-pi-5"), hardware_preset("h100-sxm")
q4_pi_seconds = decode_latency(gemma_2b.n_params(), {bytes}, pi5.memory_bandwidth, pi5.flops_for("bf16"))
q4_h100_seconds = decode_latency(gemma_2b.n_params(), {bytes}, h100_sxm.memory_bandwidth, h100_sxm.flops_for("bf16"))
q4_limit = "{limit}"
'''

WRONG = {
    # Exercise 1: parameters from a config.
    "q1_ignores_grouped_query_attention": {
        "replace": {"q1_answer": count_params_with(kv_heads="heads")}, "expect": {"q1_tests": 2}},
    "q1_always_counts_the_lm_head": {
        "replace": {"q1_answer": count_params_with(head="vocab * d")}, "expect": {"q1_tests": 4}},
    "q1_head_dim_always_hidden_over_heads": {
        "replace": {"q1_answer": count_params_with(head_dim="d // heads")}, "expect": {"q1_tests": 4}},
    "q1_forgets_the_norms": {
        "replace": {"q1_answer": count_params_with(norms="0", final_norm="0")}, "expect": {"q1_tests": 0}},
    "q1_calls_the_reference_cost_model": {
        "replace": {"q1_answer": '''
from lessonlib.costs.spec import ModelSpec

def count_params(config):
    return ModelSpec.from_hf_config({"model_type": "llama", **config}).n_params()
'''}, "expect": {"q1_tests": 0}},
    "q1_reference_answer_through_a_helper": {
        "replace": {"q1_answer": '''
from lessonlib.lessons import references


def _count(c):
    return references.count_params(c)


def count_params(config):
    return _count(config)
'''}, "expect": {"q1_tests": 0}},
    # Exercise 2a: KV cache of a conversation.
    "q2_kv_forgets_keys_or_values": {
        "replace": {"q2_kv_answer": '''
def conversation_kv_bytes(config, n_tokens, bytes_per_value=2):
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return config["num_hidden_layers"] * kv_heads * head_dim * n_tokens * bytes_per_value
'''}, "expect": {"q2_kv_tests": 0}},
    "q2_kv_uses_query_heads": {
        "replace": {"q2_kv_answer": '''
def conversation_kv_bytes(config, n_tokens, bytes_per_value=2):
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * heads * head_dim * n_tokens * bytes_per_value
'''}, "expect": {"q2_kv_tests": 0}},
    "q2_kv_ignores_explicit_head_dim": {
        "replace": {"q2_kv_answer": '''
def conversation_kv_bytes(config, n_tokens, bytes_per_value=2):
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * (config["hidden_size"] // heads) * n_tokens * bytes_per_value
'''}, "expect": {"q2_kv_tests": 1}},
    # Exercise 2b: largest batch that fits.
    "q2_batch_forgets_the_weights": {
        "replace": {"q2_batch_answer": '''
def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    return int(device_bytes // kv_bytes_per_sequence)
'''}, "expect": {"q2_batch_tests": 0}},
    "q2_batch_rounds_to_nearest": {
        "replace": {"q2_batch_answer": '''
def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    return max(0, round((device_bytes - n_params * bytes_per_param) / kv_bytes_per_sequence))
'''}, "expect": {"q2_batch_tests": 0.5}},
    "q2_batch_goes_negative_when_weights_do_not_fit": {
        "replace": {"q2_batch_answer": '''
def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    return int((device_bytes - n_params * bytes_per_param) // kv_bytes_per_sequence)
'''}, "expect": {"q2_batch_tests": 1.5}},
    "q2_batch_cost_model_through_a_helper": {
        "replace": {"q2_batch_answer": '''
from lessonlib.costs import memory


def _room(free, per_sequence):
    fit = memory.MemoryFit({"KV cache": per_sequence}, free)
    return int(free // per_sequence) if fit.fits else 0


def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    return max(0, _room(device_bytes - n_params * bytes_per_param, kv_bytes_per_sequence))
'''}, "expect": {"q2_batch_tests": 0}},
    # Exercise 3: intensity and the bound.
    "q3_decode_ignores_the_kv_cache": {
        "replace": {"q3_answer": intensity_with(decode="2 * batch_size / bytes_per_param")},
        "expect": {"q3_tests": 3}},
    "q3_bytes_per_flop_instead_of_flops_per_byte": {
        "replace": {"q3_answer": intensity_with(
            decode="(n_params * bytes_per_param + batch_size * context_len * kv_bytes_per_token)"
                   " / (2 * n_params * batch_size)",
            prefill="bytes_per_param / (2 * n_tokens)")},
        "expect": {"q3_tests": 2}},
    "q3_bound_reversed": {
        "replace": {"q3_answer": intensity_with(bound="intensity > peak_flops / bandwidth")},
        "expect": {"q3_tests": 3}},
    "q3_memory_bound_at_the_ridge_point": {
        "replace": {"q3_answer": intensity_with(bound="intensity <= peak_flops / bandwidth")},
        "expect": {"q3_tests": 3}},
    "q3_bound_from_the_reference_through_a_helper": {
        "replace": {"q3_answer": intensity_with(bound="_bound(intensity, peak_flops, bandwidth)")
                    + '''

from lessonlib.lessons.references import is_memory_bound as _bound
'''},
        "expect": {"q3_tests": 0}},
    # Exercise 4a: decode latency.
    "q4_latency_adds_memory_and_compute_time": {
        "replace": {"q4_latency_answer": '''
def decode_latency(n_params, bytes_per_param, bandwidth, peak_flops):
    return n_params * bytes_per_param / bandwidth + 2 * n_params / peak_flops
'''}, "expect": {"q4_latency_tests": 0}},
    "q4_latency_memory_only_carried_forward_into_4b": {
        "replace": {"q4_latency_answer": '''
def decode_latency(n_params, bytes_per_param, bandwidth, peak_flops):
    return n_params * bytes_per_param / bandwidth
'''}, "expect": {"q4_latency_tests": 1}},
    "q4_latency_from_the_roofline_through_a_helper": {
        "replace": {"q4_latency_answer": '''
from lessonlib.costs.hardware import HardwareSpec


def _ridge(bandwidth, peak_flops):
    return HardwareSpec("x", "x", "x", {"bf16": peak_flops}, bandwidth, 1.0).ridge_point("bf16")


def decode_latency(n_params, bytes_per_param, bandwidth, peak_flops):
    intensity = 2 / bytes_per_param
    if intensity < _ridge(bandwidth, peak_flops):
        return n_params * bytes_per_param / bandwidth
    return 2 * n_params / peak_flops
'''}, "expect": {"q4_latency_tests": 0}},
    # Exercise 4b/4c: two devices.
    "q4_devices_edge_is_compute_bound": {
        "replace": {"q4_numbers_answer": NUMBERS.format(bytes=2, limit="B")}, "expect": {"q4_devices_tests": 1},
        "requires": ["q4_latency_answer"]},
    "q4_devices_hard_coded_from_another_model": {
        "replace": {"q4_numbers_answer": 'q4_pi_seconds, q4_h100_seconds, q4_limit = 0.0579, 0.000295, "A"'},
        "expect": {"q4_devices_tests": 1}},
    "q4_devices_fp32_weights": {
        "replace": {"q4_numbers_answer": NUMBERS.format(bytes=4, limit="A")}, "expect": {"q4_devices_tests": 1},
        "requires": ["q4_latency_answer"]},
}

RIGHT = {
    "written_differently": {
        "replace": {
            "q1_answer": '''
def count_params(config):
    c = dict(num_key_value_heads=None, head_dim=None, tie_word_embeddings=False) | config
    d, h, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    kv = c["num_key_value_heads"] if c["num_key_value_heads"] is not None else h
    hd = c["head_dim"] if c["head_dim"] is not None else d // h
    per_layer = d * hd * (h + kv + kv + h) + 3 * d * c["intermediate_size"] + d + d
    tables = 1 if c["tie_word_embeddings"] else 2
    return tables * c["vocab_size"] * d + L * per_layer + d
''',
            "q2_kv_answer": '''
def conversation_kv_bytes(config, n_tokens, bytes_per_value=2):
    h = config["num_attention_heads"]
    per_token_per_layer = 2 * config.get("num_key_value_heads", h) * config.get("head_dim", config["hidden_size"] // h)
    return float(per_token_per_layer * config["num_hidden_layers"] * bytes_per_value * n_tokens)
''',
            "q2_batch_answer": '''
import math

def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    return max(0, math.floor((device_bytes - bytes_per_param * n_params) / kv_bytes_per_sequence))
''',
            "q3_answer": intensity_with(
                decode="(2 * batch_size)"
                       " / (bytes_per_param + batch_size * context_len * kv_bytes_per_token / n_params)",
                prefill="n_params * n_tokens * 2 / (bytes_per_param * n_params)",
                bound="not (intensity >= peak_flops / bandwidth)"),
            "q4_latency_answer": '''
def decode_latency(n_params, bytes_per_param, bandwidth, peak_flops):
    memory_time = n_params * bytes_per_param / bandwidth
    compute_time = 2 * n_params / peak_flops
    return memory_time if memory_time > compute_time else compute_time
''',
            "q4_numbers_answer": NUMBERS.format(bytes=2, limit="a"),
        },
        "expect": {},
    },
    # Right answers that print, warn, log and write to stderr, use NumPy (a NumPy boolean from is_memory_bound)
    # and lessonlib's display helper human_bytes, which the instructions allow.
    "noisy_but_right": {
        "replace": {
            "q1_answer": '''
import logging

from lessonlib.core.units import human_bytes

logging.basicConfig(level=logging.DEBUG)


def count_params(config):
    d, h = config["hidden_size"], config["num_attention_heads"]
    kv = config.get("num_key_value_heads", h)
    hd = config.get("head_dim", d // h)
    total = config["vocab_size"] * d * (1 if config.get("tie_word_embeddings") else 2) + d
    for _ in range(config["num_hidden_layers"]):
        total += 2 * d * h * hd + 2 * d * kv * hd + 3 * d * config["intermediate_size"] + 2 * d
    logging.info("%s parameters, %s in bf16", total, human_bytes(2 * total))
    return total
''',
            "q2_kv_answer": '''
import sys


def conversation_kv_bytes(config, n_tokens, bytes_per_value=2):
    h = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or h
    head_dim = config.get("head_dim") or config["hidden_size"] // h
    print(f"{kv_heads} KV heads of {head_dim}", file=sys.stderr)
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * n_tokens * bytes_per_value
''',
            "q2_batch_answer": '''
import numpy as np


def max_batch_that_fits(n_params, kv_bytes_per_sequence, device_bytes, bytes_per_param=2):
    free = np.float64(device_bytes) - np.float64(n_params) * bytes_per_param
    return int(max(np.floor(free / kv_bytes_per_sequence), 0))
''',
            "q3_answer": '''
import numpy as np


def decode_intensity(n_params, batch_size, context_len, kv_bytes_per_token, bytes_per_param=2):
    flops = np.float64(2) * n_params * batch_size
    return flops / (np.float64(n_params) * bytes_per_param + batch_size * context_len * kv_bytes_per_token)


def prefill_intensity(n_params, n_tokens, bytes_per_param=2):
    return np.float64(2 * n_tokens) / bytes_per_param


def is_memory_bound(intensity, peak_flops, bandwidth):
    return np.float64(intensity) < np.float64(peak_flops) / np.float64(bandwidth)   # a NumPy boolean
''',
            "q4_latency_answer": '''
import os
import warnings


def decode_latency(n_params, bytes_per_param, bandwidth, peak_flops):
    os.write(2, b"decode_latency\\n")
    warnings.warn("the roofline ignores the KV cache here", RuntimeWarning)
    return max(n_params * bytes_per_param / bandwidth, 2 * n_params / peak_flops)
''',
            "q4_numbers_answer": NUMBERS.format(bytes=2, limit=" a) "),
        },
        "expect": {},
    },
}
