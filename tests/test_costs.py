"""lessonlib.costs: parameter counts, KV-cache bytes and FLOPs of real model shapes, and clear errors."""
import dataclasses

import numpy as np
import pytest

from lessonlib.core.units import human_bytes
from lessonlib.costs.hardware import hardware_preset
from lessonlib.costs.presets import model_preset, model_preset_names
from lessonlib.costs.roofline import decode_step, generation
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


# Headline counts as the model cards state them (rounded): (total, active per token). Tolerances: 0.2% on the
# total (the cards give three significant figures), 2% on the active count (DeepSeek-V3's "37B" is 37.55B
# exactly; Qwen's "3.3B" is 3.35B). gpt-oss-20b's card counts active parameters without the embedding table (a
# lookup, not a product), so its check subtracts it; the other cards include it.
HEADLINES = {
    "qwen3-8b": (8.19e9, None),
    "gemma-2-9b": (9.24e9, None),
    "qwen3-30b-a3b": (30.5e9, 3.3e9),
    "gpt-oss-20b": (20.9e9, 3.6e9),
    "deepseek-v3": (671e9, 37e9),
}
ACTIVE_WITHOUT_EMBEDDING = {"gpt-oss-20b"}
# The exact counts (equal to transformers', see test_costs_vs_transformers.py), pinned here without torch.
EXACT = {
    "qwen3-8b": (8_190_735_360, 8_190_735_360),
    "gemma-2-9b": (9_241_705_984, 9_241_705_984),
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704),
    "gpt-oss-20b": (20_914_757_184, 4_187_440_704),
    "deepseek-v3": (671_026_404_352, 37_552_282_624),
}


@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_new_presets_match_their_model_cards(name):
    model = model_preset(name)
    total, active = HEADLINES[name]
    assert model.n_params() == pytest.approx(total, rel=0.002)
    if active is not None:
        counted = model.n_active_params() - (model.embedding_params() if name in ACTIVE_WITHOUT_EMBEDDING else 0)
        assert counted == pytest.approx(active, rel=0.02)
    assert (model.n_params(), model.n_active_params()) == EXACT[name]


def test_every_preset_is_covered_and_has_a_source():
    assert set(model_preset_names()) == set(PUBLISHED_PARAMS) | set(HEADLINES)
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


# -- the structures of current families ------------------------------------------------------------------------
def test_alternating_sliding_and_global_layers_cap_only_the_sliding_half():
    gemma = model_preset("gemma-2-9b")  # 42 layers alternating sliding (window 4096) and global; 8 KV heads of 256
    assert gemma.layer_kinds()[:4] == ("sliding", "full", "sliding", "full")
    per_layer = 2 * 8 * 256 * 2  # key and value, bf16
    for n in (1, 4096, 4097, 100_000):
        assert gemma.kv_cache_bytes(n) == 21 * per_layer * n + 21 * per_layer * min(n, 4096)
    assert gemma.kv_cache_bytes_per_token() == 42 * per_layer
    # Decode reads what each layer attends to: the same as the cache after writing the new token.
    assert gemma.decode_kv_bytes(9000) == gemma.kv_cache_bytes(9001)
    oss = model_preset("gpt-oss-20b")  # 24 layers, every other one with a 128-token window
    assert oss.kv_cache_bytes(10_000) == 12 * 2 * 8 * 64 * 2 * (10_000 + 128)


def test_latent_attention_caches_the_latent_and_the_rope_key():
    v3 = model_preset("deepseek-v3")
    assert v3.latent_attention and v3.kv_values_per_layer() == 512 + 64
    assert v3.kv_cache_bytes(1) == 61 * 576 * 2
    decompressed = v3.n_heads * (v3.qk_nope_head_dim + v3.qk_rope_head_dim + v3.value_head_dim)  # 40,960
    assert decompressed / v3.kv_values_per_layer() == pytest.approx(71.1, abs=0.1)
    # Absorbed attention: per head and position, scores over latent + RoPE key (576) and a sum of latents (512).
    assert v3.flops_per_token(1001) - v3.flops_per_token(1000) == 2 * 61 * 128 * (576 + 512)


def test_moe_layers_shared_experts_and_active_params_of_deepseek_v3():
    v3 = model_preset("deepseek-v3")
    assert v3.moe_layer_indices() == tuple(range(3, 61))  # first_k_dense_replace = 3
    expert = 3 * 7168 * 2048
    assert v3.expert_params() == expert
    assert v3.shared_experts_params() == expert  # one shared expert of the routed width
    assert v3.moe_mlp_params() == 256 * expert + expert + 256 * 7168
    assert v3.dense_mlp_params() == 3 * 7168 * 18432
    assert v3.n_active_params() == v3.n_params() - 58 * (256 - 8) * expert
    assert v3.n_params() == (v3.embedding_params() + v3.attention_params() + v3.mlp_params() + v3.norm_params()
                             + v3.lm_head_params())


