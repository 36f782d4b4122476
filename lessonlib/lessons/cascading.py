"""Lesson 04's material: the trained family of three sizes, chatbot-like traffic to send through it, what an
oracle router would save, and the adapters that run the learner's cascade and speculative decoding on the
course's models.

    models = load_family()                                   # small, medium, large, cheapest first
    lines = traffic(400, seed=4)                             # mostly easy questions, some hard ones
    results = cascade_results(list(models.values()), lines, list(models))
    target = LogitsFn(models["large"])                       # tokens -> logits at every position, counted
    my_speculative_greedy(target, LogitsFn(models["small"]), prompt, 24, 4); target.passes
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from ..models import corpus
from ..models.checkpoints import load_pretrained
from ..models.decoding import SpeculativeStats, generate, speculative_generate

# The family (scripts/train_tiny_models.py): tiny-gpt's data and recipe at three sizes.
FAMILY = {"small": "tiny-gpt-small", "medium": "tiny-gpt", "large": "tiny-gpt-large"}

# A chatbot's traffic is mostly easy: half the questions short, a fifth long, the rest the training mix.
TRAFFIC_MIX = {"easy": 0.5, "mixed": 0.3, "hard": 0.2}
TRAFFIC_TASKS = "crsa"


def load_family(names: dict[str, str] | None = None) -> dict[str, torch.nn.Module]:
    """The shipped checkpoints of the family, by size label, cheapest first (eval mode)."""
    return {label: load_pretrained(checkpoint)[0].eval() for label, checkpoint in (names or FAMILY).items()}


def traffic(n: int, seed: int = 4, mix: dict[str, float] | None = None, tasks: str = TRAFFIC_TASKS
            ) -> tuple[list[str], np.ndarray]:
    """``n`` questions (complete lines) of ``tasks``, each of a difficulty drawn with the probabilities of
    ``mix`` (default :data:`TRAFFIC_MIX`), and the difficulty of each: (lines, (n,) array of labels).
    Deterministic in ``seed`` (the corpus's own generator, which Python keeps stable across versions)."""
    mix = dict(mix or TRAFFIC_MIX)
    unknown = set(mix) - set(corpus.DIFFICULTIES)
    if unknown or not mix or any(p < 0 for p in mix.values()) or not np.isclose(sum(mix.values()), 1):
        raise ValueError(f"mix maps difficulties ({', '.join(corpus.DIFFICULTIES)}) to probabilities that add up "
                         f"to 1; got {mix!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive whole number of questions, got {n!r}")
    rng = random.Random(seed)
    levels, edges = list(mix), np.cumsum(list(mix.values()))
    lines, difficulty = [], []
    for _ in range(n):
        level = levels[min(int(np.searchsorted(edges, rng.random(), side="right")), len(levels) - 1)]
        task = tasks[min(int(rng.random() * len(tasks)), len(tasks) - 1)]
        lines.append(corpus.make_line(task, rng, level))
        difficulty.append(level)
    return lines, np.array(difficulty)


# -- who needs which model ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OracleRouting:
    """Each query sent straight to the cheapest model that answers it right (the cheapest model when none
    does): what a perfect router would achieve, the bound a confidence cascade approaches from below."""
    model: np.ndarray              # (N,) index of the model each query goes to
    needs: np.ndarray              # (M + 1,) share of queries whose cheapest right model is 0..M-1; last: none is
    accuracy: float
    cost: float                    # mean per query: only the model it was sent to


def oracle_routing(correct, cost) -> OracleRouting:
    """The oracle router for per-query correctness (M, N) and costs (M, N), models cheapest first."""
    correct, cost = np.asarray(correct, bool), np.asarray(cost, float)
    if correct.ndim != 2 or correct.shape != cost.shape:
        raise ValueError(f"correct and cost must both be (models, queries); got {correct.shape} and {cost.shape}")
    any_right = correct.any(axis=0)
    first_right = np.where(any_right, correct.argmax(axis=0), 0)
    queries = np.arange(correct.shape[1])
    needs = np.append(np.bincount(first_right[any_right], minlength=len(correct)), (~any_right).sum())
    return OracleRouting(first_right, needs / correct.shape[1], float(any_right.mean()),
                         float(cost[first_right, queries].mean()))


def random_routing(costs, accuracies, at) -> np.ndarray:
    """The best accuracy that routing queries to the models *at random* reaches for a mean cost per query of
    ``at`` (a number or an array): each model alone is a point (cost, accuracy), any mix of them lies on the
    straight line between its points, so the best mix is the upper concave envelope of the points, and spending
    more never has to lose accuracy (it can be left unspent). A cascade is worth its routing only above this."""
    costs, accuracies = np.asarray(costs, float), np.asarray(accuracies, float)
    if costs.shape != accuracies.shape or costs.ndim != 1 or len(costs) == 0:
        raise ValueError(f"costs and accuracies must be one number per model; got shapes {costs.shape} and "
                         f"{accuracies.shape}")
    hull = []                                  # upper hull of the points, cheapest first
    for i in np.lexsort((-accuracies, costs)):
        point = (costs[i], accuracies[i])
        if hull and point[1] <= hull[-1][1]:
            continue                           # costs more, no more accurate: never worth mixing in
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            if (y1 - y0) * (point[0] - x0) <= (point[1] - y0) * (x1 - x0):   # hull[-1] lies under the chord
                hull.pop()
            else:
                break
        hull.append(point)
    xs, ys = np.array([p[0] for p in hull]), np.array([p[1] for p in hull])
    at = np.asarray(at, float)
    return np.where(at < xs[0], np.nan, np.interp(at, xs, ys))


def separation(correct, confidence) -> float:
    """How well a confidence tells right answers from wrong ones: the probability that a right answer is more
    confident than a wrong one (ties count half; the area under the ROC curve). 0.5: no better than chance;
    1: every right answer above every wrong one. NaN when all answers are right or all wrong."""
    correct, confidence = np.asarray(correct, bool).ravel(), np.asarray(confidence, float).ravel()
    right, wrong = confidence[correct], confidence[~correct]
    if len(right) == 0 or len(wrong) == 0:
        return float("nan")
    order = np.sort(wrong)
    below = np.searchsorted(order, right, side="left")
    ties = np.searchsorted(order, right, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(right) * len(wrong)))


