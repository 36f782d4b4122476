"""lessonlib.models.tinygpt: the KV-cached decode is exact, batching and causality hold, GQA shrinks the cache,
the parameter count matches the cost model, and the weights run unchanged in Hugging Face's GPT-2."""
import pytest
import torch

from lessonlib.costs.spec import ModelSpec
from lessonlib.models.checkpoints import config_from_dict, load_checkpoint, save_checkpoint
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig, hf_gpt2_state_dict


def make(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, max_position_embeddings=64, n_layers=2, n_heads=4, hidden_size=32) | changes
    return TinyGPT(TinyGPTConfig(**config)).eval()


PROMPTS = torch.randint(0, 41, (3, 7), generator=torch.Generator().manual_seed(1))
VARIANTS = {"multi-head": {}, "grouped-query": {"n_kv_heads": 2}, "multi-query": {"n_kv_heads": 1},
            "no biases": {"bias": False},
            "narrow MLP, fewer wider heads": {"intermediate_size": 40, "n_heads": 3, "n_kv_heads": 3, "head_dim": 12},
            "mixture of experts, top-2": {"n_experts": 4, "experts_per_token": 2, "intermediate_size": 48},
            "mixture of experts, top-1, multi-query": {"n_experts": 4, "intermediate_size": 48, "n_kv_heads": 1},
            "sliding window": {"sliding_window": 5},
            "sliding window, grouped-query": {"sliding_window": 9, "n_kv_heads": 2},
            "latent attention": {"kv_lora_rank": 12},
            "latent attention, grouped": {"kv_lora_rank": 6, "n_kv_heads": 2}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_and_uncached_greedy_generation_are_identical(variant):
    model = make(**VARIANTS[variant])
    assert torch.equal(model.generate(PROMPTS, 30), model.generate(PROMPTS, 30, use_cache=False))


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decode_logits_equal_full_forward_logits(variant):
    # Tolerance 1e-5: the same arithmetic, only the summation order of the matrix products may differ.
    model = make(**VARIANTS[variant])
    tokens = model.generate(PROMPTS, 20)
    with torch.inference_mode():
        full = model(tokens).logits
        cache = model.new_cache(3, tokens.shape[1])
        step_logits = [model.prefill(tokens[:, :7], cache)]
        step_logits += [model.decode_step(tokens[:, t], cache) for t in range(7, tokens.shape[1] - 1)]
    assert cache.length == tokens.shape[1] - 1
    torch.testing.assert_close(torch.stack(step_logits, 1), full[:, 6:-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["multi-head", "multi-query", "latent attention"])
def test_extending_a_cache_by_several_tokens_and_rewinding_match_the_full_forward(variant):
    # Speculative decoding's verification pass: k new tokens on top of a cache, then rewind past rejected ones.
    model = make(**VARIANTS[variant])
    tokens = torch.randint(0, 41, (3, 24), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        full = model(tokens).logits
        cache = model.new_cache(3, 24)
        model.prefill(tokens[:, :5], cache)
        drafted = model.extend(tokens[:, 5:12], cache)
        cache.length = 9  # keep 4 of the 7, redo from position 9
        redone = model.extend(tokens[:, 9:24], cache)
    torch.testing.assert_close(drafted, full[:, 5:12], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(redone, full[:, 9:24], atol=1e-5, rtol=1e-5)


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
        logits_a, logits_b = model(a)[0], model(b)[0]
    torch.testing.assert_close(logits_a[:, :-1], logits_b[:, :-1])
    assert not torch.allclose(logits_a[:, -1], logits_b[:, -1])


def test_fewer_kv_heads_mean_a_smaller_cache():
    sizes = {h: make(n_kv_heads=h).new_cache(2, 64).nbytes() for h in (4, 2, 1)}
    assert sizes[4] == 2 * sizes[2] == 4 * sizes[1] == 2 * 2 * 2 * 64 * 32 * 4  # K and V, layers, batch, ...


def test_sampling_is_reproducible_and_top_k_1_is_greedy():
    model = make()
    def draw(seed):
        return model.generate(PROMPTS, 10, temperature=1.0, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    assert torch.equal(model.generate(PROMPTS, 10, temperature=0.7, top_k=1), model.generate(PROMPTS, 10))


def test_generate_edge_cases():
    model = make()
    assert torch.equal(model.generate(PROMPTS, 0), PROMPTS)
    assert model.generate(PROMPTS, 1).shape == (3, 8)
    assert model.generate(PROMPTS[:, :1], 63).shape == (3, 64)  # exactly the position table
    with pytest.raises(ValueError, match=r"idx must be \(batch, steps\)"):
        model.generate(PROMPTS[0], 5)


def test_too_long_generation_and_full_cache_fail_clearly():
    model = make()
    with pytest.raises(ValueError, match=r"exceeds the model's position table \(max_position_embeddings 64\)"):
        model.generate(PROMPTS, 60)
    with pytest.raises(ValueError, match=r"longer than the model's position table \(max_position_embeddings 64\)"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cache of 65 positions is longer than the position table \(max_posit"):
        model.new_cache(1, 65)
    cache = model.new_cache(3, 8)
    with torch.inference_mode():
        model.prefill(PROMPTS, cache)
        with pytest.raises(ValueError, match="expects an empty cache"):
            model.prefill(PROMPTS, cache)
        model.decode_step(PROMPTS[:, 0], cache)
        with pytest.raises(ValueError, match="cache is full"):
            model.decode_step(PROMPTS[:, 0], cache)


def test_a_replaced_module_is_refused_by_the_cached_path_but_runs_uncached():
    model = make()
    model.h[1].mlp = torch.nn.Identity()
    with pytest.raises(TypeError, match="block 1 has Identity as its mlp"):
        model.generate(PROMPTS, 3)
    assert model.generate(PROMPTS, 3, use_cache=False).shape == (3, 10)


def test_dropout_acts_in_training_mode_only():
    model = make(dropout=0.5).train()
    assert not torch.equal(model(PROMPTS)[0], model(PROMPTS)[0])
    model.eval()
    assert torch.equal(model(PROMPTS)[0], model(PROMPTS)[0])


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        TinyGPTConfig(vocab_size=10, max_position_embeddings=8, n_layers=1, n_heads=4, hidden_size=16, n_kv_heads=3)
    with pytest.raises(ValueError, match="divisible by n_head"):
        TinyGPTConfig(vocab_size=10, max_position_embeddings=8, n_layers=1, n_heads=3, hidden_size=16)
    with pytest.raises(ValueError, match="GPT-2 has no grouped-query attention"):
        make(n_kv_heads=2).config.to_hf_config()


@pytest.mark.parametrize("shape", [dict(n_layers=3, hidden_size=64),
                                   dict(n_layers=4, hidden_size=128, max_position_embeddings=256)])
def test_parameter_count_matches_the_cost_model(shape):
    model = make(**shape)
    assert ModelSpec.from_hf_config(model.config.to_hf_config()).n_params() == model.n_params() \
        == sum(p.numel() for p in model.parameters())


def test_checkpoint_round_trip_is_fp16_exact(tmp_path):
    model = make(n_kv_heads=2)
    save_checkpoint(model, tmp_path / "m.pt", {"note": "test"})
    loaded, report = load_checkpoint(tmp_path / "m.pt")
    assert report == {"note": "test"} and loaded.config == model.config and not loaded.training
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == torch.float32 and torch.equal(a.half().float(), b), name


def test_weights_give_the_same_logits_in_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    model = make()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**model.config.to_hf_config())).eval()
    missing, unexpected = hf.load_state_dict(hf_gpt2_state_dict(model), strict=False)
    assert not unexpected and all(".attn.bias" in m or ".attn.masked_bias" in m for m in missing)
    assert sum(p.numel() for p in hf.parameters()) == model.n_params()
    with torch.inference_mode():
        torch.testing.assert_close(hf(PROMPTS).logits, model(PROMPTS)[0], atol=1e-4, rtol=1e-4)


def test_checkpoints_saved_with_the_legacy_config_names_still_load(tmp_path):
    """Checkpoints written before the rename store nanoGPT's names (n_layer, n_embd, block_size, n_expert=0 for a
    dense model); the loader maps them onto today's config."""
    model = make(n_kv_heads=2)
    legacy = {"vocab_size": 41, "block_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 32, "n_kv_head": 2,
              "dropout": 0.0, "bias": True, "n_inner": 128, "head_dim": 8, "n_expert": 0, "expert_top_k": 1,
              "renormalize_gates": False, "capacity_factor": None}
    assert config_from_dict(legacy) == model.config
    state = {k: v.half() for k, v in model.state_dict().items()}
    torch.save({"config": legacy, "state_dict": state, "report": {}}, tmp_path / "old.pt")
    loaded, _ = load_checkpoint(tmp_path / "old.pt")
    assert loaded.config == model.config and loaded.n_params() == model.n_params()


@pytest.mark.parametrize("variant", ["sliding window", "sliding window, grouped-query"])
def test_a_rolling_cache_extends_by_more_than_its_window_and_decodes_past_it(variant):
    """Prefill, several tokens at once (more than the window) and single steps, all past the window: the ring of
    `window` slots gives the full forward's logits."""
    model = make(**VARIANTS[variant])
    window = model.config.sliding_window
    tokens = torch.randint(0, 41, (2, 40), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        full = model(tokens).logits
        cache = model.new_cache(2, 40)
        first = model.extend(tokens[:, :13], cache)            # a prefill longer than the window
        more = model.extend(tokens[:, 13:30], cache)           # more new tokens than the window holds
        steps = [model.decode_step(tokens[:, t], cache) for t in range(30, 40)]
    assert cache.nbytes() == 2 * 2 * 2 * window * 2 * model.config.head_dim * 4 * model.config.n_kv_heads // 2
    torch.testing.assert_close(first, full[:, :13], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(more, full[:, 13:30], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 30:40], atol=1e-5, rtol=1e-5)


def manual_attention(q, k, v, window=None):
    """Attention written out head by head: query head h reads key/value head h // (H / G), causal (and windowed)."""
    n_heads, n_kv, steps = q.shape[1], k.shape[1], q.shape[2]
    out = torch.empty_like(q)
    for h in range(n_heads):
        g = h // (n_heads // n_kv)
        scores = q[:, h] @ k[:, g].transpose(-1, -2) / q.shape[-1] ** 0.5          # (B, T, T)
        i, j = torch.arange(steps)[:, None], torch.arange(steps)[None, :]
        allowed = (j <= i) & ((i - j < window) if window else True)
        out[:, h] = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v[:, g]
    return out


@pytest.mark.parametrize("n_kv_heads, window", [(4, None), (2, None), (1, None), (2, 3), (4, 16)])
def test_attention_is_the_textbook_formula_for_mha_gqa_mqa_and_windows(n_kv_heads, window):
    """One function serves them all: with as many KV heads as query heads it is multi-head attention, with one it
    is multi-query, in between each KV head serves a group; a window as long as the sequence is full attention."""
    from lessonlib.models.attention import attend

    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 4, 10, 8, generator=g)
    k, v = torch.randn(2, n_kv_heads, 10, 8, generator=g), torch.randn(2, n_kv_heads, 10, 8, generator=g)
    torch.testing.assert_close(attend(q, k, v, 0, None, window), manual_attention(q, k, v, window),
                               atol=1e-5, rtol=1e-5)


def test_a_window_as_long_as_the_sequence_is_full_attention_and_a_shorter_one_is_not():
    full, windowed, short = make(), make(sliding_window=64), make(sliding_window=4)
    windowed.load_state_dict(full.state_dict())
    short.load_state_dict(full.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(windowed(PROMPTS).logits, full(PROMPTS).logits)
        assert not torch.allclose(short(PROMPTS).logits[:, -1], full(PROMPTS).logits[:, -1])


def test_latent_attention_absorbed_at_decode_equals_rebuilding_keys_and_values():
    """The decode-time form folds W_uk into the query and W_uv after the sum: the same numbers without building
    the cached positions' keys and values (tolerance 1e-5: the products are summed in another order)."""
    from lessonlib.models.attention import latent_attention

    model = make(**VARIANTS["latent attention, grouped"])
    attn = model.h[0].attn
    x = torch.randn(3 * 1, 32, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        for absorbed in (True, False):
            cache = model.new_cache(3, 20)
            store = cache.layers[0]
            store.update(torch.randn(3, 11, 6, generator=torch.Generator().manual_seed(7)), 0)
            out = latent_attention(x, attn.weights(), attn.shape, 3, 1, 11, store, absorbed=absorbed)
            if absorbed:
                absorbed_out = out
    torch.testing.assert_close(absorbed_out, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["multi-head", "grouped-query", "multi-query", "sliding window",
                                     "sliding window, grouped-query", "latent attention",
                                     "latent attention, grouped"])
def test_the_cache_allocates_what_the_cost_model_counts(variant):
    """KV-cache bytes of a cache for 48 positions of 3 sequences (fp32) equal ModelSpec.kv_cache_bytes for the same
    shape: K and V per KV head, only the window for a sliding window, one latent per position for latent
    attention."""
    from lessonlib.models.cost_spec import spec_of

    model = make(**VARIANTS[variant])
    spec = spec_of(model)
    assert model.new_cache(3, 48).nbytes() == spec.kv_cache_bytes(48, 3, bytes_per_value=4)
    assert spec.n_params() == model.n_params()


def test_latent_attention_with_a_window_is_refused_clearly():
    with pytest.raises(ValueError, match="set sliding_window or kv_lora_rank, not both"):
        make(kv_lora_rank=8, sliding_window=4)
