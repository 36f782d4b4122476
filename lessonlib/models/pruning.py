"""Pruning TinyGPT: zero the least important weights, keep them zero while fine-tuning, and count what it saves.

Two kinds of pruning, with different payoffs:

* Unstructured (``magnitude_masks``, ``n_m_masks``): zero individual weights. The matrices keep their shapes,
  so a dense kernel does exactly the same work; the savings come only from a sparse storage format (see
  ``size_report``) or from hardware that skips zeros in a fixed pattern (NVIDIA's 2:4 sparse tensor cores).
* Structured (``structured_prune``): drop whole MLP channels and attention heads, then build a smaller
  ordinary TinyGPT. Every matrix product shrinks, on any hardware, with no special kernel.

A mask is a dict from parameter name (as in ``model.named_parameters()``) to a bool tensor of the same shape,
True where the weight is kept. Typical use:

    masks = magnitude_masks(model, 0.5)                 # or n_m_masks(model, 2, 4)
    apply_masks(model, masks)                           # zero the pruned weights, in place
    fine_tune(model, masks, corpus.split("train"), val_batches, steps=300, lr=3e-4)
    size_report(model, masks).rows                      # bytes dense vs CSR, bitmask, 2:4

    small = structured_prune(model, mlp_keep=0.5, heads_keep=2)   # a new, smaller TinyGPT
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

import torch
import torch.nn as nn

from ..core.checks import require_sparsity
from .attention import CausalSelfAttention
from .corpus import Batch, Split
from .tinygpt import MLP, Block, TinyGPT
from .training import History, train

# The linear layers of a block, and the side their weight's input (reduction) dimension is on: weights are
# stored (in, out), so the input dimension is dim 0.
PRUNABLE_LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
SCOPES = ("global", "layer")


def prunable_weights(model: TinyGPT) -> dict[str, nn.Parameter]:
    """The weight matrices pruning acts on: in every block, attention's qkv and output projection and the MLP's
    two layers, by parameter name (``h.0.attn.c_attn.weight``, ...), in model order.

    Left dense, by convention: the token embedding (it is also the output layer, so a zero there changes both
    the input vector of a token and its logit, and at 41 x 128 it is small), the position table, LayerNorms
    and biases. These are a few percent of a large model's parameters and pruning them hurts more than it
    saves; the block matrices are where the parameters, the bytes and the FLOPs are."""
    weights = {}
    for i, block in enumerate(model.h):
        _check_block(block, i)
        for layer in PRUNABLE_LAYERS:
            weights[f"h.{i}.{layer}.weight"] = block.get_submodule(layer).weight
    return weights


def _check_block(block: nn.Module, index: int) -> None:
    parts = {"block": (block, Block), "attn": (getattr(block, "attn", None), CausalSelfAttention),
             "mlp": (getattr(block, "mlp", None), MLP)}
    for part, (module, kind) in parts.items():
        if type(module) is not kind:
            raise TypeError(f"block {index} has {type(module).__name__} as its {part}, not {kind.__name__}: "
                            "pruning knows TinyGPT's own blocks only")


# -- unstructured masks --------------------------------------------------------------------------------------
def _keep_largest(magnitudes: torch.Tensor, n_remove: int) -> torch.Tensor:
    """A flat bool mask removing the ``n_remove`` smallest entries of 1-D ``magnitudes``. A stable sort breaks
    ties by position (earlier goes first), so the count is exact and the mask the same on every run."""
    mask = torch.ones_like(magnitudes, dtype=torch.bool)
    mask[torch.argsort(magnitudes, stable=True)[:n_remove]] = False
    return mask


@torch.no_grad()
def magnitude_masks(model: TinyGPT, sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Masks (True = keep) removing the smallest-magnitude prunable weights: ``round(sparsity * n)`` of them.

    ``scope="global"`` ranks all prunable weights together, so layers whose weights are small lose more of
    them; ``scope="layer"`` removes the same fraction from each matrix (n is then each matrix's size)."""
    require_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    weights = prunable_weights(model)
    if scope == "layer":
        return {name: _keep_largest(w.abs().flatten(), round(sparsity * w.numel())).view_as(w)
                for name, w in weights.items()}
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    kept = _keep_largest(flat, round(sparsity * flat.numel())).split([w.numel() for w in weights.values()])
    return {name: k.view_as(w) for (name, w), k in zip(weights.items(), kept, strict=True)}


