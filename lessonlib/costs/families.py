"""What a ``config.json`` leaves implicit, by ``model_type``: the structural traits of each model family, the
config keys it reads for each quantity, the defaults transformers assumes for absent keys, the boolean keys that
switch a trait on or off, and the rules that say which layers attend locally and which layers are
mixtures of experts when the config does not list them.

Adding a family is a few lines here: one :class:`Family` entry, built from the pieces below.
:class:`~lessonlib.costs.spec.ModelSpec` reads them; nothing else in the package branches on ``model_type``.
Every entry mirrors the family's modeling and configuration code in Hugging Face transformers (5.x), and
``tests/test_costs_vs_transformers.py`` checks each one against a model built there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class LocalLayers:
    """Which layers attend locally when a config does not list them in ``layer_types``.

    Layer ``i`` (0-based) is local when the window is on (``size_key`` is set and ``enabled_by``, if given, is
    true) and every condition holds: ``(i + 1) % every != 0`` (every ``every``-th layer stays global; 1 = none
    does), ``i >= config[global_below]`` and ``i < config[global_from]``. A non-empty per-layer 0/1 list under
    ``mask_key`` (1 = local) replaces the ``every`` pattern. ``every`` is a number or the config key holding it.
    """
    kind: str = "sliding"                # "sliding" (the last ``window`` positions) or "chunked" (Llama 4)
    size_key: str = "sliding_window"     # the window (or chunk) size
    every: int | str = 1
    enabled_by: str | None = None        # Qwen2/Qwen3: use_sliding_window
    global_below: str | None = None      # Qwen2/Qwen3: max_window_layers
    global_from: str | None = None       # Qwen2-MoE: max_window_layers
    mask_key: str | None = None          # Llama 4: no_rope_layers (1 = a RoPE layer = a chunked layer)
    reads_layer_types: bool = False      # an explicit ``layer_types`` list in the config wins


@dataclass(frozen=True)
class MoeLayers:
    """Which layers of a mixture-of-experts model have a routed MoE MLP (the others a dense MLP of
    ``intermediate_size``). Layer ``i`` is MoE when ``i >= config[first_dense]`` (DeepSeek's
    first_k_dense_replace), ``(i + 1) % config[step] == 0`` (Qwen's decoder_sparse_step, Llama 4's
    interleave_moe_layer_step) and ``i`` is not in ``config[dense_list]`` (Qwen's mlp_only_layers); a list under
    ``moe_list`` (Llama 4's moe_layers), when given, names the MoE layers outright. Unset keys: every layer."""
    first_dense: str | None = None
    step: str | None = None
    dense_list: str | None = None
    moe_list: str | None = None


@dataclass(frozen=True)
class Family:
    """One ``model_type``: see the module docstring."""
    traits: Mapping[str, Any]                          # ModelSpec fields fixed by the architecture
    keys: Mapping[str, str | tuple[str, ...] | None]   # ModelSpec field -> config key(s) it is read from
    defaults: Mapping[str, Any] = field(default_factory=dict)   # transformers' value of an absent config key
    switches: Mapping[str, Mapping[str, tuple[Any, Any]]] = field(default_factory=dict)  # see ``on``
    local: LocalLayers | None = None                   # None: every layer attends globally
    moe: MoeLayers | None = None                       # None: a dense model
    fixed: Mapping[str, Any] = field(default_factory=dict)  # keys transformers implements at one value only
    mlp_ratio: int | None = None                       # MLP width / hidden size when the config gives no width


def on(*traits: str) -> dict[str, tuple[bool, bool]]:
    """A boolean config key that switches these traits on (true) or off (false)."""
    return {trait: (True, False) for trait in traits}


# -- building blocks --------------------------------------------------------------------------------------------
# Traits (see ModelSpec for each): the Llama layout is the base most families start from.
LLAMA = dict(norm="rmsnorm", gated_mlp=True, mlp_bias=False, qkv_bias=False, out_bias=False, positions="rotary",
             tie_word_embeddings=False)
SIZES = {"n_kv_heads": "num_key_value_heads", "head_dim": "head_dim", "intermediate_size": "intermediate_size",
         "max_position_embeddings": "max_position_embeddings"}
EXPERTS = {"n_experts": "num_local_experts", "experts_per_token": "num_experts_per_tok"}
QWEN_EXPERTS = {"n_experts": "num_experts", "experts_per_token": "num_experts_per_tok",
                "moe_intermediate_size": "moe_intermediate_size"}
DEEPSEEK_EXPERTS = {"n_experts": "n_routed_experts", "experts_per_token": "num_experts_per_tok",
                    "moe_intermediate_size": "moe_intermediate_size", "n_shared_experts": "n_shared_experts",
                    "shared_expert_intermediate_size": "moe_intermediate_size"}
NO_HEADS = {"n_kv_heads": None, "head_dim": None}    # latent attention: every head has its own key and value
LATENT = {k: k for k in ("kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")}
TIE = {"tie_word_embeddings": on("tie_word_embeddings")}
ATTENTION_BIAS = {"attention_bias": on("qkv_bias", "out_bias")}   # one switch for q, k, v and o
LLAMA_SWITCHES = {**TIE, **ATTENTION_BIAS, "mlp_bias": on("mlp_bias")}
UNIFORM = LocalLayers()                                            # every layer windowed when a window is set
QWEN_WINDOWS = LocalLayers(enabled_by="use_sliding_window", global_below="max_window_layers", reads_layer_types=True)
ALL_MOE = MoeLayers()
QWEN_MOE = MoeLayers(step="decoder_sparse_step", dense_list="mlp_only_layers")
DEEPSEEK_MOE = MoeLayers(first_dense="first_k_dense_replace")

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        traits=dict(norm="layernorm", gated_mlp=False, mlp_bias=True, qkv_bias=True, out_bias=True,
                    positions="learned", tie_word_embeddings=True),
        keys={"intermediate_size": "n_inner", "max_position_embeddings": ("n_positions", "max_position_embeddings")},
        switches=TIE, mlp_ratio=4),
    "llama": Family(traits=LLAMA, keys=SIZES, switches=LLAMA_SWITCHES, defaults={"intermediate_size": 11008}),
    "granite": Family(traits=LLAMA, keys=SIZES, switches=LLAMA_SWITCHES, defaults={"intermediate_size": 11008}),
    "mistral": Family(
        traits=LLAMA, keys=SIZES, switches=TIE, local=UNIFORM,
        defaults={"intermediate_size": 14336, "num_key_value_heads": 8, "sliding_window": 4096}),
    "ministral": Family(
        traits=LLAMA, keys=SIZES, switches=TIE, local=LocalLayers(reads_layer_types=True),
        defaults={"intermediate_size": 14336, "num_key_value_heads": 8, "sliding_window": 4096}),
    "mixtral": Family(
        traits=LLAMA, keys={**SIZES, **EXPERTS}, switches=TIE, local=UNIFORM, moe=ALL_MOE,
        defaults={"intermediate_size": 14336, "num_key_value_heads": 8, "num_local_experts": 8,
                  "num_experts_per_tok": 2}),
    "phi3": Family(traits=LLAMA, keys=SIZES, switches=TIE, local=UNIFORM,
                   defaults={"intermediate_size": 8192}),
    "phimoe": Family(
        traits={**LLAMA, "norm": "layernorm"}, keys={**SIZES, **EXPERTS},
        switches={**TIE, **ATTENTION_BIAS, "lm_head_bias": on("lm_head_bias")}, local=UNIFORM, moe=ALL_MOE,
        defaults={"intermediate_size": 6400, "num_key_value_heads": 8, "num_local_experts": 16,
                  "num_experts_per_tok": 2}),
    "granitemoe": Family(
        traits=LLAMA, keys={**SIZES, **EXPERTS}, switches={**TIE, **ATTENTION_BIAS}, moe=ALL_MOE,
        defaults={"intermediate_size": 11008, "num_local_experts": 8, "num_experts_per_tok": 2}),
    "qwen2": Family(
        traits={**LLAMA, "qkv_bias": True}, keys=SIZES, switches=TIE, local=QWEN_WINDOWS,
        defaults={"intermediate_size": 22016, "num_key_value_heads": 32, "sliding_window": 4096,
                  "max_window_layers": 28}),
    "qwen2_moe": Family(
        traits={**LLAMA, "qkv_bias": True, "n_shared_experts": 1, "shared_expert_gate": True},
        keys={**SIZES, **QWEN_EXPERTS, "shared_expert_intermediate_size": "shared_expert_intermediate_size"},
        switches={**TIE, "qkv_bias": on("qkv_bias")}, moe=QWEN_MOE,
        local=LocalLayers(every=2, enabled_by="use_sliding_window", global_from="max_window_layers",
                          reads_layer_types=True),
        defaults={"intermediate_size": 5632, "num_key_value_heads": 16, "sliding_window": 4096,
                  "max_window_layers": 28, "num_experts": 60, "num_experts_per_tok": 4,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632}),
    "qwen3": Family(
        traits={**LLAMA, "qk_norm": "shared"}, keys=SIZES, switches={**TIE, **ATTENTION_BIAS},
        local=QWEN_WINDOWS,
        defaults={"intermediate_size": 22016, "num_key_value_heads": 32, "head_dim": 128, "sliding_window": 4096,
                  "max_window_layers": 28}),
    "qwen3_moe": Family(
        traits={**LLAMA, "qk_norm": "shared"}, keys={**SIZES, **QWEN_EXPERTS},
        switches={**TIE, **ATTENTION_BIAS}, local=LocalLayers(enabled_by="use_sliding_window"), moe=QWEN_MOE,
        defaults={"intermediate_size": 6144, "num_key_value_heads": 4, "sliding_window": 4096, "num_experts": 128,
                  "num_experts_per_tok": 8, "moe_intermediate_size": 768}),
    "gemma": Family(
        traits={**LLAMA, "tie_word_embeddings": True}, keys=SIZES, switches={**TIE, **ATTENTION_BIAS},
        defaults={"intermediate_size": 24576, "num_key_value_heads": 16, "head_dim": 256}),
    # Gemma 2 and 3 normalize before and after both the attention and the MLP: four norms per layer.
    "gemma2": Family(
        traits={**LLAMA, "tie_word_embeddings": True, "norms_per_layer": 4}, keys=SIZES,
        switches={**TIE, **ATTENTION_BIAS}, local=LocalLayers(every=2, reads_layer_types=True),
        defaults={"intermediate_size": 9216, "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 4096}),
    "gemma3_text": Family(
        traits={**LLAMA, "tie_word_embeddings": True, "norms_per_layer": 4, "qk_norm": "shared"},
        keys=SIZES, switches={**TIE, **ATTENTION_BIAS},
        local=LocalLayers(every="sliding_window_pattern", reads_layer_types=True),
        defaults={"vocab_size": 262_208, "intermediate_size": 9216, "num_key_value_heads": 4, "head_dim": 256,
                  "sliding_window": 4096, "sliding_window_pattern": 6}),
    # OLMo 2/3 normalize after attention and after the MLP (still two norms), and q and k across all heads.
    "olmo2": Family(traits={**LLAMA, "qk_norm": "across_heads"}, keys=SIZES, switches={**TIE, **ATTENTION_BIAS},
                    defaults={"intermediate_size": 11008}),
    "olmo3": Family(
        traits={**LLAMA, "qk_norm": "across_heads"}, keys=SIZES, switches={**TIE, **ATTENTION_BIAS},
        local=LocalLayers(every=4, reads_layer_types=True),
        defaults={"intermediate_size": 11008, "sliding_window": 4096}),
    "olmoe": Family(
        traits={**LLAMA, "qk_norm": "across_heads"}, keys={**SIZES, **QWEN_EXPERTS, "moe_intermediate_size": None},
        switches={**TIE, **ATTENTION_BIAS}, moe=ALL_MOE,
        defaults={"intermediate_size": 2048, "num_experts": 64, "num_experts_per_tok": 8}),
    "starcoder2": Family(
        traits={**LLAMA, "norm": "layernorm", "gated_mlp": False, "tie_word_embeddings": True},
        keys=SIZES, switches={**TIE, "use_bias": on("qkv_bias", "out_bias", "mlp_bias")},
        local=UNIFORM, defaults={"intermediate_size": 12288, "num_key_value_heads": 2, "use_bias": True}),
    # Cohere: attention and MLP read the same normed input (one norm per layer); LayerNorm without a bias.
    "cohere": Family(
        traits={**LLAMA, "norm": "layernorm_no_bias", "norms_per_layer": 1, "parallel_attention": True,
                "tie_word_embeddings": True},
        keys=SIZES, switches={**TIE, **ATTENTION_BIAS, "use_qk_norm": {"qk_norm": ("per_head", "none")}},
        defaults={"intermediate_size": 22528}),
    "cohere2": Family(
        traits={**LLAMA, "norm": "layernorm_no_bias", "norms_per_layer": 1, "parallel_attention": True,
                "tie_word_embeddings": True},
        keys={**SIZES, "head_dim": None}, switches={**TIE, **ATTENTION_BIAS},
        local=LocalLayers(every="sliding_window_pattern", reads_layer_types=True),
        defaults={"intermediate_size": 22528, "sliding_window": 4096, "sliding_window_pattern": 4}),
    "stablelm": Family(
        traits={**LLAMA, "norm": "layernorm"}, keys={**SIZES, "head_dim": None},
        switches={**TIE, "use_qkv_bias": on("qkv_bias"), "qk_layernorm": {"qk_norm": ("per_head", "none")},
                  "use_parallel_residual": {"parallel_attention": (True, False), "norms_per_layer": (1, 2)}},
        defaults={"intermediate_size": 6912, "num_key_value_heads": 32}),
    # GPT-OSS: biases everywhere (router and experts too), a learned attention sink per head, a window on every
    # other layer.
    "gpt_oss": Family(
        traits={**LLAMA, "attention_sinks": True, "expert_bias": True, "router_bias": True},
        keys={**SIZES, **EXPERTS}, switches={**TIE, **ATTENTION_BIAS},
        local=LocalLayers(every=2, reads_layer_types=True), moe=ALL_MOE,
        defaults={"intermediate_size": 2880, "num_key_value_heads": 8, "head_dim": 64, "sliding_window": 128,
                  "num_local_experts": 128, "num_experts_per_tok": 4, "attention_bias": True}),
    # Llama 4: three RoPE layers with chunked attention, then a global NoPE layer; MoE with a shared expert of
    # the experts' width; dense layers (if any) are intermediate_size_mlp wide; q/k L2-normalized (no weights).
    "llama4_text": Family(
        traits={**LLAMA, "qk_norm": "l2", "n_shared_experts": 1},
        keys={**SIZES, **EXPERTS, "intermediate_size": "intermediate_size_mlp",
              "moe_intermediate_size": "intermediate_size", "shared_expert_intermediate_size": "intermediate_size"},
        switches={**TIE, **ATTENTION_BIAS, "use_qk_norm": {"qk_norm": ("l2", "none")}},
        local=LocalLayers(kind="chunked", size_key="attention_chunk_size", every="no_rope_layer_interval",
                          mask_key="no_rope_layers", reads_layer_types=True),
        moe=MoeLayers(step="interleave_moe_layer_step", moe_list="moe_layers"),
        defaults={"vocab_size": 202_048, "num_key_value_heads": 8, "head_dim": 128, "num_local_experts": 16,
                  "num_experts_per_tok": 1, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                  "attention_chunk_size": 8192, "no_rope_layer_interval": 4}),
    # DeepSeek-V2/V3: multi-head latent attention; MoE after the first k dense layers, with shared experts.
    "deepseek_v2": Family(
        traits={**LLAMA, "expert_bias": False}, keys={**SIZES, **LATENT, **DEEPSEEK_EXPERTS, **NO_HEADS},
        switches={**TIE, **ATTENTION_BIAS, "mlp_bias": on("mlp_bias")}, moe=DEEPSEEK_MOE, fixed={"moe_layer_freq": 1},
        defaults={"intermediate_size": 11008, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
                  "qk_nope_head_dim": 128, "v_head_dim": 128, "n_routed_experts": 64, "n_shared_experts": 2,
                  "moe_intermediate_size": 1407, "first_k_dense_replace": 0}),
    "deepseek_v3": Family(
        traits={**LLAMA, "router_score_correction": True},
        keys={**SIZES, **LATENT, **DEEPSEEK_EXPERTS, **NO_HEADS},
        switches={**TIE, **ATTENTION_BIAS}, moe=DEEPSEEK_MOE, fixed={"moe_layer_freq": 1},
        defaults={"intermediate_size": 18432, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
                  "qk_nope_head_dim": 128, "v_head_dim": 128, "n_routed_experts": 256, "n_shared_experts": 1,
                  "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "first_k_dense_replace": 3}),
    # GLM-4.5 (glm4_moe): DeepSeek-V3's MoE layout with ordinary GQA attention; its attention_bias covers q, k, v.
    "glm4_moe": Family(
        traits={**LLAMA, "router_score_correction": True}, keys={**SIZES, **DEEPSEEK_EXPERTS},
        switches={**TIE, "attention_bias": on("qkv_bias"), "use_qk_norm": {"qk_norm": ("shared", "none")}},
        moe=DEEPSEEK_MOE,
        defaults={"intermediate_size": 10944, "num_key_value_heads": 8, "n_routed_experts": 128,
                  "n_shared_experts": 1, "num_experts_per_tok": 8, "moe_intermediate_size": 1408,
                  "first_k_dense_replace": 1}),
}

# Compatibility views of the table (traits and defaults by model_type).
ARCHITECTURES: dict[str, Mapping[str, Any]] = {name: f.traits for name, f in FAMILIES.items()}
FAMILY_DEFAULTS: dict[str, Mapping[str, Any]] = {name: f.defaults for name, f in FAMILIES.items()}

# config.json spells the same quantity differently across families; the first key present wins.
FIELD_NAMES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "n_layers": ("num_hidden_layers", "n_layer"),
    "n_heads": ("num_attention_heads", "n_head"),
    "vocab_size": ("vocab_size",),
}

# -- keys that describe structure (for the error about a config no family reads) --------------------------------
_STRUCTURAL = re.compile(r"size|dim|layer|head|expert|rank|window|bias|norm|shared|moe|dense|sparse|tie|parallel|"
                         r"vocab|embd|inner|position|chunk|lora|^n_|^num_|group|sink|qk|kv|mlp|attention|ffn|width|"
                         r"depth|block|hidden")
_NOT_STRUCTURAL = re.compile(r"eps|epsilon|dropout|pdrop|token_id|rope|theta|initializer|scal|factor|temperature|"
                             r"aux|jitter|output_|use_cache|dtype|version|architectures|prob|softcap|multiplier|"
                             r"act|range|clip|alpha|limit|coef|_implementation")


def structural_keys(config: Mapping[str, Any]) -> list[str]:
    """The keys of ``config`` that look like they describe the model's structure (sizes, counts, layouts,
    switches), as opposed to numerics (epsilons, dropout, RoPE) and bookkeeping (token ids, dtype)."""
    return [key for key in config if not key.startswith("_") and key != "model_type"
            and _STRUCTURAL.search(key) and not _NOT_STRUCTURAL.search(key)]
