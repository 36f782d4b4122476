"""lessonlib.lessons.architectures: lesson 02's side-by-side measurement and the adapters that run the learner's
attention and rolling cache inside the model."""
from pathlib import Path

import pytest
import torch

from lessonlib.costs.presets import model_preset
from lessonlib.lessons.architectures import (
    VARIANTS,
    attention_design,
    attention_of,
    generate_with_ring,
    learner_attention,
    measure_variants,
    positions_read,
    reported_quality,
)
from lessonlib.models.checkpoints import load_answers, load_pretrained
from lessonlib.models.evaluation import answers_right, exact_match, report_questions
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig

from .tiny_models import assert_options_balanced

PROMPTS = torch.randint(0, 41, (2, 6), generator=torch.Generator().manual_seed(1))


def make(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, max_position_embeddings=64, n_layers=2, n_heads=4, hidden_size=32) | changes
    return TinyGPT(TinyGPTConfig(**config)).eval()


def textbook_attention(q, k, v):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    steps = q.shape[2]
    scores = scores.masked_fill(torch.ones(steps, steps, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def ring_write(ring_keys, ring_values, k, v, position):
    ring_keys[:, :, position % ring_keys.shape[2]] = k
    ring_values[:, :, position % ring_values.shape[2]] = v


def ring_read(ring_keys, ring_values, length):
    window = ring_keys.shape[2]
    slots = [p % window for p in range(max(0, length - window), length)]
    return ring_keys[:, :, slots], ring_values[:, :, slots]


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_the_learners_attention_runs_inside_the_model_and_is_restored_after(n_kv_heads):
    model = make(n_kv_heads=n_kv_heads)
    with torch.inference_mode():
        expected = model(PROMPTS).logits
        calls = []
        with learner_attention(model, lambda q, k, v: calls.append(1) or textbook_attention(q, k, v)):
            mine = model(PROMPTS).logits
        assert len(calls) == 2   # one per layer
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-5)
        with learner_attention(model, lambda q, k, v: torch.zeros_like(q)):
            assert not torch.allclose(model(PROMPTS).logits, expected)
        torch.testing.assert_close(model(PROMPTS).logits, expected)
    with pytest.raises(ValueError, match="no sliding window"):
        with learner_attention(make(sliding_window=4), textbook_attention):
            pass


@pytest.mark.parametrize("window", [3, 5, 64])
def test_decoding_through_the_learners_ring_equals_the_models_own_cache(window):
    model = make(sliding_window=window, n_kv_heads=2)
    torch.testing.assert_close(generate_with_ring(model, PROMPTS, 20, ring_write, ring_read),
                               model.generate(PROMPTS, 20))


def test_variants_are_measured_side_by_side():
    models = {"mha": make(), "gqa": make(n_kv_heads=2), "window": make(sliding_window=8),
              "latent": make(kv_lora_rank=8)}
    rows = measure_variants(models, contexts=(4, 16), repeats=2)
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows] == list(models)
    assert by_name["gqa"].kv_bytes_per_token == by_name["mha"].kv_bytes_per_token / 2
    assert by_name["latent"].kv_bytes_per_token == 2 * 8 * 4          # layers x rank x fp32
    assert by_name["window"].cache_bytes == by_name["mha"].cache_bytes * 8 // 64
    assert by_name["window"].positions == 64
    # A step reads what the cache holds at that context: the window caps it, the others grow with the context.
    assert by_name["window"].kv_read_bytes[16] == by_name["mha"].kv_read_bytes[16] / 2
    assert by_name["mha"].kv_read_bytes[16] == 4 * by_name["mha"].kv_read_bytes[4]
    assert [r.design for r in rows] == ["multi-head", "grouped-query, 2 KV heads", "multi-head, window 8",
                                        "latent, 8 values per position"]
    assert all(set(r.decode_ms) == {4, 16} and min(r.decode_ms.values()) > 0 for r in rows)
    with pytest.raises(ValueError, match="leave room"):
        measure_variants(models, contexts=(62,))


def test_real_models_attention_is_named_from_their_structure():
    assert attention_of(model_preset("llama-2-7b")) == "multi-head"
    assert attention_of(model_preset("llama-3-8b")) == "grouped-query (8 KV heads)"
    assert attention_of(model_preset("mistral-7b")) == "grouped-query (8 KV heads) + 4,096-token window (every layer)"
    assert attention_of(model_preset("gemma-2-9b")).endswith("window (21 of 42 layers)")
    assert attention_of(model_preset("deepseek-v3")) == "latent (512 + 64 values per position)"
    assert attention_design(make(n_kv_heads=1).config) == "multi-query"


def test_stored_answers_are_the_reports_accuracies_question_by_question():
    """The answers files (scripts/train_tiny_models.py --answers) agree with each checkpoint's report, and with a
    live run on one set of questions (greedy answers: a near-tie flipped by summation order may change a few)."""
    for checkpoint in [*VARIANTS.values(), "tiny-gpt-pooled-gqa", "tiny-gpt-continued"]:
        quality = reported_quality(checkpoint)
        _, report = load_pretrained(checkpoint)
        for task, by_level in report["exact_match_per_task"].items():
            for level, share in by_level.items():
                assert quality.share(level, task).value == pytest.approx(share, abs=1e-9), (checkpoint, task, level)
                assert quality.share(level, task).n == len(report_questions("c"))
        assert quality.training_steps == report["training"]["steps"]
        assert quality.share().n == 12 * len(report_questions("c"))
    model, _ = load_pretrained("tiny-window")
    stored = load_answers("tiny-window")["reverse", "hard"]
    live = answers_right(model, report_questions("r", "hard"))
    assert sum(a != b for a, b in zip(live, stored, strict=True)) <= 4
    assert exact_match(model, report_questions("r", "hard")) == sum(live) / len(live)
    with pytest.raises(ValueError, match="no questions for task"):
        quality.share("hard", "text")
    with pytest.raises(FileNotFoundError, match="--answers tiny-moe"):
        load_answers("tiny-moe")


def test_answers_right_keeps_the_order_of_the_questions_and_repeats():
    model, _ = load_pretrained("tiny-gpt")
    lines = report_questions("a", "easy", 6) + report_questions("c", "easy", 3)
    lines = lines + lines[:2]
    right = answers_right(model, lines)
    assert len(right) == len(lines) and right[-2:] == right[:2]
    assert right == [answers_right(model, [line])[0] for line in lines]


def test_positions_read_shows_what_a_ring_returns_and_in_which_order():
    assert positions_read(ring_write, ring_read, 4, 11) == [7, 8, 9, 10]
    assert positions_read(ring_write, ring_read, 8, 5) == [0, 1, 2, 3, 4]

    def storage_order(ring_keys, ring_values, length):
        n = min(length, ring_keys.shape[2])
        return ring_keys[:, :, :n], ring_values[:, :, :n]

    assert positions_read(ring_write, storage_order, 4, 11) == [8, 9, 10, 7]


@pytest.mark.parametrize("lesson", ["02_efficient_architectures", "03b_pruning_and_the_edge"])
def test_multiple_choice_options_do_not_give_the_answer_away_by_length(lesson):
    """Balanced options: the longest at most 1.2x the shortest (the same rule as lesson 00's)."""
    assert_options_balanced(Path(__file__).resolve().parents[1] / "solutions" / lesson / f"{lesson}.ipynb")
