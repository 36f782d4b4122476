"""Lesson 03a's material: the load-balancing sweep, running the learner's MoE dispatch inside the trained tiny
MoE, timing a dispatch against running every expert on every token, one large MoE layer against dense MLPs
across batch sizes, and the MoE set against dense models of the same active and the same total parameters.

Every ``*_summary`` function takes what a cell measured and returns one paragraph of Markdown whose conclusion
follows the numbers: it says what this run shows, including the opposite of what the lesson expects, and draws
no conclusion from timings that did not reproduce (:class:`~lessonlib.core.timing.Timing`).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..core.stats import share_difference
from ..core.timing import Timing, busy_machine_note, interleaved_timings, progress
from ..measure.decode import prefill_run, torch_threads
from ..models.cost_spec import spec_of
from ..models.evaluation import REPORT_ANSWERS, Scores, evaluate, live_scores, report_scores
from ..models.moe import ExpertWeights, MoEMLP, expert, moe_mlp, route

# -- the load-balancing loss as routing collapses -----------------------------------------------------------------


def balance_sweep(routing_fn: Callable, loss_fn: Callable, strengths: Sequence[float], n_experts: int = 8,
                  k: int = 2, n_tokens: int = 4096, seed: int = 0) -> list[float]:
    """The load-balancing loss of ``n_tokens`` random tokens whose router logits get ``strength`` added for
    expert 0, at each strength: ``routing_fn(logits, k) -> (gates, experts)`` chooses the experts (the learner's
    ``top_k_routing`` or the reference) and ``loss_fn(probs, experts, n_experts)`` scores them."""
    base = torch.randn(n_tokens, n_experts, generator=torch.Generator().manual_seed(seed))
    preference = torch.zeros(n_experts)
    preference[0] = 1.0
    losses = []
    for s in strengths:
        logits = base + float(s) * preference
        _, experts = routing_fn(logits, k)
        losses.append(float(loss_fn(torch.softmax(logits, dim=-1), torch.as_tensor(experts), n_experts)))
    return losses


def balance_summary(losses: Sequence[float], n_experts: int, k: int) -> str:
    """What the sweep shows against the two values the lesson derives: 1 at balance, N/k at collapse."""
    bound = n_experts / k
    first, last = losses[0], losses[-1]
    if abs(first - 1) > 0.05 or max(losses) > bound * (1 + 1e-6):
        return (f"Random routing scores {first:.3f} and the sweep ends at {last:.2f}, with a largest value of "
                f"{max(losses):.2f}: that is not what the derivation says (about 1 at balance, never above "
                f"N/k = {bound:g}). The functions used here do not compute the loss as defined: the test cells of "
                "Exercise 1 say what to fix.")
    rising = all(b >= a - 1e-3 for a, b in zip(losses, losses[1:], strict=False))
    return (f"Random routing scores **{first:.3f}** (balanced, up to sampling noise). As every token comes to prefer "
            f"expert 0 the loss {'rises steadily' if rising else 'rises'} to **{last:.2f}**, "
            f"{100 * last / bound:.0f}% of its upper bound N/k = {bound:g}: each token can send expert 0 only one "
            f"of its {k} assignments, so f₀ stops at 1/k while P₀ approaches 1.")


# -- what a trained router learned ----------------------------------------------------------------------------------


def routing_summary(usage: torch.Tensor, task_names: Sequence[str],
                    alike: Sequence[str] = ("copy", "reverse", "sort")) -> str:
    """What a trained router's usage (layers, tasks, experts; each row a task's share of assignments) shows: how
    far from uniform the busiest expert of a task is, and whether tasks made of the same kind of tokens (``alike``)
    are routed more like each other than like the other tasks (distance: total variation between two rows, 0 for
    the same usage, 1 for disjoint experts, averaged over layers and pairs)."""
    if usage.dim() != 3 or usage.shape[1] != len(task_names):
        raise ValueError(f"usage must be (layers, tasks, experts) with one row per task name; got shape "
                         f"{tuple(usage.shape)} for {len(task_names)} task names")
    index = {name: i for i, name in enumerate(task_names)}
    group = [index[name] for name in alike if name in index]
    others = [i for i in range(len(task_names)) if i not in group]
    if len(group) < 2 or not others:
        raise ValueError(f"give at least two of {list(task_names)} as alike and leave at least one out")
    layer, task, expert = (int(v) for v in torch.unravel_index(usage.argmax(), usage.shape))
    uniform = 1 / usage.shape[2]
    busiest = float(usage.max(dim=2).values.mean())

    def distance(a: int, b: int) -> float:
        return float((usage[:, a] - usage[:, b]).abs().sum(dim=-1).mean() / 2)

    within = [distance(a, b) for i, a in enumerate(group) for b in group[i + 1:]]
    across = [distance(a, b) for a in group for b in others]
    within_mean, across_mean = sum(within) / len(within), sum(across) / len(across)
    same_top = sum(len({int(usage[layer_, t].argmax()) for t in group}) == 1 for layer_ in range(usage.shape[0]))
    listed = [task_names[i] for i in group]
    names = (", ".join(listed[:-1]) + " and " + listed[-1]).capitalize()
    text = (f"In layer {layer}, **{100 * float(usage[layer, task, expert]):.0f}%** of the *{task_names[task]}* "
            f"task's assignments go to expert {expert} ({100 * uniform:.1f}% if routing were uniform); over all "
            f"layers and tasks, the busiest expert of a task takes on average {100 * busiest:.0f}% of its "
            f"assignments. {names} (the same random letters) send their tokens to the same busiest expert in "
            f"{same_top} of {usage.shape[0]} layers; their routing differs by a distance of {within_mean:.2f} "
            f"among themselves and {across_mean:.2f} from the other tasks (0: the same experts, 1: disjoint ones).")
    if busiest <= 2 * uniform:
        return text + " On this run routing is close to uniform: the router has not learned much to tell apart."
    if across_mean >= 1.5 * within_mean:
        return text + (" Tokens of the same kind are routed alike and other kinds elsewhere: the router sorts "
                       "tokens by kind, which is what an MoE exploits.")
    return text + (" The routing is skewed, but tasks of the same kind are not clearly routed more alike than the "
                   "others on this run: this router favours experts without sorting tokens by kind.")


# -- the learner's dispatch inside the model ------------------------------------------------------------------------


def expert_functions(w: ExpertWeights) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The experts of one MoE layer as functions: ``experts[e](rows)`` maps (n, hidden) to (n, hidden)."""
    return [functools.partial(expert, w=w, e=e) for e in range(w.router.shape[1])]


