"""Lesson 03's measurements: dense, mixture-of-experts and pruned tiny models side by side in one run on this
machine, a sparse weight against a dense one in a matrix product, an MoE layer against dense MLPs across batch
sizes, and the quality curve the edge-device dashboard reads.

For each model: parameters held in memory (and how many of them are zeros), parameters and FLOPs one token
uses, the time of a decode step at batch 1 and at a larger batch, the time of a prefill, and three measures
of quality: the validation loss over whole lines (most of it is the unpredictable random letters of the
questions, so it moves little), the loss on the answers alone, and the exact-match accuracy of the answers.
Timings are interleaved (every repeat times every model once, and the minimum is kept), so a burst of
background load hits all models alike and the ratios between them are what this CPU really does.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.timing import interleaved_min_times
from ..measure.decode import decode_steps, prefill_run
from ..models.cost_spec import spec_of
from ..models.evaluation import answer_loss, evaluate, exact_match, task_lines
from ..models.moe import ExpertWeights, moe_mlp


@dataclass(frozen=True)
class Measured:
    name: str
    kind: str                   # "dense", "moe", "unstructured", "2:4", "structured"
    params: int                 # parameters held in memory (as dense tensors, zeros included)
    zeros: int                  # of which exactly zero in the blocks' weight matrices (pruned)
    active_params: int          # parameters one token multiplies by (MoE: the chosen experts only), zeros included
    flops_per_token: float      # executed by dense kernels at the measured context (zeros are multiplied too)
    useful_flops_per_token: float   # the same without the products by zero
    decode_ms: float            # one batch-1 decode step with ``context_len`` tokens cached
    batch_decode_ms: float      # one decode step of ``batch_size`` sequences
    prefill_ms: float           # one prompt of ``prompt_len`` tokens
    val_loss: float             # nats per character on the course's fixed validation batches
    answer_loss: float          # nats per character of the answers of ``task_lines``
    exact_match: float          # share of ``task_lines`` answered exactly right (greedy decoding)

    @property
    def nonzero_params(self) -> int:
        return self.params - self.zeros


def count_zeros(model: torch.nn.Module) -> int:
    """Exact zeros in the blocks' weight matrices (what pruning removes; biases start at zero and are not
    counted)."""
    return sum(int((p == 0).sum()) for name, p in model.named_parameters() if name.startswith("h.") and p.dim() >= 2)


DECODE_STEPS = 4   # decode steps per timed call


def measure(models: dict[str, tuple[torch.nn.Module, str]], val_batches, context_len: int = 64,
            batch_size: int = 32, prompt_len: int = 256, repeats: int = 15,
            lines: list[str] | None = None) -> list[Measured]:
    """Measure ``models`` (name -> (model, kind)) in one interleaved run; see the module docstring. Quality
    is scored on ``val_batches`` and on the answers of ``lines`` (default: :func:`task_lines`)."""
    if not models:
        raise ValueError("give at least one model to measure")
    lines = task_lines() if lines is None else lines
    runs = {}
    for name, (model, _) in models.items():
        runs[name, "decode"] = decode_steps(model, context_len, 1, DECODE_STEPS)
        runs[name, "batch"] = decode_steps(model, context_len, batch_size, DECODE_STEPS)
        runs[name, "prefill"] = prefill_run(model, prompt_len)
    best = interleaved_min_times(runs, repeats, warmup=0)
    rows = []
    for name, (model, kind) in models.items():
        spec = spec_of(model, name)
        zeros = count_zeros(model)
        flops = spec.flops_per_token(context_len)
        rows.append(Measured(name=name, kind=kind, params=model.n_params(), zeros=zeros,
                             active_params=spec.n_active_params(), flops_per_token=flops,
                             useful_flops_per_token=flops - 2 * zeros,
                             decode_ms=1e3 * best[name, "decode"] / DECODE_STEPS,
                             batch_decode_ms=1e3 * best[name, "batch"] / DECODE_STEPS,
                             prefill_ms=1e3 * best[name, "prefill"], val_loss=evaluate(model, val_batches),
                             answer_loss=answer_loss(model, lines), exact_match=exact_match(model, lines)))
    return rows


@dataclass(frozen=True)
class SparseMatmulTiming:
    """Time of ``x @ W`` for one weight matrix pruned three ways, relative to the dense product."""
    batch_size: int
    sparsities: tuple[float, ...]
    dense_ms: float
    zeros_in_dense: tuple[float, ...]     # the same dense kernel on a matrix that is mostly zeros
    sparse_csr: tuple[float, ...]         # PyTorch's CSR sparse kernel, zeros not stored
    compacted: tuple[float, ...]          # whole output channels removed: a smaller dense matrix


def time_sparse_matmul(sparsities=(0.5, 0.8, 0.95), batch_size: int = 1, n_in: int = 1024, n_out: int = 4096,
                       repeats: int = 15) -> SparseMatmulTiming:
    """Does a sparse weight make ``x @ W`` faster? The dense product (``n_in`` x ``n_out``, fp32, for
    ``batch_size`` rows of ``x``) against the same product with magnitude-pruned weights kept dense, the
    same weights in PyTorch's CSR format, and a structurally pruned (narrower) dense matrix. Interleaved
    timings; times are returned as ratios to the dense product's (below 1: faster)."""
    for s in sparsities:
        if not 0 <= s < 1:
            raise ValueError(f"sparsities must be in [0, 1), got {s!r}")
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(n_in, n_out, generator=generator)
    x = torch.randn(batch_size, n_in, generator=generator)
    x_t = x.t().contiguous()
    runs = {"dense": lambda: x @ weight}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        for s in sparsities:
            n_zero = round(s * weight.numel())
            threshold = weight.abs().flatten().kthvalue(n_zero).values if n_zero else -1.0
            zeroed = weight * (weight.abs() > threshold)
            csr = zeroed.t().contiguous().to_sparse_csr()     # (out, in): CSR kernels multiply sparse @ dense
            narrow = weight[:, :max(1, round((1 - s) * n_out))].contiguous()
            runs[f"zeros {s}"] = lambda w=zeroed: x @ w
            runs[f"csr {s}"] = lambda w=csr: w @ x_t
            runs[f"compact {s}"] = lambda w=narrow: x @ w
        best = interleaved_min_times(runs, repeats)
    ratio = {name: t / best["dense"] for name, t in best.items()}
    return SparseMatmulTiming(batch_size=batch_size, sparsities=tuple(sparsities), dense_ms=1e3 * best["dense"],
                              zeros_in_dense=tuple(ratio[f"zeros {s}"] for s in sparsities),
                              sparse_csr=tuple(ratio[f"csr {s}"] for s in sparsities),
                              compacted=tuple(ratio[f"compact {s}"] for s in sparsities))


