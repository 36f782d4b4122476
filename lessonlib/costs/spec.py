"""An analytic cost model of decoder-only LLMs: parameters, KV-cache bytes, FLOPs, bytes moved per step.

``ModelSpec.from_hf_config(d)`` reads a dict shaped like a Hugging Face ``config.json``. The fields that set
the model's size (widths, depths, head counts, experts) are read from the config; what a config does not
say (is the MLP gated? does attention carry biases? which norm?) is a property of the architecture, so it
comes from the table ``ARCHITECTURES`` of :mod:`lessonlib.costs.families`, keyed by ``model_type``, and a
config key overrides it where transformers honours one (``attention_bias``, ``mlp_bias``,
``tie_word_embeddings``).

Conventions: one multiply-accumulate is 2 FLOPs; sizes are in bytes; "per token" means per generated token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.checks import require_count
from .families import ARCHITECTURES, FAMILY_DEFAULTS, FIELD_NAMES


class ConfigError(ValueError):
    """A model config that cannot describe a transformer; the message names the field to fix."""


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a decoder-only transformer, enough to count its parameters, memory and FLOPs."""

    name: str
    model_type: str
    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm: str = "rmsnorm"
    gated_mlp: bool = True
    mlp_bias: bool = False
    qkv_bias: bool = False
    out_bias: bool = False
    positions: str = "rotary"
    max_position_embeddings: int = 0
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    n_experts: int = 1           # 1 = a dense MLP; more = a mixture-of-experts MLP in every layer
    experts_per_token: int = 1
    source: str = field(default="", compare=False)

    # -- parsing ------------------------------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], name: str | None = None) -> "ModelSpec":
        """Build a spec from a dict shaped like a Hugging Face ``config.json``."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"a model config must be a dict (a parsed config.json), got {type(config).__name__}")
        model_type = config.get("model_type")
        if model_type not in ARCHITECTURES:
            known = ", ".join(sorted(ARCHITECTURES))
            raise ConfigError(f"model_type {model_type!r} is not one this course models; use one of: {known}")
        traits = dict(ARCHITECTURES[model_type])
        config = {**FAMILY_DEFAULTS[model_type], **config}
        for key in ("tie_word_embeddings", "mlp_bias"):
            if config.get(key) is not None:
                traits[key] = bool(config[key])
        if config.get("attention_bias") is not None:  # Llama-style: one switch for q, k, v and o
            traits["qkv_bias"] = traits["out_bias"] = bool(config["attention_bias"])

        hidden = _positive_int(config, "hidden_size")
        n_layers = _positive_int(config, "n_layers")
        n_heads = _positive_int(config, "n_heads")
        vocab = _positive_int(config, "vocab_size")
        n_kv_heads = _optional_positive_int(config, "num_key_value_heads", default=n_heads)
        if n_heads % n_kv_heads:
            raise ConfigError(f"num_attention_heads ({n_heads}) must be a multiple of num_key_value_heads "
                              f"({n_kv_heads}): each key/value head serves a whole group of query heads")
        head_dim = _optional_positive_int(config, "head_dim", default=None)
        if head_dim is None:
            if hidden % n_heads:
                raise ConfigError(f"hidden size {hidden} is not divisible by {n_heads} heads; set head_dim "
                                  "explicitly in the config")
            head_dim = hidden // n_heads
        intermediate = _optional_positive_int(config, "intermediate_size", default=None)
        if intermediate is None:
            intermediate = _optional_positive_int(config, "n_inner", default=None) or 4 * hidden

        n_experts = _optional_positive_int(config, "num_local_experts", default=1)
        experts_per_token = _optional_positive_int(config, "num_experts_per_tok", default=1 if n_experts == 1 else 2)
        if experts_per_token > n_experts:
            raise ConfigError(f"num_experts_per_tok ({experts_per_token}) exceeds num_local_experts ({n_experts})")

        window = config.get("sliding_window")
        if model_type == "qwen2" and not config.get("use_sliding_window", False):
            window = None  # Qwen2 configs carry a window that is off unless use_sliding_window is set
        if window is not None:
            window = _optional_positive_int(config, "sliding_window", default=None)

        max_pos = config.get("max_position_embeddings", config.get("n_positions", 0)) or 0
        if traits["positions"] == "learned" and not max_pos:
            raise ConfigError("a model with learned positions needs n_positions (or max_position_embeddings)")

        return cls(
            name=name or config.get("_name_or_path") or model_type, model_type=model_type,
            vocab_size=vocab, hidden_size=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
            head_dim=head_dim, intermediate_size=intermediate, max_position_embeddings=int(max_pos),
            sliding_window=window, n_experts=n_experts, experts_per_token=experts_per_token,
            source=str(config.get("_source", "")), **traits)

    # -- parameters ---------------------------------------------------------------------------------------
    def attention_weight_params(self) -> int:
        """One layer's q, k, v and output projection matrices (no biases)."""
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        return self.hidden_size * (q_out + 2 * kv_out) + q_out * self.hidden_size

    def _attention_params(self) -> int:
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        biases = (q_out + 2 * kv_out) * self.qkv_bias + self.hidden_size * self.out_bias
        return self.attention_weight_params() + biases

    def expert_weight_params(self) -> int:
        """One MLP's matrices (one expert of an MoE layer): up (and gate, if gated) and down, no biases."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    def expert_params(self) -> int:
        """One MLP (one expert of an MoE layer)."""
        n_in = 2 if self.gated_mlp else 1  # gated MLPs (SwiGLU) have a gate and an up projection
        biases = (n_in * self.intermediate_size + self.hidden_size) * self.mlp_bias
        return self.expert_weight_params() + biases

    def _router_params(self) -> int:
        return self.hidden_size * self.n_experts if self.n_experts > 1 else 0

    def _norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm == "layernorm" else 1)

    def embedding_params(self) -> int:
        positions = self.max_position_embeddings * self.hidden_size if self.positions == "learned" else 0
        return self.vocab_size * self.hidden_size + positions

    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    def n_params(self) -> int:
        """Every parameter the model holds (what must sit in memory)."""
        per_layer = (self._attention_params() + self.n_experts * self.expert_params()
                     + self._router_params() + 2 * self._norm_params())
        return self.embedding_params() + self.n_layers * per_layer + self._norm_params() + self.lm_head_params()

    def n_active_params(self) -> int:
        """Parameters one token uses: an MoE layer runs only ``experts_per_token`` of its experts."""
        idle_experts = self.n_experts - self.experts_per_token
        return self.n_params() - self.n_layers * idle_experts * self.expert_params()

    def matmul_params_per_token(self) -> int:
        """Active parameters a token multiplies by: all but the embedding tables (a lookup, not a product),
        plus the output projection, which reuses the input table when tied. Norm weights and biases are
        counted too; they are O(hidden) and change nothing visible."""
        tied_head = self.vocab_size * self.hidden_size if self.tie_word_embeddings else 0
        return self.n_active_params() - self.embedding_params() + tied_head

    # -- memory -------------------------------------------------------------------------------------------
    def kv_cache_tokens(self, seq_len: int) -> int:
        """Positions the cache holds: a sliding-window model keeps only the last ``sliding_window``."""
        return min(seq_len, self.sliding_window) if self.sliding_window else seq_len

    def kv_cache_bytes_per_token(self, bytes_per_value: float = 2) -> float:
        """Bytes one cached position of one sequence takes: a key and a value per layer and KV head."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * bytes_per_value

    def kv_cache_bytes(self, seq_len: int, batch_size: int = 1, bytes_per_value: float = 2) -> float:
        """Keys and values of every layer and KV head for ``seq_len`` tokens of ``batch_size`` sequences."""
        require_count("seq_len", seq_len, allow_zero=True)
        require_count("batch_size", batch_size)
        return self.kv_cache_bytes_per_token(bytes_per_value) * self.kv_cache_tokens(seq_len) * batch_size

    def weight_bytes(self, bytes_per_param: float = 2) -> float:
        return self.n_params() * bytes_per_param

    # -- compute ------------------------------------------------------------------------------------------
    # Convention: a decode step with ``context_len`` tokens already cached writes the new token's key and
    # value, and the new token attends to context_len + 1 positions (itself included), at most the window.
    def lm_head_matmul_params(self) -> int:
        """The output projection multiplies by a vocab x hidden matrix, tied to the input table or not."""
        return self.vocab_size * self.hidden_size

    def attention_flops(self, attended_positions):
        """FLOPs of attention for one query token attending to ``attended_positions`` positions (a number or
        a NumPy array of them): the scores q.k and the weighted sum of values are 2 products of head_dim per
        position, per query head, per layer, at 2 FLOPs per multiply-accumulate. The one place this formula
        lives: decode, prefill and whole-request predictions all call it."""
        return 2 * 2 * self.n_layers * self.n_heads * self.head_dim * attended_positions

    def attention_flops_per_token(self, context_len: int) -> int:
        """Attention FLOPs of one decode step with ``context_len`` tokens cached (it attends to the cached
        positions and itself, at most the window)."""
        return self.attention_flops(self.kv_cache_tokens(context_len + 1))

    def flops_per_token(self, context_len: int) -> int:
        """FLOPs to generate one token with ``context_len`` tokens already in the KV cache."""
        require_count("context_len", context_len, allow_zero=True)
        return 2 * self.matmul_params_per_token() + self.attention_flops_per_token(context_len)

    def attended_positions_in_prefill(self, n_tokens: int) -> int:
        """Sum over the prompt's positions of how many positions each attends to (causal, windowed)."""
        window = self.sliding_window or n_tokens
        full = min(n_tokens, window)  # positions 1..full attend to themselves and all before them
        return full * (full + 1) // 2 + (n_tokens - full) * window

    def prefill_flops(self, n_tokens: int, batch_size: int = 1) -> int:
        """FLOPs to process an ``n_tokens`` prompt in one pass. Every position goes through every layer;
        the output projection runs for the last position only (generation needs only the next token)."""
        require_count("n_tokens", n_tokens)
        require_count("batch_size", batch_size)
        body = 2 * (self.matmul_params_per_token() - self.lm_head_matmul_params()) * n_tokens
        attention = self.attention_flops(self.attended_positions_in_prefill(n_tokens))
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
            params += self.n_layers * extra * self.expert_params()
        return params * bytes_per_param

    def decode_bytes(self, context_len: int, batch_size: int = 1, bytes_per_param: float = 2,
                     bytes_per_value: float = 2) -> float:
        """Bytes one decode step moves: the weights once for the batch, plus every sequence's KV cache
        (read the cached positions, write the new one)."""
        return (self.weight_bytes_read(batch_size, bytes_per_param)
                + self.kv_cache_bytes(context_len + 1, batch_size, bytes_per_value))

    def prefill_bytes(self, n_tokens: int, batch_size: int = 1, bytes_per_param: float = 2,
                      bytes_per_value: float = 2) -> float:
        """Bytes a prefill pass moves: the weights once, plus the KV cache it writes."""
        return (self.weight_bytes_read(n_tokens * batch_size, bytes_per_param)
                + self.kv_cache_bytes(n_tokens, batch_size, bytes_per_value))

    def activation_bytes(self, n_tokens: int, batch_size: int = 1, bytes_per_value: float = 2) -> float:
        """Peak activation memory of an inference forward pass over ``n_tokens`` positions: layers run one
        after another, so what is live is the residual stream plus one layer's widest intermediate (the
        q/k/v projections or the MLP's hidden layer), plus fp32 logits for the last position. Attention
        scores are not stored (fused attention computes them blockwise)."""
        qkv = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        mlp = self.intermediate_size * (2 if self.gated_mlp else 1) * self.experts_per_token
        per_position = 2 * self.hidden_size + max(qkv, mlp)
        return batch_size * (n_tokens * per_position * bytes_per_value + self.vocab_size * 4)


# -- validation helpers -------------------------------------------------------------------------------------
def _lookup(config: Mapping[str, Any], field_name: str) -> tuple[str, Any]:
    for key in FIELD_NAMES.get(field_name, (field_name,)):
        if config.get(key) is not None:
            return key, config[key]
    names = " or ".join(FIELD_NAMES.get(field_name, (field_name,)))
    raise ConfigError(f"the config has no {names}")


def _positive_int(config: Mapping[str, Any], field_name: str) -> int:
    key, value = _lookup(config, field_name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _optional_positive_int(config: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value