@contextlib.contextmanager
def learner_moe(model: torch.nn.Module, moe_forward: Callable):
    """Inside the block, every MoE layer of ``model``'s full forward pass computes its output with
    ``moe_forward(x, router_weight, experts, k)`` (x: (tokens, hidden); experts: :func:`expert_functions`)
    instead of lessonlib's dispatch. The layers report no routing statistics meanwhile. Only for layers that
    renormalize their gates and have no capacity limit (the course's tiny MoE)."""
    layers = [m for m in model.modules() if isinstance(m, MoEMLP)]
    if not layers:
        raise ValueError("learner_moe needs a model with mixture-of-experts layers")
    if any(m.capacity_factor is not None or not m.renormalize for m in layers):
        raise ValueError("learner_moe runs layers that renormalize their gates and have no capacity limit")

    def forward_of(layer: MoEMLP):
        def forward(x: torch.Tensor):
            h = x.reshape(-1, x.shape[-1])                                     # (tokens, hidden)
            w = layer.weights()
            y = torch.as_tensor(moe_forward(h, w.router, expert_functions(w), layer.experts_per_token))
            return layer.dropout(y.reshape(x.shape)), None
        return forward

    for layer in layers:
        layer.forward = forward_of(layer)
    try:
        yield model
    finally:
        for layer in layers:
            del layer.forward


@dataclass(frozen=True)
class DispatchCheck:
    """The model run with lessonlib's dispatch and with the learner's, on the same batches."""
    own_loss: float
    your_loss: float
    max_logit_difference: float


@torch.no_grad()
def check_dispatch(model: torch.nn.Module, moe_forward: Callable, batches) -> DispatchCheck:
    """Validation loss of ``model`` with its own dispatch and with ``moe_forward``, and the largest difference
    between their logits on the first batch."""
    model.eval()
    own = evaluate(model, batches)
    reference_logits = model(batches[0][0]).logits
    with learner_moe(model, moe_forward):
        yours = evaluate(model, batches)
        your_logits = model(batches[0][0]).logits
    return DispatchCheck(own, yours, float((your_logits - reference_logits).abs().max()))


