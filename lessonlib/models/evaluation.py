"""How good a trained model is on the course's language: mean loss on fixed batches, loss on the answers
alone, and exact-match accuracy of greedy answers; and the fixed questions lessons score models on."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .corpus import TASKS, TOKENIZER, VALIDATION_SEED, Batch, answer_span, make_lines

# The questions a checkpoint's report is scored on (scripts/train_tiny_models.py): per task and difficulty, the
# same REPORT_QUESTIONS questions for every model, so two models' answers can be compared question by question.
REPORT_QUESTIONS, REPORT_SEED = 200, VALIDATION_SEED + 1


def report_questions(tag: str, difficulty: str = "mixed", n: int = REPORT_QUESTIONS) -> list[str]:
    """The questions of task ``tag`` ("c", "r", "s", "a") at ``difficulty`` that checkpoint reports score."""
    return make_lines(n, REPORT_SEED, tasks=[tag], difficulty=difficulty)


def task_lines(n_per_task: int = 100, seed: int = 77) -> list[str]:
    """Questions of the four sub-tasks that have answers (copy, reverse, sort, add), ``n_per_task`` each."""
    return [line for tag in "crsa" for line in make_lines(n_per_task, seed, tasks=[tag])]


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[Batch]) -> float:
    """Mean cross-entropy (nats per token) over fixed batches, in eval mode."""
    was_training = model.training
    model.eval()
    losses = [model(x, y).loss.item() for x, y in batches]
    model.train(was_training)
    return sum(losses) / len(losses)



def _by_answer_span(lines: list[str]) -> dict[tuple[int, int], list[str]]:
    """Lines grouped so that each group can run as one batch: same question length, same answer length."""
    groups: dict[tuple[int, int], list[str]] = {}
    for line in lines:
        span = answer_span(line)
        if span[0] == span[1]:
            raise ValueError(f"line {line!r} has no answer to score (no '>')")
        groups.setdefault(span, []).append(line)
    return groups


@torch.no_grad()
def answer_loss(model: torch.nn.Module, lines: list[str]) -> float:
    """Mean cross-entropy (nats per character) of the answers of ``lines`` (what follows ``>``, and the
    newline that ends it), each line scored after a newline as in the training stream. The question's
    characters are random, so they are not scored: this is the loss of the part a model can get right."""
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for (start, end), group in _by_answer_span(lines).items():
        ids = torch.tensor([TOKENIZER.encode("\n" + line + "\n") for line in group])
        logits = model(ids[:, :-1]).logits
        # ids[:, i + 1] is character i of the line: the answer and its newline are ids[:, start+1 : end+2].
        losses = F.cross_entropy(logits[:, start:end + 1].transpose(1, 2), ids[:, start + 1:end + 2],
                                 reduction="sum")
        total += losses.item()
        count += len(group) * (end + 1 - start)
    model.train(was_training)
    return total / count


def answers_right(model: torch.nn.Module, lines: list[str]) -> list[bool]:
    """For each of ``lines``, in order: does the model get its answer exactly right? Greedy decoding after the
    ``>`` must give the answer and then the newline that ends it. Questions of equal length are answered as one
    batch."""
    right = {}
    for (start, end), group in _by_answer_span(lines).items():
        prompts = torch.tensor([TOKENIZER.encode("\n" + line[:start]) for line in group])
        answers = model.generate(prompts, end - start + 1)[:, prompts.shape[1]:].tolist()
        for line, answer in zip(group, answers, strict=True):
            right.setdefault(line, []).append(TOKENIZER.decode(answer) == line[start:end] + "\n")
    return [right[line].pop(0) for line in lines]   # a question asked twice is answered (the same) twice


def exact_match(model: torch.nn.Module, lines: list[str]) -> float:
    """Fraction of ``lines`` whose answer the model gets exactly right (see :func:`answers_right`)."""
    return sum(answers_right(model, lines)) / len(lines)


SCORED_TASKS = ("copy", "reverse", "sort", "add")


@dataclass(frozen=True)
class Scores:
    """A model's quality in the three measures the lessons compare."""
    val_loss: float        # nats per character over the fixed validation batches (whole lines)
    answer_loss: float     # nats per character of the answers, mean over copy, reverse, sort and add
    exact_match: float     # share of answers exactly right, mean over the four tasks (mixed difficulty)


def reported_scores(report: dict) -> Scores:
    """The scores a shipped checkpoint's report recorded when it was made (``scripts/train_tiny_models.py`` and
    ``prune_tiny_models.py``: the eight validation batches, and 200 questions of each task at mixed difficulty).
    Greedy decoding is deterministic, so scoring again gives the same numbers; the test suite checks that every
    checkpoint still reaches them."""
    missing = [key for key in ("validation_loss", "answer_loss_per_task", "exact_match_per_task") if key not in report]
    if missing:
        raise KeyError(f"the report of {report.get('name', 'this checkpoint')!r} has no {', '.join(missing)}")
    answers, right = report["answer_loss_per_task"], report["exact_match_per_task"]
    return Scores(float(report["validation_loss"]), sum(answers[t] for t in SCORED_TASKS) / len(SCORED_TASKS),
                  sum(right[t]["mixed"] for t in SCORED_TASKS) / len(SCORED_TASKS))


def live_scores(model: torch.nn.Module, batches: list[Batch], lines: list[str]) -> Scores:
    """The same three measures, scored now on ``batches`` and the answers of ``lines`` (all lines pooled). Not
    the numbers a checkpoint's report recorded unless the questions are the report's: see :func:`report_scores`."""
    return Scores(evaluate(model, batches), answer_loss(model, lines), exact_match(model, lines))


REPORT_ANSWERS = REPORT_QUESTIONS * len(SCORED_TASKS)   # answers behind a report's (and report_scores') exact match


def report_scores(model: torch.nn.Module, batches: list[Batch]) -> Scores:
    """The three measures scored now exactly as a checkpoint's report scored them (:func:`reported_scores`): the
    loss on ``batches`` (give the course's eight fixed validation batches), and for each of copy, reverse, sort
    and add the answer loss and the exact match of the report's :data:`REPORT_QUESTIONS` questions at mixed
    difficulty, averaged over the four tasks. A shipped checkpoint scores what its report says (up to the
    report's rounding): this is what a lesson's ``RESCORE = True`` runs."""
    tags = [tag for tag, name in TASKS.items() if name in SCORED_TASKS]
    if len(tags) != len(SCORED_TASKS):
        raise ValueError(f"the corpus has no task for some of {SCORED_TASKS}")
    answers = [answer_loss(model, report_questions(tag)) for tag in tags]
    right = [exact_match(model, report_questions(tag, "mixed")) for tag in tags]
    return Scores(evaluate(model, batches), sum(answers) / len(answers), sum(right) / len(right))
