"""lessonlib.tinygpt: the KV-cached decode is exact, batching and causality hold, GQA shrinks the cache,
the parameter count matches the cost model, and the weights run unchanged in Hugging Face's GPT-2."""
import pytest
import torch

from lessonlib.costs import ModelSpec
from lessonlib.tinygpt import TinyGPT, TinyGPTConfig, hf_gpt2_state_dict

torch.manual_seed(0)


def make(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, block_size=64, n_layer=2, n_head=4, n_embd=32) | changes
    return TinyGPT(TinyGPTConfig(**config)).eval()


PROMPTS = torch.randint(0, 41, (3, 7), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_cached_and_uncached_greedy_generation_are_identical(kv_heads):
    model = make(n_kv_head=kv_heads)
    assert torch.equal(model.generate(PROMPTS, 30), model.generate(PROMPTS, 30, use_cache=False))


def test_cached_decode_logits_equal_full_forward_logits():
    model = make()
    tokens = model.generate(PROMPTS, 20)
    with torch.inference_mode():
        full, _ = model(tokens)
        cache = model.new_cache(3, tokens.shape[1])
        step_logits = [model.prefill(tokens[:, :7], cache)]
        step_logits += [model.decode_step(tokens[:, t], cache) for t in range(7, tokens.shape[1] - 1)]
    torch.testing.assert_close(torch.stack(step_logits, 1), full[:, 6:-1], atol=1e-5, rtol=1e-5)


def test_batch_generation_equals_one_sequence_at_a_time():
    model = make()
    batched = model.generate(PROMPTS, 15)
    for i in range(3):
        assert torch.equal(batched[i:i + 1], model.generate(PROMPTS[i:i + 1], 15))


def test_attention_is_causal():
    model = make()
    a, b = PROMPTS.clone(), PROMPTS.clone()
    b[:, -1] = (b[:, -1] + 1) % 41
    with torch.inference_mode():
        torch.testing.assert_close(model(a)[0][:, :-1], model(b)[0][:, :-1])


def test_fewer_kv_heads_mean_a_smaller_cache():
    sizes = {h: make(n_kv_head=h).new_cache(2, 64).nbytes() for h in (4, 2, 1)}
    assert sizes[4] == 2 * sizes[2] == 4 * sizes[1]


def test_too_long_generation_and_full_cache_fail_clearly():
    model = make()
    with pytest.raises(ValueError, match="exceeds block_size 64"):
        model.generate(PROMPTS, 60)
    cache = model.new_cache(3, 8)
    with torch.inference_mode():
        model.prefill(PROMPTS, cache)
        model.decode_step(PROMPTS[:, 0], cache)
        with pytest.raises(ValueError, match="cache is full"):
            model.decode_step(PROMPTS[:, 0], cache)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        TinyGPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=16, n_kv_head=3)
    with pytest.raises(ValueError, match="GPT-2 has no grouped-query attention"):
        make(n_kv_head=2).config.to_hf_config()


def test_parameter_count_matches_the_cost_model():
    model = make(n_layer=3, n_embd=64)
    assert ModelSpec.from_hf_config(model.config.to_hf_config()).n_params() == model.n_params()


def test_weights_give_the_same_logits_in_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    model = make()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**model.config.to_hf_config())).eval()
    missing, unexpected = hf.load_state_dict(hf_gpt2_state_dict(model), strict=False)
    assert not unexpected and all(".attn.bias" in m or ".attn.masked_bias" in m for m in missing)
    with torch.inference_mode():
        torch.testing.assert_close(hf(PROMPTS).logits, model(PROMPTS)[0], atol=1e-4, rtol=1e-4)
