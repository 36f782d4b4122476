"""lessonlib.costs: parameter counts, KV-cache bytes and FLOPs of real model shapes, and clear errors."""
import pytest

from lessonlib.core.units import human_bytes
from lessonlib.costs.presets import model_preset, model_preset_names
from lessonlib.costs.spec import ConfigError, ModelSpec

# Published parameter counts (the sum of tensor sizes in each model's released weights).
PUBLISHED_PARAMS = {
    "gpt2": 124_439_808,
    "qwen2-0.5b": 494_032_768,
    "gemma-2b": 2_506_172_416,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_241_732_096,
    "llama-3-8b": 8_030_261_248,
    "gemma-7b": 8_537_680_896,
    "mixtral-8x7b": 46_702_792_704,
    "llama-2-70b": 68_976_648_192,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_the_published_weights(name):
    assert model_preset(name).n_params() == PUBLISHED_PARAMS[name]


def test_every_preset_is_covered_and_has_a_source():
    assert set(model_preset_names()) == set(PUBLISHED_PARAMS)
    for name in model_preset_names():
        assert model_preset(name).source.startswith("https://huggingface.co/"), name


def test_mixtral_activates_two_of_eight_experts():
    mixtral = model_preset("mixtral-8x7b")
    assert mixtral.n_active_params() == 12_879_925_248
    dense = model_preset("mistral-7b")
    assert dense.n_active_params() == dense.n_params()


def test_kv_cache_bytes_follow_the_formula_with_gqa_and_sliding_window():
    llama = model_preset("llama-2-7b")
    assert llama.kv_cache_bytes(4096) == 2 * 32 * 32 * 128 * 4096 * 2 == 2 * 1024**3
    assert llama.kv_cache_bytes(10, batch_size=3, bytes_per_value=1) == 2 * 32 * 32 * 128 * 10 * 3
    mistral = model_preset("mistral-7b")  # 8 KV heads, window 4096
    assert mistral.kv_cache_bytes(1000) == 2 * 32 * 8 * 128 * 1000 * 2
    assert mistral.kv_cache_bytes(100_000) == mistral.kv_cache_bytes(4096)
    gemma = model_preset("gemma-7b")  # head_dim 256 although hidden/heads = 192
    assert gemma.kv_cache_bytes(1) == 2 * 28 * 16 * 256 * 2


def test_flops_per_token_is_two_per_matmul_parameter_plus_attention():
    gpt2 = model_preset("gpt2")
    body = gpt2.n_params() - gpt2.embedding_params() + gpt2.vocab_size * gpt2.hidden_size  # tied head
    per_position = 4 * 12 * 12 * 64  # q.k and weights.v: 2 FLOPs x head_dim, per head, per layer
    assert gpt2.flops_per_token(0) == 2 * body + per_position  # the first token attends to itself
    assert gpt2.flops_per_token(100) - gpt2.flops_per_token(0) == per_position * 100


@pytest.mark.parametrize("name", ["gpt2", "mistral-7b", "mixtral-8x7b", "gemma-2b"])
def test_prefill_equals_decoding_the_prompt_token_by_token_minus_the_unneeded_heads(name):
    # Prefill computes the output projection once (last position); token-by-token, every step does.
    model = model_preset(name)
    n = 5000  # longer than Mistral's 4096-token window
    stepwise = sum(model.flops_per_token(c) for c in range(n))
    assert model.prefill_flops(n) == stepwise - (n - 1) * 2 * model.lm_head_matmul_params()
    assert model.prefill_flops(n, batch_size=3) == 3 * model.prefill_flops(n)


def test_decode_bytes_are_weights_once_plus_every_sequence_cache():
    llama = model_preset("llama-2-7b")
    weights = llama.matmul_params_per_token() * 2
    assert llama.decode_bytes(0) == weights + llama.kv_cache_bytes(1)
    assert llama.decode_bytes(999, batch_size=8) == weights + llama.kv_cache_bytes(1000, 8)
    assert llama.prefill_bytes(1000) == weights + llama.kv_cache_bytes(1000)


def test_activations_are_small_next_to_weights_for_decode():
    llama = model_preset("llama-2-7b")
    assert llama.activation_bytes(1) < 1e-3 * llama.weight_bytes()
    assert llama.activation_bytes(4096, 4) == 4 * llama.activation_bytes(4096, 1)


def test_qwen2_window_is_ignored_unless_enabled():
    assert model_preset("qwen2-0.5b").sliding_window is None


def test_config_key_overrides_architecture_default():
    config = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 16}
    plain = ModelSpec.from_hf_config(config)
    biased = ModelSpec.from_hf_config({**config, "attention_bias": True})
    assert biased.n_params() - plain.n_params() == 8 + 8 + 8 + 8  # q, k, v, o biases


@pytest.mark.parametrize("config, message", [
    ({"model_type": "bert"}, "model_type 'bert'"),
    ({"model_type": "llama", "vocab_size": 10, "num_hidden_layers": 2, "num_attention_heads": 4},
     "hidden_size or n_embd"),
    ({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 0,
      "num_attention_heads": 2}, "num_hidden_layers must be a positive integer"),
    ({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
      "num_attention_heads": 4, "num_key_value_heads": 3}, "multiple of num_key_value_heads"),
    ({"model_type": "llama", "vocab_size": 10, "hidden_size": 10, "num_hidden_layers": 1,
      "num_attention_heads": 4}, "set head_dim"),
    ({"model_type": "mixtral", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
      "num_attention_heads": 2, "num_key_value_heads": 2, "num_local_experts": 2, "num_experts_per_tok": 3},
     "exceeds num_local_experts"),
    ({"model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_layer": 1, "n_head": 2}, "n_positions"),
    ([1, 2], "must be a dict"),
])
def test_bad_configs_get_errors_that_name_the_field(config, message):
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_hf_config(config)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(KeyError, match="choose one of: gpt2"):
        model_preset("gpt-5")


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_kv_cache_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="seq_len"):
        model_preset("gpt2").kv_cache_bytes(bad)


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(2 * 1024**3) == "2.0 GiB"
