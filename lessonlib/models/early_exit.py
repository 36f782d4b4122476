"""Early exit inside one model: prediction heads on intermediate layers, and decoding that stops at the first
layer whose head is confident enough.

An exit head after block l is a LayerNorm followed by the model's own tied output layer (the embedding table),
so it reads the residual stream the way the final layer does, started from the final LayerNorm's weights (the
"logit lens"). By default a translator comes first: h + (h W + b), W and b starting at zero, so the head starts
as the logit lens and learns to map an intermediate residual stream onto what the final layer expects (the
"tuned lens" of Belrose et al., 2023; residual form, so weight decay pulls it back towards the identity). A
LayerNorm alone learns little: on tiny-gpt after 100 steps its exits' validation losses were 3.20, 2.94 and 2.47
nats after blocks 1, 2 and 3 (the model's own output: 1.14), with the translator 2.51, 2.18 and 1.70. The
heads train with the model frozen (:func:`train_exit_heads`); a translator costs C^2 multiply-adds per exit
tried, a twelfth of a block.

Skipped layers and the KV cache. A token that exits after block l never runs blocks l+1..L, but later tokens
attend to it in every layer. This module uses CALM's state propagation (Schuster et al., 2022, "Confident
Adaptive Language Modeling"): the exited hidden state is copied up, and each skipped layer computes its keys and
values (only those: its LayerNorm and key/value projections) from it, as if the skipped blocks had added nothing
to the residual stream. Later tokens attend to those, so the cache stays complete; the cost is two small
projections per skipped layer. With no exit (a threshold above 1) decoding is exactly the model's own greedy
decoding.

Decoding is batch size 1 (each sequence exits on its own). Every new token may exit, the first one included:
the prompt but its last token is prefilled through every layer, and the last prompt token runs as a decode step
like the rest. Confidence is measured on each head's next-token distribution as in
:func:`lessonlib.models.cascade.token_confidence` (max probability by default); the final layer answers when no
head is confident. Shapes: B batch, T tokens, C hidden size, V vocab.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import (
    AttentionShape,
    AttentionWeights,
    Linear,
    grouped_query_attention,
    latent_attention,
    linear,
)
from .cascade import MEASURES, token_confidence
from .checkpoints import checkpoint_path, load_pretrained
from .corpus import TOKENIZER, Split, answer_span, split
from .moe import moe_mlp
from .training import History, train


# -- the heads ---------------------------------------------------------------------------------------------------
class ExitHeads(nn.Module):
    """Per exit layer a translator (unless ``translator=False``) and a LayerNorm; the output layer is the model's
    tied embedding table. ``layers`` are block counts: an exit at 1 reads the residual stream after the first
    block (1 <= layer < n_layers; the model's own final layer is the last exit)."""

    def __init__(self, hidden_size: int, n_layers: int, layers: Sequence[int], bias: bool = True,
                 translator: bool = True):
        super().__init__()
        layers = tuple(layers)
        whole = all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in layers)
        if not layers or not whole or not all(1 <= x < n_layers for x in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"exit layers must be distinct whole numbers from 1 to {n_layers - 1} (blocks run "
                             f"before the exit; the model's own output is after block {n_layers}); got {layers!r}")
        self.layers = tuple(sorted(int(x) for x in layers))
        self.n_layers = n_layers
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size, bias=bias) for _ in self.layers)
        self.translators = nn.ModuleList(Linear(hidden_size, hidden_size, bias=bias) for _ in self.layers) \
            if translator else None
        for module in self.translators or ():
            nn.init.zeros_(module.weight)   # the identity map to start: the head is the logit lens

    @classmethod
    def for_model(cls, model, layers: Sequence[int], translator: bool = True) -> ExitHeads:
        """Heads for ``model`` at ``layers``, each LayerNorm starting as a copy of the model's final one (and each
        translator as the identity)."""
        config = model.config
        heads = cls(config.hidden_size, config.n_layers, layers, bias=config.bias, translator=translator)
        for norm in heads.norms:
            norm.load_state_dict(model.ln_f.state_dict())
        return heads

    def config(self) -> dict:
        return {"hidden_size": self.norms[0].normalized_shape[0], "n_layers": self.n_layers,
                "layers": list(self.layers), "bias": self.norms[0].bias is not None,
                "translator": self.translators is not None}

    def logits(self, head: int, hidden: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., V) of exit ``head`` (an index into ``layers``) from hidden states (..., C)."""
        if self.translators is not None:
            hidden = hidden + self.translators[head](hidden)
        return F.linear(self.norms[head](hidden), wte)


def hidden_states(model, idx: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream after each block, (B, T, C) each (n_layers of them), from the model's own modules."""
    if idx.shape[1] > model.config.max_position_embeddings:
        raise ValueError(f"a sequence of {idx.shape[1]} tokens is longer than the model's position table "
                         f"(max_position_embeddings {model.config.max_position_embeddings})")
    x = model.drop(model.wte(idx) + model.wpe.weight[:idx.shape[1]])
    states = []
    for block in model.h:
        x, _ = block(x)
        states.append(x)
    return states


