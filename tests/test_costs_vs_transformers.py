"""The cost model against Hugging Face transformers, family by family.

* ModelSpec.n_params() equals the parameter count of the same config built in transformers, for every shipped
  preset, for variants that exercise each structural switch of each supported model_type (GQA, explicit
  head_dim, tied or untied embeddings, biases, q/k norms, sinks, windows on some layers, MoE on some layers,
  shared experts, latent attention), and for each family's defaults (a config that leaves out the optional
  keys). These models are built on the meta device: no weights are allocated and nothing is downloaded.
* KV-cache bytes equal the layout of the cache transformers fills when a tiny copy of the model (random weights,
  on the CPU) reads a prompt longer than its window: the values each layer stores per position, and which layers
  keep only a window of positions.
* Active parameters of MoE models equal the total minus the routed experts a token leaves idle, counted from
  the experts' tensors in the built model, and by hand for a DeepSeek-V3-shaped and a Qwen3-MoE-shaped config.
"""
import json
import re

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lessonlib.costs.families import FAMILIES  # noqa: E402
from lessonlib.costs.presets import model_preset_names  # noqa: E402
from lessonlib.costs.spec import ModelSpec  # noqa: E402

from .conftest import REPO  # noqa: E402


def hf_config(config: dict):
    return transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if not k.startswith("_")})


def build_on_meta(config: dict):
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(hf_config(config))


def transformers_param_count(config: dict) -> int:
    return sum(p.numel() for p in build_on_meta(config).parameters())  # parameters() counts a tied matrix once


@pytest.mark.parametrize("name", model_preset_names())
def test_shipped_presets_match_transformers(name):
    config = json.loads((REPO / "lessonlib" / "data" / "models" / f"{name}.json").read_text())
    assert ModelSpec.from_hf_config(config).n_params() == transformers_param_count(config)


SMALL = dict(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=8,
             max_position_embeddings=128)
