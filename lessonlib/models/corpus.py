"""A synthetic multi-task language: bit-exact on every machine, no download.

Each line is one sample of one sub-task: a one-letter task tag, a space, the question, ``>``, the answer, and
a newline. The text task has no question: its line is the tag and a sentence ending in ``.`` (no ``>``).

    c kqzmw>kqzmw          copy
    r kqzmw>wmzqk          reverse
    s dbca>abcd            sort the letters
    a 123+4567>4690        add two numbers
    t the red dog sees a small ball.

Sub-tasks with distinct structure let later lessons show which experts each task's tokens go to (03), and
the difficulty knob (``"easy"``, ``"hard"``, or ``"mixed"``, the training mix) gives easy and hard queries
(04). Every draw comes from ``random.Random(seed).random()``, the one method whose sequence Python promises
not to change across versions (``choice`` and ``randint`` make no such promise); no hashing is involved.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

VOCAB = "\n +.>0123456789abcdefghijklmnopqrstuvwxyz"
TASKS = {"c": "copy", "r": "reverse", "s": "sort", "a": "add", "t": "text"}
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# The difficulty knob of each task: lengths in letters (copy, reverse, sort), digits per number (add), and
# for text the chance of an adjective in each noun phrase and of a closing prepositional phrase.
LENGTHS = {"easy": (2, 4), "hard": (6, 10), "mixed": (2, 10)}
DIGITS = {"easy": (1, 2), "hard": (4, 5), "mixed": (1, 5)}
TEXT = {"easy": (0.0, 0.0), "hard": (1.0, 1.0), "mixed": (0.5, 0.3)}
DIFFICULTIES = tuple(LENGTHS)

WORDS = {
    "det": ("the", "a"),
    "adj": ("small", "big", "red", "old", "happy", "quick", "green"),
    "noun": ("dog", "cat", "bird", "child", "ball", "tree", "house", "fish"),
    "verb": ("sees", "likes", "chases", "finds", "hears", "pulls"),
    "prep": ("near", "under", "behind", "with"),
}


class CharTokenizer:
    """One token per character of ``vocab``."""

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


# -- drawing from random() only ------------------------------------------------------------------------------
def _below(rng: random.Random, n: int) -> int:
    """0 <= k < n."""
    return int(rng.random() * n)


def _between(rng: random.Random, low: int, high: int) -> int:
    """low <= k <= high."""
    return low + _below(rng, high - low + 1)


def _choice(rng: random.Random, options: Sequence):
    return options[_below(rng, len(options))]


def _number(rng: random.Random, fewest_digits: int, most_digits: int) -> int:
    digits = _between(rng, fewest_digits, most_digits)
    return _between(rng, 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _noun_phrase(rng: random.Random, p_adjective: float) -> str:
    words = [_choice(rng, WORDS["det"])]
    if rng.random() < p_adjective:
        words.append(_choice(rng, WORDS["adj"]))
    words.append(_choice(rng, WORDS["noun"]))
    return " ".join(words)


def _sentence(rng: random.Random, difficulty: str) -> str:
    p_adjective, p_preposition = TEXT[difficulty]
    sentence = f"{_noun_phrase(rng, p_adjective)} {_choice(rng, WORDS['verb'])} {_noun_phrase(rng, p_adjective)}"
    if rng.random() < p_preposition:
        sentence += f" {_choice(rng, WORDS['prep'])} {_noun_phrase(rng, p_adjective)}"
    return sentence + "."


# -- lines ---------------------------------------------------------------------------------------------------
def make_line(task: str, rng: random.Random, difficulty: str = "mixed") -> str:
    """One sample of ``task`` (a key of TASKS), without the trailing newline."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    if task == "t":
        return "t " + _sentence(rng, difficulty)
    if task == "a":
        x, y = _number(rng, *DIGITS[difficulty]), _number(rng, *DIGITS[difficulty])
        return f"a {x}+{y}>{x + y}"
    word = "".join(_choice(rng, LETTERS) for _ in range(_between(rng, *LENGTHS[difficulty])))
    answer = {"c": word, "r": word[::-1], "s": "".join(sorted(word))}[task]
    return f"{task} {word}>{answer}"


