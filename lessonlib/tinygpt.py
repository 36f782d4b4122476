"""A small decoder-only transformer with a preallocated KV cache: the course's working model.

GPT-2's architecture (learned positions, pre-LayerNorm blocks, GELU MLP of 4x width, tied embeddings), with
one addition for lesson 02: ``n_kv_head`` below ``n_head`` gives grouped-query attention (1 = multi-query).
With ``n_kv_head == n_head`` the parameters map one to one onto Hugging Face's ``GPT2LMHeadModel``.

Decoding is lean on purpose: the cache is allocated once per request, attention is PyTorch's fused
``scaled_dot_product_attention``, and a step does no Python work beyond the layer calls.

    model = TinyGPT(TinyGPTConfig(vocab_size=41, block_size=256, n_layer=4, n_head=4, n_embd=128))
    out = model.generate(prompt_ids, max_new_tokens=64)                 # greedy, cached
    cache = model.new_cache(batch_size=1, max_len=256)                  # or step by step:
    logits = model.prefill(prompt_ids, cache); logits = model.decode_step(next_ids, cache)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def __post_init__(self):
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_hf_config(self) -> dict:
        """A Hugging Face GPT-2 ``config.json`` dict of the same model (multi-head attention only)."""
        if self.n_kv_head != self.n_head:
            raise ValueError("GPT-2 has no grouped-query attention: only n_kv_head == n_head maps onto it")
        return {"model_type": "gpt2", "vocab_size": self.vocab_size, "n_positions": self.block_size,
                "n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head, "n_inner": None,
                "activation_function": "gelu_new", "tie_word_embeddings": True, "resid_pdrop": self.dropout,
                "embd_pdrop": self.dropout, "attn_pdrop": self.dropout, "layer_norm_epsilon": 1e-5,
                "bos_token_id": None, "eos_token_id": None}


class KVCache:
    """Keys and values of every layer, allocated once for ``max_len`` positions; ``length`` are filled."""

    def __init__(self, config: TinyGPTConfig, batch_size: int, max_len: int, dtype=torch.float32, device=None):
        shape = (batch_size, config.n_kv_head, max_len, config.head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.length = 0
        self.max_len = max_len

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


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
        kv_width = config.n_kv_head * config.head_dim
        self.c_attn = Linear(config.n_embd, config.n_embd + 2 * kv_width, bias=config.bias)  # q, k, v fused
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.split_sizes = (config.n_embd, kv_width, kv_width)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        batch, steps, _ = x.shape
        q, k, v = self.c_attn(x).split(self.split_sizes, dim=2)
        q = q.view(batch, steps, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(batch, steps, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(batch, steps, self.n_kv_head, self.head_dim).transpose(1, 2)
        if cache is not None:
            start, end = cache.length, cache.length + steps
            cache.keys[layer][:, :, start:end] = k
            cache.values[layer][:, :, start:end] = v
            k, v = cache.keys[layer][:, :, :end], cache.values[layer][:, :, :end]
        # A single new token attends to everything cached; a block of new tokens (prefill from position 0)
        # needs the causal mask.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=steps > 1,
                                           dropout_p=self.dropout if self.training else 0.0,
                                           enable_gqa=self.n_kv_head != self.n_head)
        return self.c_proj(y.transpose(1, 2).reshape(batch, steps, -1))


class MLP(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
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

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output logits. Tied: the output projection reuses the embedding table."""
        return F.linear(hidden, self.wte.weight)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- the forward pass -----------------------------------------------------------------------------------
    def _hidden(self, idx: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        steps = idx.shape[1]
        if start + steps > self.config.block_size:
            raise ValueError(f"sequence of {start + steps} tokens is longer than block_size "
                             f"{self.config.block_size}")
        x = self.drop(self.wte(idx) + self.wpe.weight[start:start + steps])
        for layer, block in enumerate(self.h):
            x = block(x, cache, layer)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Training and full-sequence scoring: logits for every position, and the loss if targets given."""
        logits = self.lm_head(self._hidden(idx, 0, None))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def next_token_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Without a cache: run the whole sequence and keep the last position's logits (batch, vocab)."""
        return self.lm_head(self._hidden(idx, 0, None)[:, -1])

    # -- step-by-step decoding with the cache -------------------------------------------------------------
    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        param = self.wte.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, param.dtype, param.device)

    def prefill(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Process a prompt (batch, steps) into an empty cache; returns the next-token logits (batch, vocab)."""
        if cache.length:
            raise ValueError("prefill expects an empty cache; make a new one with new_cache()")
        hidden = self._hidden(idx, 0, cache)
        cache.length = idx.shape[1]
        return self.lm_head(hidden[:, -1])

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One token per sequence (batch,) on top of the cache; returns the next-token logits (batch, vocab)."""
        if cache.length >= cache.max_len:
            raise ValueError(f"the cache is full ({cache.max_len} positions)")
        hidden = self._hidden(token.view(-1, 1), cache.length, cache)
        cache.length += 1
        return self.lm_head(hidden[:, -1])

    # -- generation ---------------------------------------------------------------------------------------
    @staticmethod
    def _choose(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
        if temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if top_k is not None:
            threshold = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)

    @torch.inference_mode()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue each prompt of ``idx`` (batch, steps) by ``max_new_tokens`` tokens; greedy when
        ``temperature`` is 0. ``use_cache=False`` recomputes the whole prefix at every step (the slow way the
        KV cache avoids). Returns (batch, steps + max_new_tokens)."""
        total = idx.shape[1] + max_new_tokens
        if total > self.config.block_size:
            raise ValueError(f"prompt ({idx.shape[1]}) + new tokens ({max_new_tokens}) = {total} exceeds "
                             f"block_size {self.config.block_size}")
        out = torch.empty(idx.shape[0], total, dtype=idx.dtype, device=idx.device)
        out[:, :idx.shape[1]] = idx
        if use_cache:
            cache = self.new_cache(idx.shape[0], total)
            logits = self.prefill(idx, cache)
            for t in range(idx.shape[1], total):
                out[:, t] = self._choose(logits, temperature, top_k, generator)
                if t + 1 < total:
                    logits = self.decode_step(out[:, t], cache)
        else:
            for t in range(idx.shape[1], total):
                logits = self.next_token_logits(out[:, :t])
                out[:, t] = self._choose(logits, temperature, top_k, generator)
        return out


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
    return load_checkpoint(checkpoint_path(name))