@torch.no_grad()
def n_m_masks(model: TinyGPT, n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """N:M semi-structured masks: of every ``m`` consecutive weights along the input (reduction) dimension,
    keep the ``n`` largest in magnitude. With our (in, out) storage that is ``m`` consecutive rows within each
    column. 2:4 is the pattern NVIDIA's sparse tensor cores run at up to twice the dense rate."""
    if not (isinstance(n, int) and isinstance(m, int)) or not 1 <= n <= m:
        raise ValueError(f"need whole numbers 1 <= n <= m (keep n of every m), got n={n!r}, m={m!r}")
    masks = {}
    for name, w in prunable_weights(model).items():
        n_in, n_out = w.shape
        if n_in % m:
            raise ValueError(f"{name} has input dimension {n_in}, which m={m} does not divide: choose an m that "
                             "divides every layer's input dimension")
        groups = w.abs().view(n_in // m, m, n_out)
        # Descending stable sort: on ties the earlier row of the group is kept.
        largest = torch.argsort(groups, dim=1, descending=True, stable=True)[:, :n]
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, largest, True)
        masks[name] = mask.view(n_in, n_out)
    return masks


def is_n_m(mask: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """Does a 2-D (in, out) mask keep at most ``n`` of every ``m`` consecutive entries along the input dim?"""
    if mask.dim() != 2 or mask.shape[0] % m:
        return False
    return bool((mask.view(mask.shape[0] // m, m, -1).sum(dim=1) <= n).all())


# -- using masks ---------------------------------------------------------------------------------------------
def _masked_parameters(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    """The parameters ``masks`` names, after checking each mask fits its parameter."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise KeyError(f"the masks name {name!r}, which is not a parameter of this model (were they made "
                           "for a different model?)")
        if mask.shape != params[name].shape or mask.dtype != torch.bool:
            raise ValueError(f"the mask of {name} must be a bool tensor of shape {tuple(params[name].shape)}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
    return {name: params[name] for name in masks}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero, in place, every weight its mask does not keep."""
    for name, param in _masked_parameters(model, masks).items():
        param.masked_fill_(~masks[name], 0.0)


@torch.no_grad()
def sparsity(model: nn.Module, masks: dict[str, torch.Tensor] | None = None) -> float:
    """The fraction of weights that are exactly zero: over the prunable weights, or over the parameters that
    ``masks`` name (their values are not used). Counts the model's actual zeros, so it also shows that
    masks survived fine-tuning or an fp16 round trip."""
    params = prunable_weights(model) if masks is None else _masked_parameters(model, masks)
    zeros = sum(int((p == 0).sum()) for p in params.values())
    return zeros / sum(p.numel() for p in params.values())


def fine_tune(model: TinyGPT, masks: dict[str, torch.Tensor], data: Split, val_batches: list[Batch], *, steps: int,
              **train_kwargs) -> History:
    """Train a pruned model with :func:`lessonlib.models.training.train` so that the pruned weights stay exactly zero.

    The masks are applied first; during training a hook on each masked parameter multiplies its gradient by
    the mask (so gradient clipping and AdamW's moments see no gradient there), and after every optimizer
    step the masks are applied again (AdamW's weight decay would otherwise be the only thing touching those
    weights, and it keeps a zero at zero; re-applying makes "exactly zero" hold by construction).
    ``train_kwargs`` go to ``train`` (lr, warmup, batch_size, seed, ...)."""
    if "after_step" in train_kwargs:
        raise ValueError("fine_tune uses train's after_step to re-apply the masks; it cannot take another one")
    params = _masked_parameters(model, masks)
    apply_masks(model, masks)
    hooks = [params[name].register_hook(lambda grad, keep=mask: grad * keep) for name, mask in masks.items()]
    try:
        return train(model, data, val_batches, steps=steps, after_step=lambda step: apply_masks(model, masks),
                     **train_kwargs)
    finally:
        for hook in hooks:
            hook.remove()


# -- what a sparse format would store ------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeRow:
    """One tensor (or the total): its size, and the bytes it takes dense and in three sparse formats."""
    name: str
    params: int
    zeros: int
    dense_bytes: int
    csr_bytes: int        # values + int32 column index per value + int32 row pointers (rows + 1)
    bitmask_bytes: int    # values + one bit per position
    two_four_bytes: int | None  # half the values + 2 bits of index per stored value; None unless the mask is 2:4

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params


@dataclass(frozen=True)
class SizeReport:
    rows: list[SizeRow]   # one per masked tensor
    total: SizeRow

    header = ("tensor", "params", "zeros", "sparsity", "dense B", "CSR B", "bitmask B", "2:4 B")

    def table_rows(self) -> list[tuple]:
        """The rows and the total as tuples matching ``header``: ``display.table(r.header, r.table_rows())``."""
        return [(r.name, r.params, r.zeros, round(r.sparsity, 3), r.dense_bytes, r.csr_bytes, r.bitmask_bytes,
                 "-" if r.two_four_bytes is None else r.two_four_bytes) for r in self.rows + [self.total]]


def _size_row(name: str, mask: torch.Tensor, bytes_per_value: int) -> SizeRow:
    params, kept = mask.numel(), int(mask.sum())
    rows = mask.shape[0] if mask.dim() == 2 else 1   # CSR over the tensor as stored: (in, out), in = rows
    two_four = None
    if is_n_m(mask, 2, 4):
        stored = params // 2   # 2 of every 4, stored even where fewer than 2 are nonzero
        two_four = stored * bytes_per_value + math.ceil(stored * 2 / 8)
    return SizeRow(name=name, params=params, zeros=params - kept, dense_bytes=params * bytes_per_value,
                   csr_bytes=kept * (bytes_per_value + 4) + (rows + 1) * 4,
                   bitmask_bytes=kept * bytes_per_value + math.ceil(params / 8), two_four_bytes=two_four)


def _sum_rows(rows: Iterable[SizeRow]) -> SizeRow:
    rows = list(rows)
    two_four = [r.two_four_bytes for r in rows]
    return SizeRow(name="total", params=sum(r.params for r in rows), zeros=sum(r.zeros for r in rows),
                   dense_bytes=sum(r.dense_bytes for r in rows), csr_bytes=sum(r.csr_bytes for r in rows),
                   bitmask_bytes=sum(r.bitmask_bytes for r in rows),
                   two_four_bytes=None if None in two_four else sum(two_four))


def size_report(model: nn.Module, masks: dict[str, torch.Tensor], bytes_per_value: int = 2) -> SizeReport:
    """Per masked tensor and in total: parameters, pruned (masked-out) count, and the bytes stored dense with
    ``bytes_per_value`` (2: fp16) against CSR, a bitmask, and NVIDIA's 2:4 compressed format (only where the
    mask is 2:4 along the input dimension). Only the masked tensors count: the rest stay dense either way."""
    if not isinstance(bytes_per_value, int) or bytes_per_value < 1:
        raise ValueError(f"bytes_per_value must be a positive whole number (2 for fp16), got {bytes_per_value!r}")
    _masked_parameters(model, masks)
    rows = [_size_row(name, mask, bytes_per_value) for name, mask in masks.items()]
    if not rows:
        raise ValueError("no masks given: nothing to report")
    return SizeReport(rows=rows, total=_sum_rows(rows))


# -- structured pruning --------------------------------------------------------------------------------------
def _count(keep: int | float, total: int, what: str) -> int:
    """``keep`` as a count out of ``total``: a whole number as is, a fraction in (0, 1] of ``total``."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise ValueError(f"{what} must be a count or a fraction, got {keep!r}")
    if isinstance(keep, float):
        if not 0 < keep <= 1:
            raise ValueError(f"{what} as a fraction must be in (0, 1], got {keep}")
        keep = max(1, round(keep * total))
    if not 1 <= keep <= total:
        raise ValueError(f"{what} must be between 1 and {total}, got {keep}")
    return keep


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in ascending index order (ties: the earlier index)."""
    return torch.argsort(scores, descending=True, stable=True)[:k].sort().values


def _head_columns(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Columns (of q, or of the projection's rows) belonging to ``heads``: head h owns h*head_dim ... +head_dim."""
    return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()


@torch.no_grad()
def _kept_units(model: TinyGPT, mlp_keep: int | float, heads_keep: int | float) -> list[tuple[torch.Tensor, ...]]:
    """Per layer: (kept MLP channels, kept heads), as sorted index tensors.

    A channel's importance is ||its fc column|| * ||its projection row||: what a unit activation of it can add
    to the residual stream, scaled by how strongly the input drives it. A head's is the same for its value
    path made of all its weights: ||its q, k and v columns together|| * ||its projection rows||. Both ignore
    the data (no activations are measured), which keeps the choice deterministic and cheap; fine-tuning
    afterwards recovers most of what a better criterion would save."""
    config = model.config
    if config.n_kv_heads != config.n_heads:
        raise ValueError(f"structured pruning needs a multi-head model (n_kv_heads == n_heads); this one has "
                         f"{config.n_heads} query heads sharing {config.n_kv_heads} KV heads (grouped-query)")
    prunable_weights(model)  # checks every block is TinyGPT's own
    n_mlp = _count(mlp_keep, config.intermediate_size, "mlp_keep")
    n_heads = _count(heads_keep, config.n_heads, "heads_keep")
    kept = []
    for block in model.h:
        fc, proj = block.mlp.c_fc.weight, block.mlp.c_proj.weight
        channels = _top(fc.norm(dim=0) * proj.norm(dim=1), n_mlp)
        qkv = block.attn.c_attn.weight.view(config.hidden_size, 3, config.n_heads, config.head_dim)
        out = block.attn.c_proj.weight.view(config.n_heads, config.head_dim, config.hidden_size)
        heads = _top(qkv.pow(2).sum(dim=(0, 1, 3)).sqrt() * out.pow(2).sum(dim=(1, 2)).sqrt(), n_heads)
        kept.append((channels, heads))
    return kept


def structured_masks(model: TinyGPT, mlp_keep: int | float, heads_keep: int | float) -> dict[str, torch.Tensor]:
    """The masks (on this model) of :func:`structured_prune`: for a dropped MLP channel its fc column, fc
    bias entry and projection row; for a dropped head its q, k and v columns and biases and its projection
    rows. A masked model computes what the compacted one does (a dropped head's scores are all 0, so it
    averages values that are 0)."""
    config, masks = model.config, {}
    for i, (block, (channels, heads)) in enumerate(zip(model.h, _kept_units(model, mlp_keep, heads_keep), strict=True)):
        channel = torch.zeros(config.intermediate_size, dtype=torch.bool)
        channel[channels] = True
        head_cols = torch.zeros(config.n_heads * config.head_dim, dtype=torch.bool)
        head_cols[_head_columns(heads, config.head_dim)] = True
        qkv = head_cols.repeat(3)
        masks[f"h.{i}.attn.c_attn.weight"] = qkv.expand(config.hidden_size, -1).clone()
        masks[f"h.{i}.attn.c_proj.weight"] = head_cols[:, None].expand(-1, config.hidden_size).clone()
        masks[f"h.{i}.mlp.c_fc.weight"] = channel.expand(config.hidden_size, -1).clone()
        masks[f"h.{i}.mlp.c_proj.weight"] = channel[:, None].expand(-1, config.hidden_size).clone()
        if block.attn.c_attn.bias is not None:
            masks[f"h.{i}.attn.c_attn.bias"] = qkv
            masks[f"h.{i}.mlp.c_fc.bias"] = channel
    return masks


@torch.no_grad()
def structured_prune(model: TinyGPT, mlp_keep: int | float, heads_keep: int | float) -> TinyGPT:
    """A new, smaller TinyGPT keeping in every layer the ``mlp_keep`` most important MLP channels and the
    ``heads_keep`` most important heads (each a count, or a fraction of ``intermediate_size`` / ``n_heads``;
    importance as in :func:`structured_masks`). The same number is kept in every layer, so the config stays
    uniform: ``intermediate_size`` and ``n_heads = n_kv_heads`` shrink, ``head_dim`` stays. Which ones are kept
    is chosen per layer.
    The input model is not changed; the new one is in the same train/eval mode."""
    config = model.config
    kept = _kept_units(model, mlp_keep, heads_keep)
    n_mlp, n_heads = len(kept[0][0]), len(kept[0][1])
    small_config = replace(config, intermediate_size=n_mlp, n_heads=n_heads, n_kv_heads=n_heads)
    state = {name: t.clone() for name, t in model.state_dict().items()}
    width = config.n_heads * config.head_dim   # q, k and v each take this many columns of c_attn
    for i, (channels, heads) in enumerate(kept):
        cols = _head_columns(heads, config.head_dim)
        qkv_cols = torch.cat([cols, cols + width, cols + 2 * width])
        slices = {"attn.c_attn.weight": (1, qkv_cols), "attn.c_attn.bias": (0, qkv_cols),
                  "attn.c_proj.weight": (0, cols), "mlp.c_fc.weight": (1, channels), "mlp.c_fc.bias": (0, channels),
                  "mlp.c_proj.weight": (0, channels)}
        for suffix, (dim, index) in slices.items():
            name = f"h.{i}.{suffix}"
            if name in state:   # biases are absent in a bias=False model
                state[name] = state[name].index_select(dim, index).contiguous()
    with torch.device("meta"):   # no wasted random init: every tensor is replaced by a kept slice below
        small = TinyGPT(small_config)
    small.load_state_dict(state, assign=True)
    return small.train(model.training)

