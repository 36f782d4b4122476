"""A small, reproducible training loop: AdamW, warmup then cosine learning rate, gradient clipping, fixed seeds,
a tqdm progress bar, periodic validation (:func:`lessonlib.models.evaluation.evaluate`)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from .corpus import Batch, Split
from .evaluation import evaluate


@dataclass
class History:
    steps: list[int] = field(default_factory=list)        # every step (0-based) ...
    train_loss: list[float] = field(default_factory=list)  # ... and its training-batch loss
    val_steps: list[int] = field(default_factory=list)    # steps done at each evaluation ...
    val_loss: list[float] = field(default_factory=list)    # ... and the validation loss then
    seconds: float = 0.0                                   # wall-clock time of the whole run


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then a cosine down to a tenth of it at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: torch.nn.Module, data: Split, val_batches: list[Batch], *, steps: int, batch_size: int = 16,
          seq_len: int = 256, lr: float = 3e-3, warmup: int = 100, weight_decay: float = 0.1,
          grad_clip: float = 1.0, seed: int = 0, eval_every: int = 250, progress: bool = True,
          loss_fn: Callable | None = None, after_step: Callable | None = None) -> History:
    """Train ``model`` in place on random windows of ``data``; evaluate on ``val_batches`` every
    ``eval_every`` steps and at the end; leave the model in eval mode and return the history.
    ``seed`` fixes torch's global generator and the window sampler, so a run repeats exactly on the same
    machine. Weight decay applies to matrices only (not biases, LayerNorms). ``loss_fn(model, x, y)``
    replaces the model's own loss (lesson 03a's MoE adds an auxiliary load-balancing term this way).
    ``after_step(step)`` runs after every optimizer step (pruning re-applies its masks this way, so pruned
    weights stay zero)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    history = History()
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), disable=not progress, desc="training")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup)
        x, y = data.batch(batch_size, seq_len, generator)
        loss = loss_fn(model, x, y) if loss_fn else model(x, y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if after_step is not None:
            after_step(step)
        history.steps.append(step)
        history.train_loss.append(loss.item())
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            history.val_steps.append(step + 1)
            history.val_loss.append(evaluate(model, val_batches))
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{history.val_loss[-1]:.3f}")
    history.seconds = time.perf_counter() - start
    model.eval()
    return history
