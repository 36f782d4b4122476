"""A small decoder-only transformer with a preallocated KV cache: the course's working model.

GPT-2's architecture (learned positions, pre-LayerNorm blocks, GELU MLP of 4x width, tied embeddings), with
one addition for lesson 02: ``n_kv_head`` below ``n_head`` gives grouped-query attention (1 = multi-query).
With ``n_kv_head == n_head`` the parameters map one to one onto Hugging Face's ``GPT2LMHeadModel``.

Two ways through the same weights:

* ``forward`` (training, scoring, and decoding without a cache) runs the ``nn.Module`` blocks below, as
  nanoGPT does.
* ``prefill`` / ``decode_step`` / ``extend`` (cached inference) run :func:`cached_forward`: the same
  arithmetic, read in one place, over the weights as plain tensors. A small model's decode step on a CPU
  is mostly fixed costs, and a module call costs about a microsecond (looking a parameter up through a
  module, half that): skipping ~40 calls per token cuts a quarter of the step. Tests check both paths give
  the same logits.

The cache is allocated once per request (no concatenation per token), attention is PyTorch's fused
``scaled_dot_product_attention``, and a decode step does no Python work beyond the layer arithmetic. Run the
cached path under ``torch.inference_mode()`` (``generate`` does).

    model = TinyGPT(TinyGPTConfig(vocab_size=41, block_size=256, n_layer=4, n_head=4, n_embd=128))
    out = model.generate(prompt_ids, max_new_tokens=64)          # greedy, cached: (batch, prompt + 64)
    cache = model.new_cache(batch_size=1, max_len=256)           # or step by step, e.g. to time one step:
    logits = model.prefill(prompt_ids, cache)                    # (batch, vocab)
    logits = model.decode_step(logits.argmax(-1), cache)         # one more token per sequence
    logits = model.extend(drafted_ids, cache)                    # several at once: (batch, steps, vocab)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .moe import ExpertWeights, MoEMLP, check_settings, moe_mlp


@dataclass
class TinyGPTConfig:
    vocab_size: int
    block_size: int            # longest sequence (prompt + generated) the position table covers
    n_layer: int
    n_head: int
    n_embd: int
    n_kv_head: int | None = None   # None: as many KV heads as query heads
    dropout: float = 0.0
    bias: bool = True
    n_inner: int | None = None     # MLP width; None: 4 * n_embd (structured pruning makes it narrower)
    head_dim: int | None = None    # None: n_embd // n_head (structured pruning keeps it and drops heads)
    n_expert: int = 0              # > 0: every MLP is a mixture of n_expert experts of width n_inner (lesson 03)
    expert_top_k: int = 1          # experts each token runs
    renormalize_gates: bool | None = None   # None: expert_top_k > 1 (Mixtral); top-1 keeps raw gates (Switch)
    capacity_factor: float | None = None    # None: no limit on the tokens an expert takes

    def __post_init__(self):
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}), "
                                 "or give head_dim")
            self.head_dim = self.n_embd // self.n_head
        if self.n_inner is None:
            self.n_inner = 4 * self.n_embd
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        for name in ("n_layer", "n_head", "n_embd", "n_inner", "head_dim", "vocab_size", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_expert:
            check_settings(self.n_expert, self.expert_top_k, self.capacity_factor)
            if not self.bias:
                raise ValueError("bias=False is not supported with n_expert > 0: the experts always have biases; "
                                 "use bias=True or a dense model (n_expert=0)")
        if self.renormalize_gates is None:
            self.renormalize_gates = self.expert_top_k > 1

    def to_hf_config(self) -> dict:
        """A Hugging Face GPT-2 ``config.json`` dict of the same model (multi-head attention only)."""
        if self.n_expert:
            raise ValueError("GPT-2 has no mixture-of-experts MLP: an MoE model does not map onto it")
        if self.n_kv_head != self.n_head:
            raise ValueError("GPT-2 has no grouped-query attention: only n_kv_head == n_head maps onto it")
        if self.head_dim * self.n_head != self.n_embd:
            raise ValueError("GPT-2 has n_head * head_dim == n_embd: a model with pruned heads does not map onto it")
        return {"model_type": "gpt2", "vocab_size": self.vocab_size, "n_positions": self.block_size,
                "n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head, "n_inner": self.n_inner,
                "activation_function": "gelu_new", "tie_word_embeddings": True, "resid_pdrop": self.dropout,
                "embd_pdrop": self.dropout, "attn_pdrop": self.dropout, "layer_norm_epsilon": 1e-5,
                "bos_token_id": None, "eos_token_id": None}


# -- the modules (training, scoring, uncached decoding) --------------------------------------------------
class Linear(nn.Module):
    """``x @ weight + bias`` with the weight stored (in, out), as GPT-2 stores it. For a single token (a
    one-row input, every decode step) this is markedly faster on CPU than ``nn.Linear``'s ``x @ weight.T``:
    the kernel walks the contiguous weight row by row."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = flat @ self.weight if self.bias is None else torch.addmm(self.bias, flat, self.weight)
        return out.view(*x.shape[:-1], out.shape[-1])


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.c_attn = Linear(config.n_embd, (config.n_head + 2 * config.n_kv_head) * config.head_dim,
                             bias=config.bias)  # q, k and v in one product
        self.c_proj = Linear(config.n_head * config.head_dim, config.n_embd, bias=config.bias)
        self.attn_dropout = config.dropout  # on the attention weights, inside the fused kernel
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        heads = self.c_attn(x).view(batch, steps, -1, self.head_dim).transpose(1, 2)
        q, k, v = heads.split((self.n_head, self.n_kv_head, self.n_kv_head), dim=1)  # (batch, heads, steps, dim)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_head != self.n_head,
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(batch, steps, -1)))


