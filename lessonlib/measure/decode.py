"""Repeatable units of inference work to time: a few cached decode steps at a fixed context, a prefill, and a
decode step without a cache. Each ``*_steps``/``*_run`` function returns a callable that does the same work
on every call (the cache is rewound first), for :mod:`lessonlib.core.timing`."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from ..core.timing import Timing, median_time, timing


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run PyTorch on ``n`` threads inside the block, then restore the previous setting. A model of a few
    million parameters gains nothing from more threads (its operators are too small to split), while every
    extra thread has to wait for the others at each operator: on a machine where other programs hold the
    cores, those waits turn a 1 ms step into 10 ms at random."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def decode_steps(model, context_len: int, batch_size: int = 1, steps: int = 8) -> Callable[[], None]:
    """A function that runs ``steps`` cached decode steps of ``batch_size`` sequences with ``context_len``
    tokens already cached, rewinding the cache first, so that every call does the same work (for timing)."""
    if context_len < 1:
        raise ValueError("context_len must be at least 1 (the prompt)")
    ids = torch.randint(0, model.config.vocab_size, (batch_size, context_len),
                        generator=torch.Generator().manual_seed(0))
    cache = model.new_cache(batch_size, context_len + steps)
    token = ids[:, -1]
    with torch.inference_mode():
        model.prefill(ids, cache)

    def run() -> None:
        with torch.inference_mode():
            cache.length = context_len  # rewind: the next steps overwrite the same slots
            for _ in range(steps):
                model.decode_step(token, cache)
    return run


def prefill_run(model, prompt_len: int, batch_size: int = 1) -> Callable[[], None]:
    """A function that prefills ``batch_size`` prompts of ``prompt_len`` tokens into a rewound cache."""
    ids = torch.randint(0, model.config.vocab_size, (batch_size, prompt_len),
                        generator=torch.Generator().manual_seed(1))
    cache = model.new_cache(batch_size, prompt_len)

    def run() -> None:
        with torch.inference_mode():
            cache.length = 0
            model.prefill(ids, cache)
    return run


def recompute_run(model, context_len: int, batch_size: int = 1) -> Callable[[], None]:
    """A function that runs one decode step *without* a cache: the whole prefix (context_len + 1 tokens)."""
    ids = torch.randint(0, model.config.vocab_size, (batch_size, context_len + 1),
                        generator=torch.Generator().manual_seed(0))

    def run() -> None:
        with torch.inference_mode():
            model.next_token_logits(ids)
    return run


def decode_step_timing(model, context_len: int, batch_size: int = 1, steps: int = 8, repeats: int = 5,
                       max_repeats: int = 15) -> Timing:
    """Seconds per cached decode step with ``context_len`` tokens already cached: calls of ``steps``
    consecutive steps, repeated until the fastest is reproduced (see :class:`~lessonlib.core.timing.Timing`)."""
    return timing(decode_steps(model, context_len, batch_size, steps), repeats, max_repeats=max_repeats).per(steps)


def recompute_step_timing(model, context_len: int, batch_size: int = 1, repeats: int = 5,
                          max_repeats: int = 15) -> Timing:
    """Seconds for one decode step without a cache, timed like :func:`decode_step_timing`."""
    return timing(recompute_run(model, context_len, batch_size), repeats, max_repeats=max_repeats)


def time_decode_step(model, context_len: int, batch_size: int = 1, steps: int = 8, repeats: int = 5) -> float:
    """Seconds per cached decode step with ``context_len`` tokens already cached (median over repeats of
    ``steps`` consecutive steps)."""
    return median_time(decode_steps(model, context_len, batch_size, steps), repeats) / steps


def time_recompute_step(model, context_len: int, batch_size: int = 1, repeats: int = 5) -> float:
    """Seconds for one decode step *without* a cache: the whole prefix (context_len + 1 tokens) again."""
    return median_time(recompute_run(model, context_len, batch_size), repeats)
