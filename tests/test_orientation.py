"""lessonlib.lessons.orientation: the exercise material is consistent (and shown in the notebook's markdown, word
for word), the multiple-choice options do not give their answer away by length, and the live probe measures
something real and says only what it measured."""
import nbformat
import pytest

from lessonlib.core.timing import Timing
from lessonlib.course.grading import normalize_choice
from lessonlib.lessons.orientation import (
    CATEGORIES,
    CATEGORY_ALIASES,
    CHALLENGES,
    PRINCIPLE_OPTIONS,
    TRADE_OPTIONS,
    SequentialVsParallel,
    time_sequential_vs_parallel,
)

from .conftest import REPO

NOTEBOOKS = [REPO / "solutions" / "00_orientation" / "00_orientation.ipynb",
             REPO / "notebooks" / "00_orientation" / "00_orientation.ipynb"]


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


@pytest.mark.parametrize("options", [PRINCIPLE_OPTIONS, TRADE_OPTIONS], ids=["principle", "trade"])
def test_no_option_stands_out_by_its_length(options):
    lengths = [len(text) for text in options.values()]
    assert max(lengths) <= 1.2 * min(lengths), f"option lengths {lengths}: balance them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=["solution", "release"])
def test_what_the_exercises_need_is_in_markdown_word_for_word(path):
    """The options and challenges must not depend on a code cell having run (a learner reads them before
    running anything, and on GitHub no output is shown), and must say exactly what the graders' dicts say."""
    markdown = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    for table in (CATEGORIES, CHALLENGES, PRINCIPLE_OPTIONS, TRADE_OPTIONS):
        for key, text in table.items():
            assert f"| `{key}` | {text} |" in markdown, f"{path.name}: {key} is missing or differs in markdown"


def test_one_token_at_a_time_is_slower_than_all_at_once():
    probe = time_sequential_vs_parallel(n_tokens=32, d_model=64, n_layers=2, repeats=3, max_repeats=6)
    assert probe.parallel_seconds > 0 and probe.sequential_seconds > 0 and probe.threads == 1
    assert probe.slowdown > 1


def _probe(parallel, sequential):
    return SequentialVsParallel(128, Timing(parallel), Timing(sequential), threads=1)


def test_the_probe_summary_follows_the_measurement():
    slower = _probe((1.0, 1.0, 1.01), (4.0, 4.1, 4.0)).summary()
    assert "4.0x slower" in slower and "busy" not in slower
    faster = _probe((4.0, 4.0, 4.0), (1.0, 1.0, 1.0)).summary()
    assert "faster" in faster and "does not show the effect" in faster and "slower for" not in faster
    same = _probe((1.0, 1.0, 1.0), (1.1, 1.1, 1.1)).summary()
    assert "about the same" in same and "slower for" not in same
    busy = _probe((1.0, 3.0, 4.0), (4.0, 9.0, 12.0)).summary()
    assert "busy" in busy and "no conclusion" in busy and "slower for" not in busy
