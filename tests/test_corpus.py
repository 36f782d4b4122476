"""lessonlib.models.corpus: the synthetic multi-task language is deterministic and its answers are right."""
import random

import pytest
import torch

from lessonlib.models.corpus import (
    DIFFICULTIES,
    TASKS,
    TOKENIZER,
    answer_span,
    check_answer,
    correct_answer,
    make_line,
    make_lines,
    split,
    stream,
    task_of,
)


def test_the_stream_is_bit_exact():
    # Pinned: the same lines on every machine and Python version (only random.Random.random() is used).
    assert make_lines(6, seed=0) == ["t a big ball chases a old ball.", "s tqgx>gqtx",
                                     "t a bird hears a child under a fish.", "s guoaskvra>aagkorsuv",
                                     "s giweogzul>eggilouwz", "c nyco>nyco"]
    assert TOKENIZER.decode(split("validation").tokens[:40].tolist()) == \
        "a 9+819>828\ns tmogojt>gjmoott\nt a big bi"
    assert make_lines(50, seed=7) == make_lines(50, seed=7)
    assert make_lines(50, seed=7) != make_lines(50, seed=8)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_every_answer_is_right_and_every_task_appears(difficulty):
    lines = make_lines(2000, seed=3, difficulty=difficulty)
    assert {task_of(line) for line in lines} == set(TASKS)
    for line in lines:
        if task_of(line) == "t":
            assert ">" not in line and line.endswith(".") and not check_answer(line)
        else:
            question, answer = line.split(">")
            assert check_answer(line) and answer == correct_answer(question + ">")
    assert not check_answer("c abc>abd") and not check_answer("a 2+2>5") and not check_answer("a 2+x>2")


def test_answers_are_what_each_task_says():
    assert correct_answer("c kqzmw>") == "kqzmw"
    assert correct_answer("r kqzmw>") == "wmzqk"
    assert correct_answer("s dbca>") == "abcd"
    assert correct_answer("a 123+4567>") == "4690"
    with pytest.raises(ValueError, match="not a question"):
        correct_answer("t the dog sees a cat.")


def test_tasks_can_be_chosen_and_bad_ones_are_named():
    assert {task_of(line) for line in make_lines(200, seed=1, tasks="cr")} == {"c", "r"}
    with pytest.raises(ValueError, match="unknown task 'x'"):
        make_lines(3, seed=1, tasks=["c", "x"])


def test_difficulty_sets_the_length():
    for task in "crsat":
        easy = [make_line(task, random.Random(i), "easy") for i in range(50)]
        hard = [make_line(task, random.Random(i), "hard") for i in range(50)]
        assert max(len(x) for x in easy) < min(len(x) for x in hard), task
    with pytest.raises(ValueError, match="difficulty must be one of easy, hard, mixed"):
        make_line("c", random.Random(0), "extreme")


def test_answer_span_points_after_the_arrow():
    line = "r abc>cba"
    start, end = answer_span(line)
    assert line[start:end] == "cba"
    assert answer_span("a 12+30>42\n") == (8, 10)
    assert answer_span("t a dog sees a cat.") == (19, 19)


def test_tokenizer_round_trip_and_clear_error():
    text = "\n".join(make_lines(100, seed=1))
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == text
    assert TOKENIZER.vocab_size == 41
    with pytest.raises(ValueError, match="character 'Q' is not in the course vocabulary"):
        TOKENIZER.encode("c Q>Q")


def test_splits_are_fixed_and_batches_deterministic():
    validation = split("validation")
    assert torch.equal(validation.tokens, split("validation").tokens)
    assert not torch.equal(validation.tokens[:1000], split("train").tokens[:1000])
    first = validation.fixed_batches(2, 4, 32)
    again = validation.fixed_batches(2, 4, 32)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    x, y = first[0]
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    x1, _ = validation.batch(8, 32, torch.Generator().manual_seed(0))
    x2, _ = validation.batch(8, 32, torch.Generator().manual_seed(0))
    assert x1.shape == (8, 32) and torch.equal(x1, x2)
    with pytest.raises(ValueError, match="split must be"):
        split("test")
    with pytest.raises(ValueError, match="too short"):
        stream(["c ab>ab"]).fixed_batches(2, 4, 32)
