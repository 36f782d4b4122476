"""Lesson 02's material: the trained attention variants measured side by side, and the adapters that run the
learner's own attention and rolling cache inside the course's model.

    rows = measure_variants(load_variants(), VALIDATION, contexts=(32, 128, 240))
    with learner_attention(model, my_grouped_query_attention):      # the model now attends with your code
        logits = model(tokens).logits
    generate_with_ring(model, prompt, 40, my_ring_write, my_ring_read)   # decodes through your rolling cache
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..core.timing import Timing, interleaved_timings
from ..measure.decode import decode_steps, torch_threads
from ..models.attention import CausalSelfAttention, attend
from ..models.checkpoints import load_pretrained
from ..models.corpus import TASKS
from ..models.cost_spec import spec_of
from ..models.evaluation import answer_loss, evaluate, exact_match
from ..models.kv_cache import KVCache
from ..models.tinygpt import ModelWeights

# The trained variants (scripts/train_tiny_models.py): the same shape and parameter budget, another attention.
VARIANTS = {"multi-head": "tiny-gpt", "grouped-query (2 KV heads)": "tiny-gqa", "multi-query": "tiny-mqa",
            "sliding window (16)": "tiny-window", "latent (rank 32)": "tiny-latent"}


def load_variants(names: dict[str, str] | None = None) -> dict[str, torch.nn.Module]:
    """The shipped checkpoints of lesson 02's variants, by display name."""
    return {label: load_pretrained(checkpoint)[0] for label, checkpoint in (names or VARIANTS).items()}


@dataclass(frozen=True)
class VariantRow:
    name: str
    params: int
    kv_bytes_per_token: float       # fp32, every layer (what the cost model counts for this shape)
    cache_bytes: int                # a cache for the whole position table, as allocated
    decode_ms: dict[int, float]     # context -> one batch-1 decode step, ms (fastest of the repeats)
    decode_timings: dict[int, Timing]   # context -> every repeat (is it reliable?), seconds per step
    val_loss: float
    answer_loss: float              # on the mixed-difficulty questions
    exact_match: dict[str, float]   # difficulty -> share of questions answered exactly
    hard_by_task: dict[str, float]  # task name -> share of its hard questions answered exactly


DIFFICULTIES = ("easy", "mixed", "hard")


def measure_variants(models: dict[str, torch.nn.Module], val_batches, contexts=(32, 128, 240), repeats: int = 9,
                     n_questions: int = 40, steps: int = 4) -> list[VariantRow]:
    """Every model measured in one run: its cost-model KV bytes per token and allocated cache, batch-1 decode
    time at each context (interleaved timings, so background load hits all alike), validation loss, answer
    loss and exact-match accuracy on ``n_questions`` questions of each difficulty (a quarter each of copy,
    reverse, sort and add), and on the hard questions task by task."""
    if not models:
        raise ValueError("give at least one model to measure")
    longest = min(m.config.max_position_embeddings for m in models.values())
    if max(contexts) + steps > longest:
        raise ValueError(f"contexts must leave room for {steps} decode steps in {longest} positions")
    runs = {(name, c): decode_steps(model, c, 1, steps) for name, model in models.items() for c in contexts}
    with torch_threads(1):   # a tiny model gains nothing from more threads, and loses a lot on a busy machine
        timed = {key: t.per(steps) for key, t in interleaved_timings(runs, repeats, warmup=1).items()}
    tasks = {tag: TASKS[tag] for tag in "crsa"}
    questions = {(d, tag): _lines(max(1, n_questions // 4), d, tag) for d in DIFFICULTIES for tag in tasks}
    rows = []
    for name, model in tqdm(models.items(), desc="quality", leave=False):
        spec = spec_of(model, name)
        right = {key: exact_match(model, lines) for key, lines in questions.items()}
        rows.append(VariantRow(
            name=name, params=model.n_params(), kv_bytes_per_token=spec.kv_cache_bytes_per_token(4),
            cache_bytes=model.new_cache(1).nbytes(),
            decode_ms={c: 1e3 * timed[name, c].seconds for c in contexts},
            decode_timings={c: timed[name, c] for c in contexts},
            val_loss=evaluate(model, val_batches),
            answer_loss=answer_loss(model, [line for tag in tasks for line in questions["mixed", tag]]),
            exact_match={d: sum(right[d, tag] for tag in tasks) / len(tasks) for d in DIFFICULTIES},
            hard_by_task={tasks[tag]: right["hard", tag] for tag in tasks}))
    return rows


def _lines(n: int, difficulty: str, tag: str) -> list[str]:
    from ..models.corpus import make_lines
    return make_lines(n, seed=202, tasks=[tag], difficulty=difficulty)


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
    returns the keys and values of the last min(length, window) positions. Serves one new token at a time."""

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
