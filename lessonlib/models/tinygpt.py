"""A small decoder-only transformer with a preallocated KV cache: the course's working model.

GPT-2's architecture (learned positions, pre-LayerNorm blocks, GELU MLP of 4x width, tied embeddings), with
the variants the course compares, each a config field: ``n_kv_heads`` below ``n_heads`` gives grouped-query
attention (1 = multi-query), ``sliding_window`` restricts attention to the last positions (and the cache to a
ring of that size), ``kv_lora_rank`` caches a low-rank latent instead of keys and values
(:mod:`lessonlib.models.attention`), and ``n_experts > 1`` makes every MLP a mixture of experts
(:mod:`lessonlib.models.moe`). With none of them, the parameters map one to one onto Hugging Face's
``GPT2LMHeadModel``.

Two ways through the same weights:

* ``forward`` (training, scoring, and decoding without a cache) runs the ``nn.Module`` blocks below, as
  nanoGPT does. It returns an :class:`LMOutput`: the logits, the loss, and each MoE layer's routing.
* ``prefill`` / ``decode_step`` / ``extend`` (cached inference) run :func:`cached_forward`: the same
  arithmetic, read in one place, over the weights as plain tensors. A small model's decode step on a CPU
  is mostly fixed costs, and a module call costs about a microsecond (looking a parameter up through a
  module, half that): skipping ~40 calls per token cuts a quarter of the step. Tests check both paths give
  the same logits.

The cache (:mod:`lessonlib.models.kv_cache`) is allocated once per request (no concatenation per token) and
owns its layout, attention is PyTorch's fused ``scaled_dot_product_attention``, and a decode step does no
Python work beyond the layer arithmetic. Run the
cached path under ``torch.inference_mode()`` (``generate`` does). Shapes in comments: B batch, T new
positions, S positions attended (cached + new), C hidden size, H query heads, G key/value heads, D head_dim.

    config = TinyGPTConfig(vocab_size=41, max_position_embeddings=256, n_layers=4, n_heads=4, hidden_size=128)
    model = TinyGPT(config)
    out = model.generate(prompt_ids, max_new_tokens=64)          # greedy, cached: (batch, prompt + 64)
    cache = model.new_cache(batch_size=1, max_len=256)           # or step by step, e.g. to time one step:
    logits = model.prefill(prompt_ids, cache)                    # (batch, vocab)
    logits = model.decode_step(logits.argmax(-1), cache)         # one more token per sequence
    logits = model.extend(drafted_ids, cache)                    # several at once: (batch, steps, vocab)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import decoding
from .attention import (
    AttentionShape,
    AttentionWeights,
    CausalSelfAttention,
    LatentAttentionWeights,
    LatentSelfAttention,
    Linear,
    grouped_query_attention,
    latent_attention,
    linear,
)
from .kv_cache import KVCache, new_cache
from .moe import ExpertWeights, MoEMLP, MoEStats, check_settings, moe_mlp


@dataclass
class TinyGPTConfig:
    vocab_size: int
    max_position_embeddings: int   # longest sequence (prompt + generated) the position table covers
    n_layers: int
    n_heads: int
    hidden_size: int
    n_kv_heads: int | None = None  # None: as many KV heads as query heads
    dropout: float = 0.0
    bias: bool = True
    intermediate_size: int | None = None   # MLP (or expert) width; None: 4 * hidden_size
    head_dim: int | None = None    # None: hidden_size // n_heads (structured pruning keeps it and drops heads)
    n_experts: int = 1             # 1: a dense MLP; more: every MLP is a mixture of n_experts experts (lesson 03a)
    experts_per_token: int = 1     # experts each token runs (top-k)
    renormalize_gates: bool | None = None   # None: experts_per_token > 1 (Mixtral); top-1 keeps raw gates (Switch)
    capacity_factor: float | None = None    # None: no limit on the tokens an expert takes
    sliding_window: int | None = None       # each position attends to the last sliding_window (itself included)
    kv_lora_rank: int | None = None         # latent attention: cache a latent of this many values per position

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for name in ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "n_kv_heads", "hidden_size"):
            _require_positive(name, getattr(self, name))
        if self.head_dim is None:
            if self.hidden_size % self.n_heads:
                raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by n_heads ({self.n_heads}), "
                                 "or give head_dim")
            self.head_dim = self.hidden_size // self.n_heads
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        for name in ("head_dim", "intermediate_size"):
            _require_positive(name, getattr(self, name))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}): "
                             "each key/value head serves a whole group of query heads")
        check_settings(self.n_experts, self.experts_per_token, self.capacity_factor)
        if self.is_moe and not self.bias:
            raise ValueError("bias=False is not supported with n_experts > 1: the experts always have biases; "
                             "use bias=True or a dense model (n_experts=1)")
        if self.renormalize_gates is None:
            self.renormalize_gates = self.experts_per_token > 1
        for name in ("sliding_window", "kv_lora_rank"):
            if getattr(self, name) is not None:
                _require_positive(name, getattr(self, name))
        if self.sliding_window and self.kv_lora_rank:
            raise ValueError("latent attention with a sliding window is not a variant the course builds: set "
                             "sliding_window or kv_lora_rank, not both")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    def to_hf_config(self) -> dict:
        """A Hugging Face GPT-2 ``config.json`` dict of the same model (multi-head attention only)."""
        if self.sliding_window or self.kv_lora_rank:
            raise ValueError("GPT-2 attends to every position with full keys and values: a sliding-window or "
                             "latent-attention model does not map onto it")
        if self.is_moe:
            raise ValueError("GPT-2 has no mixture-of-experts MLP: an MoE model does not map onto it")
        if self.n_kv_heads != self.n_heads:
            raise ValueError("GPT-2 has no grouped-query attention: only n_kv_heads == n_heads maps onto it")
        if self.head_dim * self.n_heads != self.hidden_size:
            raise ValueError("GPT-2 has n_heads * head_dim == hidden_size: a model with pruned heads does not "
                             "map onto it")
        return {"model_type": "gpt2", "vocab_size": self.vocab_size, "n_positions": self.max_position_embeddings,
                "n_embd": self.hidden_size, "n_layer": self.n_layers, "n_head": self.n_heads,
                "n_inner": self.intermediate_size, "activation_function": "gelu_new", "tie_word_embeddings": True,
                "resid_pdrop": self.dropout, "embd_pdrop": self.dropout, "attn_pdrop": self.dropout,
                "layer_norm_epsilon": 1e-5, "bos_token_id": None, "eos_token_id": None}


def _require_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")


class LMOutput(NamedTuple):
    """What a forward pass returns: next-token logits at every position, the mean cross-entropy when targets
    were given (else None), and the routing statistics of each MoE layer in order (empty for a dense model)."""
    logits: torch.Tensor            # (B, T, vocab)
    loss: torch.Tensor | None
    moe: tuple[MoEStats, ...] = ()


# -- the modules (training, scoring, uncached decoding) --------------------------------------------------
class MLP(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.c_fc = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.c_proj = Linear(config.intermediate_size, config.hidden_size, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.c_fc(x), approximate="tanh")          # (B, T, intermediate_size)
        return self.dropout(self.c_proj(h))                   # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.attn = LatentSelfAttention(config) if config.kv_lora_rank else CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, bias=config.bias)
        if config.is_moe:
            self.mlp = MoEMLP(config.hidden_size, config.intermediate_size, config.n_experts,
                              config.experts_per_token, config.renormalize_gates, config.capacity_factor,
                              proj_std=0.02 / math.sqrt(2 * config.n_layers), dropout=config.dropout)
        else:
            self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEStats | None]:
        """The residual stream after this block (B, T, C), and the MoE layer's routing (None when dense)."""
        x = x + self.attn(self.ln_1(x))
        if isinstance(self.mlp, MoEMLP):
            y, stats = self.mlp(self.ln_2(x))
            return x + y, stats
        return x + self.mlp(self.ln_2(x)), None