def every_expert_on_every_token(x: torch.Tensor, w: ExpertWeights, k: int) -> torch.Tensor:
    """The same output as a top-k MoE layer computed without dispatch: every expert runs on every token and
    the outputs are weighted by gates that are zero outside each token's k choices (N/k times the expert
    FLOPs of a dispatch)."""
    r = route(x @ w.router, k)
    gates = torch.zeros_like(r.probs).scatter_(1, r.experts, r.weights)          # (tokens, n_experts)
    out = torch.zeros_like(x)
    for e in range(w.router.shape[1]):
        out += gates[:, e:e + 1] * expert(x, w, e)
    return out


def random_experts(hidden_size: int, intermediate_size: int, n_experts: int, seed: int = 0) -> ExpertWeights:
    """An MoE layer's weights at GPT-2's scale of initialization, with a random router."""
    g = torch.Generator().manual_seed(seed)
    scale = hidden_size ** -0.5
    return ExpertWeights(router=torch.randn(hidden_size, n_experts, generator=g) * scale,
                         fc_weight=torch.randn(n_experts, hidden_size, intermediate_size, generator=g) * scale,
                         fc_bias=torch.zeros(n_experts, intermediate_size),
                         proj_weight=torch.randn(n_experts, intermediate_size, hidden_size, generator=g) * scale,
                         proj_bias=torch.zeros(n_experts, hidden_size))


@dataclass(frozen=True)
class DispatchTiming:
    n_tokens: int
    n_experts: int
    top_k: int
    expert_flops: dict[str, float]       # FLOPs spent in the experts' matrix products, per way
    timings: dict[str, Timing]           # "yours", "lessonlib", "every expert on every token"


DISPATCH_WAYS = ("yours", "lessonlib", "every expert on every token")


def time_dispatch(moe_forward: Callable, n_tokens: int = 128, hidden_size: int = 256, intermediate_size: int = 512,
                  n_experts: int = 8, top_k: int = 2, repeats: int = 5) -> DispatchTiming:
    """One MoE layer (random weights) on ``n_tokens`` tokens three ways, timed in turns on one thread: the
    learner's ``moe_forward``, lessonlib's dispatch, and every expert on every token."""
    w = random_experts(hidden_size, intermediate_size, n_experts)
    x = torch.randn(n_tokens, hidden_size, generator=torch.Generator().manual_seed(1))
    experts = expert_functions(w)
    runs = {"yours": lambda: moe_forward(x, w.router, experts, top_k),
            "lessonlib": lambda: moe_mlp(x, w, top_k, renormalize=True),
            "every expert on every token": lambda: every_expert_on_every_token(x, w, top_k)}
    per_assignment = 2 * 2 * hidden_size * intermediate_size      # two matrices, 2 FLOPs per multiply-add
    flops = {"yours": n_tokens * top_k * per_assignment, "lessonlib": n_tokens * top_k * per_assignment,
             "every expert on every token": n_tokens * n_experts * per_assignment}
    with torch.inference_mode(), torch_threads(1):
        timings = interleaved_timings(runs, repeats)
    return DispatchTiming(n_tokens, n_experts, top_k, flops, timings)


def _compared(ratio: float) -> str:
    """``ratio`` = yours / lessonlib's time, in words."""
    if ratio >= 1.25:
        return f"Yours took {ratio:.1f}x lessonlib's time."
    if ratio <= 0.8:
        return f"Yours was {1 / ratio:.1f}x faster than lessonlib's."
    return "Yours and lessonlib's took about the same time (within 25%)."


