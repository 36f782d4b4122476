"""lessonlib.core.stats: shares of right answers with their standard errors, and paired comparisons."""
import math

import pytest

from lessonlib.core.stats import Share, paired_difference, share_difference


def test_a_share_knows_its_standard_error_and_prints_a_95_percent_interval():
    share = Share.of([True] * 140 + [False] * 60)
    assert (share.right, share.n, share.value) == (140, 200, 0.7)
    assert share.stderr == pytest.approx(math.sqrt(0.7 * 0.3 / 200))
    assert f"{share}" == "70.0% ± 6.4 (of 200)" and f"{share:short}" == "70% ± 6"
    assert Share(0, 200).stderr > 0            # 0 of 200 is not exact: at least one question's worth
    with pytest.raises(ValueError, match="0 <= right <= n"):
        Share(5, 4)
    with pytest.raises(ValueError, match="at least one outcome"):
        Share.of([])
    with pytest.raises(ValueError, match="True/False"):
        Share.of([0.5])


def test_a_paired_difference_counts_only_the_questions_the_two_disagree_on():
    # 1000 questions; a gets 30 right that b misses, b gets 10 right that a misses, the rest agree.
    a = [True] * 30 + [False] * 10 + [True] * 700 + [False] * 260
    b = [False] * 30 + [True] * 10 + [True] * 700 + [False] * 260
    gap = paired_difference(a, b)
    assert gap.value == pytest.approx(0.02) and (gap.a_only, gap.b_only, gap.n) == (30, 10, 1000)
    d = [1] * 30 + [-1] * 10 + [0] * 960
    mean = sum(d) / 1000
    assert gap.stderr == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in d) / 999 / 1000))
    assert gap.clear and gap.z > 3
    # The same two shares on unrelated questions would be far noisier than the paired comparison says.
    unpaired = math.sqrt(Share.of(a).stderr ** 2 + Share.of(b).stderr ** 2)
    assert gap.stderr < unpaired / 3
    assert f"{gap}" == f"+2.0 points (95% interval {100 * gap.interval[0]:+.1f} to {100 * gap.interval[1]:+.1f})"


def test_identical_answers_differ_by_nothing_and_small_gaps_are_noise():
    same = paired_difference([True, False, True], [True, False, True])
    assert same.value == 0 and same.stderr == 0 and not same.clear
    noisy = paired_difference([True, False] * 50, [False, True] + [True, False] * 49)   # one question each way
    assert noisy.value == 0 and not noisy.clear
    with pytest.raises(ValueError, match="same questions"):
        paired_difference([True], [True, False])


def test_a_difference_of_two_shares_alone_adds_their_variances_and_refuses_bad_input():
    gap = share_difference(0.75, 0.70, 800)
    expected = math.sqrt(0.75 * 0.25 / 800 + 0.70 * 0.30 / 800)
    assert gap.value == pytest.approx(0.05) and gap.stderr == pytest.approx(expected) and gap.clear
    assert not share_difference(0.752, 0.735, 800).clear          # 1.7 points on 800 questions is noise
    assert f"{gap}".startswith("+5.0 points (95% interval") and gap.flat.startswith("+5.0 points, 95% interval ")
    with pytest.raises(ValueError, match="n >= 1"):
        share_difference(0.5, 0.5, 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        share_difference(75, 70, 800)
