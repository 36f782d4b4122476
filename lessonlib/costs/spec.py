"""An analytic cost model of decoder-only LLMs: parameters, KV-cache bytes, FLOPs, bytes moved per step.

``ModelSpec.from_hf_config(d)`` reads a dict shaped like a Hugging Face ``config.json``. The fields that set
the model's size (widths, depths, head counts, experts) are read from the config; what a config does not
say (is the MLP gated? does attention carry biases? which norm?) is a property of the architecture, so it
comes from the table ``FAMILIES`` of :mod:`lessonlib.costs.families`, keyed by ``model_type``, and a config
key overrides it where transformers honours one (``attention_bias``, ``mlp_bias``, ``tie_word_embeddings``,
``use_qk_norm``, ...).

Structure is a set of named fields, and every count (parameters, active parameters, KV-cache bytes, FLOPs,
bytes read, activations) is written once in terms of them:

* **attention per layer**: ``layer_types`` says which layers attend to all positions ("full"), to the last
  ``sliding_window`` ("sliding") or to their own ``attention_chunk_size`` chunk ("chunked", Llama 4);
  ``qk_norm``, ``attention_sinks``, biases; **latent attention** (DeepSeek's MLA) when ``kv_lora_rank`` is set.
* **MLP per layer**: ``moe_layers`` says which layers are mixtures of ``n_experts`` experts of
  ``moe_intermediate_size`` (plus ``n_shared_experts`` always-on shared experts and a router); the other layers
  are dense MLPs of ``intermediate_size``.

Conventions: one multiply-accumulate is 2 FLOPs; sizes are in bytes; "per token" means per generated token.
A decode step with ``context_len`` tokens already cached writes the new token's key and value, and the new
token attends to the positions its layer allows (itself included): all ``context_len + 1`` of them in a full
layer, at most ``sliding_window`` in a sliding one, the ones of its own chunk in a chunked one. A sliding layer
holds at most ``sliding_window`` positions during a step (transformers' ``DynamicSlidingWindowLayer`` keeps
``sliding_window - 1`` between steps and appends the new one), a chunked layer at most ``attention_chunk_size``.

**Latent attention (MLA) is counted in its absorbed form**, the way DeepSeek deploys it. The cache holds, per
token and layer, the compressed latent (``kv_lora_rank`` values) and the RoPE key shared by all heads
(``qk_rope_head_dim`` values), not full keys and values: 576 values for DeepSeek-V3 where caching the
decompressed keys and values would take ``n_heads * (qk_nope_head_dim + qk_rope_head_dim + v_head_dim)`` =
40,960 (71x more). The up-projection ``kv_b_proj`` is folded into the query and into the output, so it is
multiplied once per token, and each head scores a position against its latent and RoPE key and sums latents:
``2 * (2 * kv_lora_rank + qk_rope_head_dim)`` FLOPs per head per attended position, in decode and prefill alike.
Hugging Face transformers 5.x caches the same latent and RoPE key (its ``DynamicCache`` layers hold a
``kv_lora_rank``-wide "key" and a ``qk_rope_head_dim``-wide "value" per token; 4.x cached the decompressed keys
and values), but its eager attention re-expands every cached latent through ``kv_b_proj`` at every step,
which the absorbed form avoids: its FLOPs are not these.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..core.checks import require_count
from .families import FAMILIES, FIELD_NAMES, Family, LocalLayers, MoeLayers, structural_keys

LAYER_KINDS = ("full", "sliding", "chunked")
NORMS = ("rmsnorm", "layernorm", "layernorm_no_bias")
QK_NORMS = ("none", "l2", "shared", "per_head", "across_heads")
_HF_LAYER_TYPES = {"full_attention": "full", "sliding_attention": "sliding", "chunked_attention": "chunked"}


class ConfigError(ValueError):
    """A model config that cannot describe a transformer; the message names the field to fix."""


@dataclass(frozen=True)
class AttentionGroup:
    """The layers of a model that share one attention pattern: ``kind`` "full", "sliding" (the last ``span``
    positions) or "chunked" (positions of the same ``span``-long chunk). Position counts accept NumPy arrays."""
    kind: str
    span: int | None
    n_layers: int

    def held(self, seq_len):
        """Positions one layer's cache holds after ``seq_len`` tokens (during the step that writes the last)."""
        return seq_len if self.kind == "full" else _at_most(seq_len, self.span)

    def attended(self, context_len):
        """Positions the token at 0-based position ``context_len`` attends to (itself included)."""
        if self.kind == "chunked":
            return context_len % self.span + 1
        return self.held(context_len + 1)

    def attended_in_prefill(self, n_tokens: int) -> int:
        """Sum over the prompt's positions of how many positions each attends to (causal)."""
        if self.kind == "full":
            return n_tokens * (n_tokens + 1) // 2
        if self.kind == "chunked":
            chunks, rest = divmod(n_tokens, self.span)
            return chunks * self.span * (self.span + 1) // 2 + rest * (rest + 1) // 2
        full = min(n_tokens, self.span)  # positions 1..full attend to themselves and all before them
        return full * (full + 1) // 2 + (n_tokens - full) * self.span