@dataclass(frozen=True)
class MoELayerTiming:
    """One MoE layer against two dense MLPs at several batch sizes (ms per call, minimum over repeats)."""
    batch_sizes: tuple[int, ...]
    moe_ms: tuple[float, ...]
    dense_active_ms: tuple[float, ...]     # a dense MLP as wide as the top_k experts together
    dense_total_ms: tuple[float, ...]      # a dense MLP as wide as all the experts together
    experts_touched: tuple[float, ...]     # distinct experts a batch's tokens chose (mean over draws)
    expected_touched: tuple[float, ...]    # n_experts * (1 - (1 - top_k / n_experts) ** batch)
    weight_bytes: int                      # the MoE layer's expert weight matrices (fp32)


def time_moe_layer(batch_sizes=(1, 2, 4, 8, 16, 64), hidden_size: int = 1024, intermediate_size: int = 2048,
                   n_experts: int = 8, experts_per_token: int = 2, repeats: int = 5,
                   draws: int = 20) -> MoELayerTiming:
    """Time the MoE feed-forward block (:func:`lessonlib.models.moe.moe_mlp`, random weights and router, fp32)
    on batches of tokens, interleaved with a dense MLP of the same active width
    (``experts_per_token * intermediate_size``) and one of the same total width
    (``n_experts * intermediate_size``). Sized so that the weights do not fit in a CPU cache: the time then
    follows the bytes of the experts a batch touches."""
    top_k = experts_per_token
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"experts_per_token must be between 1 and n_experts ({n_experts}), got {top_k}")
    if any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive, got {batch_sizes}")
    g = torch.Generator().manual_seed(0)
    scale = hidden_size ** -0.5
    experts = ExpertWeights(router=torch.randn(hidden_size, n_experts, generator=g) * scale,
                            fc_weight=torch.randn(n_experts, hidden_size, intermediate_size, generator=g) * scale,
                            fc_bias=torch.zeros(n_experts, intermediate_size),
                            proj_weight=torch.randn(n_experts, intermediate_size, hidden_size, generator=g) * scale,
                            proj_bias=torch.zeros(n_experts, hidden_size))

    def dense(width: int):
        w1 = torch.randn(hidden_size, width, generator=g) * scale
        w2 = torch.randn(width, hidden_size, generator=g) * scale
        return lambda x: F.gelu(x @ w1, approximate="tanh") @ w2

    dense_active, dense_total = dense(top_k * intermediate_size), dense(n_experts * intermediate_size)
    inputs = {b: torch.randn(b, hidden_size, generator=g) for b in batch_sizes}
    runs = {(b, name): (lambda fn=fn, x=inputs[b]: fn(x)) for b in batch_sizes
            for name, fn in (("moe", lambda x: moe_mlp(x, experts, top_k, renormalize=True)[0]),
                             ("active", dense_active), ("total", dense_total))}
    with torch.inference_mode():
        best = interleaved_min_times(runs, repeats)
        touched = []
        for b in batch_sizes:
            counts = [len(torch.topk(torch.randn(b, hidden_size, generator=g) @ experts.router, top_k).indices.unique())
                      for _ in range(draws)]
            touched.append(sum(counts) / draws)
    ms = {key: 1e3 * t for key, t in best.items()}
    return MoELayerTiming(
        batch_sizes=tuple(batch_sizes), moe_ms=tuple(ms[b, "moe"] for b in batch_sizes),
        dense_active_ms=tuple(ms[b, "active"] for b in batch_sizes),
        dense_total_ms=tuple(ms[b, "total"] for b in batch_sizes), experts_touched=tuple(touched),
        expected_touched=tuple(n_experts * (1 - (1 - top_k / n_experts) ** b) for b in batch_sizes),
        weight_bytes=sum(t.numel() * t.element_size() for t in (experts.fc_weight, experts.proj_weight)))
