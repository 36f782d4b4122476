"""Lesson 02's material: the trained attention variants measured side by side, what their reports say about
their quality, and the adapters that run the learner's own attention and rolling cache inside the course's model.

    rows = measure_variants(load_variants(), contexts=(32, 128, 240))   # KV bytes and decode time, on this CPU
    quality = reported_quality("tiny-gqa")          # losses, and every report question answered right or not
    with learner_attention(model, my_grouped_query_attention):      # the model now attends with your code
        logits = model(tokens).logits
    generate_with_ring(model, prompt, 40, my_ring_write, my_ring_read)   # decodes through your rolling cache
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..core.stats import Share
from ..core.timing import Timing, interleaved_timings
from ..measure.decode import decode_steps, torch_threads
from ..models.attention import CausalSelfAttention, attend
from ..models.checkpoints import load_answers, load_pretrained, load_report
from ..models.corpus import DIFFICULTIES, TASKS
from ..models.cost_spec import spec_of
from ..models.kv_cache import KVCache
from ..models.tinygpt import ModelWeights

# The trained variants (scripts/train_tiny_models.py): the same shape and parameter budget, another attention.
VARIANTS = {"multi-head": "tiny-gpt", "grouped-query (2 KV heads)": "tiny-gqa", "multi-query": "tiny-mqa",
            "sliding window (16)": "tiny-window", "latent (rank 32)": "tiny-latent"}
ANSWER_TASKS = tuple(TASKS[tag] for tag in "crsa")     # the tasks with an answer to score


def load_variants(names: dict[str, str] | None = None) -> dict[str, torch.nn.Module]:
    """The shipped checkpoints of lesson 02's variants, by display name."""
    return {label: load_pretrained(checkpoint)[0] for label, checkpoint in (names or VARIANTS).items()}


def attention_design(config) -> str:
    """What a TinyGPT config's attention is, in words, from its fields (not from a checkpoint's name)."""
    if config.kv_lora_rank:
        return f"latent, {config.kv_lora_rank} values per position"
    heads = ("multi-head" if config.n_kv_heads == config.n_heads else "multi-query" if config.n_kv_heads == 1
             else f"grouped-query, {config.n_kv_heads} KV heads")
    return heads + (f", window {config.sliding_window}" if config.sliding_window else "")


def attention_of(spec) -> str:
    """What a real model's attention is, in words, from its cost-model spec's structure: how many KV heads for
    how many query heads, a latent, and which layers attend to a window only."""
    if spec.latent_attention:
        return f"latent ({spec.kv_lora_rank} + {spec.qk_rope_head_dim} values per position)"
    kind = ("multi-head" if spec.n_kv_heads == spec.n_heads else "multi-query" if spec.n_kv_heads == 1
            else f"grouped-query ({spec.n_kv_heads} KV heads)")
    kinds = spec.layer_kinds()
    for local, size in (("sliding", spec.sliding_window), ("chunked", spec.attention_chunk_size)):
        n = kinds.count(local)
        if n:
            where = "every layer" if n == len(kinds) else f"{n} of {len(kinds)} layers"
            kind += f" + {size:,}-token {'window' if local == 'sliding' else 'chunks'} ({where})"
    return kind


@dataclass(frozen=True)
class VariantRow:
    """One model's costs, measured on this machine."""
    name: str
    design: str                     # its attention, from its config
    params: int
    kv_bytes_per_token: float       # fp32, every layer (what the cost model counts for this shape)
    cache_bytes: int                # a cache for the whole position table, as allocated
    positions: int                  # ... that many positions
    kv_read_bytes: dict[int, float]     # context -> cache bytes a decode step reads there (a window caps it)
    decode_ms: dict[int, float]     # context -> one batch-1 decode step, ms (fastest of the repeats)
    decode_timings: dict[int, Timing]   # context -> every repeat (is it reliable?), seconds per step


def measure_variants(models: dict[str, torch.nn.Module], contexts=(32, 128, 240), repeats: int = 9,
                     steps: int = 4) -> list[VariantRow]:
    """Every model's costs in one run: its cost-model KV bytes per token, the cache it allocates and the bytes a
    step reads at each context, and the batch-1 decode time at each context (interleaved timings, so background
    load hits all alike; a grading run times one round). Quality does not depend on the machine: see
    :func:`reported_quality`."""
    if not models:
        raise ValueError("give at least one model to measure")
    longest = min(m.config.max_position_embeddings for m in models.values())
    if max(contexts) + steps > longest:
        raise ValueError(f"contexts must leave room for {steps} decode steps in {longest} positions")
    runs = {(name, c): decode_steps(model, c, 1, steps) for name, model in models.items() for c in contexts}
    with torch_threads(1):   # a tiny model gains nothing from more threads, and loses a lot on a busy machine
        timed = {key: t.per(steps) for key, t in interleaved_timings(runs, repeats, warmup=1).items()}
    rows = []
    for name, model in models.items():
        spec = spec_of(model, name)
        rows.append(VariantRow(
            name=name, design=attention_design(model.config), params=model.n_params(),
            kv_bytes_per_token=spec.kv_cache_bytes_per_token(4), cache_bytes=model.new_cache(1).nbytes(),
            positions=model.config.max_position_embeddings,
            kv_read_bytes={c: spec.kv_cache_bytes(c, 1, 4) for c in contexts},
            decode_ms={c: 1e3 * timed[name, c].seconds for c in contexts},
            decode_timings={c: timed[name, c] for c in contexts}))
    return rows