def curve_with(decide, mean_cost, correct, confidence, cost, thresholds) -> dict[str, np.ndarray]:
    """A cascade's accuracy, mean cost and share answered by each model at every threshold, computed with the
    learner's ``decide(confidence, threshold)`` (which model answers each query) and ``mean_cost(cost,
    answering)``: {"thresholds", "accuracy", "cost", "answered_by" (K, M)}."""
    correct, confidence, cost = np.asarray(correct, bool), np.asarray(confidence, float), np.asarray(cost, float)
    queries = np.arange(correct.shape[1])
    accuracy, costs, answered = [], [], []
    for threshold in thresholds:
        answering = np.asarray(decide(confidence, float(threshold)), dtype=int)
        accuracy.append(correct[answering, queries].mean())
        costs.append(float(mean_cost(cost, answering)))
        answered.append(np.bincount(answering, minlength=len(correct)) / len(queries))
    return {"thresholds": np.asarray(thresholds, float), "accuracy": np.array(accuracy), "cost": np.array(costs),
            "answered_by": np.array(answered)}


# -- speculative decoding with the learner's loop ----------------------------------------------------------------
class LogitsFn:
    """A model seen as a function of a token list: ``model(tokens)`` runs one forward pass (no cache) over the
    list (or a 1-D tensor) and returns the (len(tokens), vocab) logits, row t predicting the token after
    position t. ``passes`` counts the calls and ``positions`` the tokens they ran over, so that a test can
    check how often the target was consulted."""

    def __init__(self, model: torch.nn.Module):
        self._model = model.eval()
        self.vocab_size = model.config.vocab_size
        self.max_len = model.config.max_position_embeddings
        self.passes = 0
        self.positions = 0

    def __call__(self, tokens) -> torch.Tensor:
        ids = torch.as_tensor(tokens, dtype=torch.long).reshape(1, -1)   # (1, T)
        if ids.shape[1] == 0:
            raise ValueError("call the model on at least one token")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"{ids.shape[1]} tokens exceed the model's {self.max_len} positions: generate fewer "
                             "tokens or draft fewer per round")
        self.passes += 1
        self.positions += ids.shape[1]
        with torch.inference_mode():
            return self._model(ids).logits[0]                         # (T, V)

    def reset(self) -> None:
        self.passes = self.positions = 0

    def __getattr__(self, name: str):
        raise AttributeError(f"{name!r}: in this exercise a model is a function; call it as model(tokens) to get "
                             "the logits at every position")


def prompt_tokens(line: str) -> list[int]:
    """The token ids of a question as the course asks it: a newline, the question, and ``>``."""
    start, _ = corpus.answer_span(line)
    return corpus.TOKENIZER.encode("\n" + line[:start])


def greedy_tokens(model: torch.nn.Module, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The model's own greedy continuation of ``prompt`` (new tokens only), on lessonlib's cached path."""
    out = generate(model, torch.tensor([prompt]), max_new_tokens)
    return out[0, len(prompt):].tolist()


@dataclass(frozen=True)
class LearnerRun:
    """The learner's speculative loop on some prompts, against the target's own greedy output."""
    identical: int            # prompts whose output equals the target's greedy output
    prompts: int
    new_tokens: int
    target_passes: int

    @property
    def tokens_per_target_pass(self) -> float:
        return self.new_tokens / self.target_passes if self.target_passes else float("nan")


def run_learner_speculative(fn, target: torch.nn.Module, draft: torch.nn.Module, prompts: list[list[int]],
                            max_new_tokens: int, draft_len: int) -> LearnerRun:
    """``fn(target, draft, prompt, max_new_tokens, draft_len)`` on each prompt with the models as
    :class:`LogitsFn`: how many outputs equal the target's greedy output and how many target passes it took."""
    target_fn, draft_fn = LogitsFn(target), LogitsFn(draft)
    identical = 0
    for prompt in prompts:
        got = [int(t) for t in fn(target_fn, draft_fn, list(prompt), max_new_tokens, draft_len)]
        identical += got == greedy_tokens(target, list(prompt), max_new_tokens)
    return LearnerRun(identical, len(prompts), len(prompts) * max_new_tokens, target_fn.passes)


@dataclass(frozen=True)
class DraftLenPoint:
    draft_len: int
    stats: SpeculativeStats        # summed over the prompts


def acceptance_by_draft_len(target, draft, prompts: list[list[int]], max_new_tokens: int, draft_lens,
                            temperature: float = 0.0, seed: int = 0) -> list[DraftLenPoint]:
    """lessonlib's speculative decoding (cached) at each draft length, on every prompt: the acceptance rate
    and tokens per target pass it reached (no timing)."""
    points = []
    for k in draft_lens:
        generator = torch.Generator().manual_seed(seed)
        total = SpeculativeStats()
        for prompt in prompts:
            total = total + speculative_generate(target, draft, torch.tensor([prompt]), max_new_tokens, int(k),
                                                 temperature, generator=generator).stats
        points.append(DraftLenPoint(int(k), total))
    return points