DEEP = {**SMALL, "num_hidden_layers": 6}
LATENT = dict(kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=24)
WINDOW = 16   # every windowed variant uses it; the KV test reads prompts longer than it
VARIANTS = {
    "llama_mha_untied": {"model_type": "llama", **SMALL},
    "llama_gqa_tied": {"model_type": "llama", **SMALL, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "llama_mqa_explicit_head_dim": {"model_type": "llama", **SMALL, "num_key_value_heads": 1, "head_dim": 24},
    "llama_attention_and_mlp_bias": {"model_type": "llama", **SMALL, "attention_bias": True, "mlp_bias": True},
    "mistral_gqa_window": {"model_type": "mistral", **SMALL, "num_key_value_heads": 4, "sliding_window": 32},
    "mistral_tied": {"model_type": "mistral", **SMALL, "tie_word_embeddings": True},
    "mixtral_4_experts_top1": {"model_type": "mixtral", **SMALL, "num_key_value_heads": 2,
                               "num_local_experts": 4, "num_experts_per_tok": 1},
    "mixtral_8_experts_top2_tied": {"model_type": "mixtral", **SMALL, "num_local_experts": 8,
                                    "num_experts_per_tok": 2, "tie_word_embeddings": True},
    "qwen2_untied": {"model_type": "qwen2", **SMALL, "num_key_value_heads": 2},
    "qwen2_tied": {"model_type": "qwen2", **SMALL, "num_key_value_heads": 4, "tie_word_embeddings": True},
    "gemma_head_dim_differs": {"model_type": "gemma", **SMALL, "num_key_value_heads": 1, "head_dim": 32},
    "gemma_untied": {"model_type": "gemma", **SMALL, "num_key_value_heads": 8, "head_dim": 8,
                     "tie_word_embeddings": False},
    # Keys left out: transformers fills in each family's own defaults (Gemma: 16 KV heads of 256).
    "gemma_family_defaults": {"model_type": "gemma", **SMALL, "num_attention_heads": 16},
    "mixtral_family_defaults": {"model_type": "mixtral", **SMALL},
    "gpt2_default_inner": {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 64, "n_layer": 3, "n_head": 4,
                           "n_positions": 256},
    "gpt2_explicit_inner": {"model_type": "gpt2", "vocab_size": 500, "n_embd": 48, "n_layer": 2, "n_head": 6,
                            "n_positions": 64, "n_inner": 100},
    # -- the families current models use ----------------------------------------------------------------------
    "granite_biases": {"model_type": "granite", **SMALL, "num_key_value_heads": 2, "attention_bias": True,
                       "mlp_bias": True},
    "ministral_layer_types": {"model_type": "ministral", **SMALL, "num_hidden_layers": 4, "num_key_value_heads": 2,
                              "head_dim": 8, "sliding_window": WINDOW,
                              "layer_types": ["sliding_attention", "full_attention"] * 2},
    "phi3_window": {"model_type": "phi3", **SMALL, "num_key_value_heads": 4, "sliding_window": WINDOW,
                    "pad_token_id": None},
    "phimoe_biases": {"model_type": "phimoe", **SMALL, "num_key_value_heads": 2, "num_local_experts": 4,
                      "num_experts_per_tok": 2, "attention_bias": True, "lm_head_bias": True},
    "granitemoe_top1": {"model_type": "granitemoe", **SMALL, "num_local_experts": 4, "num_experts_per_tok": 1,
                        "attention_bias": True},
    "qwen2_windows_above_max_window_layers": {"model_type": "qwen2", **DEEP, "num_key_value_heads": 2,
                                              "use_sliding_window": True, "sliding_window": WINDOW,
                                              "max_window_layers": 3},
    "qwen2_moe_sparse_step_and_mlp_only": {
        "model_type": "qwen2_moe", **DEEP, "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 48, "shared_expert_intermediate_size": 96, "decoder_sparse_step": 2,
        "mlp_only_layers": [3]},
    "qwen2_moe_windows_no_qkv_bias": {
        "model_type": "qwen2_moe", **DEEP, "num_key_value_heads": 4, "num_experts": 4, "num_experts_per_tok": 1,
        "moe_intermediate_size": 48, "shared_expert_intermediate_size": 32, "use_sliding_window": True,
        "sliding_window": WINDOW, "max_window_layers": 4, "qkv_bias": False},
    "qwen3_head_dim_bias": {"model_type": "qwen3", **SMALL, "num_key_value_heads": 2, "head_dim": 16,
                            "attention_bias": True},
    "qwen3_windows_tied": {"model_type": "qwen3", **DEEP, "num_key_value_heads": 2, "head_dim": 16,
                           "use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 2,
                           "tie_word_embeddings": True},
    "qwen3_moe_mlp_only": {"model_type": "qwen3_moe", **SMALL, "num_hidden_layers": 4, "num_key_value_heads": 2,
                           "head_dim": 16, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                           "mlp_only_layers": [0]},
    "qwen3_moe_window": {"model_type": "qwen3_moe", **SMALL, "num_key_value_heads": 4, "num_experts": 4,
                         "num_experts_per_tok": 2, "moe_intermediate_size": 32, "use_sliding_window": True,
                         "sliding_window": WINDOW},
    "gemma2_alternating": {"model_type": "gemma2", **SMALL, "num_hidden_layers": 4, "num_key_value_heads": 4,
                           "head_dim": 16, "sliding_window": WINDOW},
    "gemma3_pattern_3": {"model_type": "gemma3_text", **SMALL, "num_hidden_layers": 7, "num_key_value_heads": 2,
                         "head_dim": 16, "sliding_window": WINDOW, "sliding_window_pattern": 3},
    "gemma3_layer_types_untied": {"model_type": "gemma3_text", **SMALL, "num_hidden_layers": 3,
                                  "num_key_value_heads": 2, "head_dim": 16, "sliding_window": WINDOW,
                                  "layer_types": ["full_attention", "sliding_attention", "full_attention"],
                                  "tie_word_embeddings": False},
    "olmo2_gqa_bias": {"model_type": "olmo2", **SMALL, "num_key_value_heads": 2, "attention_bias": True},
    "olmo3_windows": {"model_type": "olmo3", **SMALL, "num_hidden_layers": 5, "num_key_value_heads": 4,
                      "sliding_window": WINDOW},
    "olmoe_top2": {"model_type": "olmoe", **SMALL, "num_key_value_heads": 4, "num_experts": 8,
                   "num_experts_per_tok": 2},
    "deepseek_v2_latent_shared_first_dense_biases": {
        "model_type": "deepseek_v2", **SMALL, "num_hidden_layers": 3, **LATENT, "n_routed_experts": 8,
        "num_experts_per_tok": 2, "n_shared_experts": 2, "moe_intermediate_size": 40, "first_k_dense_replace": 1,
        "attention_bias": True, "mlp_bias": True},
    "deepseek_v2_lite_no_q_lora": {
        "model_type": "deepseek_v2", **SMALL, **LATENT, "q_lora_rank": None, "n_routed_experts": 4,
        "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 40},
    "deepseek_v3_latent_shared_first_dense": {
        "model_type": "deepseek_v3", **SMALL, "num_hidden_layers": 4, **LATENT, "n_routed_experts": 8,
        "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 40, "first_k_dense_replace": 2,
        "n_group": 2, "topk_group": 1},
    "starcoder2_window": {"model_type": "starcoder2", **SMALL, "num_key_value_heads": 2, "sliding_window": WINDOW},
    "starcoder2_no_bias_untied": {"model_type": "starcoder2", **SMALL, "num_key_value_heads": 4, "use_bias": False,
                                  "tie_word_embeddings": False},
    "cohere_qk_norm": {"model_type": "cohere", **SMALL, "num_key_value_heads": 4, "use_qk_norm": True},
    "cohere_bias_untied": {"model_type": "cohere", **SMALL, "attention_bias": True, "tie_word_embeddings": False},
    "cohere2_windows": {"model_type": "cohere2", **SMALL, "num_hidden_layers": 5, "num_key_value_heads": 2,
                        "sliding_window": WINDOW},
    "stablelm_qkv_bias_qk_norm_parallel": {"model_type": "stablelm", **SMALL, "num_key_value_heads": 4,
                                           "use_qkv_bias": True, "qk_layernorm": True, "use_parallel_residual": True},
    "stablelm_plain": {"model_type": "stablelm", **SMALL, "num_key_value_heads": 8},
    "gpt_oss_sinks_biases_windows": {"model_type": "gpt_oss", **SMALL, "num_hidden_layers": 4,
                                     "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 4,
                                     "num_experts_per_tok": 2, "sliding_window": WINDOW},
    "gpt_oss_no_attention_bias": {"model_type": "gpt_oss", **SMALL, "num_key_value_heads": 4, "head_dim": 8,
                                  "num_local_experts": 4, "num_experts_per_tok": 1, "sliding_window": WINDOW,
                                  "attention_bias": False},
    "llama4_interleaved_moe_chunked": {
        "model_type": "llama4_text", **SMALL, "num_hidden_layers": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 48, "intermediate_size_mlp": 96, "num_local_experts": 4, "num_experts_per_tok": 1,
        "interleave_moe_layer_step": 2, "attention_chunk_size": WINDOW},
    "llama4_moe_layers_and_rope_layers_listed": {
        "model_type": "llama4_text", **SMALL, "num_hidden_layers": 3, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 48, "intermediate_size_mlp": 96, "num_local_experts": 4, "num_experts_per_tok": 2,
        "moe_layers": [1], "attention_chunk_size": WINDOW, "no_rope_layers": [1, 0, 1]},
    "glm4_moe_qk_norm_bias": {"model_type": "glm4_moe", **SMALL, "num_hidden_layers": 3, "num_key_value_heads": 2,
                              "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                              "first_k_dense_replace": 1, "use_qk_norm": True, "attention_bias": True},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_structural_variants_match_transformers(name):
    config = VARIANTS[name]
    assert ModelSpec.from_hf_config(config).n_params() == transformers_param_count(config)


def test_every_supported_model_type_has_variants_and_there_are_at_least_15():
    covered = {config["model_type"] for config in VARIANTS.values()}
    assert covered == set(FAMILIES)
    assert len(FAMILIES) >= 15


def family_defaults_config(model_type: str) -> dict:
    """Only the sizes every config.json carries; everything optional is left to each family's defaults. 32 heads
    are a multiple of every family's default KV-head count; 8 layers show the default window patterns."""
    if model_type == "gpt2":  # GPT-2 has no default for the position table in this course: it must be given
        return {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 64, "n_layer": 8, "n_head": 32, "n_positions": 64}
    config = {"model_type": model_type, "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 8,
              "num_attention_heads": 32}
    if model_type == "deepseek_v2":
        config["num_experts_per_tok"] = 6  # transformers' default is None, which cannot route; real configs say 6
    if model_type == "ministral":
        config["head_dim"] = 8  # transformers' Ministral needs an explicit head_dim; real configs give one
    if model_type == "phi3":
        config["pad_token_id"] = None  # the default pad token (32000) is outside this small vocabulary
    return config


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_family_defaults_match_transformers(model_type):
    config = family_defaults_config(model_type)
    assert ModelSpec.from_hf_config(config).n_params() == transformers_param_count(config)


# -- KV cache: the layout transformers fills ----------------------------------------------------------------------
def filled_cache_layout(config: dict, n_tokens: int) -> list[tuple[int, int, int | None]]:
    """Run a tiny copy of the model (random weights, CPU) over ``n_tokens`` tokens and read the cache it fills:
    for each layer (values stored per position, positions held, window or None for a full layer)."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(config)).eval()
    with torch.no_grad():
        output = model(torch.randint(0, 100, (1, n_tokens)), use_cache=True)
    cache = getattr(output, "cache", None) or output.past_key_values
    layout = []
    for layer in cache.layers:
        keys, values = layer.keys, layer.values  # (batch, heads, positions, width)
        assert keys.shape[2] == values.shape[2]
        per_position = keys.shape[1] * keys.shape[3] + values.shape[1] * values.shape[3]
        layout.append((per_position, keys.shape[2], getattr(layer, "sliding_window", None)))
    return layout


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_kv_cache_bytes_equal_the_cache_transformers_fills(name):
    config = VARIANTS[name]
    spec = ModelSpec.from_hf_config(config)
    n_tokens = 2 * WINDOW + 3
    layout = filled_cache_layout(config, n_tokens)
    assert len(layout) == spec.n_layers
    # Which layers are windowed, and by how much: the same in both.
    spans = {"full": None, "sliding": spec.sliding_window, "chunked": spec.attention_chunk_size}
    assert [window for _, _, window in layout] == [spans[kind] for kind in spec.layer_kinds()]
    # Between steps transformers keeps window - 1 positions of a windowed layer (it appends the next token's key
    # and value before attending); the cost model counts the window, what a layer holds during a step.
    for _, held, window in layout:
        assert held == (n_tokens if window is None else min(n_tokens, window - 1))

    def bytes_at(seq_len: int, bytes_per_value: int = 2) -> int:
        return sum(per_position * (seq_len if window is None else min(seq_len, window))
                   for per_position, _, window in layout) * bytes_per_value

    for seq_len in (0, 1, WINDOW - 1, WINDOW, WINDOW + 1, n_tokens, 10_000):
        assert spec.kv_cache_bytes(seq_len) == bytes_at(seq_len), seq_len
    assert spec.kv_cache_bytes(100, batch_size=3, bytes_per_value=1) == 3 * bytes_at(100, 1)
    assert spec.kv_cache_bytes_per_token() == bytes_at(1)


@pytest.mark.parametrize("name", [n for n in sorted(VARIANTS) if VARIANTS[n]["model_type"].startswith("deepseek")])
def test_latent_attention_caches_the_latent_and_the_rope_key(name):
    """From the attention module's own shapes: kv_a_proj_with_mqa maps the hidden state to the cached part
    (latent + RoPE key); kv_b_proj decompresses the latent into every head's key and value."""
    config = VARIANTS[name]
    spec = ModelSpec.from_hf_config(config)
    attention = build_on_meta(config).model.layers[0].self_attn
    assert spec.kv_values_per_layer() == attention.kv_a_proj_with_mqa.out_features
    assert spec.kv_values_per_layer() == config["kv_lora_rank"] + config["qk_rope_head_dim"]
    decompressed = attention.kv_b_proj.out_features + spec.n_heads * config["qk_rope_head_dim"]
    assert decompressed == spec.n_heads * (spec.head_dim + spec.value_head_dim)  # what a full K/V cache would hold


# -- active parameters ----------------------------------------------------------------------------------------
def routed_experts_by_layer(model) -> dict[int, tuple[int, int]]:
    """{layer index: (number of routed experts, parameters per expert)} from the built model's expert tensors."""
    found = {}
    for module_name, module in model.named_modules():
        if module_name.endswith(".experts"):
            layer = int(re.search(r"layers\.(\d+)\.", module_name).group(1))
            n_experts = module.down_proj.shape[0]
            found[layer] = (n_experts, sum(p.numel() for p in module.parameters()) // n_experts)
    return found


MOE_VARIANTS = [n for n in sorted(VARIANTS) if ModelSpec.from_hf_config(VARIANTS[n]).n_experts > 1]


@pytest.mark.parametrize("name", MOE_VARIANTS)
def test_active_params_are_the_total_minus_the_idle_routed_experts(name):
    config = VARIANTS[name]
    spec = ModelSpec.from_hf_config(config)
    model = build_on_meta(config)
    experts = routed_experts_by_layer(model)
    assert tuple(sorted(experts)) == spec.moe_layer_indices()   # which layers are MoE, and which dense
    k = spec.experts_per_token
    idle = sum((n_experts - k) * per_expert for n_experts, per_expert in experts.values())
    assert spec.n_active_params() == sum(p.numel() for p in model.parameters()) - idle


def test_moe_active_params_match_one_expert_per_slot():
    config = VARIANTS["mixtral_8_experts_top2_tied"]
    spec = ModelSpec.from_hf_config(config)
    dense_equivalent = {**config, "num_local_experts": 2, "num_experts_per_tok": 2}
    # Active parameters = the same model with only k experts, minus the router rows of the idle experts.
    router_rows_idle = spec.n_layers * spec.hidden_size * (8 - 2)
    assert spec.n_active_params() == transformers_param_count(dense_equivalent) + router_rows_idle


def test_deepseek_v3_shaped_counts_by_hand():
    # 4 layers of hidden 64, 8 heads; the first 2 dense (MLP 176), then MoE: 8 routed experts of 40 (2 per token)
    # and 1 shared expert of 40; latent attention with q_lora 48, kv_lora 32, RoPE 8, nope 16, value 24.
    config = VARIANTS["deepseek_v3_latent_shared_first_dense"]
    h, heads, vocab = 64, 8, 1000
    attention = (h * 48 + 48 + 48 * heads * (16 + 8)        # q_a_proj, q_a_layernorm, q_b_proj
                 + h * (32 + 8) + 32 + 32 * heads * (16 + 24)  # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj
                 + heads * 24 * h)                             # o_proj
    dense_mlp, expert, router = 3 * h * 176, 3 * h * 40, 8 * h
    moe_mlp = 8 * expert + 1 * expert + router
    total = 2 * vocab * h + 4 * (attention + 2 * h) + 2 * dense_mlp + 2 * moe_mlp + h
    active = total - 2 * (8 - 2) * expert
    spec = ModelSpec.from_hf_config(config)
    assert spec.n_params() == total == transformers_param_count(config)
    assert spec.n_active_params() == active
    assert spec.kv_cache_bytes_per_token(1) == 4 * (32 + 8)


def test_qwen3_moe_shaped_counts_by_hand():
    # 4 layers of hidden 64; 8 query heads and 2 KV heads of 16 with q/k norms; layer 0 dense (mlp_only_layers),
    # layers 1-3 MoE: 8 experts of 32, 2 per token, no shared expert.
    config = VARIANTS["qwen3_moe_mlp_only"]
    h, vocab = 64, 1000
    attention = h * 8 * 16 + 2 * h * 2 * 16 + 8 * 16 * h + 2 * 16
    dense_mlp, expert, router = 3 * h * 176, 3 * h * 32, 8 * h
    total = 2 * vocab * h + 4 * (attention + 2 * h) + dense_mlp + 3 * (8 * expert + router) + h
    spec = ModelSpec.from_hf_config(config)
    assert spec.n_params() == total == transformers_param_count(config)
    assert spec.n_active_params() == total - 3 * (8 - 2) * expert


WRAPPERS = {  # multimodal configs: the language model is the text_config (and in Gemma 3's, most keys are defaults)
    "gemma3": {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "hidden_size": 64,
                                                       "intermediate_size": 176, "num_attention_heads": 8,
                                                       "num_key_value_heads": 4, "num_hidden_layers": 7,
                                                       "sliding_window": WINDOW}},
    "llama4": {"model_type": "llama4", "text_config": {**VARIANTS["llama4_interleaved_moe_chunked"]}},
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_multimodal_config_is_costed_as_its_language_model(name):
    config = {**WRAPPERS[name], "_name_or_path": f"org/{name}"}
    spec = ModelSpec.from_hf_config(config)
    assert spec.name == f"org/{name} (language model)"
    with torch.device("meta"):
        text_model = transformers.AutoModelForCausalLM.from_config(hf_config(config).text_config)
    assert spec.n_params() == sum(p.numel() for p in text_model.parameters())


def test_family_default_window_and_explicit_null():
    assert ModelSpec.from_hf_config({"model_type": "mistral", **SMALL}).sliding_window == 4096
    assert ModelSpec.from_hf_config({"model_type": "mistral", **SMALL, "sliding_window": None}).sliding_window is None


def test_inconsistent_family_default_is_an_error_not_a_guess():
    # Qwen2 defaults to 32 KV heads: with 8 attention heads that is not a valid grouping.
    with pytest.raises(ValueError, match="num_key_value_heads"):
        ModelSpec.from_hf_config({"model_type": "qwen2", **SMALL})