def test_qwen3_moe_every_layer_routes_8_of_128():
    qwen = model_preset("qwen3-30b-a3b")
    expert = 3 * 2048 * 768
    assert qwen.n_moe_layers() == 48 and qwen.expert_params() == expert
    assert qwen.n_params() - qwen.n_active_params() == 48 * (128 - 8) * expert


LLAMA4_SMALL = {"model_type": "llama4_text", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 8,
                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 48,
                "intermediate_size_mlp": 96, "num_local_experts": 4, "interleave_moe_layer_step": 2,
                "attention_chunk_size": 64}


def test_chunked_layers_attend_within_their_chunk():
    spec = ModelSpec.from_hf_config(LLAMA4_SMALL)
    assert spec.layer_kinds() == ("chunked", "chunked", "chunked", "full") * 2
    assert spec.moe_layer_indices() == (1, 3, 5, 7)
    per_layer = 2 * 2 * 16
    # The cache holds up to a chunk per chunked layer; a token attends only to its own chunk so far.
    assert spec.kv_cache_bytes(1000) == 2 * (6 * per_layer * 64 + 2 * per_layer * 1000)
    assert spec.decode_kv_bytes(1000) == 2 * (6 * per_layer * (1000 % 64 + 1) + 2 * per_layer * 1001)
    per_position = spec.attention_flops(1, n_layers=1)
    assert spec.attention_flops_per_token(128) == per_position * (6 * 1 + 2 * 129)  # first token of a new chunk


@pytest.mark.parametrize("name", ["gemma-2-9b", "gpt-oss-20b", "deepseek-v3", "llama4-small"])
def test_prefill_equals_the_stepwise_sum_for_mixed_layers(name):
    model = ModelSpec.from_hf_config(LLAMA4_SMALL) if name == "llama4-small" else model_preset(name)
    n = 300 if name == "llama4-small" else 5000
    stepwise = sum(model.flops_per_token(c) for c in range(n))
    assert model.prefill_flops(n) == stepwise - (n - 1) * 2 * model.lm_head_matmul_params()


@pytest.mark.parametrize("name", ["gemma-2-9b", "deepseek-v3", "llama4-small"])
def test_a_whole_request_sums_its_decode_steps(name):
    model = ModelSpec.from_hf_config(LLAMA4_SMALL) if name == "llama4-small" else model_preset(name)
    a100 = hardware_preset("a100-80gb")
    request = generation(model, a100, "bf16", prompt_len=4000, new_tokens=200, batch_size=2)
    steps = sum(decode_step(model, a100, "bf16", c, 2).seconds for c in range(4000, 4200))
    assert request.decode_seconds == pytest.approx(steps, rel=1e-12)


def test_vectorized_counts_equal_the_scalar_ones():
    for model in (model_preset("gemma-2-9b"), ModelSpec.from_hf_config(LLAMA4_SMALL)):
        contexts = np.arange(0, 9000, 97)
        assert list(model.attention_flops_per_token(contexts)) == [model.attention_flops_per_token(int(c))
                                                                  for c in contexts]
        assert list(model.decode_kv_values(contexts)) == [model.decode_kv_values(int(c)) for c in contexts]


def test_structured_pruning_keeps_the_layer_pattern():
    gemma = model_preset("gemma-2-9b")
    half = dataclasses.replace(gemma, n_kv_heads=4, n_heads=8)
    assert half.layer_kinds() == gemma.layer_kinds() and half.kv_cache_bytes(8192) == gemma.kv_cache_bytes(8192) / 2


def test_qk_norms_sinks_and_norms_per_layer_are_counted():
    base = {"vocab_size": 10, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 32}
    llama = ModelSpec.from_hf_config({"model_type": "llama", **base})
    assert ModelSpec.from_hf_config({"model_type": "qwen3", **base, "head_dim": 4}).n_params() \
        - llama.n_params() == 2 * 4  # one head_dim-wide weight for q, one for k
    assert ModelSpec.from_hf_config({"model_type": "olmo2", **base}).n_params() - llama.n_params() == 16 + 8
    assert ModelSpec.from_hf_config({"model_type": "cohere", **base, "use_qk_norm": True}).qk_norm == "per_head"
    gemma2 = ModelSpec.from_hf_config({"model_type": "gemma2", **base, "head_dim": 4, "sliding_window": 8})
    assert gemma2.norms_per_layer == 4
    oss = ModelSpec.from_hf_config({"model_type": "gpt_oss", **base, "head_dim": 4, "num_local_experts": 2,
                                    "num_experts_per_tok": 1})
    assert oss.attention_sinks and oss.router_bias and oss.expert_bias


