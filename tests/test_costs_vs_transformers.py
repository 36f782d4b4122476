"""ModelSpec.n_params() equals the parameter count of the same config built in Hugging Face transformers, for
every family the course uses and for variants that exercise each structural switch (GQA, explicit head_dim,
tied or untied embeddings, biases, MoE expert counts). Models are built on the meta device: no weights are
allocated and nothing is downloaded."""
import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lessonlib.costs.presets import model_preset_names  # noqa: E402
from lessonlib.costs.spec import ModelSpec  # noqa: E402

from .conftest import REPO  # noqa: E402


def transformers_param_count(config: dict) -> int:
    hf_config = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    return sum(p.numel() for p in model.parameters())  # parameters() counts a tied matrix once


@pytest.mark.parametrize("name", model_preset_names())
def test_shipped_presets_match_transformers(name):
    config = json.loads((REPO / "lessonlib" / "data" / "models" / f"{name}.json").read_text())
    assert ModelSpec.from_hf_config(config).n_params() == transformers_param_count(config)


SMALL = dict(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=8,
             max_position_embeddings=128)
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
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_structural_variants_match_transformers(name):
    config = VARIANTS[name]
    assert ModelSpec.from_hf_config(config).n_params() == transformers_param_count(config)


def test_moe_active_params_match_one_expert_per_slot():
    config = VARIANTS["mixtral_8_experts_top2_tied"]
    spec = ModelSpec.from_hf_config(config)
    dense_equivalent = {**config, "num_local_experts": 2, "num_experts_per_tok": 2}
    # Active parameters = the same model with only k experts, minus the router rows of the idle experts.
    router_rows_idle = spec.n_layers * spec.hidden_size * (8 - 2)
    assert spec.n_active_params() == transformers_param_count(dense_equivalent) + router_rows_idle


def test_family_default_window_and_explicit_null():
    assert ModelSpec.from_hf_config({"model_type": "mistral", **SMALL}).sliding_window == 4096
    assert ModelSpec.from_hf_config({"model_type": "mistral", **SMALL, "sliding_window": None}).sliding_window is None


def test_inconsistent_family_default_is_an_error_not_a_guess():
    # Qwen2 defaults to 32 KV heads: with 8 attention heads that is not a valid grouping.
    with pytest.raises(ValueError, match="num_key_value_heads"):
        ModelSpec.from_hf_config({"model_type": "qwen2", **SMALL})
