"""lessonlib.lessons.orientation: the exercise material is consistent, and the live probe measures something real."""
from lessonlib.course.grading import normalize_choice
from lessonlib.lessons.orientation import (
    CATEGORIES,
    CATEGORY_ALIASES,
    CHALLENGES,
    PRINCIPLE_OPTIONS,
    TRADE_OPTIONS,
    time_sequential_vs_parallel,
)


def test_at_least_six_challenges_and_five_categories():
    assert len(CHALLENGES) >= 6
    assert set(CATEGORIES) == {"architecture", "memory", "decoding", "system", "cascade"}


def test_aliases_map_to_real_categories():
    for alias, key in CATEGORY_ALIASES.items():
        assert key in CATEGORIES
        assert normalize_choice(alias.upper(), CATEGORIES, CATEGORY_ALIASES) == key


def test_multiple_choice_options_are_letters():
    assert list(PRINCIPLE_OPTIONS) == ["A", "B", "C", "D", "E"]
    assert list(TRADE_OPTIONS) == ["A", "B", "C", "D"]


def test_one_token_at_a_time_is_slower_than_all_at_once():
    probe = time_sequential_vs_parallel(n_tokens=32, d_model=64, n_layers=2, repeats=1)
    assert probe.parallel_seconds > 0 and probe.sequential_seconds > 0
    assert probe.slowdown > 1
