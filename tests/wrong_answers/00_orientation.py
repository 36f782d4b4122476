"""Submissions for 00_orientation that the end-to-end autograde test grades with real nbgrader.

Each entry starts from the student release with every answer cell filled in with the solution, then replaces
the answer cells named in "replace" (by grade_id). "expect" gives the exact score each listed test cell must
get; every other autograded test cell must score full marks. Entries are packed several to a notebook when
they touch different cells; "requires" lists answer cells an entry relies on (never packed with an entry
that breaks them).

WRONG: plausible mistakes; each must cost points exactly where expected.
RIGHT: correct answers written differently from the solution; they must score full marks.
"""

ALL_CORRECT_Q1 = '''
q1_answers = {
    "weights_too_big": "memory",
    "one_token_at_a_time": "decoding",
    "idle_gpu": "system",
    "kv_cache_grows": "memory",
    "easy_queries": "cascade",
    "too_many_flops": "architecture",
    "kernel_overhead": "system",
    "long_context_attention": "architecture",
}
'''

WRONG = {
    # Exercise 1: matching challenges to categories (one point per match).
    "q1_structure_fixes_for_memory_problems": {
        "replace": {"q1_answer": ALL_CORRECT_Q1.replace('"weights_too_big": "memory"',
                                                        '"weights_too_big": "architecture"')
                                               .replace('"kv_cache_grows": "memory"',
                                                        '"kv_cache_grows": "architecture"')},
        "expect": {"q1_tests": 6},
    },
    "q1_everything_is_a_systems_problem": {
        "replace": {"q1_answer": ALL_CORRECT_Q1.replace('"one_token_at_a_time": "decoding"',
                                                        '"one_token_at_a_time": "system"')
                                               .replace('"easy_queries": "cascade"', '"easy_queries": "system"')
                                               .replace('"long_context_attention": "architecture"',
                                                        '"long_context_attention": "system"')},
        "expect": {"q1_tests": 5},
    },
    "q1_speculative_decoding_for_kernel_overhead": {
        "replace": {"q1_answer": ALL_CORRECT_Q1.replace('"kernel_overhead": "system"',
                                                        '"kernel_overhead": "decoding"')},
        "expect": {"q1_tests": 7},
    },
    # Exercise 2: the principle (all or nothing).
    "q2_cost_is_just_parameters": {"replace": {"q2_answer": 'q2_answer = "B"'}, "expect": {"q2_tests": 0}},
    "q2_ordered_by_accuracy_loss": {"replace": {"q2_answer": 'q2_answer = "d"'}, "expect": {"q2_tests": 0}},
    # Exercise 3a: KV-cache bytes.
    "q3_kv_forgets_the_values": {
        "replace": {"q3_kv_answer": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    return n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value
'''},
        "expect": {"q3_kv_tests": 0},
    },
    "q3_kv_ignores_the_batch": {
        "replace": {"q3_kv_answer": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * bytes_per_value
'''},
        "expect": {"q3_kv_tests": 1},
    },
    "q3_kv_counts_values_not_bytes": {
        "replace": {"q3_kv_answer": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size
'''},
        "expect": {"q3_kv_tests": 1},
    },
    "q3_kv_calls_the_reference_cost_model": {
        "replace": {"q3_kv_answer": '''
from lessonlib.costs.spec import ModelSpec

def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    spec = ModelSpec(name="x", model_type="llama", vocab_size=1, hidden_size=n_kv_heads * head_dim,
                     n_layers=n_layers, n_heads=n_kv_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                     intermediate_size=1)
    return spec.kv_cache_bytes(seq_len, batch_size, bytes_per_value)
'''},
        "expect": {"q3_kv_tests": 0},
    },
    "q3_kv_reference_reached_through_a_helper": {
        "replace": {"q3_kv_answer": '''
from lessonlib.costs.spec import ModelSpec


def _cache_of(n_layers, n_kv_heads, head_dim):
    return ModelSpec(name="x", model_type="llama", vocab_size=1, hidden_size=n_kv_heads * head_dim,
                     n_layers=n_layers, n_heads=n_kv_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                     intermediate_size=1)


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    return _cache_of(n_layers, n_kv_heads, head_dim).kv_cache_bytes(seq_len, batch_size, bytes_per_value)
'''},
        "expect": {"q3_kv_tests": 0},
    },
    # Exercise 3b: FLOPs saved by the cache.
    "q3_flops_counts_the_new_token_as_saved": {
        "replace": {"q3_flops_answer": '''
def flops_saved_by_kv_cache(n_params, prefix_len):
    return 2 * n_params * (prefix_len + 1)
'''},
        "expect": {"q3_flops_tests": 0},
    },
    "q3_flops_hard_coded_for_the_visible_test": {
        "replace": {"q3_flops_answer": '''
def flops_saved_by_kv_cache(n_params, prefix_len):
    return 1.4e13
'''},
        "expect": {"q3_flops_tests": 1},
    },
    "q3_flops_one_flop_per_parameter": {
        "replace": {"q3_flops_answer": '''
def flops_saved_by_kv_cache(n_params, prefix_len):
    return n_params * prefix_len
'''},
        "expect": {"q3_flops_tests": 0},
    },
    "q3_flops_reference_answer_through_a_helper": {
        "replace": {"q3_flops_answer": '''
from lessonlib.lessons import references as notes


def _saved(n, p):
    return notes.flops_saved_by_kv_cache(n, p)


def flops_saved_by_kv_cache(n_params, prefix_len):
    return _saved(n_params, prefix_len)
'''},
        "expect": {"q3_flops_tests": 0},
    },
    # Exercise 3c: what the cache trades.
    "q3_trade_compute_for_memory": {"replace": {"q3_trade_answer": 'q3_trade = "A"'},
                                    "expect": {"q3_trade_tests": 0}},
    "q3_trade_free_lunch": {"replace": {"q3_trade_answer": 'q3_trade = "C"'}, "expect": {"q3_trade_tests": 0}},
    "q3_trade_stale_cache": {"replace": {"q3_trade_answer": 'q3_trade = "D"'}, "expect": {"q3_trade_tests": 0}},
    "q2_stages_of_life": {"replace": {"q2_answer": 'q2_answer = "A"'}, "expect": {"q2_tests": 0}},
}

RIGHT = {
    "written_differently": {
        "replace": {
            "q1_answer": '''
q1_answers = dict(
    weights_too_big="Memory Reduction", one_token_at_a_time="better decoding algorithms",
    idle_gpu=" system-level acceleration ", kv_cache_grows="MEMORY", easy_queries="Cascading",
    too_many_flops="efficient architecture design", kernel_overhead="System",
    long_context_attention="Architecture",
)
''',
            "q2_answer": 'q2_answer = " c) "',
            "q3_kv_answer": '''
import math

def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    per_token_per_layer = [n_kv_heads * head_dim * bytes_per_value for _ in ("key", "value")]
    return math.prod([sum(per_token_per_layer), n_layers, seq_len, batch_size])
''',
            "q3_flops_answer": '''
def flops_saved_by_kv_cache(n_params, prefix_len):
    total = 0
    for _ in range(prefix_len):  # every cached position is one forward pass we skip
        total += 2 * n_params
    return total
''',
            "q3_trade_answer": "q3_trade = 'b'",
        },
        "expect": {},
    },
    # Right answers that print, warn, log and write to stderr while they work: no points lost anywhere (the
    # logging handler is configured in an answer cell, before the test cell runs; human_bytes is lessonlib's
    # display helper, which the instructions allow).
    "noisy_but_right": {
        "replace": {
            "q1_answer": '''
import warnings

pairs = [("weights_too_big", "memory"), ("one_token_at_a_time", "decoding"), ("idle_gpu", "system"),
         ("kv_cache_grows", "memory"), ("easy_queries", "cascade"), ("too_many_flops", "architecture"),
         ("kernel_overhead", "system"), ("long_context_attention", "architecture")]
q1_answers = {}
for challenge, category in pairs:
    q1_answers[challenge] = category
print(q1_answers)
warnings.warn("double-check these before submitting")
''',
            "q2_answer": 'q2_answer = "(c)"',
            "q3_kv_answer": '''
import os

import numpy as np

from lessonlib.core.units import human_bytes


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_value=2):
    total = np.prod([2, n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_value], dtype=np.int64)
    print("KV cache:", human_bytes(float(total)))
    os.write(2, b"kv_cache_bytes was called\\n")
    return total
''',
            "q3_flops_answer": '''
import logging
import sys
import warnings

logging.basicConfig(level=logging.INFO)
log = logging.getLogger("exercise3b")


def flops_saved_by_kv_cache(n_params, prefix_len):
    log.info("prefix of %s tokens", prefix_len)
    print("computing", file=sys.stderr)
    warnings.warn("FLOPs are approximate", UserWarning)
    return 2 * n_params * prefix_len
''',
            "q3_trade_answer": "q3_trade = 'B'",
        },
        "expect": {},
    },
}