def test_qwen_windows_only_when_enabled_and_above_max_window_layers():
    config = {"model_type": "qwen3", "vocab_size": 10, "hidden_size": 16, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32, "sliding_window": 8,
              "max_window_layers": 2}
    assert ModelSpec.from_hf_config(config).layer_kinds() == ("full",) * 4
    assert ModelSpec.from_hf_config({**config, "use_sliding_window": True}).layer_kinds() == \
        ("full", "full", "sliding", "sliding")


SMALL = {"vocab_size": 10, "hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 4,
         "intermediate_size": 32}
DEEPSEEK = {"model_type": "deepseek_v3", **SMALL, "kv_lora_rank": 8, "q_lora_rank": 8, "qk_rope_head_dim": 2,
            "qk_nope_head_dim": 4, "v_head_dim": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 8, "first_k_dense_replace": 1}


@pytest.mark.parametrize("config, message", [
    ({"model_type": "gemma2", **SMALL, "sliding_window": 8, "layer_types": ["full_attention"] * 3},
     "layer_types must list"),
    ({"model_type": "gemma2", **SMALL, "sliding_window": 8, "layer_types": ["full_attention", "global"] * 2},
     "layer_types must list"),
    ({"model_type": "gemma2", **SMALL, "sliding_window": 8, "layer_types": ["chunked_attention"] * 4},
     "layer_types: gemma2 has no chunked layers"),
    ({"model_type": "gemma2", **SMALL, "sliding_window": None, "layer_types": ["sliding_attention"] * 4},
     "no sliding_window"),
    ({"model_type": "gemma2", **SMALL, "sliding_window": 0}, "sliding_window must be a positive integer"),
    ({"model_type": "qwen3", **SMALL, "num_key_value_heads": 2, "use_sliding_window": "yes"},
     "use_sliding_window must be true or false"),
    ({"model_type": "llama", **SMALL, "attention_bias": "yes"}, "attention_bias must be true or false"),
    ({"model_type": "qwen3_moe", **SMALL, "num_key_value_heads": 2, "mlp_only_layers": [7]},
     "mlp_only_layers must list layer indices between 0 and 3"),
    ({"model_type": "qwen3_moe", **SMALL, "num_key_value_heads": 2, "decoder_sparse_step": 0},
     "decoder_sparse_step must be a positive integer"),
    ({**DEEPSEEK, "first_k_dense_replace": 9}, "first_k_dense_replace must be a number of layers between 0 and 4"),
    ({**DEEPSEEK, "moe_layer_freq": 2}, "moe_layer_freq = 2 is not supported"),
    ({**DEEPSEEK, "kv_lora_rank": 0}, "kv_lora_rank must be a positive integer"),
    ({**DEEPSEEK, "qk_rope_head_dim": None}, "no qk_rope_head_dim"),
    ({**DEEPSEEK, "n_shared_experts": -1}, "n_shared_experts must be a non-negative integer"),
    ({**DEEPSEEK, "model_type": "deepseek_v2", "num_experts_per_tok": None}, "no num_experts_per_tok"),
    ({**DEEPSEEK, "num_experts_per_tok": 5}, r"num_experts_per_tok \(5\) exceeds n_routed_experts \(4\)"),
    ({**LLAMA4_SMALL, "no_rope_layers": [1, 0]}, "no_rope_layers must list"),
    ({**LLAMA4_SMALL, "moe_layers": [8]}, "moe_layers must list layer indices between 0 and 7"),
])
def test_malformed_values_get_errors_that_name_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_hf_config(config)


def test_an_unknown_model_type_lists_the_structural_keys_it_could_not_read():
    config = {"model_type": "mamba", "vocab_size": 50280, "hidden_size": 768, "state_size": 16,
              "num_hidden_layers": 24, "expand": 2, "conv_kernel": 4, "time_step_rank": 48, "rms_norm_eps": 1e-5,
              "bos_token_id": 0, "torch_dtype": "float32", "_name_or_path": "state-spaces/mamba-130m"}
    with pytest.raises(ConfigError) as error:
        ModelSpec.from_hf_config(config)
    message = str(error.value)
    assert "model_type 'mamba' is not one this course models" in message and "deepseek_v3" in message
    unread = message.split("could not be interpreted: ")[1]
    for key in ("vocab_size", "hidden_size", "state_size", "num_hidden_layers", "time_step_rank"):
        assert key in unread
    for key in ("rms_norm_eps", "bos_token_id", "torch_dtype", "_name_or_path"):
        assert key not in unread
