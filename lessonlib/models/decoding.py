"""Turning next-token logits into text: choosing a token (greedy or sampled) and the generation loop, with or
without a KV cache. Works with any model that offers TinyGPT's inference methods (``new_cache``, ``prefill``,
``decode_step``, ``next_token_logits``) and a ``config.max_position_embeddings``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each sequence (B,) from its logits (B, vocab): the most likely one when
    ``temperature`` is 0, else a sample from the softmax at that temperature (restricted to the ``top_k`` most
    likely tokens if given)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature!r}")
    logits = logits / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or None for no limit), got {top_k!r}")
        threshold = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]   # (B, 1)
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)


@torch.inference_mode()
def generate(model, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True, temperature: float = 0.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue each prompt of ``idx`` (B, T; equal lengths) by ``max_new_tokens`` tokens: greedy when
    ``temperature`` is 0, else sampled (see :func:`next_token`). ``use_cache=False`` recomputes the whole
    prefix at every step, the work a KV cache saves. The cached path never applies dropout: call this on a
    model in eval mode. Returns (B, T + max_new_tokens)."""
    if idx.dim() != 2:
        raise ValueError(f"idx must be (batch, steps) token ids, got shape {tuple(idx.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    total = idx.shape[1] + max_new_tokens
    longest = model.config.max_position_embeddings
    if total > longest:
        raise ValueError(f"prompt ({idx.shape[1]}) + new tokens ({max_new_tokens}) = {total} exceeds the "
                         f"model's position table (max_position_embeddings {longest})")
    if max_new_tokens == 0:
        return idx.clone()
    new = []
    if use_cache:
        cache = model.new_cache(idx.shape[0], total - 1)   # the last new token is never fed back
        logits = model.prefill(idx, cache)                 # (B, vocab)
        for _ in range(max_new_tokens - 1):
            new.append(next_token(logits, temperature, top_k, generator))
            logits = model.decode_step(new[-1], cache)
        new.append(next_token(logits, temperature, top_k, generator))
    else:
        sequence = idx
        for _ in range(max_new_tokens):
            new.append(next_token(model.next_token_logits(sequence), temperature, top_k, generator))
            sequence = torch.cat([sequence, new[-1].view(-1, 1)], dim=1)
    return torch.cat([idx, torch.stack(new, dim=1)], dim=1)