def make_lines(n: int, seed: int, tasks: Sequence[str] | None = None, difficulty: str = "mixed") -> list[str]:
    """``n`` samples, each of a task drawn uniformly from ``tasks`` (default: all; "crs" means copy, reverse
    and sort), deterministic in ``seed``."""
    rng = random.Random(seed)
    tasks = list(tasks or TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; tasks are {', '.join(TASKS)}")
    return [make_line(_choice(rng, tasks), rng, difficulty) for _ in range(n)]


def task_of(line: str) -> str:
    """The task tag of a line ("c", "r", "s", "a" or "t"; see TASKS)."""
    return line[:1]


def answer_span(line: str) -> tuple[int, int]:
    """Character positions [start, end) of the answer, after ``>`` (a trailing newline excluded); an empty
    span at the end of the line for the text task, which has no answer."""
    end = len(line.rstrip("\n"))
    if ">" not in line:
        return (end, end)
    return (line.index(">") + 1, end)


def correct_answer(question: str) -> str:
    """The answer to a question: a line up to and including ``>`` (the tag, a space, the input, ``>``)."""
    task, _, given = question.rstrip(">").partition(" ")
    if task in ("c", "r", "s"):
        return {"c": given, "r": given[::-1], "s": "".join(sorted(given))}[task]
    left, plus, right = given.partition("+")
    if task == "a" and plus and left.isdigit() and right.isdigit():
        return str(int(left) + int(right))
    raise ValueError(f"{question!r} is not a question of the copy, reverse, sort or add task")


def check_answer(line: str) -> bool:
    """Is the answer of a completed line right? False for a line without ``>`` or with a malformed question."""
    question, arrow, answer = line.rstrip("\n").partition(">")
    if not arrow:
        return False
    try:
        return answer == correct_answer(question)
    except ValueError:
        return False


# -- token streams and batches ----------------------------------------------------------------------------
Batch = tuple[torch.Tensor, torch.Tensor]   # inputs x (batch, block) and targets y: x shifted by one


@dataclass(frozen=True)
class Split:
    """A token stream (the lines joined by newlines) and deterministic batches of it."""
    tokens: torch.Tensor   # 1-D, int64

    def _windows(self, starts: list[int], seq_len: int) -> Batch:
        x = torch.stack([self.tokens[s:s + seq_len] for s in starts])
        y = torch.stack([self.tokens[s + 1:s + seq_len + 1] for s in starts])
        return x, y

    def batch(self, batch_size: int, seq_len: int, generator: torch.Generator) -> Batch:
        """Windows at random offsets: inputs x (batch_size, seq_len) and targets y, x shifted by one."""
        starts = torch.randint(0, len(self.tokens) - seq_len, (batch_size,), generator=generator)
        return self._windows(starts.tolist(), seq_len)

    def fixed_batches(self, n_batches: int, batch_size: int, seq_len: int) -> list[Batch]:
        """Evenly spaced windows: the same evaluation data on every machine and every call."""
        count = n_batches * batch_size
        stride = (len(self.tokens) - seq_len - 1) // count
        if stride < 1:
            raise ValueError(f"a stream of {len(self.tokens)} tokens is too short for {count} windows of "
                             f"{seq_len + 1} tokens")
        starts = [i * stride for i in range(count)]
        return [self._windows(starts[b * batch_size:(b + 1) * batch_size], seq_len) for b in range(n_batches)]


TRAIN_SEED, VALIDATION_SEED = 1234, 5678
SPLITS = {"train": (TRAIN_SEED, 60_000), "validation": (VALIDATION_SEED, 4_000)}  # seed, lines


def stream(lines: Sequence[str]) -> Split:
    """Lines as one token stream, each ended by a newline."""
    return Split(torch.tensor(TOKENIZER.encode("".join(line + "\n" for line in lines)), dtype=torch.long))


def split(name: str, n_lines: int | None = None) -> Split:
    """The training or validation stream (60,000 and 4,000 lines of the training mix, different seeds)."""
    if name not in SPLITS:
        raise ValueError(f"split must be 'train' or 'validation', got {name!r}")
    seed, default_lines = SPLITS[name]
    return stream(make_lines(n_lines or default_lines, seed))
