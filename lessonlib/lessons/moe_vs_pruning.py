"""Lesson 03b's measurements: dense, mixture-of-experts and pruned tiny models side by side in one run on this
machine, a sparse weight against a dense one in a matrix product, and the learner's mask functions applied to a
whole model. (Lesson 03a's MoE measurements are in :mod:`lessonlib.lessons.mixture_of_experts`.)

For each model: parameters held in memory (and how many of them are zeros), parameters and FLOPs one token
uses, the time of a decode step at batch 1 and at a larger batch, the time of a prefill, and three measures
of quality: the validation loss over whole lines (most of it is the unpredictable random letters of the
questions, so it moves little), the loss on the answers alone, and the exact-match accuracy of the answers.
Timings are interleaved (every round times every model once), on one thread, and each keeps all its repeats
(:class:`~lessonlib.core.timing.Timing`), so a burst of background load hits all models alike and a summary can
tell a reliable ratio from a busy machine. Every ``*_summary`` function returns a paragraph whose conclusion
follows the numbers it is given, including the opposite of what the lesson expects.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..core.stats import share_difference
from ..core.timing import Timing, busy_machine_note, interleaved_timings, progress
from ..measure.decode import decode_steps, prefill_run, torch_threads
from ..models.cost_spec import spec_of
from ..models.evaluation import REPORT_ANSWERS, Scores, live_scores, report_scores
from ..models.pruning import prunable_weights


@dataclass(frozen=True)
class Measured:
    name: str
    kind: str                   # "dense", "moe", "unstructured", "2:4", "structured"
    params: int                 # parameters held in memory (as dense tensors, zeros included)
    zeros: int                  # of which exactly zero in the blocks' weight matrices (pruned)
    active_params: int          # parameters one token multiplies by (MoE: the chosen experts only), zeros included
    flops_per_token: float      # executed by dense kernels at the measured context (zeros are multiplied too)
    useful_flops_per_token: float   # the same without the products by zero
    decode: Timing              # one batch-1 decode step with ``context_len`` tokens cached (seconds per step)
    batch_decode: Timing        # one decode step of ``batch_size`` sequences
    prefill: Timing             # one prompt of ``prompt_len`` tokens
    val_loss: float             # nats per character on the course's fixed validation batches
    answer_loss: float          # nats per character of the answers (mean over copy, reverse, sort and add)
    exact_match: float          # share of the questions answered exactly right (greedy decoding)

    @property
    def nonzero_params(self) -> int:
        return self.params - self.zeros

    @property
    def decode_ms(self) -> float:
        return 1e3 * self.decode.seconds

    @property
    def batch_decode_ms(self) -> float:
        return 1e3 * self.batch_decode.seconds

    @property
    def prefill_ms(self) -> float:
        return 1e3 * self.prefill.seconds

    @property
    def timings(self) -> tuple[Timing, ...]:
        return self.decode, self.batch_decode, self.prefill


def count_zeros(model: torch.nn.Module) -> int:
    """Exact zeros in the blocks' weight matrices (what pruning removes; biases start at zero and are not
    counted)."""
    return sum(int((p == 0).sum()) for name, p in model.named_parameters() if name.startswith("h.") and p.dim() >= 2)


DECODE_STEPS = 4   # decode steps per timed call


def measure(models: dict[str, tuple[torch.nn.Module, str]], val_batches, context_len: int = 64,
            batch_size: int = 32, prompt_len: int = 256, repeats: int = 5,
            lines: list[str] | None = None, scores: dict[str, Scores] | None = None) -> list[Measured]:
    """Measure ``models`` (name -> (model, kind)) in one interleaved run on one thread; see the module docstring.
    Quality is taken from ``scores`` (name -> :class:`~lessonlib.models.evaluation.Scores`, e.g. the checkpoints'
    reports) where given, else scored now on ``val_batches`` and on the answers of ``lines``, or by default on
    the questions the reports were scored on (:func:`~lessonlib.models.evaluation.report_scores`: with the
    course's eight validation batches, the reports' own numbers). Prints how far it has got."""
    if not models:
        raise ValueError("give at least one model to measure")
    runs = {}
    for name, (model, _) in models.items():
        runs[name, "decode"] = decode_steps(model, context_len, 1, DECODE_STEPS)
        runs[name, "batch"] = decode_steps(model, context_len, batch_size, DECODE_STEPS)
        runs[name, "prefill"] = prefill_run(model, prompt_len)
    print(f"timing {len(models)} models in turns ...", end="", flush=True)
    with torch_threads(1):
        timed = interleaved_timings(runs, repeats)
    print(" done", flush=True)
    rows = []
    scores = dict(scores or {})
    for name in progress([n for n in models if n not in scores], "scoring quality"):
        model = models[name][0]
        scores[name] = (report_scores(model, val_batches) if lines is None
                        else live_scores(model, val_batches, lines))
    for name, (model, kind) in models.items():
        spec = spec_of(model, name)
        zeros = count_zeros(model)
        flops = spec.flops_per_token(context_len)
        rows.append(Measured(name=name, kind=kind, params=model.n_params(), zeros=zeros,
                             active_params=spec.n_active_params(), flops_per_token=flops,
                             useful_flops_per_token=flops - 2 * zeros,
                             decode=timed[name, "decode"].per(DECODE_STEPS),
                             batch_decode=timed[name, "batch"].per(DECODE_STEPS),
                             prefill=timed[name, "prefill"], val_loss=scores[name].val_loss,
                             answer_loss=scores[name].answer_loss, exact_match=scores[name].exact_match))
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
    timings: dict[str, Timing]            # every run's repeats: "dense", "zeros 0.5", "csr 0.5", "compact 0.5", ...

    @property
    def reliable(self) -> bool:
        return all(t.reliable for t in self.timings.values())


def time_sparse_matmul(sparsities=(0.5, 0.8, 0.95), batch_size: int = 1, n_in: int = 1024, n_out: int = 4096,
                       repeats: int = 5) -> SparseMatmulTiming:
    """Does a sparse weight make ``x @ W`` faster? The dense product (``n_in`` x ``n_out``, fp32, for
    ``batch_size`` rows of ``x``) against the same product with magnitude-pruned weights kept dense, the
    same weights in PyTorch's CSR format, and a structurally pruned (narrower) dense matrix. Timed in turns on one
    thread; times are returned as ratios to the dense product's (below 1: faster)."""
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
        with torch_threads(1):
            timed = interleaved_timings(runs, repeats)
    ratio = {name: t.seconds / timed["dense"].seconds for name, t in timed.items()}
    return SparseMatmulTiming(batch_size=batch_size, sparsities=tuple(sparsities),
                              dense_ms=1e3 * timed["dense"].seconds,
                              zeros_in_dense=tuple(ratio[f"zeros {s}"] for s in sparsities),
                              sparse_csr=tuple(ratio[f"csr {s}"] for s in sparsities),
                              compacted=tuple(ratio[f"compact {s}"] for s in sparsities), timings=timed)