def dispatch_summary(t: DispatchTiming) -> str:
    ms = {way: 1e3 * timing.seconds for way, timing in t.timings.items()}
    head = (f"{t.n_tokens} tokens, {t.n_experts} experts, top-{t.top_k}: your dispatch took {ms['yours']:.2f} ms, "
            f"lessonlib's {ms['lessonlib']:.2f} ms, every expert on every token "
            f"{ms['every expert on every token']:.2f} ms "
            f"({t.n_experts // t.top_k}x the expert FLOPs of a dispatch).")
    if not all(timing.reliable for timing in t.timings.values()):
        return head + " " + busy_machine_note("the three ways", t.timings.values())
    yours = _compared(ms["yours"] / ms["lessonlib"])
    every = ms["every expert on every token"] / ms["yours"]
    if every >= 1.25:
        predicted = t.expert_flops["every expert on every token"] / t.expert_flops["yours"]
        verdict = (f"Running every expert took **{every:.1f}x** as long as your dispatch, "
                   + (f"about the {predicted:g}x its FLOPs predict: at this size the arithmetic sets the time."
                      if every >= 0.8 * predicted else
                      f"less than the {predicted:g}x its FLOPs predict: skipping the experts a token did not choose "
                      "saves time, and finding, gathering and scattering each expert's rows costs some of it back."))
    elif every <= 0.8:
        verdict = (f"On this run, running every expert was **{1 / every:.1f}x faster** than your dispatch, although it "
                   "does more arithmetic: at this size, gathering each expert's tokens and many small products cost "
                   "more than the skipped FLOPs; with larger experts (or a better dispatch) the arithmetic wins.")
    else:
        verdict = ("Running every expert took about as long as your dispatch (within 25%): at this size the "
                   "bookkeeping of the dispatch eats what the skipped FLOPs save.")
    return f"{head} {yours} {verdict}"


# -- one large MoE layer across batch sizes -------------------------------------------------------------------------


@dataclass(frozen=True)
class MoELayerTiming:
    """One MoE layer against two dense MLPs at several batch sizes."""
    batch_sizes: tuple[int, ...]
    moe: tuple[Timing, ...]
    dense_active: tuple[Timing, ...]     # a dense MLP as wide as the top_k experts together
    dense_total: tuple[Timing, ...]      # a dense MLP as wide as all the experts together
    experts_touched: tuple[float, ...]   # distinct experts a batch's tokens chose (mean over draws)
    expected_touched: tuple[float, ...]  # n_experts * (1 - (1 - top_k / n_experts) ** batch)
    weight_bytes: int                    # the MoE layer's expert weight matrices (fp32)
    n_experts: int

    @property
    def moe_ms(self) -> tuple[float, ...]:
        return tuple(1e3 * t.seconds for t in self.moe)

    @property
    def dense_active_ms(self) -> tuple[float, ...]:
        return tuple(1e3 * t.seconds for t in self.dense_active)

    @property
    def dense_total_ms(self) -> tuple[float, ...]:
        return tuple(1e3 * t.seconds for t in self.dense_total)

    @property
    def reliable(self) -> bool:
        return all(t.reliable for t in (*self.moe, *self.dense_active, *self.dense_total))


def time_moe_layer(batch_sizes=(1, 2, 4, 8, 16, 64), hidden_size: int = 1024, intermediate_size: int = 2048,
                   n_experts: int = 8, experts_per_token: int = 2, repeats: int = 3, draws: int = 20,
                   moe_forward: Callable | None = None, max_repeats: int = 8) -> MoELayerTiming:
    """Time an MoE feed-forward block (random weights and router, fp32) on batches of tokens, in turns with a
    dense MLP of the same active width (``experts_per_token * intermediate_size``) and one of the same total
    width (``n_experts * intermediate_size``). The MoE is ``moe_forward(x, router_weight, experts, k)`` (the
    learner's dispatch) or, by default, lessonlib's. Sized so that the weights do not fit in a CPU cache: the
    time then follows the bytes of the experts a batch touches."""
    top_k = experts_per_token
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"experts_per_token must be between 1 and n_experts ({n_experts}), got {top_k}")
    if any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive, got {batch_sizes}")
    w = random_experts(hidden_size, intermediate_size, n_experts)
    g = torch.Generator().manual_seed(2)
    scale = hidden_size ** -0.5

    def dense(width: int):
        w1 = torch.randn(hidden_size, width, generator=g) * scale
        w2 = torch.randn(width, hidden_size, generator=g) * scale
        return lambda x: F.gelu(x @ w1, approximate="tanh") @ w2

    if moe_forward is None:
        def moe_fn(x):
            return moe_mlp(x, w, top_k, renormalize=True)[0]
    else:
        experts = expert_functions(w)

        def moe_fn(x):
            return moe_forward(x, w.router, experts, top_k)

    dense_active, dense_total = dense(top_k * intermediate_size), dense(n_experts * intermediate_size)
    inputs = {b: torch.randn(b, hidden_size, generator=g) for b in batch_sizes}
    runs = {(b, name): (lambda fn=fn, x=inputs[b]: fn(x)) for b in batch_sizes
            for name, fn in (("moe", moe_fn), ("active", dense_active), ("total", dense_total))}
    with torch.inference_mode():
        timed = interleaved_timings(runs, repeats, max_repeats=max(repeats, max_repeats))
        touched = []
        for b in batch_sizes:
            counts = [len(torch.topk(torch.randn(b, hidden_size, generator=g) @ w.router, top_k).indices.unique())
                      for _ in range(draws)]
            touched.append(sum(counts) / draws)
    return MoELayerTiming(
        batch_sizes=tuple(batch_sizes), moe=tuple(timed[b, "moe"] for b in batch_sizes),
        dense_active=tuple(timed[b, "active"] for b in batch_sizes),
        dense_total=tuple(timed[b, "total"] for b in batch_sizes), experts_touched=tuple(touched),
        expected_touched=tuple(n_experts * (1 - (1 - top_k / n_experts) ** b) for b in batch_sizes),
        weight_bytes=sum(t.numel() * t.element_size() for t in (w.fc_weight, w.proj_weight)), n_experts=n_experts)


