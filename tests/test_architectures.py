"""lessonlib.lessons.architectures: lesson 02's side-by-side measurement and the adapters that run the learner's
attention and rolling cache inside the model."""
import pytest
import torch

from lessonlib.lessons.architectures import generate_with_ring, learner_attention, measure_variants
from lessonlib.models import corpus
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig

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
    val = corpus.split("validation", 100).fixed_batches(1, 2, 32)
    rows = measure_variants(models, val, contexts=(4, 16), repeats=2, n_questions=8)
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows] == list(models)
    assert by_name["gqa"].kv_bytes_per_token == by_name["mha"].kv_bytes_per_token / 2
    assert by_name["latent"].kv_bytes_per_token == 2 * 8 * 4          # layers x rank x fp32
    assert by_name["window"].cache_bytes == by_name["mha"].cache_bytes * 8 // 64
    assert all(set(r.decode_ms) == {4, 16} and min(r.decode_ms.values()) > 0 for r in rows)
    assert all(0 <= v <= 1 for r in rows for v in r.exact_match.values())
    with pytest.raises(ValueError, match="leave room"):
        measure_variants(models, val, contexts=(62,))


@pytest.mark.parametrize("lesson", ["02_efficient_architectures", "03b_pruning_and_the_edge"])
def test_multiple_choice_options_do_not_give_the_answer_away_by_length(lesson):
    """Balanced options: the longest at most 1.2x the shortest (the same rule as lesson 00's)."""
    import re
    from pathlib import Path

    import nbformat

    path = Path(__file__).resolve().parents[1] / "solutions" / lesson / f"{lesson}.ipynb"
    found = 0
    for cell in nbformat.read(path, as_version=4).cells:
        options = re.findall(r"^- \*\*([A-E])\.\*\* (.+?)(?=\n- \*\*|\Z)", cell.source, re.S | re.M)
        if options:
            found += 1
            lengths = [len(" ".join(text.split())) for _, text in options]
            assert max(lengths) <= 1.2 * min(lengths), f"option lengths {lengths}: balance them"
    assert found
