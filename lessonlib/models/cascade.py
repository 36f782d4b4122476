"""A confidence-threshold cascade: the cheapest model answers first, and a query whose answer it is not confident
enough about goes to the next model, up to the last, which always answers.

Two halves. :func:`cascade_results` runs every model on every question once (greedy answers, their confidence,
their cost): the only part that runs models. Everything else works on those precomputed per-query results as
NumPy arrays, so that a dashboard can sweep thresholds in microseconds: :func:`cascade_decision` (which model
answers each query), :func:`evaluate_cascade` (accuracy, cost and deferral rates over thresholds),
:func:`pareto_frontier`, :func:`choose_threshold` on a validation split and :func:`check_threshold` on a test
split.

Confidence is a number in [0, 1] per answer, computed from the logits each answer token was chosen from. The
measure (a setting, :data:`MEASURES`): ``"max_prob"``, the probability of the chosen token (default);
``"margin"``, the top probability minus the second; ``"entropy"``, 1 - H(p) / ln V, the negative entropy mapped
onto [0, 1] (1: all mass on one token; 0: uniform over the V tokens). Over the answer's tokens (a setting,
:data:`AGGREGATES`): ``"min"`` (default: an exact-match answer is right only if every token is, so the least
confident token is the weakest link), ``"mean"``, or ``"first"`` (the first answer token only). The answer's
tokens are the generated ones up to and including the newline that ends it.

A threshold t sends a query on when the confidence is below t: t = 0 never defers, a t above 1 always defers
to the last model (no confidence exceeds 1). A cascade of M models takes one threshold for every stage or one
per stage (M - 1 numbers). Costs: a query pays every model it passed through, FLOPs from the cost model
(:func:`lessonlib.models.cost_spec.spec_of`: the prefill of the question and a decode step per further answer
token), and seconds when measured (:mod:`lessonlib.measure.cascade`). Shapes: M models, N queries, K thresholds.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .corpus import TOKENIZER, answer_span, task_of
from .cost_spec import spec_of
from .decoding import greedy_with_logits

MEASURES = ("max_prob", "margin", "entropy")
AGGREGATES = ("min", "mean", "first")
COSTS = ("flops", "seconds")
NEWLINE = TOKENIZER.encode("\n")[0]


# -- confidence ------------------------------------------------------------------------------------------------
def token_confidence(logits: torch.Tensor, measure: str = "max_prob") -> torch.Tensor:
    """Confidence in [0, 1] of each position's greedy choice, for logits (..., V): see the module docstring."""
    if measure not in MEASURES:
        raise ValueError(f"confidence measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    probs = torch.softmax(logits.float(), dim=-1)
    if measure == "max_prob":
        return probs.amax(dim=-1)
    if measure == "margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(dim=-1)
    return (1 - entropy / np.log(logits.shape[-1])).clamp(0, 1)


def answer_confidence(logits: torch.Tensor, lengths: torch.Tensor, measure: str = "max_prob",
                      over: str = "min") -> torch.Tensor:
    """One confidence per answer (B,), from the logits its tokens were chosen from (B, L, V), of which the first
    ``lengths`` (B,) are the answer's; combined by ``over`` (``"min"``, ``"mean"`` or ``"first"``)."""
    if over not in AGGREGATES:
        raise ValueError(f"over must be one of {', '.join(AGGREGATES)} (how the answer's tokens combine), "
                         f"got {over!r}")
    per_token = token_confidence(logits, measure)                                   # (B, L)
    if over == "first":
        return per_token[:, 0]
    inside = torch.arange(per_token.shape[1])[None, :] < lengths[:, None]           # (B, L)
    if over == "min":
        return per_token.masked_fill(~inside, 1.0).amin(dim=1)
    return (per_token * inside).sum(dim=1) / lengths


# -- per-query results -------------------------------------------------------------------------------------------
@dataclass
class CascadeResults:
    """What each of M models did on each of N queries, models in cascade order (cheapest first)."""
    names: list[str]
    correct: np.ndarray            # (M, N) bool: the answer was exactly right
    confidence: np.ndarray         # (M, N) in [0, 1]
    flops: np.ndarray              # (M, N): the cost model's FLOPs of answering
    seconds: np.ndarray | None = None   # (M, N): measured time of answering, if measured
    tasks: np.ndarray | None = None     # (N,) the task tag of each query ("c", "r", "s", "a")

    def __post_init__(self):
        self.correct = np.asarray(self.correct, dtype=bool)
        self.confidence = np.asarray(self.confidence, dtype=float)
        self.flops = np.asarray(self.flops, dtype=float)
        shape = self.correct.shape
        if len(shape) != 2 or shape[0] != len(self.names) or shape[0] < 1:
            raise ValueError(f"correct must be (models, queries) with one row per name ({len(self.names)} names), "
                             f"got shape {shape}")
        for field in ("confidence", "flops", "seconds"):
            value = getattr(self, field)
            if value is not None and np.shape(value) != shape:
                raise ValueError(f"{field} has shape {np.shape(value)}, correct has {shape}: one value per model "
                                 "and query")
        if self.seconds is not None:
            self.seconds = np.asarray(self.seconds, dtype=float)
        _check_confidences(self.confidence)

    @property
    def n_queries(self) -> int:
        return self.correct.shape[1]

    def take(self, queries) -> CascadeResults:
        """The results of some queries only (indices or a boolean mask over the N queries)."""
        def pick(a):
            return None if a is None else a[..., queries]
        return dataclasses.replace(self, correct=self.correct[:, queries], confidence=self.confidence[:, queries],
                                   flops=self.flops[:, queries], seconds=pick(self.seconds), tasks=pick(self.tasks))

    def split(self, fraction: float = 0.5, seed: int = 0, by_task: bool = False
              ) -> tuple[CascadeResults, CascadeResults]:
        """A random split of the queries: (``fraction`` of them, the rest), e.g. validation and test. With
        ``by_task`` each task is split in that proportion (a stratified split: on a few hundred queries a plain one
        can put far more of a hard task on one side, and the two halves then disagree for that reason alone)."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction!r}")
        rng = np.random.default_rng(seed)
        if not by_task:
            groups = [np.arange(self.n_queries)]
        elif self.tasks is None:
            raise ValueError("these results have no tasks to stratify by: split(by_task=False), or build them with "
                             "cascade_results")
        else:
            groups = [np.flatnonzero(self.tasks == task) for task in np.unique(self.tasks)]
        first, second = [], []
        for group in groups:
            order = rng.permutation(group)
            cut = round(fraction * len(group))
            first.append(order[:cut])
            second.append(order[cut:])
        return self.take(np.sort(np.concatenate(first))), self.take(np.sort(np.concatenate(second)))

    def cost(self, kind: str = "flops") -> np.ndarray:
        """(M, N) cost of each model on each query: ``"flops"`` or measured ``"seconds"``."""
        if kind not in COSTS:
            raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {kind!r}")
        if kind == "seconds" and self.seconds is None:
            raise ValueError("these results have no measured seconds: add them with "
                             "lessonlib.measure.cascade.with_measured_seconds, or use cost='flops'")
        return self.flops if kind == "flops" else self.seconds


def _check_confidences(confidence: np.ndarray) -> None:
    if not np.all((confidence >= 0) & (confidence <= 1)):
        bad = confidence[~((confidence >= 0) & (confidence <= 1))][0]
        raise ValueError(f"confidences must lie in [0, 1] (got {bad!r}): map margins and entropies onto [0, 1] "
                         "as token_confidence does")


def question_groups(lines: list[str]) -> dict[tuple[int, int], list[int]]:
    """Indices of ``lines`` grouped by (question length, answer length), each group one batch of equal lengths."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, line in enumerate(lines):
        start, end = answer_span(line)
        if start == end:
            raise ValueError(f"line {line!r} has no answer to score (no '>'): use questions of the copy, reverse, "
                             "sort or add task")
        groups.setdefault((start, end - start), []).append(i)
    return groups


def answer_flops(spec, prompt_len: int, answer_tokens: int) -> int:
    """FLOPs of answering: the prefill of a ``prompt_len``-token prompt (it yields the first token), then one
    decode step for each further token of an ``answer_tokens``-token answer."""
    return spec.prefill_flops(prompt_len) + sum(spec.flops_per_token(prompt_len + i)
                                                for i in range(answer_tokens - 1))


@torch.inference_mode()
def model_results(model, lines: list[str], measure: str = "max_prob", over: str = "min"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One model on the questions of ``lines`` (complete lines: question, ``>``, answer): (correct, confidence,
    flops), each (N,). The model answers greedily after ``"\\n" + question + ">"`` and stops at the newline
    (it generates at most the right answer's length + 1 tokens: a longer answer is wrong whatever follows)."""
    spec = spec_of(model)
    correct, confidence, flops = np.zeros(len(lines), bool), np.zeros(len(lines)), np.zeros(len(lines))
    for (start, answer_len), indices in question_groups(lines).items():
        group = [lines[i] for i in indices]
        prompts = torch.tensor([TOKENIZER.encode("\n" + line[:start]) for line in group])   # (B, T)
        tokens, logits = greedy_with_logits(model, prompts, answer_len + 1)                  # (B, L+1), (B, L+1, V)
        is_newline = tokens == NEWLINE
        # answer length in tokens, its newline included (L + 1 when it never ends)
        lengths = torch.where(is_newline.any(1), is_newline.int().argmax(1) + 1, torch.tensor(answer_len + 1))
        confidence[indices] = answer_confidence(logits, lengths, measure, over).numpy()
        for row, (i, line) in enumerate(zip(indices, group, strict=True)):
            correct[i] = TOKENIZER.decode(tokens[row].tolist()) == line[start:] + "\n"
            flops[i] = answer_flops(spec, prompts.shape[1], int(lengths[row]))
    return correct, confidence, flops


def cascade_results(models: list, lines: list[str], names: list[str] | None = None, measure: str = "max_prob",
                    over: str = "min") -> CascadeResults:
    """Every model (cheapest first) on every question of ``lines``: correctness, confidence (``measure`` and
    ``over`` as in the module docstring) and FLOPs per model and query."""
    if not models:
        raise ValueError("a cascade needs at least one model")
    vocabularies = {m.config.vocab_size for m in models}
    if len(vocabularies) > 1:
        raise ValueError(f"the models' vocabularies differ ({sorted(vocabularies)} tokens): a cascade passes the "
                         "same question to each, so they must share the tokenizer")
    names = names or [f"model {i}" for i in range(len(models))]
    if len(names) != len(models):
        raise ValueError(f"{len(names)} names for {len(models)} models")
    rows = [model_results(model, lines, measure, over) for model in models]
    return CascadeResults(list(names), *(np.stack(column) for column in zip(*rows, strict=True)),
                          tasks=np.array([task_of(line) for line in lines]))


# -- the cascade over precomputed results ------------------------------------------------------------------------
def _thresholds_per_stage(thresholds, n_models: int) -> np.ndarray:
    """Threshold settings as (K, M - 1), one per stage: from a number, (K,) (each shared by every stage) or
    (K, M - 1)."""
    t = np.asarray(thresholds, dtype=float)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim == 1:
        t = np.repeat(t[:, None], n_models - 1, axis=1)
    if t.ndim != 2 or t.shape[1] != n_models - 1:
        raise ValueError(f"thresholds must be a number, one per setting (K,), or one per setting and stage "
                         f"(K, {n_models - 1}) for {n_models} models; got shape {np.shape(thresholds)}")
    bad = np.isnan(t) | (t < 0)
    if bad.any():
        raise ValueError(f"a threshold must be in [0, 1] (0: never defer), or above 1 to always defer; got "
                         f"{t[bad][0]!r}")
    return t


def _answering_stage(confidences: np.ndarray, per_stage: np.ndarray) -> np.ndarray:
    """(K, N): for each setting of ``per_stage`` (K, M - 1), the first model whose confidence (M, N) reaches its
    stage's threshold, or the last model."""
    stays = confidences[None, :-1] >= per_stage[:, :, None]                             # (K, M - 1, N)
    last = np.ones((len(per_stage), 1, confidences.shape[1]), bool)                       # the last always answers
    return np.concatenate([stays, last], axis=1).argmax(axis=1)                          # first True


def cascade_decision(confidences, threshold) -> np.ndarray:
    """Which model answers each query (N,): the first whose confidence (``confidences`` (M, N), in [0, 1])
    reaches ``threshold`` (>=), else the last model. ``threshold``: a number for every stage, or M - 1 numbers
    (one per stage). 0 never defers; above 1 always defers to the last model."""
    confidences = np.asarray(confidences, dtype=float)
    if confidences.ndim != 2:
        raise ValueError(f"confidences must be (models, queries), got shape {confidences.shape}")
    _check_confidences(confidences)
    if np.ndim(threshold) > 1:
        raise ValueError(f"threshold must be a number or one per stage ({len(confidences) - 1} numbers); for "
                         "several settings use evaluate_cascade")
    setting = _thresholds_per_stage(np.reshape(threshold, (1, -1)) if np.ndim(threshold) else threshold,
                                    len(confidences))
    return _answering_stage(confidences, setting)[0]


@dataclass
class CascadeCurve:
    """A cascade at K threshold settings: accuracy, mean cost per query, and where the queries went."""
    thresholds: np.ndarray          # (K,) or (K, M - 1)
    accuracy: np.ndarray            # (K,)
    cost: np.ndarray                # (K,) mean per query, every model a query passed through
    answered_by: np.ndarray         # (K, M): fraction of the queries each model answered
    cost_kind: str = "flops"

    @property
    def deferral_rate(self) -> np.ndarray:
        """(K, M - 1): fraction of all queries passed on beyond each stage (0 after the first: none deferred)."""
        return 1 - np.cumsum(self.answered_by, axis=1)[:, :-1]

    def point(self, i: int) -> dict:
        """Setting ``i`` as plain numbers (for printing and tables)."""
        return {"threshold": self.thresholds[i].tolist(), "accuracy": float(self.accuracy[i]),
                "cost": float(self.cost[i]), "deferral_rate": self.deferral_rate[i].tolist(),
                "answered_by": self.answered_by[i].tolist()}


DEFAULT_THRESHOLDS = np.append(np.arange(101) / 100, np.inf)   # 0, 0.01, ..., 1 (exact decimals), always defer


def evaluate_cascade(results: CascadeResults, thresholds=DEFAULT_THRESHOLDS, cost: str = "flops") -> CascadeCurve:
    """The cascade at every threshold setting ((K,) shared by the stages, or (K, M - 1)): accuracy, mean cost per
    query (``"flops"`` or ``"seconds"``; a deferred query pays every model it passed through) and the share of
    queries each model answered."""
    per_query_cost = results.cost(cost)
    per_stage = _thresholds_per_stage(thresholds, len(results.names))
    stage = _answering_stage(results.confidence, per_stage)                              # (K, N)
    queries = np.arange(results.n_queries)
    accuracy = results.correct[stage, queries].mean(axis=1)
    paid = np.cumsum(per_query_cost, axis=0)[stage, queries].mean(axis=1)                # (K,)
    answered_by = np.stack([(stage == m).mean(axis=1) for m in range(len(results.names))], axis=1)
    shown = np.asarray(thresholds, dtype=float)
    return CascadeCurve(shown.reshape(1) if shown.ndim == 0 else shown, accuracy, paid, answered_by, cost)


def single_models(results: CascadeResults, cost: str = "flops") -> dict[str, np.ndarray]:
    """Each model alone answering every query, for comparison with the cascade: its ``accuracy`` (M,) and mean
    ``cost`` (M,) per query, with the models' ``names``."""
    return {"names": np.array(results.names), "accuracy": results.correct.mean(axis=1),
            "cost": results.cost(cost).mean(axis=1)}


def pareto_frontier(points) -> np.ndarray:
    """Indices of the points (K, 2) of (cost, accuracy) that no other point beats (as cheap or cheaper and at
    least as accurate, better in one), in order of increasing cost; of equal points, the first."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (K, 2) pairs of (cost, accuracy), got shape {points.shape}")
    order = np.lexsort((-points[:, 1], points[:, 0]))    # by cost, then the most accurate first
    frontier, best = [], -np.inf
    for i in order:
        if points[i, 1] > best:
            frontier.append(i)
            best = points[i, 1]
    return np.array(frontier, dtype=int)


@dataclass
class ThresholdChoice:
    """The cheapest threshold setting that reaches ``target`` accuracy on the results it was chosen on."""
    target: float
    threshold: float | np.ndarray | None   # None: no setting reaches the target
    accuracy: float                        # at the chosen setting (or at the most accurate one, when none reaches)
    cost: float
    cost_kind: str
    best_threshold: float | np.ndarray     # the most accurate setting (the cheapest of equals)

    @property
    def met(self) -> bool:
        return self.threshold is not None

    def __str__(self) -> str:
        if self.met:
            return (f"threshold {np.round(self.threshold, 4).tolist()} reaches {self.accuracy:.1%} "
                    f"(target {self.target:.1%}) at {self.cost:.4g} {self.cost_kind} per query")
        return (f"no threshold reaches {self.target:.1%}: the most accurate, "
                f"{np.round(self.best_threshold, 4).tolist()}, reaches {self.accuracy:.1%} at {self.cost:.4g} "
                f"{self.cost_kind} per query")


def choose_threshold(validation: CascadeResults, accuracy_target: float, thresholds=DEFAULT_THRESHOLDS,
                     cost: str = "flops") -> ThresholdChoice:
    """The cheapest threshold setting whose accuracy on ``validation`` is at least ``accuracy_target`` (of
    equal costs, the most accurate). When none reaches it, ``threshold`` is None and the choice reports the most
    accurate setting instead (its str says so)."""
    if isinstance(accuracy_target, bool) or not isinstance(accuracy_target, numbers.Real) \
            or not 0 <= accuracy_target <= 1:
        raise ValueError(f"accuracy_target is a fraction of queries answered right, in [0, 1]; "
                         f"got {accuracy_target!r}")
    curve = evaluate_cascade(validation, thresholds, cost)
    best = int(np.lexsort((curve.cost, -curve.accuracy))[0])
    meets = np.flatnonzero(curve.accuracy >= accuracy_target)

    def setting(i: int) -> float | np.ndarray:
        return curve.thresholds[i].copy() if curve.thresholds.ndim == 2 else float(curve.thresholds[i])

    if len(meets) == 0:
        return ThresholdChoice(accuracy_target, None, float(curve.accuracy[best]), float(curve.cost[best]), cost,
                               setting(best))
    chosen = int(meets[np.lexsort((-curve.accuracy[meets], curve.cost[meets]))[0]])
    return ThresholdChoice(accuracy_target, setting(chosen), float(curve.accuracy[chosen]),
                           float(curve.cost[chosen]), cost, setting(best))


def check_threshold(test: CascadeResults, choice: ThresholdChoice) -> dict:
    """The chosen setting on held-out queries: its accuracy, cost and deferral rates there, and whether it still
    reaches the target (a threshold tuned on validation may fall short on test)."""
    if not choice.met:
        raise ValueError(f"nothing to check: {choice}")
    setting = [choice.threshold] if np.ndim(choice.threshold) == 0 else np.reshape(choice.threshold, (1, -1))
    curve = evaluate_cascade(test, setting, choice.cost_kind)
    return curve.point(0) | {"target": choice.target, "met": bool(curve.accuracy[0] >= choice.target)}