def _times(r: float) -> str:
    return f"{r:.2f}x"


def sparse_matmul_summary(runs: Sequence[SparseMatmulTiming]) -> str:
    """What the zeros, the CSR kernel and the narrower matrix did to the product's time, per batch size."""
    if not all(t.reliable for t in runs):
        return busy_machine_note("the matrix products", [v for t in runs for v in t.timings.values()])
    parts = []
    for t in runs:
        zeros = max(abs(r - 1) for r in t.zeros_in_dense)
        zeros_text = ("zeros kept in the dense matrix changed nothing (within 15% at every sparsity)" if zeros <= 0.15
                      else f"zeros kept in the dense matrix changed the time by up to {100 * zeros:.0f}% (a dense "
                      "kernel does the same arithmetic on them, so this is noise or a cache effect)")
        wins = [s for s, r in zip(t.sparsities, t.sparse_csr, strict=True) if r < 0.9]
        measured = (f"{', '.join(_times(r) for r in t.sparse_csr)} at "
                    f"{', '.join(f'{s:.0%}' for s in t.sparsities)}")
        if not wins:
            csr_text = f"the CSR kernel was never clearly faster than dense ({measured})"
        elif wins == list(t.sparsities):
            csr_text = f"the CSR kernel was faster at every sparsity measured ({measured})"
        else:
            csr_text = (f"the CSR kernel paid for its index lookups below {wins[0]:.0%} sparsity and won from there "
                        f"({measured})")
        narrow = t.compacted[0]
        narrow_text = (f"removing {t.sparsities[0]:.0%} of the output channels took {_times(narrow)} the dense time"
                       + (", close to the share kept" if abs(narrow - (1 - t.sparsities[0])) <= 0.2 else ""))
        parts.append(f"**{t.batch_size} row{'s' if t.batch_size > 1 else ''} of x**: {zeros_text}; {csr_text}; "
                     f"{narrow_text}.")
    return " ".join(parts)


# -- the learner's masks on a whole model -----------------------------------------------------------------------------


