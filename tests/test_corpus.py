"""lessonlib.corpus: the synthetic multi-task language is deterministic and its answers are right."""
import pytest

from lessonlib.corpus import (TASKS, TOKENIZER, answer_span, check_answer, make_line, make_lines, split,
                              task_of)


def test_the_stream_is_bit_exact():
    # Pinned: the same lines on every machine and Python version (random.Random's documented sequence).
    assert make_lines(4, seed=0) == ["a 1663+623>2286", "a 5969+6866>12835", "t the ball likes the ball.",
                                     "t the quick cat pulls a small tree."]
    assert make_lines(50, seed=7) == make_lines(50, seed=7)
    assert make_lines(50, seed=7) != make_lines(50, seed=8)


def test_every_checkable_answer_is_right_and_every_task_appears():
    lines = make_lines(2000, seed=3)
    assert {task_of(line) for line in lines} == set(TASKS)
    assert all(check_answer(line) for line in lines if task_of(line) != "t")
    assert not check_answer("c abc>abd") and not check_answer("a 2+2>5") and not check_answer("t a dog.")


def test_difficulty_sets_the_length():
    import random

    easy = [make_line("c", random.Random(i), "easy") for i in range(50)]
    hard = [make_line("c", random.Random(i), "hard") for i in range(50)]
    assert max(len(x) for x in easy) < min(len(x) for x in hard)
    with pytest.raises(ValueError, match="difficulty must be one of"):
        make_line("c", random.Random(0), "extreme")


def test_answer_span_points_after_the_arrow():
    line = "r abc>cba"
    start, end = answer_span(line)
    assert line[start:end] == "cba"
    assert answer_span("t a dog sees a cat.") == (19, 19)


def test_tokenizer_round_trip_and_clear_error():
    text = "\n".join(make_lines(100, seed=1))
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == text
    with pytest.raises(ValueError, match="character 'Q' is not in the course vocabulary"):
        TOKENIZER.encode("c Q>Q")


def test_splits_are_fixed_and_batches_deterministic():
    import torch

    validation = split("validation")
    assert torch.equal(validation.tokens, split("validation").tokens)
    first = validation.fixed_batches(2, 4, 32)
    again = validation.fixed_batches(2, 4, 32)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    x, y = first[0]
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="split must be"):
        split("test")