# -- training ----------------------------------------------------------------------------------------------------
class ExitLoss(NamedTuple):
    loss: torch.Tensor


class ExitHeadObjective(nn.Module):
    """The training loop's view of the heads: their parameters only, and as loss the mean cross-entropy of the
    exits on the frozen model's hidden states (the model is kept outside the module, so nothing of it trains)."""

    def __init__(self, model, heads: ExitHeads):
        super().__init__()
        self.heads = heads
        self.frozen = (model,)

    def exit_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each exit head (n_heads,) on inputs x and targets y (B, T)."""
        model = self.frozen[0]
        with torch.no_grad():
            states = hidden_states(model, x)
        wte = model.wte.weight.detach()
        return torch.stack([F.cross_entropy(self.heads.logits(i, states[layer - 1], wte).flatten(0, 1),
                                            y.flatten()) for i, layer in enumerate(self.heads.layers)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> ExitLoss:
        return ExitLoss(self.exit_losses(x, y).mean())


def train_exit_heads(model, layers: Sequence[int], steps: int = 300, data: Split | None = None,
                     val_batches: list | None = None, batch_size: int = 16, seq_len: int = 256, lr: float = 3e-3,
                     warmup: int = 30, seed: int = 0, eval_every: int = 100, progress: bool = True
                     ) -> tuple[ExitHeads, History]:
    """Exit heads for the trained ``model`` at ``layers``, trained ``steps`` steps with the model frozen (the
    course's training loop, :func:`lessonlib.models.training.train`): by default on the training stream, with
    the first 4 fixed validation batches. Returns the heads (eval mode) and the training history."""
    model.eval()
    heads = ExitHeads.for_model(model, layers)
    data = data if data is not None else split("train")
    val_batches = val_batches if val_batches is not None else split("validation").fixed_batches(4, 16, seq_len)
    history = train(ExitHeadObjective(model, heads), data, val_batches, steps=steps, batch_size=batch_size,
                    seq_len=seq_len, lr=lr, warmup=warmup, seed=seed, eval_every=eval_every, progress=progress)
    return heads.eval(), history


@torch.no_grad()
def exit_losses(model, heads: ExitHeads, batches: list) -> dict[int, float]:
    """Mean cross-entropy of each exit (keyed by its layer) and of the model's own output (its n_layers) on
    fixed batches: how much worse an earlier exit predicts."""
    objective = ExitHeadObjective(model, heads)
    totals = torch.zeros(len(heads.layers) + 1)
    for x, y in batches:
        totals[:-1] += objective.exit_losses(x, y)
        totals[-1] += model(x, y).loss
    return {layer: float(t) / len(batches) for layer, t in zip((*heads.layers, heads.n_layers), totals, strict=True)}


def save_exit_heads(heads: ExitHeads, path: str | Path, report: dict) -> None:
    torch.save({"config": heads.config(), "state_dict": heads.state_dict(), "report": report}, path)


def load_exit_heads(path: str | Path) -> tuple[ExitHeads, dict]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    heads = ExitHeads(**data["config"])
    heads.load_state_dict(data["state_dict"])
    return heads.eval(), data["report"]


def load_pretrained_exit_heads(name: str = "tiny-gpt-exits"):
    """Shipped exit heads (lessonlib/data/checkpoints/exit_heads/<name>.pt) with the model they were trained on:
    (model, heads, the training script's report)."""
    path = checkpoint_path("tiny-gpt").parent / "exit_heads" / f"{name}.pt"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.pt"))
        raise FileNotFoundError(f"no exit heads {name!r}; shipped: {', '.join(available) or 'none'}; train them "
                                f"with `python scripts/train_tiny_models.py {name}`")
    heads, report = load_exit_heads(path)
    model, _ = load_pretrained(report["start_from"])
    return model, heads, report


# -- decoding with exits -----------------------------------------------------------------------------------------
def _block(x: torch.Tensor, w, store, shape: AttentionShape, config, start: int) -> torch.Tensor:
    """One block of the cached path for one token, x (1, C): the arithmetic of
    :func:`lessonlib.models.tinygpt.cached_forward`'s loop body, so that no exit gives the model's own logits."""
    hidden = config.hidden_size
    attention = latent_attention if config.kv_lora_rank else grouped_query_attention
    h = F.layer_norm(x, (hidden,), w.ln_1_weight, w.ln_1_bias)
    x = x + attention(h, w.attention, shape, 1, 1, start, store)
    h = F.layer_norm(x, (hidden,), w.ln_2_weight, w.ln_2_bias)
    if w.experts is None:
        h = F.gelu(linear(h, w.fc_weight, w.fc_bias), approximate="tanh")
        return x + linear(h, w.mlp_proj_weight, w.mlp_proj_bias)
    return x + moe_mlp(h, w.experts, config.experts_per_token, config.renormalize_gates, config.capacity_factor)[0]


def _propagate_state(x: torch.Tensor, w, store, shape: AttentionShape, config, start: int) -> None:
    """CALM's state propagation into a skipped layer: its keys and values (or latent) at position ``start``
    computed from the exited hidden state x (1, C), and written to the layer's cache store."""
    h = F.layer_norm(x, (config.hidden_size,), w.ln_1_weight, w.ln_1_bias)
    a = w.attention
    if isinstance(a, AttentionWeights):
        q_width = shape.n_heads * shape.head_dim      # the fused projection's columns are q, then k, then v
        bias = None if a.qkv_bias is None else a.qkv_bias[q_width:]
        kv = linear(h, a.qkv_weight[:, q_width:], bias).view(1, 1, 2 * shape.n_kv_heads, shape.head_dim)
        k, v = kv.transpose(1, 2).split(shape.n_kv_heads, dim=1)                        # (1, G, 1, D) each
        store.update(k, v, start)
    else:
        store.update(linear(h, a.down_weight, a.down_bias).view(1, 1, -1), start)       # (1, 1, r)


def early_exit_step(token: torch.Tensor, cache, heads: ExitHeads, threshold: float,
                    measure: str = "max_prob") -> tuple[torch.Tensor, int]:
    """One decode step of one sequence, ``token`` (1,), with exits: the logits (1, V) of the first exit whose
    confidence reaches ``threshold`` (else the model's own), and the number of blocks run."""
    config, weights = cache.config, cache.weights
    if heads.n_layers != config.n_layers:
        raise ValueError(f"these exit heads were made for a model of {heads.n_layers} layers, not "
                         f"{config.n_layers}")
    start = cache.length
    if start + 1 > cache.max_len:
        raise ValueError(f"the cache is full: {start} + 1 positions exceed its {cache.max_len}")
    shape = AttentionShape(config.n_heads, config.n_kv_heads, config.head_dim, config.sliding_window)
    x = (F.embedding(token.view(1, 1), weights.wte) + weights.wpe[start:start + 1]).view(1, config.hidden_size)
    exits = dict(zip(heads.layers, range(len(heads.layers)), strict=True))
    depth = 0
    for depth, (w, store) in enumerate(zip(weights.layers, cache.layers, strict=True), start=1):
        x = _block(x, w, store, shape, config, start)
        if depth in exits:
            logits = heads.logits(exits[depth], x, weights.wte)
            if token_confidence(logits, measure).item() >= threshold:
                for skipped_w, skipped_store in zip(weights.layers[depth:], cache.layers[depth:], strict=True):
                    _propagate_state(x, skipped_w, skipped_store, shape, config, start)
                cache.length = start + 1
                return logits, depth
    cache.length = start + 1
    return F.linear(F.layer_norm(x, (config.hidden_size,), *weights.ln_f), weights.wte), depth


class EarlyExitOutput(NamedTuple):
    tokens: torch.Tensor           # (1, T + max_new_tokens)
    layers_used: list[int]         # blocks run to choose each new token


def _check_threshold(threshold) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
        raise ValueError(f"threshold must be in [0, 1] (0: exit at the first head), or above 1 never to exit; "
                         f"got {threshold!r}")


@torch.inference_mode()
def early_exit_generate(model, heads: ExitHeads, idx: torch.Tensor, max_new_tokens: int, threshold: float,
                        measure: str = "max_prob") -> EarlyExitOutput:
    """Greedy continuation of the prompt ``idx`` (1, T; batch size 1) by ``max_new_tokens`` tokens, each chosen
    at the first exit whose confidence (``measure``) reaches ``threshold``. Above 1 no head ever exits: the
    model's own greedy output. Returns the tokens and the blocks run for each new token."""
    _check_threshold(threshold)
    if measure not in MEASURES:
        raise ValueError(f"confidence measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if idx.dim() != 2 or idx.shape[0] != 1:
        raise ValueError(f"early exit here decodes one sequence at a time: idx must be (1, steps), got shape "
                         f"{tuple(idx.shape)}; loop over the prompts")
    total = idx.shape[1] + max_new_tokens
    if total > model.config.max_position_embeddings:
        raise ValueError(f"prompt ({idx.shape[1]}) + new tokens ({max_new_tokens}) = {total} exceeds the model's "
                         f"position table (max_position_embeddings {model.config.max_position_embeddings})")
    tokens, layers_used = idx[0].tolist(), []
    if max_new_tokens == 0:
        return EarlyExitOutput(idx.clone(), layers_used)
    cache = model.new_cache(1, total - 1)
    if idx.shape[1] > 1:
        model.prefill(idx[:, :-1], cache)
    token = idx[0, -1:]
    for _ in range(max_new_tokens):
        logits, depth = early_exit_step(token, cache, heads, threshold, measure)
        token = logits.argmax(-1)
        tokens.append(int(token))
        layers_used.append(depth)
    return EarlyExitOutput(torch.tensor([tokens], dtype=idx.dtype), layers_used)


# -- quality and layers used over thresholds ---------------------------------------------------------------------
@dataclass
class EarlyExitPoint:
    """Early exit at one threshold over a set of questions."""
    threshold: float
    exact_match: float             # fraction of answers exactly right (answer and its newline)
    mean_layers: float             # blocks run per generated token
    exit_share: dict[int, float]   # fraction of tokens chosen at each exit layer (n_layers: the model's own)


def early_exit_report(model, heads: ExitHeads, lines: list[str], thresholds: Sequence[float],
                      measure: str = "max_prob") -> list[EarlyExitPoint]:
    """Exact-match accuracy and layers used at each threshold, answering each question of ``lines`` (complete
    lines: question, ``>``, answer) with :func:`early_exit_generate` (the right answer's length + 1 tokens)."""
    for threshold in thresholds:
        _check_threshold(threshold)
    points = []
    depths = (*heads.layers, heads.n_layers)
    for threshold in thresholds:
        right, used = 0, []
        for line in lines:
            start, end = answer_span(line)
            if start == end:
                raise ValueError(f"line {line!r} has no answer to score (no '>')")
            prompt = torch.tensor([TOKENIZER.encode("\n" + line[:start])])
            out = early_exit_generate(model, heads, prompt, end - start + 1, threshold, measure)
            right += TOKENIZER.decode(out.tokens[0, prompt.shape[1]:].tolist()) == line[start:end] + "\n"
            used += out.layers_used
        points.append(EarlyExitPoint(float(threshold), right / len(lines), sum(used) / len(used),
                                     {d: used.count(d) / len(used) for d in depths}))
    return points