@dataclass(frozen=True)
class Quality:
    """A shipped checkpoint's quality as its training script measured it (the same fixed validation batches and
    the same questions for every model): losses from its report, and every report question answered right or
    not, so that two models compare question by question (:func:`lessonlib.core.stats.paired_difference`)."""
    checkpoint: str
    val_loss: float                 # mean over the report's fixed validation batches
    val_batches: int
    answer_loss: float              # on the answers of mixed-difficulty questions, mean of the four tasks
    training_steps: int             # steps of its own training run (from scratch, or on top of its start)
    answers: dict[tuple[str, str], tuple[bool, ...]]   # (task, difficulty) -> right or not, per question

    def right(self, difficulty: str | None = None, task: str | None = None) -> tuple[bool, ...]:
        """The outcomes of the questions of ``task`` at ``difficulty`` (None: all of them), in a fixed order."""
        picked = [key for key in self.answers if difficulty in (None, key[1]) and task in (None, key[0])]
        if not picked:
            raise ValueError(f"no questions for task {task!r} at difficulty {difficulty!r}; tasks: "
                             f"{', '.join(ANSWER_TASKS)}; difficulties: {', '.join(DIFFICULTIES)}")
        return tuple(r for key in sorted(picked) for r in self.answers[key])

    def share(self, difficulty: str | None = None, task: str | None = None) -> Share:
        """Exact-match accuracy on those questions, with how many there were."""
        return Share.of(self.right(difficulty, task))


def reported_quality(checkpoint: str) -> Quality:
    """:class:`Quality` of a shipped checkpoint, read from its report and its stored answers (no model runs)."""
    report, answers = load_report(checkpoint), load_answers(checkpoint)
    losses = [report["answer_loss_per_task"][task] for task in ANSWER_TASKS]
    return Quality(checkpoint=checkpoint, val_loss=report["validation_loss"],
                   val_batches=report["validation"]["n_batches"], answer_loss=sum(losses) / len(losses),
                   training_steps=report["training"]["steps"], answers=answers)


def positions_read(write, read, window: int, length: int) -> list[int]:
    """Write positions 0 .. length-1 into a ring of ``window`` slots with the learner's ``write``, each key and
    value filled with its position, then ``read`` it back: the positions it returns, in its order (lessonlib's
    rolling cache returns the last min(length, window) positions, oldest first)."""
    keys, values = torch.zeros(1, 1, window, 1), torch.zeros(1, 1, window, 1)
    for p in range(length):
        mark = torch.full((1, 1, 1), float(p))
        write(keys, values, mark, mark.clone(), p)
    got, _ = read(keys, values, length)
    return [int(x) for x in torch.as_tensor(got).reshape(-1).tolist()]


# -- running the learner's code inside the model -----------------------------------------------------------------
@contextlib.contextmanager
def learner_attention(model: torch.nn.Module, attention_fn):
    """Inside the block, ``model``'s forward pass computes attention with ``attention_fn(q, k, v)`` (causal,
    q (B, H, T, D), k and v (B, G, T, D), G dividing H) instead of lessonlib's kernel. Only for models with
    full attention (no window) run without a cache."""
    modules = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    if not modules or any(m.shape.window for m in modules):
        raise ValueError("learner_attention needs a model with multi-head, grouped-query or multi-query "
                         "attention and no sliding window")

    def kernel(q, keys, values, start, positions, window, dropout_p=0.0, scale=None):
        if start or positions is not None or window or dropout_p or scale is not None:
            return attend(q, keys, values, start, positions, window, dropout_p, scale)
        return attention_fn(q, keys, values)

    saved = [m.kernel for m in modules]
    for m in modules:
        m.kernel = kernel
    try:
        yield model
    finally:
        for m, k in zip(modules, saved, strict=True):
            m.kernel = k


class LearnerRing:
    """One layer's rolling cache made of the learner's two functions: ``write(ring_keys, ring_values, k, v,
    position)`` stores one position's key and value (B, G, D) in place, ``read(ring_keys, ring_values, length)``
    returns the keys and values of the last min(length, window) positions. Serves one new token at a time, so the
order in which ``read`` returns them does not change the result (attention sums over its keys in any order); a
step with several new tokens would need them in position order to mask each token's own window."""

    def __init__(self, batch: int, n_kv_heads: int, head_dim: int, window: int, like: torch.Tensor, write, read):
        self.keys = like.new_zeros(batch, n_kv_heads, window, head_dim)
        self.values = like.new_zeros(batch, n_kv_heads, window, head_dim)
        self.write, self.read = write, read

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple:
        if k.shape[2] != 1:
            raise ValueError("the learner's ring takes one new position per step")
        self.write(self.keys, self.values, k[:, :, 0], v[:, :, 0], start)
        keys, values = self.read(self.keys, self.values, start + 1)
        return keys, values, None

    def tensors(self) -> list[torch.Tensor]:
        return [self.keys, self.values]


@torch.inference_mode()
def generate_with_ring(model: torch.nn.Module, prompt: torch.Tensor, max_new_tokens: int, write, read
                       ) -> torch.Tensor:
    """Greedy decoding of a sliding-window model whose every layer caches through the learner's ring functions;
    the prompt (B, T) goes in one token at a time. Returns (B, T + max_new_tokens)."""
    config = model.config
    if not config.sliding_window:
        raise ValueError("generate_with_ring needs a sliding-window model")
    total = prompt.shape[1] + max_new_tokens
    layers = [LearnerRing(prompt.shape[0], config.n_kv_heads, config.head_dim, config.sliding_window,
                          model.wte.weight, write, read) for _ in range(config.n_layers)]
    cache = KVCache(layers, total, config, ModelWeights.of(model))
    logits = None
    for t in range(prompt.shape[1]):
        logits = model.decode_step(prompt[:, t], cache)
    out = [prompt]
    for _ in range(max_new_tokens):
        token = logits.argmax(-1)
        out.append(token[:, None])
        logits = model.decode_step(token, cache)
    return torch.cat(out, dim=1)
