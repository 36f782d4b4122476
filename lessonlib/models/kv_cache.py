"""The KV cache: what a request keeps of every earlier position so that a new token does not recompute them.

One object per request (:class:`KVCache`), holding one store per layer. Each store owns its layout: its
``update`` writes the new positions at their place and returns what the attention step reads, as a triple
``(keys, values, positions)``: keys and values (B, G, S, D) (a latent store returns its latents (B, S, r) and
None), and the absolute position of each of the S entries (S,), or None when they are positions 0..S-1 in
order, or when the step is a single token that may attend to all of them. The attention functions
(:mod:`lessonlib.models.attention`) never index a cache themselves. Three layouts, one per kind of attention:

* :class:`FullKV`: keys and values of every position, (B, G, max_len, D) each, preallocated once. Multi-head,
  grouped-query and multi-query attention differ only in G, the number of key/value heads.
* :class:`RollingKV`: sliding-window attention keeps only the last ``window`` positions in a ring of
  ``window`` slots: position p lives in slot p % window, so memory stops growing at the window.
* :class:`LatentKV`: latent (low-rank) attention caches one small vector per position, (B, max_len, r), from
  which keys and values are rebuilt.

``length`` is the number of positions processed so far; setting it back rewinds (the next step overwrites the
same slots), which is how speculative decoding drops rejected tokens. A rolling cache can rewind only within
its window. Shapes: B batch, G key/value heads, T new positions, S positions attended, D head_dim, r latent.
"""
from __future__ import annotations

import torch


class FullKV:
    """Keys and values of every position up to ``max_len``."""

    def __init__(self, batch_size: int, n_kv_heads: int, head_dim: int, max_len: int, like: torch.Tensor):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.keys, self.values = like.new_empty(shape), like.new_empty(shape)

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple:
        end = start + k.shape[2]
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end], None

    def tensors(self) -> list[torch.Tensor]:
        return [self.keys, self.values]


class RollingKV:
    """The last ``window`` positions' keys and values in a ring: position p in slot p % window."""

    def __init__(self, batch_size: int, n_kv_heads: int, head_dim: int, window: int, like: torch.Tensor):
        shape = (batch_size, n_kv_heads, window, head_dim)
        self.keys, self.values = like.new_empty(shape), like.new_empty(shape)
        self.window = window

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple:
        steps, window = k.shape[2], self.window
        end = start + steps
        if steps == 1:
            # One new token attends to exactly what the ring holds after writing it: the last `window`
            # positions (fewer at the start). Attention is a weighted sum over keys, so their order in the
            # ring does not matter and no mask is needed.
            slot = start % window
            self.keys[:, :, slot] = k[:, :, 0]
            self.values[:, :, slot] = v[:, :, 0]
            held = min(end, window)
            return self.keys[:, :, :held], self.values[:, :, :held], None
        # Several new tokens: the earlier positions still inside the first one's window, then the new ones,
        # with their positions so that attention can mask each query to its own window. Read before writing:
        # the new tokens may overwrite slots an earlier query still needs.
        earlier = torch.arange(max(0, start - window + 1), start, device=k.device)
        slots = earlier % window
        keys = torch.cat([self.keys[:, :, slots], k], dim=2)
        values = torch.cat([self.values[:, :, slots], v], dim=2)
        positions = torch.cat([earlier, torch.arange(start, end, device=k.device)])
        kept = slice(max(0, steps - window), steps)   # only the last `window` new positions stay
        new_slots = torch.arange(start, end, device=k.device)[kept] % window
        self.keys[:, :, new_slots] = k[:, :, kept]
        self.values[:, :, new_slots] = v[:, :, kept]
        return keys, values, positions

    def tensors(self) -> list[torch.Tensor]:
        return [self.keys, self.values]


class LatentKV:
    """One latent vector of ``rank`` values per position (keys and values are rebuilt from it)."""

    def __init__(self, batch_size: int, rank: int, max_len: int, like: torch.Tensor):
        self.latents = like.new_empty(batch_size, max_len, rank)

    def update(self, c: torch.Tensor, start: int) -> tuple:
        end = start + c.shape[1]
        self.latents[:, start:end] = c
        return self.latents[:, :end], None, None

    def tensors(self) -> list[torch.Tensor]:
        return [self.latents]


class KVCache:
    """The cache of one request: a store per layer (``layers``), ``length`` positions filled of ``max_len``, and
    what the model's cached path needs alongside (its ``config``, and its ``weights`` as plain tensors)."""

    def __init__(self, layers: list, max_len: int, config=None, weights=None):
        self.layers = layers
        self.length = 0
        self.max_len = max_len
        self.config = config
        self.weights = weights

    def nbytes(self) -> int:
        """Bytes the cache holds (all of it is allocated up front)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.tensors())


def new_cache(config, batch_size: int, max_len: int, like: torch.Tensor) -> KVCache:
    """The cache layout a model of ``config`` needs for ``batch_size`` sequences of up to ``max_len`` positions,
    with the dtype and device of ``like``."""
    if config.kv_lora_rank:
        layers = [LatentKV(batch_size, config.kv_lora_rank, max_len, like) for _ in range(config.n_layers)]
    elif config.sliding_window and config.sliding_window < max_len:
        layers = [RollingKV(batch_size, config.n_kv_heads, config.head_dim, config.sliding_window, like)
                  for _ in range(config.n_layers)]
    else:
        layers = [FullKV(batch_size, config.n_kv_heads, config.head_dim, max_len, like)
                  for _ in range(config.n_layers)]
    return KVCache(layers, max_len, config)
