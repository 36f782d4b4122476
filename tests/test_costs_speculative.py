"""lessonlib.costs.speculative: Leviathan et al.'s expected tokens per pass and speedup, and speculative decoding
priced on the roofline (a verify pass reads like a decode step and computes k + 1 times as much)."""
import dataclasses

import pytest

from lessonlib.costs.hardware import hardware_preset
from lessonlib.costs.presets import model_preset
from lessonlib.costs.roofline import decode_step
from lessonlib.costs.speculative import (
    best_draft_len,
    expected_speedup,
    expected_tokens_per_pass,
    speculative_decode,
    verify_pass,
)

LLAMA = model_preset("llama-2-7b")
A100, PHONE = hardware_preset("a100-80gb"), hardware_preset("phone-snapdragon-8-gen-3")
# A draft of the same family and vocabulary: Llama-2-7B's shape at a tenth of the layers.
DRAFT = dataclasses.replace(LLAMA, name="draft", n_layers=3)


def test_the_formulas_are_the_geometric_sum_and_its_ratio_to_the_round_s_cost():
    assert expected_tokens_per_pass(0.0, 4) == 1 and expected_tokens_per_pass(1.0, 4) == 5
    assert expected_tokens_per_pass(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)
    assert expected_speedup(0.8, 4, 0.25) == pytest.approx((1 - 0.8**5) / 0.2 / 2)
    # a free draft (c = 0) makes longer drafts never worse; a costly one has an interior best length
    assert best_draft_len(0.9, 0.0, 8) == 8
    k = best_draft_len(0.8, 0.1, 16)
    assert 1 < k < 16 and expected_speedup(0.8, k, 0.1) >= max(expected_speedup(0.8, j, 0.1) for j in (1, 16))
    assert best_draft_len(0.0, 0.5) == 1


def test_a_verify_pass_reads_like_one_decode_step_and_computes_k_plus_1_tokens():
    step = decode_step(LLAMA, A100, "bf16", 1024, 1)
    verify = verify_pass(LLAMA, A100, "bf16", 1024, n_tokens=5)
    assert verify.weight_bytes_read == step.weight_bytes_read
    assert verify.kv_bytes_read == pytest.approx(LLAMA.decode_kv_bytes(1028, 1, 2))
    assert verify.flops == sum(LLAMA.flops_per_token(c) for c in range(1024, 1029))
    assert verify.bound == "memory" and verify.seconds == pytest.approx(step.seconds, rel=0.01)
    # a big batch on a phone runs out of compute: the verify pass costs far more than a step
    big = verify_pass(LLAMA, PHONE, "int8", 1024, n_tokens=9, batch_size=16)
    assert big.bound == "compute" and big.seconds > 3 * decode_step(LLAMA, PHONE, "int8", 1024, 16).seconds


def test_speculative_decoding_on_the_roofline():
    cost = speculative_decode(LLAMA, DRAFT, A100, "bf16", 1024, draft_len=4, acceptance_rate=0.8)
    assert cost.tokens_per_pass == pytest.approx(expected_tokens_per_pass(0.8, 4))
    assert cost.seconds_per_token == pytest.approx((4 * cost.draft_step.seconds + cost.verify.seconds)
                                                   / cost.tokens_per_pass)
    # memory-bound at batch 1: the roofline speedup is Leviathan's with c = the draft's share of the bytes
    assert cost.speedup == pytest.approx(expected_speedup(0.8, 4, cost.cost_ratio), rel=0.02)
    assert 1.5 < cost.speedup < 4 and 0.05 < cost.cost_ratio < 0.2
    # nothing accepted: every round costs k draft steps and a pass for one token, slower than plain decoding
    assert speculative_decode(LLAMA, DRAFT, A100, "bf16", 1024, 4, 0.0).speedup < 1
    # at a large batch on a slow processor the verify pass is compute-bound and the gain shrinks
    phone_1 = speculative_decode(LLAMA, DRAFT, PHONE, "int8", 1024, 8, 0.8)
    phone_16 = speculative_decode(LLAMA, DRAFT, PHONE, "int8", 1024, 8, 0.8, batch_size=16)
    assert phone_16.speedup < phone_1.speedup
    assert cost.memory_needed > cost.verify.memory_needed


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match=r"acceptance_rate is a probability in \[0, 1\]"):
        speculative_decode(LLAMA, DRAFT, A100, acceptance_rate=1.5)
    with pytest.raises(ValueError, match="draft_len .* at least 1"):
        speculative_decode(LLAMA, DRAFT, A100, draft_len=0)
    with pytest.raises(ValueError, match=r"draft's vocabulary \(151,936 tokens\) differs from the target's "
                                         r"\(32,000\)"):
        speculative_decode(LLAMA, model_preset("qwen2-0.5b"), A100)
    with pytest.raises(ValueError, match="cost_ratio"):
        expected_speedup(0.5, 2, -1)
    with pytest.raises(ValueError, match="n_tokens must be a positive integer"):
        verify_pass(LLAMA, A100, n_tokens=0)