def _as_mask(mask, shape, what: str) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{what} returned a mask of shape {tuple(mask.shape)} for a weight of shape {tuple(shape)}")
    return mask.bool()


@torch.no_grad()
def learner_magnitude_masks(model, magnitude_mask: Callable, sparsity: float, scope: str = "global"
                            ) -> dict[str, torch.Tensor]:
    """:func:`lessonlib.models.pruning.magnitude_masks` made of the learner's ``magnitude_mask(weight, sparsity)``:
    per layer, their function on each prunable matrix; global, their function on all prunable weights laid end
    to end (one threshold for the model), split back into matrices."""
    weights = prunable_weights(model)
    if scope == "layer":
        return {name: _as_mask(magnitude_mask(w.detach().clone(), sparsity), w.shape, "magnitude_mask")
                for name, w in weights.items()}
    if scope != "global":
        raise ValueError(f"scope must be global or layer, got {scope!r}")
    flat = torch.cat([w.detach().flatten() for w in weights.values()])
    kept = _as_mask(magnitude_mask(flat, sparsity), flat.shape, "magnitude_mask")
    return {name: k.view_as(w) for (name, w), k in
            zip(weights.items(), kept.split([w.numel() for w in weights.values()]), strict=True)}


@torch.no_grad()
def learner_n_m_masks(model, n_m_mask: Callable, n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """:func:`lessonlib.models.pruning.n_m_masks` made of the learner's ``n_m_mask(weight, n, m)``, which groups
    along the columns of an (out, in) matrix: the model's weights are stored (in, out), so each is handed over
    transposed and its mask transposed back."""
    masks = {}
    for name, w in prunable_weights(model).items():
        masks[name] = _as_mask(n_m_mask(w.detach().t().contiguous(), n, m), w.t().shape, "n_m_mask").t()
    return masks


def pruning_sweep_summary(at_half: dict[str, float], dense_loss: float, per_layer: float, global_: float,
                          uniform_loss: float | None = None) -> str:
    """The losses at about half the block weights removed, ranked, and whether the ranking is the one the freedom
    of each pattern predicts (magnitude < 2:4 < structured); with ``uniform_loss`` (ln of the vocabulary size),
    which of them now predict worse than a uniform guess."""
    ranking = sorted(at_half, key=at_half.get)
    text = (f"At about half the block weights removed, without retraining (dense: {dense_loss:.3f}): "
            + ", ".join(f"{name} {at_half[name]:.3f}" for name in ranking)
            + f". From least to most damaging: {' < '.join(ranking)}.")
    structured = next(name for name in at_half if name.startswith("structured"))
    freest = min(at_half[n] for n in at_half if "magnitude" in n)
    if freest <= at_half["2:4"] <= at_half[structured]:
        text += (" That is the order of the freedom each pattern leaves to keep the individually important weights: "
                 "any weight, then two of every four, then whole channels and heads.")
    else:
        text += (" That is **not** the order of the freedom each pattern leaves (any weight, two of every four, whole "
                 "channels): on this model the pattern mattered less than which weights each rule happened to keep.")
    if per_layer < global_:
        text += (" Per-layer beats global here: one global threshold strips the matrices whose weights are small by "
                 "construction (GPT-2 initializes the residual projections smaller, as the histogram shows), not the "
                 "ones that matter least.")
    else:
        text += " Global beats per-layer here: ranking all weights together kept more of the ones that matter."
    if uniform_loss is not None:
        lost = [name for name in ranking if at_half[name] > uniform_loss]
        if lost:
            text += (f" {' and '.join(lost)} {'scores' if len(lost) == 1 else 'score'} worse than a uniform guess over "
                     f"the vocabulary ({uniform_loss:.2f}): without retraining, "
                     f"{'that model has' if len(lost) == 1 else 'those models have'} lost more than "
                     "everything it learned, and is confidently wrong.")
    return text


def _change(row: Measured, reference: Measured, field: str) -> str:
    return f"{100 * (getattr(row, field) / getattr(reference, field) - 1):+.0f}%"


def comparison_summary(rows: Sequence[Measured], dense: str, control: str, moe: str, unstructured: str,
                       structured: str, extra_steps: int | None = None, n_questions: int = REPORT_ANSWERS) -> str:
    """Section 3's measured comparison, one bullet per point, each drawn from the numbers only: what unstructured
    zeros, structured pruning and the MoE did to time (when the timings are trustworthy), and what pruning cost in
    quality against the control trained for as many extra steps (``extra_steps``, as the reports record them),
    with 95% intervals for exact match on ``n_questions`` questions: only a difference clear of noise is called a
    loss."""
    by = {r.name: r for r in rows}
    base, ctrl, m, zeros, small = by[dense], by[control], by[moe], by[unstructured], by[structured]
    bullets = []
    timed = [t for r in (base, m, zeros, small) for t in r.timings]
    if all(t.reliable for t in timed):
        pre, dec = zeros.prefill_ms / base.prefill_ms, zeros.decode_ms / base.decode_ms
        same = max(abs(pre - 1), abs(dec - 1)) <= 0.15
        bullets.append(
            f"**{unstructured}** ({zeros.zeros / base.params:.0%} of all parameters zero): prefill {pre:.2f}x and "
            f"batch-1 decode {dec:.2f}x the dense model's time"
            + (": **no time saved** with dense kernels; its saving is storage, and only in a sparse format."
               if same else ": a difference that dense kernels, which multiply the zeros too, cannot explain; "
               "re-run to see whether it holds."))
        speed_pre, speed_batch = base.prefill_ms / small.prefill_ms, base.batch_decode_ms / small.batch_decode_ms
        speed_one = base.decode_ms / small.decode_ms
        bullets.append(
            f"**{structured}** ({small.params / base.params:.2f}x the parameters): prefill {speed_pre:.2f}x and "
            f"batch-32 decode {speed_batch:.2f}x as fast as dense"
            + (" (a real saving, on any hardware)" if min(speed_pre, speed_batch) >= 1.15 else
               " (no clear saving on this run)")
            + f"; a batch-1 decode step {speed_one:.2f}x"
            + (", less: at this size a step is mostly fixed per-layer overhead (lesson 01)." if speed_one < speed_pre
               else "."))
        moe_dec = m.decode_ms / base.decode_ms
        if moe_dec > 1.15:
            moe_time = (f"its batch-1 decode step took {moe_dec:.2f}x the dense one's: the router, top-k and "
                        "per-expert dispatch are extra operations, and at this size operations, not bytes, "
                        "set the time")
        elif moe_dec < 0.87:
            moe_time = f"its batch-1 decode step was {1 / moe_dec:.2f}x faster than the dense one's on this run"
        else:
            moe_time = f"its batch-1 decode step took about the dense one's time ({moe_dec:.2f}x)"
        bullets.append(f"**{moe}**: {m.active_params / base.active_params:.2f}x the dense model's active parameters, "
                       f"{m.params / base.params:.2f}x its parameters in memory; {moe_time}.")
    else:
        bullets.append(busy_machine_note("the models' decode steps and prefills", timed))
    extra = share_difference(ctrl.exact_match, base.exact_match, n_questions)
    steps = f"the same {extra_steps} extra steps" if extra_steps else "as many extra steps as"
    bullets.append(
        f"**The control**: `{control}`, the dense model trained for {steps} the pruned models were fine-tuned "
        f"for, answers {ctrl.exact_match:.1%} exactly against the dense model's {base.exact_match:.1%} "
        f"({extra.flat}, on {n_questions:,} questions): "
        + ("that much of any pruned model's score is the extra training, not the pruning." if extra.clear
           else "within noise, so the extra steps alone changed no more than chance would on this many questions."))
    pruned = [r for r in rows if r.kind in ("unstructured", "2:4", "structured")]
    gaps = {r.name: share_difference(r.exact_match, ctrl.exact_match, n_questions) for r in pruned}
    worse = [r for r in pruned if gaps[r.name].clear and gaps[r.name].value < 0]
    parts = "; ".join(f"{r.name} {gaps[r.name].flat}" for r in pruned)
    bullets.append(
        f"**Quality after fine-tuning, against the control** (exact match): {parts}. "
        + (f"{len(worse)} of the {len(pruned)} pruned models lost quality beyond noise (an interval clear of 0), "
           f"the most {min(pruned, key=lambda r: r.exact_match).name}; the others' differences are within what "
           "chance gives on this many questions." if 0 < len(worse) < len(pruned) else
           f"All {len(pruned)} pruned models lost quality beyond noise; the most, "
           f"{min(pruned, key=lambda r: r.exact_match).name}." if worse else
           "None lost quality beyond noise: at these sparsities fine-tuning recovered what pruning took, as far as "
           "this many questions can tell.")
        + f" The validation loss over whole lines moves far less ({_change(zeros, ctrl, 'val_loss')} for "
        f"{unstructured}): most of each line is unpredictable question letters, which hide what a model lost on "
        "the answers.")
    return "\n".join(f"- {b}" for b in bullets)