class TinyGPT(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_length(self, length: int) -> None:
        if length > self.config.max_position_embeddings:
            raise ValueError(f"a sequence of {length} tokens is longer than the model's position table "
                             f"(max_position_embeddings {self.config.max_position_embeddings})")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> LMOutput:
        """Training and full-sequence scoring of tokens ``idx`` (B, T): logits for every position, the mean
        cross-entropy if ``targets`` (B, T) are given, and the routing of every MoE layer."""
        self._check_length(idx.shape[1])
        x = self.drop(self.wte(idx) + self.wpe.weight[:idx.shape[1]])   # (B, T, C)
        routing = []
        for block in self.h:
            x, stats = block(x)
            if stats is not None:
                routing.append(stats)
        logits = F.linear(self.ln_f(x), self.wte.weight)   # (B, T, vocab); tied: the output layer is the table
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return LMOutput(logits, loss, tuple(routing))

    def next_token_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Without a cache: run the whole sequence (B, T) and keep the last position's logits (B, vocab).
        Every decode step done this way recomputes the whole prefix."""
        return self(idx).logits[:, -1]

    # -- cached inference ------------------------------------------------------------------------------------
    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """The state of one request: room for ``max_len`` positions (default: the whole position table) in the
        layout this model's attention needs. Make a new one after replacing any of the model's modules."""
        max_len = max_len or self.config.max_position_embeddings
        if max_len > self.config.max_position_embeddings:
            raise ValueError(f"a cache of {max_len} positions is longer than the position table "
                             f"(max_position_embeddings {self.config.max_position_embeddings})")
        cache = new_cache(self.config, batch_size, max_len, self.wte.weight)
        cache.weights = ModelWeights.of(self)
        return cache

    def prefill(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Process the prompts ``idx`` (B, T) into an empty cache; returns the logits of the next token
        (B, vocab)."""
        if cache.length:
            raise ValueError("prefill expects an empty cache; make a new one with new_cache()")
        return cached_forward(idx, cache)

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new token per sequence, ``token`` (B,), on top of the cache; returns the logits of the next
        token (B, vocab). Time this to time one decode step at context ``cache.length``; setting
        ``cache.length`` back rewinds (the next steps overwrite the same slots)."""
        return cached_forward(token.view(-1, 1), cache)

    def extend(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Several new tokens per sequence, ``idx`` (B, T), on top of the cache in one pass; returns the logits
        after each of them (B, T, vocab). Speculative decoding scores drafted tokens this way, then drops the
        rejected ones by setting ``cache.length`` back."""
        return cached_forward(idx, cache, every_position=True)

    def generate(self, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 top_p: float | None = None) -> torch.Tensor:
        """Continue each prompt of ``idx`` (B, T; equal lengths) by ``max_new_tokens`` tokens; see
        :func:`lessonlib.models.decoding.generate`. Returns (B, T + max_new_tokens)."""
        return decoding.generate(self, idx, max_new_tokens, use_cache, temperature, top_k, generator, top_p)


# -- the cached forward pass ----------------------------------------------------------------------------------
class LayerWeights(NamedTuple):
    """One block's weights as plain tensors, in the order the cached forward pass uses them."""
    ln_1_weight: torch.Tensor
    ln_1_bias: torch.Tensor | None
    attention: AttentionWeights | LatentAttentionWeights
    ln_2_weight: torch.Tensor
    ln_2_bias: torch.Tensor | None
    fc_weight: torch.Tensor | None       # (C, intermediate_size); None in an MoE block
    fc_bias: torch.Tensor | None
    mlp_proj_weight: torch.Tensor | None  # (intermediate_size, C)
    mlp_proj_bias: torch.Tensor | None
    experts: ExpertWeights | None = None   # an MoE block: its experts

    @classmethod
    def of(cls, block: Block, index: int) -> LayerWeights:
        expected = {"block": (block, (Block,)),
                    "attn": (getattr(block, "attn", None), (CausalSelfAttention, LatentSelfAttention)),
                    "mlp": (getattr(block, "mlp", None), (MLP, MoEMLP))}
        for part, (module, kinds) in expected.items():
            if type(module) not in kinds:
                raise TypeError(f"block {index} has {type(module).__name__} as its {part}, not "
                                f"{' or '.join(k.__name__ for k in kinds)}: the cached path runs TinyGPT's own "
                                "modules only; generate with use_cache=False, or give the new module a cached "
                                "path of its own")
        norms = (block.ln_1.weight, block.ln_1.bias, block.attn.weights(), block.ln_2.weight, block.ln_2.bias)
        if isinstance(block.mlp, MoEMLP):
            return cls(*norms, None, None, None, None, experts=block.mlp.weights())
        mlp = block.mlp
        return cls(*norms, mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias)


class ModelWeights(NamedTuple):
    """The whole model's weights as plain tensors (the parameters themselves, not copies: training or pruning
    them in place shows here too)."""
    wte: torch.Tensor
    wpe: torch.Tensor
    ln_f: tuple[torch.Tensor, torch.Tensor | None]
    layers: list[LayerWeights]

    @classmethod
    def of(cls, model: TinyGPT) -> ModelWeights:
        return cls(model.wte.weight, model.wpe.weight, (model.ln_f.weight, model.ln_f.bias),
                   [LayerWeights.of(block, i) for i, block in enumerate(model.h)])


def cached_forward(idx: torch.Tensor, cache: KVCache, every_position: bool = False) -> torch.Tensor:
    """``TinyGPT.forward`` for tokens ``idx`` (B, T) at positions ``cache.length`` onwards: each layer's
    attention writes these positions into its store of the cache and reads what they attend to. Returns the
    logits of the token after the last one (B, vocab), or after each one (B, T, vocab) if ``every_position``.
    The hidden state stays (B * T, C): one matrix product per weight."""
    config, weights = cache.config, cache.weights
    batch, steps = idx.shape
    start = cache.length
    end = start + steps
    if end > cache.max_len:
        raise ValueError(f"the cache is full: {start} + {steps} positions exceed its {cache.max_len}")
    hidden = config.hidden_size
    shape = AttentionShape(config.n_heads, config.n_kv_heads, config.head_dim, config.sliding_window)
    attention = latent_attention if config.kv_lora_rank else grouped_query_attention
    x = (F.embedding(idx, weights.wte) + weights.wpe[start:end]).view(batch * steps, hidden)  # (B T, C)
    for w, store in zip(weights.layers, cache.layers, strict=True):
        h = F.layer_norm(x, (hidden,), w.ln_1_weight, w.ln_1_bias)
        x = x + attention(h, w.attention, shape, batch, steps, start, store)                 # (B T, C)
        h = F.layer_norm(x, (hidden,), w.ln_2_weight, w.ln_2_bias)
        if w.experts is None:
            h = F.gelu(linear(h, w.fc_weight, w.fc_bias), approximate="tanh")               # (B T, inter.)
            x = x + linear(h, w.mlp_proj_weight, w.mlp_proj_bias)
        else:
            x = x + moe_mlp(h, w.experts, config.experts_per_token, config.renormalize_gates,
                            config.capacity_factor)[0]
    cache.length = end
    if every_position:
        x = x.view(batch, steps, hidden)                                                     # (B, T, C)
    elif steps > 1:
        x = x.view(batch, steps, hidden)[:, -1]                                              # (B, C)
    return F.linear(F.layer_norm(x, (hidden,), *weights.ln_f), weights.wte)                 # (..., vocab)


def hf_gpt2_state_dict(model: TinyGPT) -> dict[str, torch.Tensor]:
    """The same weights under Hugging Face ``GPT2LMHeadModel``'s names (its Conv1D layers store weights
    (in, out) as ours do, so nothing is transposed)."""
    model.config.to_hf_config()   # raises, with the reason, for a model GPT-2 cannot express
    out = {"transformer." + name: tensor for name, tensor in model.state_dict().items()}
    out["lm_head.weight"] = model.wte.weight
    return out