def layer_timing_summary(t: MoELayerTiming, weight_bytes_text: str) -> str:
    """Batch 1 against the largest batch: does the MoE read only its active experts at batch 1, and is the
    saving in bytes gone once a batch touches every expert?"""
    first, last = 0, len(t.batch_sizes) - 1
    head = (f"The MoE layer's experts hold {weight_bytes_text}. At batch {t.batch_sizes[last]} the tokens touch "
            f"{t.experts_touched[last]:.1f} of {t.n_experts} experts (expected "
            f"{t.expected_touched[last]:.1f}).")
    if not t.reliable:
        return head + " " + busy_machine_note("the three layers", (*t.moe, *t.dense_active, *t.dense_total))
    to_active = t.moe_ms[first] / t.dense_active_ms[first]
    to_total_1 = t.moe_ms[first] / t.dense_total_ms[first]
    to_total_n = t.moe_ms[last] / t.dense_total_ms[last]
    if to_total_1 <= 0.6:
        batch1 = (f"At batch 1 the MoE layer took **{to_total_1:.2f}x** the time of the dense layer holding the same "
                  f"parameters and {to_active:.2f}x that of the dense layer with its active parameters: it reads only "
                  "the experts its token chose.")
    else:
        batch1 = (f"At batch 1 the MoE layer took {to_total_1:.2f}x the time of the dense layer holding the same "
                  f"parameters ({to_active:.2f}x the one with its active parameters): on this run reading fewer "
                  "experts did not show up as a clear saving.")
    if to_total_n > 1.2 * to_total_1:
        batchn = (f"At batch {t.batch_sizes[last]} the ratio to the same-total dense layer has grown to "
                  f"{to_total_n:.2f}x: the saving in bytes read shrinks as a batch's tokens touch more experts, and "
                  "what is left is the saving in FLOPs.")
    else:
        batchn = (f"At batch {t.batch_sizes[last]} the ratio to the same-total dense layer is {to_total_n:.2f}x, "
                  "not clearly larger than at batch 1 on this run.")
    return f"{head} {batch1} {batchn}"


# -- what an MoE buys: dense models of the same active and the same total parameters --------------------------------


@dataclass(frozen=True)
class PayoffRow:
    name: str
    params: int                  # in memory
    active_params: int           # used per token
    flops_per_token: float       # at a context of 64
    val_loss: float
    answer_loss: float
    exact_match: float
    prefill: Timing              # one 256-token prompt, one thread