def _at_most(positions, cap):
    return np.minimum(positions, cap) if isinstance(positions, np.ndarray) else min(positions, cap)


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a decoder-only transformer, enough to count its parameters, memory and FLOPs.

    The first fields describe a uniform Llama-style model; the later ones, all optional, describe the
    structures current families add (see the module docstring and each field's comment)."""

    name: str
    model_type: str
    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int                # query/key width per head (latent attention: qk_nope_head_dim + qk_rope_head_dim)
    intermediate_size: int       # width of a dense MLP (and of each expert unless moe_intermediate_size is set)
    norm: str = "rmsnorm"        # "rmsnorm" (weight), "layernorm" (weight and bias), "layernorm_no_bias" (weight)
    gated_mlp: bool = True       # SwiGLU/GeGLU: gate and up projections; False: one up projection (GPT-2)
    mlp_bias: bool = False       # biases in dense MLPs and shared experts
    qkv_bias: bool = False       # biases on the q, k, v projections (latent attention: on q_a_proj, kv_a_proj)
    out_bias: bool = False       # bias on the attention output projection
    positions: str = "rotary"    # "learned" adds a position-embedding table (GPT-2); "rotary" adds no parameters
    max_position_embeddings: int = 0
    tie_word_embeddings: bool = False
    sliding_window: int | None = None   # window of the "sliding" layers (every layer when layer_types is None)
    n_experts: int = 1           # routed experts of an MoE layer; 1 = a dense MLP in every layer
    experts_per_token: int = 1
    # -- attention ------------------------------------------------------------------------------------------
    layer_types: tuple[str, ...] | None = None  # per layer "full", "sliding" or "chunked"; None: all alike
    attention_chunk_size: int | None = None     # chunk of the "chunked" layers (Llama 4)
    v_head_dim: int | None = None               # value width per head; None: head_dim
    qk_norm: str = "none"        # "shared": one head_dim-wide weight for all heads (Qwen3, Gemma 3); "per_head":
    #                              a weight per head (Cohere, StableLM); "across_heads": one norm over the whole
    #                              projection (OLMo 2); "l2": weight-free (Llama 4); q and k each, weight only
    attention_sinks: bool = False        # a learned sink logit per query head and layer (GPT-OSS)
    kv_lora_rank: int | None = None      # latent attention (MLA): width of the cached KV latent
    q_lora_rank: int | None = None       # MLA: width of the query's low-rank bottleneck (None: a full q_proj)
    qk_rope_head_dim: int = 0            # MLA: the RoPE part of head_dim, one key shared by all heads, cached
    #                                      (0: positions enter elsewhere, e.g. the course's learned embeddings)
    latent_norms: bool = True            # MLA: RMSNorms on the KV latent (and the query's, with q_lora_rank)
    # -- layers ----------------------------------------------------------------------------------------------
    norms_per_layer: int = 2             # 2: before attention and MLP; 4: also after both (Gemma 2/3); 1: parallel
    parallel_attention: bool = False     # attention and MLP read the same normed input and are summed (Cohere)
    lm_head_bias: bool = False
    # -- mixture of experts ----------------------------------------------------------------------------------
    moe_layers: tuple[int, ...] | None = None   # 0-based indices of the MoE layers; None: all (if n_experts > 1)
    moe_intermediate_size: int | None = None    # width of each routed expert; None: intermediate_size
    expert_bias: bool | None = None             # biases in the routed experts; None: as mlp_bias
    n_shared_experts: int = 0                   # always-on experts in every MoE layer (one MLP of n x width)
    shared_expert_intermediate_size: int | None = None  # width of each shared expert; None: the routed width
    shared_expert_gate: bool = False            # a sigmoid gate (hidden -> 1) on the shared expert (Qwen2-MoE)
    router_bias: bool = False                   # a learned bias on the router logits (GPT-OSS)
    router_score_correction: bool = False       # DeepSeek-V3's per-expert selection bias: a buffer, not a
    #                                             parameter (transformers does not count it; nor do we)
    source: str = field(default="", compare=False)

    def __post_init__(self):
        if self.layer_types is not None and len(self.layer_types) != self.n_layers:
            raise ConfigError(f"layer_types lists {len(self.layer_types)} layers for a model of {self.n_layers}")
        if self.layer_types is not None and set(self.layer_types) - set(LAYER_KINDS):
            raise ConfigError(f"layer_types entries must be one of {', '.join(LAYER_KINDS)}, got "
                              f"{sorted(set(self.layer_types) - set(LAYER_KINDS))}")
        for kind, size, name in (("sliding", self.sliding_window, "sliding_window"),
                                 ("chunked", self.attention_chunk_size, "attention_chunk_size")):
            if kind in self.layer_kinds() and not size:
                raise ConfigError(f"{kind} layers need {name}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.qk_norm not in QK_NORMS:
            raise ConfigError(f"qk_norm must be one of {', '.join(QK_NORMS)}, got {self.qk_norm!r}")
        if self.kv_lora_rank is not None and not 0 <= self.qk_rope_head_dim < self.head_dim:
            raise ConfigError(f"latent attention needs 0 <= qk_rope_head_dim < head_dim, got {self.qk_rope_head_dim} "
                              f"and {self.head_dim}")

    # -- parsing ------------------------------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], name: str | None = None) -> "ModelSpec":
        """Build a spec from a dict shaped like a Hugging Face ``config.json``. A multimodal model's config (an
        unknown ``model_type`` with a ``text_config`` of a known one) gives the spec of its language model."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"a model config must be a dict (a parsed config.json), got {type(config).__name__}")
        model_type = config.get("model_type")
        text = config.get("text_config")
        if model_type not in FAMILIES and isinstance(text, Mapping) and text.get("model_type") in FAMILIES:
            # A multimodal wrapper (Gemma 3, Llama 4, Mistral 3): text is generated by its language model, the
            # model its text_config describes; the vision encoder is not counted.
            label = name or f"{config.get('_name_or_path') or model_type} (language model)"
            return cls.from_hf_config({**text, **{k: v for k, v in config.items() if k.startswith("_")}}, label)
        if model_type not in FAMILIES:
            known = ", ".join(sorted(FAMILIES))
            unread = structural_keys(config)
            keys = (f" The keys that describe its structure could not be interpreted: {', '.join(unread)}."
                    if unread else "")
            raise ConfigError(f"model_type {model_type!r} is not one this course models; use one of: {known}.{keys}")
        family = FAMILIES[model_type]
        config = {**family.defaults, **config}
        for key, supported in family.fixed.items():
            if config.get(key) not in (None, supported):
                raise ConfigError(f"{key} = {config[key]!r} is not supported: transformers builds {model_type} as if "
                                  f"it were {supported!r} (every released config has {supported!r})")
        traits = dict(family.traits)
        for key, effects in family.switches.items():
            if config.get(key) is not None:
                value = _flag(config, key)
                for trait, (if_on, if_off) in effects.items():
                    traits[trait] = if_on if value else if_off
        read = _Reader(config, family)

        hidden = _positive_int(config, "hidden_size")
        n_layers = _positive_int(config, "n_layers")
        n_heads = _positive_int(config, "n_heads")
        vocab = _positive_int(config, "vocab_size")
        n_kv_heads = read.positive("n_kv_heads", default=n_heads)
        if n_heads % n_kv_heads:
            raise ConfigError(f"num_attention_heads ({n_heads}) must be a multiple of num_key_value_heads "
                              f"({n_kv_heads}): each key/value head serves a whole group of query heads")
        latent = {}
        if "kv_lora_rank" in family.keys:
            latent = dict(kv_lora_rank=read.positive("kv_lora_rank", required=True),
                          q_lora_rank=read.positive("q_lora_rank"),
                          qk_rope_head_dim=read.positive("qk_rope_head_dim", required=True),
                          v_head_dim=read.positive("v_head_dim", required=True))
            head_dim = read.positive("qk_nope_head_dim", required=True) + latent["qk_rope_head_dim"]
        else:
            head_dim = read.positive("head_dim")
            if head_dim is None:
                if hidden % n_heads:
                    raise ConfigError(f"hidden size {hidden} is not divisible by {n_heads} heads; set head_dim "
                                      "explicitly in the config")
                head_dim = hidden // n_heads
        intermediate = read.positive("intermediate_size")
        if intermediate is None:
            if not family.mlp_ratio:
                raise ConfigError(f"the config has no {read.key_names('intermediate_size')} (the MLP width)")
            intermediate = family.mlp_ratio * hidden

        moe = _moe_fields(read, family.moe, n_layers) if family.moe else {}
        attention = _attention_fields(read, family.local, n_layers)

        max_pos = read.value("max_position_embeddings") or 0
        if traits["positions"] == "learned":
            if not max_pos:
                raise ConfigError("a model with learned positions needs n_positions (or max_position_embeddings)")
            max_pos = read.positive("max_position_embeddings")

        return cls(
            name=name or config.get("_name_or_path") or model_type, model_type=model_type,
            vocab_size=vocab, hidden_size=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
            head_dim=head_dim, intermediate_size=intermediate, max_position_embeddings=int(max_pos),
            source=str(config.get("_source", "")), **attention, **latent, **moe, **traits)

    # -- structure ----------------------------------------------------------------------------------------
    def layer_kinds(self) -> tuple[str, ...]:
        """Each layer's attention: "full", "sliding" or "chunked"."""
        if self.layer_types is not None:
            return tuple(self.layer_types)
        return ("sliding" if self.sliding_window else "full",) * self.n_layers

    def attention_groups(self) -> tuple[AttentionGroup, ...]:
        """The layers grouped by attention pattern (full, sliding, chunked), in that order, empty groups left out."""
        kinds = self.layer_kinds()
        spans = {"full": None, "sliding": self.sliding_window, "chunked": self.attention_chunk_size}
        return tuple(AttentionGroup(kind, spans[kind], kinds.count(kind)) for kind in LAYER_KINDS if kind in kinds)

    def moe_layer_indices(self) -> tuple[int, ...]:
        """0-based indices of the layers whose MLP is a mixture of experts."""
        if self.n_experts == 1:
            return ()
        return tuple(range(self.n_layers)) if self.moe_layers is None else tuple(self.moe_layers)

    def n_moe_layers(self) -> int:
        return len(self.moe_layer_indices())

    @property
    def latent_attention(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2/V3): keys and values are cached as one compressed latent."""
        return self.kv_lora_rank is not None

    @property
    def qk_nope_head_dim(self) -> int:
        """The part of each query/key head without rotary positions (all of it, outside latent attention)."""
        return self.head_dim - self.qk_rope_head_dim

    @property
    def value_head_dim(self) -> int:
        return self.head_dim if self.v_head_dim is None else self.v_head_dim

    @property
    def expert_intermediate_size(self) -> int:
        """Width of each routed expert."""
        return self.moe_intermediate_size or self.intermediate_size

    # -- parameters ---------------------------------------------------------------------------------------
    def attention_weight_params(self) -> int:
        """One layer's attention matrices, no biases or norms: q, k, v and output projections (latent attention:
        q_a/q_b or q, kv_a with the shared RoPE key, kv_b, output)."""
        h, heads, v = self.hidden_size, self.n_heads, self.value_head_dim
        if not self.latent_attention:
            q_out, k_out, v_out = heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * v
            return h * (q_out + k_out + v_out) + heads * v * h
        query = (h * self.q_lora_rank + self.q_lora_rank * heads * self.head_dim if self.q_lora_rank
                 else h * heads * self.head_dim)
        latent = h * (self.kv_lora_rank + self.qk_rope_head_dim)
        up = self.kv_lora_rank * self.n_kv_heads * (self.qk_nope_head_dim + v)   # DeepSeek: n_kv_heads = n_heads
        return query + latent + up + heads * v * h

    def _attention_params(self) -> int:
        """One layer's attention: matrices, biases, q/k norms (latent attention: its two latent norms), sinks."""
        heads, d = self.n_heads, self.head_dim
        if not self.latent_attention:
            q_out, kv_out = heads * d, self.n_kv_heads * d
            biases = (q_out + kv_out + self.n_kv_heads * self.value_head_dim) * self.qkv_bias
            norms = {"none": 0, "l2": 0, "shared": 2 * d}.get(self.qk_norm, q_out + kv_out)
        else:
            biases = ((self.q_lora_rank or 0) + self.kv_lora_rank + self.qk_rope_head_dim) * self.qkv_bias
            norms = (self._norm_width_params(self.q_lora_rank or 0) + self._norm_width_params(self.kv_lora_rank)
                     if self.latent_norms else 0)
        sinks = heads if self.attention_sinks else 0
        return self.attention_weight_params() + biases + self.hidden_size * self.out_bias + norms + sinks

    def _mlp_weight_params(self, width: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * width

    def _mlp_params(self, width: int, bias: bool) -> int:
        n_in = 2 if self.gated_mlp else 1  # gated MLPs (SwiGLU) have a gate and an up projection
        return self._mlp_weight_params(width) + (n_in * width + self.hidden_size) * bias

    def expert_weight_params(self) -> int:
        """One routed expert's matrices (a dense model: its MLP's): up (and gate, if gated) and down, no biases."""
        return self._mlp_weight_params(self.expert_intermediate_size)

    def expert_params(self) -> int:
        """One routed expert of an MoE layer (a dense model: one MLP)."""
        bias = self.mlp_bias if self.expert_bias is None else self.expert_bias
        return self._mlp_params(self.expert_intermediate_size, bias)

    def dense_mlp_params(self) -> int:
        """The MLP of a dense layer."""
        return self._mlp_params(self.intermediate_size, self.mlp_bias)

    def _shared_width(self) -> int:
        return self.n_shared_experts * (self.shared_expert_intermediate_size or self.expert_intermediate_size)

    def shared_experts_params(self) -> int:
        """An MoE layer's always-on shared experts (transformers builds them as one MLP n times as wide) and
        their gate."""
        if not self.n_shared_experts:
            return 0
        return self._mlp_params(self._shared_width(), self.mlp_bias) + self.hidden_size * self.shared_expert_gate

    def _router_params(self) -> int:
        return (self.hidden_size + self.router_bias) * self.n_experts if self.n_experts > 1 else 0

    def moe_mlp_params(self) -> int:
        """The MLP of an MoE layer: every routed expert, the shared experts and the router."""
        return self.n_experts * self.expert_params() + self.shared_experts_params() + self._router_params()

    def _norm_width_params(self, width: int) -> int:
        return width * (2 if self.norm == "layernorm" else 1)

    def _norm_params(self) -> int:
        return self._norm_width_params(self.hidden_size)

    def embedding_params(self) -> int:
        positions = self.max_position_embeddings * self.hidden_size if self.positions == "learned" else 0
        return self.vocab_size * self.hidden_size + positions

    def lm_head_params(self) -> int:
        bias = self.vocab_size if self.lm_head_bias else 0
        return bias + (0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size)

    def attention_params(self) -> int:
        """Every layer's attention (matrices, biases, q/k or latent norms, sinks)."""
        return self.n_layers * self._attention_params()

    def mlp_params(self) -> int:
        """Every layer's MLP: dense MLPs, routed and shared experts, routers."""
        n_moe = self.n_moe_layers()
        return (self.n_layers - n_moe) * self.dense_mlp_params() + n_moe * self.moe_mlp_params()

    def norm_params(self) -> int:
        """Every norm outside attention: ``norms_per_layer`` per layer and the final one."""
        return (self.n_layers * self.norms_per_layer + 1) * self._norm_params()

    def n_params(self) -> int:
        """Every parameter the model holds (what must sit in memory)."""
        return (self.embedding_params() + self.attention_params() + self.mlp_params() + self.norm_params()
                + self.lm_head_params())

    def n_active_params(self) -> int:
        """Parameters one token uses: an MoE layer runs only ``experts_per_token`` of its routed experts (its
        shared experts and router always run)."""
        idle_experts = self.n_experts - self.experts_per_token
        return self.n_params() - self.n_moe_layers() * idle_experts * self.expert_params()

    def matmul_params_per_token(self) -> int:
        """Active parameters a token multiplies by: all but the embedding tables (a lookup, not a product),
        plus the output projection, which reuses the input table when tied. Norm weights and biases are
        counted too; they are O(hidden) and change nothing visible."""
        tied_head = self.vocab_size * self.hidden_size if self.tie_word_embeddings else 0
        return self.n_active_params() - self.embedding_params() + tied_head

    def block_weight_params(self, experts: float | None = None) -> float:
        """The weight matrices of every block (attention and MLP, no biases, norms or routers), with
        ``experts`` routed experts per MoE layer (default: all of them, what memory holds)."""
        experts = self.n_experts if experts is None else experts
        n_moe = self.n_moe_layers()
        attention = self.attention_weight_params()
        shared = self._mlp_weight_params(self._shared_width())
        moe = n_moe * (attention + experts * self.expert_weight_params() + shared) if n_moe else 0
        return moe + (self.n_layers - n_moe) * (attention + self._mlp_weight_params(self.intermediate_size))

    # -- memory -------------------------------------------------------------------------------------------
    def kv_values_per_layer(self) -> int:
        """Values one layer caches per position: a key and a value per KV head (latent attention: the latent and
        the shared RoPE key, the absorbed form; see the module docstring)."""
        if self.latent_attention:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return self.n_kv_heads * (self.head_dim + self.value_head_dim)

    def kv_cache_tokens(self, seq_len: int) -> int:
        """Positions the longest-reaching layer holds: a model whose every layer is windowed keeps only the last
        ``sliding_window`` (or chunk)."""
        return max(group.held(seq_len) for group in self.attention_groups())

    def cached_values(self, seq_len):
        """Values (keys and values, all layers) one sequence's cache holds after ``seq_len`` tokens: each layer's
        ``kv_values_per_layer`` for every position it holds. Accepts a NumPy array of lengths."""
        per_layer = self.kv_values_per_layer()
        return sum(group.n_layers * per_layer * group.held(seq_len) for group in self.attention_groups())

    def kv_cache_bytes_per_token(self, bytes_per_value: float = 2) -> float:
        """Bytes one cached position of one sequence takes in every layer (a position inside every window)."""
        return self.n_layers * self.kv_values_per_layer() * bytes_per_value

    def kv_cache_bytes(self, seq_len: int, batch_size: int = 1, bytes_per_value: float = 2) -> float:
        """Bytes the KV cache holds for ``seq_len`` tokens of ``batch_size`` sequences: every layer's keys and
        values (latent attention: latents) for the positions it holds."""
        require_count("seq_len", seq_len, allow_zero=True)
        require_count("batch_size", batch_size)
        return self.cached_values(seq_len) * bytes_per_value * batch_size

    def decode_kv_values(self, context_len):
        """Values one decode step reads from and writes to one sequence's cache with ``context_len`` tokens
        cached: every position each layer attends to (the cached ones and the new one). Accepts arrays."""
        per_layer = self.kv_values_per_layer()
        return sum(group.n_layers * per_layer * group.attended(context_len) for group in self.attention_groups())

    def decode_kv_bytes(self, context_len: int, batch_size: int = 1, bytes_per_value: float = 2) -> float:
        """KV-cache bytes one decode step moves for ``batch_size`` sequences (full and sliding layers: the same
        as ``kv_cache_bytes(context_len + 1)``; chunked layers read only the current chunk)."""
        require_count("context_len", context_len, allow_zero=True)
        require_count("batch_size", batch_size)
        return self.decode_kv_values(context_len) * bytes_per_value * batch_size

    def weight_bytes(self, bytes_per_param: float = 2) -> float:
        return self.n_params() * bytes_per_param

    # -- compute ------------------------------------------------------------------------------------------
    def lm_head_matmul_params(self) -> int:
        """The output projection multiplies by a vocab x hidden matrix, tied to the input table or not."""
        return self.vocab_size * self.hidden_size

    def attention_flops(self, attended_positions, n_layers: int | None = None):
        """FLOPs of attention for one query token attending to ``attended_positions`` positions (a number or
        a NumPy array of them) in each of ``n_layers`` layers (default: all): per query head and position, the
        score (a dot product of the key width) and the weighted sum (of the value width), at 2 FLOPs per
        multiply-accumulate. Widths are head_dim; latent attention, absorbed: kv_lora_rank + qk_rope_head_dim
        for the score, kv_lora_rank for the sum. The one place this formula lives: decode, prefill and
        whole-request predictions all call it."""
        layers = self.n_layers if n_layers is None else n_layers
        if self.latent_attention:
            widths = 2 * self.kv_lora_rank + self.qk_rope_head_dim
        else:
            widths = self.head_dim + self.value_head_dim
        return 2 * layers * self.n_heads * widths * attended_positions

    def attention_flops_per_token(self, context_len):
        """Attention FLOPs of one decode step with ``context_len`` tokens cached (each layer attends to the
        positions its kind allows, itself included). Accepts a NumPy array of context lengths."""
        return sum(self.attention_flops(group.attended(context_len), group.n_layers)
                   for group in self.attention_groups())

    def flops_per_token(self, context_len: int) -> int:
        """FLOPs to generate one token with ``context_len`` tokens already in the KV cache."""
        require_count("context_len", context_len, allow_zero=True)
        return 2 * self.matmul_params_per_token() + self.attention_flops_per_token(context_len)

    def attended_positions_in_prefill(self, n_tokens: int):
        """Sum over the prompt's positions of how many positions each attends to (causal, windowed), per
        layer: the mean over layers when their attention differs."""
        total = sum(group.n_layers * group.attended_in_prefill(n_tokens) for group in self.attention_groups())
        return total // self.n_layers if total % self.n_layers == 0 else total / self.n_layers

    def prefill_flops(self, n_tokens: int, batch_size: int = 1) -> int:
        """FLOPs to process an ``n_tokens`` prompt in one pass. Every position goes through every layer;
        the output projection runs for the last position only (generation needs only the next token)."""
        require_count("n_tokens", n_tokens)
        require_count("batch_size", batch_size)
        body = 2 * (self.matmul_params_per_token() - self.lm_head_matmul_params()) * n_tokens
        attention = sum(self.attention_flops(group.attended_in_prefill(n_tokens), group.n_layers)
                        for group in self.attention_groups())
        return batch_size * (body + attention + 2 * self.lm_head_matmul_params())

    # -- bytes moved --------------------------------------------------------------------------------------
    def expected_experts_touched(self, n_tokens: int) -> float:
        """Distinct experts an MoE layer must read when ``n_tokens`` tokens each pick ``experts_per_token``
        of ``n_experts`` uniformly: one token misses a given expert with probability (E-k)/E."""
        if self.n_experts == 1:
            return 1.0
        missed_by_all = ((self.n_experts - self.experts_per_token) / self.n_experts) ** n_tokens
        return self.n_experts * (1 - missed_by_all)

    def weight_bytes_read(self, n_tokens: int = 1, bytes_per_param: float = 2) -> float:
        """Weights one forward pass over ``n_tokens`` tokens (all sequences, all positions) streams from
        memory: every matrix once, shared by all tokens; an MoE layer only the experts the tokens chose.
        The embedding table is gathered (n_tokens rows), not streamed."""
        params = self.matmul_params_per_token()
        if self.n_experts > 1:
            extra = self.expected_experts_touched(n_tokens) - self.experts_per_token
            params += self.n_moe_layers() * extra * self.expert_params()
        return params * bytes_per_param

    def decode_bytes(self, context_len: int, batch_size: int = 1, bytes_per_param: float = 2,
                     bytes_per_value: float = 2) -> float:
        """Bytes one decode step moves: the weights once for the batch, plus every sequence's KV cache
        (read the positions each layer attends to, write the new one)."""
        return (self.weight_bytes_read(batch_size, bytes_per_param)
                + self.decode_kv_bytes(context_len, batch_size, bytes_per_value))

    def prefill_bytes(self, n_tokens: int, batch_size: int = 1, bytes_per_param: float = 2,
                      bytes_per_value: float = 2) -> float:
        """Bytes a prefill pass moves: the weights once, plus the KV cache it writes."""
        return (self.weight_bytes_read(n_tokens * batch_size, bytes_per_param)
                + self.kv_cache_bytes(n_tokens, batch_size, bytes_per_value))

    def activation_bytes(self, n_tokens: int, batch_size: int = 1, bytes_per_value: float = 2) -> float:
        """Peak activation memory of an inference forward pass over ``n_tokens`` positions: layers run one
        after another, so what is live is the residual stream plus one layer's widest intermediate (the
        q/k/v projections, latent attention's absorbed queries and latent, or the MLP's hidden layer: the
        chosen experts' and the shared experts'), plus fp32 logits for the last position; a parallel block
        also keeps the attention output while its MLP runs. Attention scores are not stored (fused attention
        computes them blockwise)."""
        if self.latent_attention:
            latent = self.kv_lora_rank + self.qk_rope_head_dim
            qkv = (self.n_heads + 1) * latent
        else:
            qkv = self.n_heads * self.head_dim + self.n_kv_heads * (self.head_dim + self.value_head_dim)
        n_in = 2 if self.gated_mlp else 1
        n_moe = self.n_moe_layers()
        widths = [self.intermediate_size * n_in] if n_moe < self.n_layers else []
        if n_moe:
            widths.append(self.expert_intermediate_size * n_in * self.experts_per_token + self._shared_width() * n_in)
        per_position = 2 * self.hidden_size + max(qkv, *widths) + self.hidden_size * self.parallel_attention
        return batch_size * (n_tokens * per_position * bytes_per_value + self.vocab_size * 4)


# -- reading a config ---------------------------------------------------------------------------------------
class _Reader:
    """Reads the config key(s) a family maps a spec field to."""

    def __init__(self, config: Mapping[str, Any], family: Family):
        self.config, self.family = config, family
        self.family_name = config.get("model_type")

    def key_names(self, field_name: str) -> str:
        keys = self.family.keys.get(field_name)
        return " or ".join((keys,) if isinstance(keys, str) else keys or (field_name,))

    def entry(self, field_name: str) -> tuple[str | None, Any]:
        keys = self.family.keys.get(field_name)
        keys = (keys,) if isinstance(keys, str) else keys or ()
        for key in keys:
            if self.config.get(key) is not None:
                return key, self.config[key]
        return (keys[0] if keys else None), None

    def value(self, field_name: str) -> Any:
        return self.entry(field_name)[1]

    def positive(self, field_name: str, default: int | None = None, required: bool = False) -> int | None:
        key, value = self.entry(field_name)
        if value is None:
            if required:
                raise ConfigError(f"the config has no {self.key_names(field_name)}")
            return default
        return _check_positive(key, value)

    def config_positive(self, key: str, default: int | None = None) -> int | None:
        value = self.config.get(key)
        return default if value is None else _check_positive(key, value)

    def layer_list(self, key: str, n_layers: int, values: tuple | None = None) -> list | None:
        """A per-layer list (``values``: what each entry may be) or a list of layer indices (``values`` None)."""
        items = self.config.get(key)
        if items is None:
            return None
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {items!r}")
        if values is not None:
            if len(items) != n_layers or any(item not in values for item in items):
                raise ConfigError(f"{key} must list one of {', '.join(map(repr, values))} for each of the "
                                  f"{n_layers} layers, got {list(items)!r}")
        elif any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers for i in items):
            raise ConfigError(f"{key} must list layer indices between 0 and {n_layers - 1}, got {list(items)!r}")
        return list(items)


def _attention_fields(read: _Reader, rule: LocalLayers | None, n_layers: int) -> dict[str, Any]:
    """layer_types and the window (or chunk) size, from an explicit layer_types list or the family's rule."""
    if rule is None:
        return {}
    config = read.config
    size = read.config_positive(rule.size_key)
    if rule.enabled_by is not None and not _flag(config, rule.enabled_by, default=False):
        size = None  # Qwen2/Qwen3 configs carry a window that is off unless use_sliding_window is set
    explicit = read.layer_list("layer_types", n_layers, tuple(_HF_LAYER_TYPES)) if rule.reads_layer_types else None
    if explicit is not None:
        kinds = [_HF_LAYER_TYPES[t] for t in explicit]
        unsupported = set(kinds) - {"full", rule.kind}
        if unsupported:
            raise ConfigError(f"layer_types: {read.family_name} has no {' or '.join(sorted(unsupported))} layers "
                              f"(its local layers are {rule.kind})")
        if rule.kind in kinds and size is None:
            raise ConfigError(f"layer_types has {rule.kind} layers but the config sets no {rule.size_key}"
                              + (f" (or {rule.enabled_by} is false)" if rule.enabled_by else ""))
    elif size is None:
        kinds = ["full"] * n_layers
    else:
        mask = read.layer_list(rule.mask_key, n_layers, (0, 1)) if rule.mask_key and config.get(rule.mask_key) else None
        every = rule.every if isinstance(rule.every, int) else read.config_positive(rule.every, default=1)
        below = _non_negative(config, rule.global_below, 0) if rule.global_below else 0
        above = _non_negative(config, rule.global_from, n_layers) if rule.global_from else n_layers
        kinds = [rule.kind if (mask[i] if mask else every == 1 or (i + 1) % every != 0) and below <= i < above
                 else "full" for i in range(n_layers)]
    fields: dict[str, Any] = {"sliding_window": size if "sliding" in kinds else None}
    if rule.kind == "chunked":
        fields["attention_chunk_size"] = size if "chunked" in kinds else None
    if len(set(kinds)) > 1 or "chunked" in kinds:
        fields["layer_types"] = tuple(kinds)
    return fields


def _moe_fields(read: _Reader, rule: MoeLayers, n_layers: int) -> dict[str, Any]:
    """Experts, their widths, shared experts and which layers are MoE."""
    n_experts = read.positive("n_experts", default=1)
    experts_per_token = read.positive("experts_per_token", required=n_experts > 1) or 1
    if experts_per_token > n_experts:
        raise ConfigError(f"{read.key_names('experts_per_token')} ({experts_per_token}) exceeds "
                          f"{read.key_names('n_experts')} ({n_experts})")
    fields: dict[str, Any] = dict(n_experts=n_experts, experts_per_token=experts_per_token)
    if "moe_intermediate_size" in read.family.keys:
        fields["moe_intermediate_size"] = read.positive("moe_intermediate_size")
    if "n_shared_experts" in read.family.keys:
        key, value = read.entry("n_shared_experts")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
        fields["n_shared_experts"] = value or 0
    if "shared_expert_intermediate_size" in read.family.keys:
        fields["shared_expert_intermediate_size"] = read.positive("shared_expert_intermediate_size")

    listed = read.layer_list(rule.moe_list, n_layers) if rule.moe_list else None
    if listed is not None:
        layers = sorted(set(listed))
    else:
        first = 0
        if rule.first_dense and read.config.get(rule.first_dense) is not None:
            first = read.config[rule.first_dense]
            if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= n_layers:
                raise ConfigError(f"{rule.first_dense} must be a number of layers between 0 and {n_layers}, "
                                  f"got {first!r}")
        step = read.config_positive(rule.step, 1) if rule.step else 1
        dense = set(read.layer_list(rule.dense_list, n_layers) or ()) if rule.dense_list else set()
        layers = [i for i in range(n_layers) if i >= first and (i + 1) % step == 0 and i not in dense]
    fields["moe_layers"] = None if len(layers) == n_layers else tuple(layers)
    return fields


# -- validation helpers -------------------------------------------------------------------------------------
def _lookup(config: Mapping[str, Any], field_name: str) -> tuple[str, Any]:
    for key in FIELD_NAMES.get(field_name, (field_name,)):
        if config.get(key) is not None:
            return key, config[key]
    names = " or ".join(FIELD_NAMES.get(field_name, (field_name,)))
    raise ConfigError(f"the config has no {names}")


def _check_positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _positive_int(config: Mapping[str, Any], field_name: str) -> int:
    return _check_positive(*_lookup(config, field_name))


def _non_negative(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _flag(config: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = config.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value
