"""A synthetic multi-task language: bit-exact on every machine, no download.

Each line is one sample of one sub-task: a one-letter task tag, a space, the input, ``>``, the answer, and a
newline (the text task has no ``>``: the whole sentence is the sample). Sub-tasks with distinct structure let
later lessons show which experts each task's tokens go to (03) and which queries are easy or hard (04).

    c kqzmw>kqzmw          copy
    r kqzmw>wmzqk          reverse
    s dbca>abcd            sort the letters
    a 123+4567>4690        add two numbers
    t the red dog sees a small ball.

Everything is drawn from ``random.Random(seed)``, whose sequence is fixed across Python versions and
platforms for the calls used here (random(), randint(), choice()).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

VOCAB = "\n +.>0123456789abcdefghijklmnopqrstuvwxyz"
TASKS = {"c": "copy", "r": "reverse", "s": "sort", "a": "add", "t": "text"}
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# Lengths (letters, or digits for "add") by difficulty.
LENGTHS = {"easy": (2, 4), "hard": (6, 10), "mixed": (2, 10)}
DIGITS = {"easy": (1, 2), "hard": (4, 5), "mixed": (1, 5)}

_WORDS = {
    "det": ("the", "a"),
    "adj": ("small", "big", "red", "old", "happy", "quick", "green"),
    "noun": ("dog", "cat", "bird", "child", "ball", "tree", "house", "fish"),
    "verb": ("sees", "likes", "chases", "finds", "hears", "pulls"),
    "prep": ("near", "under", "behind", "with"),
}


class CharTokenizer:
    """One token per character of ``VOCAB``."""

    def __init__(self, vocab: str = VOCAB):
        self.vocab = vocab
        self.index = {ch: i for i, ch in enumerate(vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[ch] for ch in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the course vocabulary {self.vocab!r}") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


TOKENIZER = CharTokenizer()


def _number(rng: random.Random, low: int, high: int) -> int:
    """A number with between ``low`` and ``high`` digits (no leading zeros)."""
    digits = rng.randint(low, high)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _noun_phrase(rng: random.Random) -> str:
    words = [rng.choice(_WORDS["det"])]
    if rng.random() < 0.5:
        words.append(rng.choice(_WORDS["adj"]))
    words.append(rng.choice(_WORDS["noun"]))
    return " ".join(words)


def _sentence(rng: random.Random) -> str:
    sentence = f"{_noun_phrase(rng)} {rng.choice(_WORDS['verb'])} {_noun_phrase(rng)}"
    if rng.random() < 0.3:
        sentence += f" {rng.choice(_WORDS['prep'])} {_noun_phrase(rng)}"
    return sentence + "."


def make_line(task: str, rng: random.Random, difficulty: str = "mixed") -> str:
    """One sample of ``task`` (a key of TASKS), without the trailing newline."""
    if difficulty not in LENGTHS:
        raise ValueError(f"difficulty must be one of {', '.join(LENGTHS)}, got {difficulty!r}")
    if task == "t":
        return "t " + _sentence(rng)
    if task == "a":
        x, y = _number(rng, *DIGITS[difficulty]), _number(rng, *DIGITS[difficulty])
        return f"a {x}+{y}>{x + y}"
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    low, high = LENGTHS[difficulty]
    word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(low, high)))
    answer = {"c": word, "r": word[::-1], "s": "".join(sorted(word))}[task]
    return f"{task} {word}>{answer}"


def make_lines(n: int, seed: int, tasks: Sequence[str] | None = None, difficulty: str = "mixed") -> list[str]:
    """``n`` samples, tasks drawn uniformly from ``tasks`` (default: all), deterministic in ``seed``."""
    rng = random.Random(seed)
    tasks = list(tasks or TASKS)
    return [make_line(rng.choice(tasks), rng, difficulty) for _ in range(n)]


def task_of(line: str) -> str:
    return line[:1]


def answer_span(line: str) -> tuple[int, int]:
    """Character positions [start, end) of the answer (after ``>``); empty for the text task."""
    if ">" not in line:
        return (len(line), len(line))
    start = line.index(">") + 1
    return (start, len(line.rstrip("\n")))


def check_answer(line: str) -> bool:
    """Is the answer of a completed line right? (Used to score generated samples.)"""
    if ">" not in line:
        return False
    prompt, answer = line.split(">", 1)
    task, _, given = prompt.partition(" ")
    expected = {"c": lambda w: w, "r": lambda w: w[::-1], "s": lambda w: "".join(sorted(w))}
    if task in expected:
        return answer == expected[task](given)
    if task == "a":
        left, _, right = given.partition("+")
        return left.isdigit() and right.isdigit() and answer == str(int(left) + int(right))
    return False


@dataclass(frozen=True)
class Split:
    """A token stream of one split, and deterministic batches of it."""
    tokens: torch.Tensor   # 1-D, int64

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.tokens) - block_size - 1, (batch_size,), generator=generator)
        x = torch.stack([self.tokens[s:s + block_size] for s in starts.tolist()])
        y = torch.stack([self.tokens[s + 1:s + block_size + 1] for s in starts.tolist()])
        return x, y

    def fixed_batches(self, n_batches: int, batch_size: int, block_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Evenly spaced windows: the same evaluation data on every machine and every call."""
        count = n_batches * batch_size
        stride = (len(self.tokens) - block_size - 1) // count
        starts = [i * stride for i in range(count)]
        out = []
        for b in range(n_batches):
            chunk = starts[b * batch_size:(b + 1) * batch_size]
            out.append((torch.stack([self.tokens[s:s + block_size] for s in chunk]),
                        torch.stack([self.tokens[s + 1:s + block_size + 1] for s in chunk])))
        return out


TRAIN_SEED, VALIDATION_SEED = 1234, 5678


def split(name: str, n_lines: int | None = None) -> Split:
    """The training or validation stream ("train": 60,000 lines; "validation": 4,000 lines)."""
    seeds = {"train": (TRAIN_SEED, 60_000), "validation": (VALIDATION_SEED, 4_000)}
    if name not in seeds:
        raise ValueError(f"split must be 'train' or 'validation', got {name!r}")
    seed, default_n = seeds[name]
    text = "\n".join(make_lines(n_lines or default_n, seed)) + "\n"
    return Split(torch.tensor(TOKENIZER.encode(text), dtype=torch.long))