class MLP(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, config.n_inner, bias=config.bias)
        self.c_proj = Linear(config.n_inner, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        if config.n_expert:
            self.mlp = MoEMLP(config.n_embd, config.n_inner, config.n_expert, config.expert_top_k,
                              config.renormalize_gates, config.capacity_factor,
                              proj_std=0.02 / math.sqrt(2 * config.n_layer), dropout=config.dropout)
        else:
            self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_length(self, length: int) -> None:
        if length > self.config.block_size:
            raise ValueError(f"sequence of {length} tokens is longer than block_size {self.config.block_size}")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Training and full-sequence scoring: logits (batch, steps, vocab) for every position, and the mean
        cross-entropy if ``targets`` (batch, steps) are given (else None)."""
        self._check_length(idx.shape[1])
        x = self.drop(self.wte(idx) + self.wpe.weight[:idx.shape[1]])
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied: the output layer is the embedding table
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def next_token_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Without a cache: run the whole sequence (batch, steps) and keep the last position's logits
        (batch, vocab). Every decode step done this way recomputes the whole prefix."""
        return self(idx)[0][:, -1]

    # -- cached inference ------------------------------------------------------------------------------------
    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """The state of one request: room for ``max_len`` positions (default block_size) of keys and values,
        and the weights as plain tensors. Make a new one after replacing any of the model's modules."""
        return KVCache(self, batch_size, max_len or self.config.block_size)

    def prefill(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Process the prompts ``idx`` (batch, steps) into an empty cache; returns the logits of the next token
        (batch, vocab)."""
        if cache.length:
            raise ValueError("prefill expects an empty cache; make a new one with new_cache()")
        return cached_forward(idx, cache)

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new token per sequence, ``token`` (batch,), on top of the cache; returns the logits of the next
        token (batch, vocab). Time this to time one decode step at context ``cache.length``; setting
        ``cache.length`` back rewinds (the next steps overwrite the same slots)."""
        return cached_forward(token.view(-1, 1), cache)

    def extend(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Several new tokens per sequence, ``idx`` (batch, steps), on top of the cache in one pass; returns
        the logits after each of them (batch, steps, vocab). Speculative decoding scores drafted tokens this
        way, then drops the rejected ones by setting ``cache.length`` back."""
        return cached_forward(idx, cache, every_position=True)

    # -- generation -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue each prompt of ``idx`` (batch, steps; equal lengths) by ``max_new_tokens`` tokens: greedy
        when ``temperature`` is 0, else sampled (from the ``top_k`` most likely tokens if given).
        ``use_cache=False`` recomputes the whole prefix at every step, the work a KV cache saves. The cached
        path never applies dropout: call this on a model in eval mode. Returns (batch, steps + max_new_tokens)."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, steps) token ids, got shape {tuple(idx.shape)}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        total = idx.shape[1] + max_new_tokens
        if total > self.config.block_size:
            raise ValueError(f"prompt ({idx.shape[1]}) + new tokens ({max_new_tokens}) = {total} exceeds "
                             f"block_size {self.config.block_size}")
        if max_new_tokens == 0:
            return idx.clone()
        new = []
        if use_cache:
            cache = self.new_cache(idx.shape[0], total - 1)  # the last new token is never fed back
            logits = cached_forward(idx, cache)
            for _ in range(max_new_tokens - 1):
                new.append(next_token(logits, temperature, top_k, generator))
                logits = cached_forward(new[-1].view(-1, 1), cache)
            new.append(next_token(logits, temperature, top_k, generator))
        else:
            sequence = idx
            for _ in range(max_new_tokens):
                new.append(next_token(self.next_token_logits(sequence), temperature, top_k, generator))
                sequence = torch.cat([sequence, new[-1].view(-1, 1)], dim=1)
        return torch.cat([idx, torch.stack(new, dim=1)], dim=1)


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each sequence (batch,) from its logits (batch, vocab): the most likely one when
    ``temperature`` is 0, else a sample."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        threshold = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)


# -- the KV cache and the cached forward pass ----------------------------------------------------------------
class LayerWeights(NamedTuple):
    """One block's weights as plain tensors, in the order the cached forward pass uses them."""
    ln_1_weight: torch.Tensor
    ln_1_bias: torch.Tensor
    attn_weight: torch.Tensor     # (n_embd, (n_head + 2 n_kv_head) head_dim): q, k, v in one product
    attn_bias: torch.Tensor
    attn_proj_weight: torch.Tensor
    attn_proj_bias: torch.Tensor
    ln_2_weight: torch.Tensor
    ln_2_bias: torch.Tensor
    fc_weight: torch.Tensor       # (n_embd, n_inner)
    fc_bias: torch.Tensor
    mlp_proj_weight: torch.Tensor  # (n_inner, n_embd)
    mlp_proj_bias: torch.Tensor
    experts: ExpertWeights | None = None   # an MoE block: its experts (and the four MLP fields above are None)

    @classmethod
    def of(cls, block: Block, index: int) -> LayerWeights:
        expected = {"block": (block, (Block,)), "attn": (getattr(block, "attn", None), (CausalSelfAttention,)),
                    "mlp": (getattr(block, "mlp", None), (MLP, MoEMLP))}
        for part, (module, kinds) in expected.items():
            if type(module) not in kinds:
                raise TypeError(f"block {index} has {type(module).__name__} as its {part}, not "
                                f"{' or '.join(k.__name__ for k in kinds)}: the cached path runs TinyGPT's own "
                                "modules only; generate with use_cache=False, or give the new module a cached "
                                "path of its own")
        layers = (block.ln_1, block.attn.c_attn, block.attn.c_proj, block.ln_2)
        tensors = []
        for layer in layers:
            tensors += [layer.weight, _bias_of(layer)]
        if isinstance(block.mlp, MoEMLP):
            return cls(*tensors, None, None, None, None, experts=block.mlp.weights())
        for layer in (block.mlp.c_fc, block.mlp.c_proj):
            tensors += [layer.weight, _bias_of(layer)]
        return cls(*tensors)


def _bias_of(layer: nn.Module) -> torch.Tensor:
    """A layer's bias, or zeros for a model built with ``bias=False`` (one code path for both)."""
    return layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[-1], dtype=layer.weight.dtype,
                                                                 device=layer.weight.device)


class KVCache:
    """The state of one request: keys and values of every layer, allocated once for ``max_len`` positions
    (``length`` of them filled), and the model's weights as plain tensors for :func:`cached_forward`."""

    def __init__(self, model: TinyGPT, batch_size: int, max_len: int):
        config, param = model.config, model.wte.weight
        if max_len > config.block_size:
            raise ValueError(f"a cache of {max_len} positions is longer than block_size {config.block_size}")
        self.config = config
        shape = (batch_size, config.n_kv_head, max_len, config.head_dim)
        self.keys = [param.new_empty(shape) for _ in range(config.n_layer)]
        self.values = [param.new_empty(shape) for _ in range(config.n_layer)]
        self.length = 0
        self.max_len = max_len
        # The parameters themselves (not copies): training or pruning them in place shows here too.
        self.wte, self.wpe, self.ln_f = model.wte.weight, model.wpe.weight, (model.ln_f.weight, _bias_of(model.ln_f))
        self.layers = [LayerWeights.of(block, i) for i, block in enumerate(model.h)]

    def nbytes(self) -> int:
        """Bytes of keys and values (the whole preallocated cache)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


def cached_forward(idx: torch.Tensor, cache: KVCache, every_position: bool = False) -> torch.Tensor:
    """``TinyGPT.forward`` for tokens ``idx`` (batch, steps) at positions ``cache.length`` onwards, reading
    the earlier positions' keys and values from the cache and writing these ones into it. Returns the logits
    of the token after the last one (batch, vocab), or after each one (batch, steps, vocab) if
    ``every_position``. The hidden state stays (batch * steps, n_embd): one matrix product per weight."""
    config = cache.config
    batch, steps = idx.shape
    start = cache.length
    end = start + steps
    if end > cache.max_len:
        raise ValueError(f"the cache is full: {start} + {steps} positions exceed its {cache.max_len}")
    n_embd, head_dim = config.n_embd, config.head_dim
    heads = (config.n_head, config.n_kv_head, config.n_kv_head)
    gqa = config.n_kv_head != config.n_head
    # One new token attends to every cached position: no mask. Several new tokens each attend to the cache
    # and to the new tokens up to themselves: the causal mask, shifted right by the cached length.
    causal = steps > 1 and start == 0
    mask = torch.ones(steps, end, dtype=torch.bool, device=idx.device).tril(start) if steps > 1 and start else None
    x = (F.embedding(idx, cache.wte) + cache.wpe[start:end]).view(batch * steps, n_embd)
    for w, keys, values in zip(cache.layers, cache.keys, cache.values):
        h = F.layer_norm(x, (n_embd,), w.ln_1_weight, w.ln_1_bias)
        qkv = torch.addmm(w.attn_bias, h, w.attn_weight).view(batch, steps, -1, head_dim).transpose(1, 2)
        q, k, v = qkv.split(heads, dim=1)                    # (batch, heads, steps, head_dim)
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        y = F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end], attn_mask=mask,
                                           is_causal=causal, enable_gqa=gqa)
        x = x + torch.addmm(w.attn_proj_bias, y.transpose(1, 2).reshape(batch * steps, -1), w.attn_proj_weight)
        h = F.layer_norm(x, (n_embd,), w.ln_2_weight, w.ln_2_bias)
        if w.experts is None:
            h = F.gelu(torch.addmm(w.fc_bias, h, w.fc_weight), approximate="tanh")
            x = x + torch.addmm(w.mlp_proj_bias, h, w.mlp_proj_weight)
        else:
            x = x + moe_mlp(h, w.experts, config.expert_top_k, config.renormalize_gates, config.capacity_factor)[0]
    cache.length = end
    if every_position:
        x = x.view(batch, steps, n_embd)
    elif steps > 1:
        x = x.view(batch, steps, n_embd)[:, -1]
    return F.linear(F.layer_norm(x, (n_embd,), *cache.ln_f), cache.wte)


def hf_gpt2_state_dict(model: TinyGPT) -> dict[str, torch.Tensor]:
    """The same weights under Hugging Face ``GPT2LMHeadModel``'s names (its Conv1D layers store weights
    (in, out) as ours do, so nothing is transposed)."""
    if model.config.n_kv_head != model.config.n_head:
        raise ValueError("only a multi-head (n_kv_head == n_head) model maps onto GPT-2")
    out = {"transformer." + name: tensor for name, tensor in model.state_dict().items()}
    out["lm_head.weight"] = model.wte.weight
    return out


# -- checkpoints ----------------------------------------------------------------------------------------------
def save_checkpoint(model: TinyGPT, path: str | Path, report: dict) -> None:
    """Weights in fp16 (half the bytes), the config and a report."""
    state = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state, "report": report}, path)


def load_checkpoint(path: str | Path) -> tuple[TinyGPT, dict]:
    """An fp32 model in eval mode, and the report its training script wrote."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyGPT(TinyGPTConfig(**data["config"]))
    model.load_state_dict({k: v.to(torch.float32) for k, v in data["state_dict"].items()})
    return model.eval(), data["report"]


def checkpoint_path(name: str) -> Path:
    """Where a shipped checkpoint lives (lessonlib/data/checkpoints/<name>.pt)."""
    path = Path(__file__).parent / "data" / "checkpoints" / f"{name}.pt"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.pt"))
        raise FileNotFoundError(f"no checkpoint {name!r}; shipped: {', '.join(available) or 'none'}; "
                                f"train it with `python scripts/train_tiny_models.py {name}`")
    return path


def load_pretrained(name: str = "tiny-gpt") -> tuple[TinyGPT, dict]:
    """A shipped checkpoint by name: (fp32 model in eval mode, its training report)."""
    return load_checkpoint(checkpoint_path(name))