def moe_payoff(models: dict[str, torch.nn.Module], val_batches, lines: list[str] | None = None,
               prompt_len: int = 256, repeats: int = 5, scores: dict[str, Scores] | None = None) -> list[PayoffRow]:
    """Parameters, FLOPs per token, quality and the time of a ``prompt_len``-token prefill (in turns, one thread)
    of each model. Quality is taken from ``scores`` where given (e.g. the checkpoints' reports), else scored now
    on ``val_batches`` and the answers of ``lines``, or by default on the reports' own questions
    (:func:`~lessonlib.models.evaluation.report_scores`). Prints progress."""
    if not models:
        raise ValueError("give at least one model")
    runs = {name: prefill_run(model, prompt_len) for name, model in models.items()}
    print("timing the prefills ...", end="", flush=True)
    with torch_threads(1):
        timed = interleaved_timings(runs, repeats)
    print(" done", flush=True)
    scores = dict(scores or {})
    for name in progress([n for n in models if n not in scores], "scoring quality"):
        scores[name] = (report_scores(models[name], val_batches) if lines is None
                        else live_scores(models[name], val_batches, lines))
    rows = []
    for name, model in models.items():
        spec = spec_of(model, name)
        s = scores[name]
        rows.append(PayoffRow(name, model.n_params(), spec.n_active_params(), spec.flops_per_token(64),
                              s.val_loss, s.answer_loss, s.exact_match, timed[name]))
    return rows


def payoff_summary(rows: Sequence[PayoffRow], moe: str, same_active: str, same_total: str,
                   n_questions: int = REPORT_ANSWERS) -> str:
    """The MoE against the dense model of its active parameters (same compute per token) and the dense model of
    about its total parameters (same memory), in words that follow the numbers; exact match with a 95% interval
    on ``n_questions`` questions, called a difference only when the interval is clear of 0."""
    by = {r.name: r for r in rows}
    m, a, t = by[moe], by[same_active], by[same_total]

    def quality(x: PayoffRow, y: PayoffRow) -> str:
        dl = x.val_loss - y.val_loss
        if abs(dl) < 0.005:
            word = "the same validation loss (within 0.005 nats)"
        else:
            word = f"a {'lower' if dl < 0 else 'higher'} validation loss ({x.val_loss:.3f} against {y.val_loss:.3f})"
        gap = share_difference(x.exact_match, y.exact_match, n_questions)
        return (f"{word} and {x.exact_match:.1%} exact match against {y.exact_match:.1%} ({gap.flat}: "
                + ("a clear difference)" if gap.clear else "within noise)"))

    same_compute = (f"At the **same compute per token** as `{same_active}` "
                    f"({m.flops_per_token / a.flops_per_token:.2f}x its FLOPs, {m.params / a.params:.1f}x its "
                    f"parameters in memory), `{moe}` reaches {quality(m, a)}.")
    same_memory = (f"Against `{same_total}`, which holds about the same parameters ({t.params / m.params:.2f}x) and "
                   f"spends them all on every token ({t.flops_per_token / m.flops_per_token:.1f}x the MoE's FLOPs), "
                   f"`{moe}` has {quality(m, t)}.")
    loss_gap = m.val_loss - a.val_loss
    match_gap = share_difference(m.exact_match, a.exact_match, n_questions)
    if loss_gap < -0.005 and not (match_gap.clear and match_gap.value < 0):
        claim = ("So on this run the MoE bought quality with memory, not compute: its case is real whenever memory is "
                 "cheaper than FLOPs.")
    elif loss_gap > 0.005 and not (match_gap.clear and match_gap.value > 0):
        claim = ("So at this tiny scale and training budget the extra experts did **not** buy quality at equal "
                 "compute: the MoE's claim (more capacity for the same FLOPs) may need more data and larger models "
                 "than these to pay off; the published MoEs had both.")
    else:
        claim = ("So on this run the extra experts bought no clear quality at equal compute: the validation loss and "
                 "exact match do not agree on a difference beyond noise. The MoE's claim (more capacity for the same "
                 "FLOPs) may need more data and larger models than these to show; the published MoEs had both.")
    timing = ""
    if m.prefill.reliable and t.prefill.reliable and a.prefill.reliable:
        ratio = t.prefill.seconds / m.prefill.seconds
        same = a.prefill.seconds / m.prefill.seconds
        timing = (f" Measured here, a 256-token prefill of `{same_total}` took {ratio:.1f}x the MoE's time, and one "
                  f"of `{same_active}`, with the MoE's FLOPs, {same:.2f}x"
                  + (": at equal FLOPs the MoE's routing and dispatch cost time of their own." if same < 0.8 else "."))
    else:
        timing = " " + busy_machine_note("the prefills", [m.prefill, a.prefill, t.prefill])
    return f"{same_compute} {same_memory}{timing} {claim}"
