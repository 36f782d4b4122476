"""lessonlib.core.timing: a timing knows whether its fastest run was reproduced, takes more runs while it was
not, and a busy machine is reported in words instead of a conclusion."""
import itertools

import pytest

from lessonlib.core import timing as timing_module
from lessonlib.core.timing import Timing, busy_machine_note, interleaved_timings, timing


def test_a_fastest_run_reproduced_three_times_is_reliable():
    t = Timing((1.00, 1.05, 1.08, 3.0, 2.5))
    assert t.seconds == 1.0 and t.agreeing == 3 and t.reliable
    assert t.spread == pytest.approx(0.08)


def test_a_lucky_fastest_run_is_not_reliable():
    t = Timing((1.0, 2.4, 2.5, 2.6, 2.9))
    assert t.agreeing == 1 and not t.reliable


def test_per_step_division_keeps_the_verdict():
    t = Timing((8.0, 8.1, 8.2)).per(8)
    assert t.seconds == pytest.approx(1.0) and t.reliable


def test_empty_timing_is_refused():
    with pytest.raises(ValueError, match="at least one sample"):
        Timing(())


def test_timing_takes_more_runs_until_the_fastest_is_reproduced(monkeypatch):
    # a machine that is busy for the first six calls, then quiet
    durations = itertools.chain([5.0, 1.0, 4.0, 6.0, 5.0, 7.0], itertools.repeat(1.02))
    clock = itertools.count()
    now = [0.0]

    def fake_counter():
        next(clock)
        return now[0]

    def fn():
        now[0] += next(durations)

    monkeypatch.setattr(timing_module.time, "perf_counter", fake_counter)
    result = timing(fn, repeats=5, warmup=1, max_repeats=15)
    assert result.reliable and len(result.samples) == 10
    assert result.seconds == pytest.approx(1.0)


def test_timing_stops_once_reliable_or_at_max_repeats(monkeypatch):
    durations = itertools.cycle([1.0, 3.0, 5.0, 7.0])
    now = [0.0]
    monkeypatch.setattr(timing_module.time, "perf_counter", lambda: now[0])

    def fn():
        now[0] += next(durations)

    result = timing(fn, repeats=5, warmup=0, max_repeats=15)   # 1.0 comes back every fourth call
    assert len(result.samples) == 10 and result.agreeing == 3 and result.reliable
    result = timing(fn, repeats=5, warmup=0, max_repeats=5)
    assert len(result.samples) == 5 and not result.reliable


def test_interleaved_timings_time_every_run_in_each_round():
    calls = []
    result = interleaved_timings({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3,
                                 warmup=1, max_repeats=3)
    assert calls[:4] == ["a", "b", "a", "b"]
    assert set(result) == {"a", "b"} and all(len(t.samples) == 3 for t in result.values())


def test_busy_note_says_no_conclusion_is_drawn(monkeypatch):
    monkeypatch.setattr(timing_module, "load_per_core", lambda: 3.5)
    note = busy_machine_note("the probe", [Timing((1.0, 2.0, 3.0))])
    assert "busy" in note and "not to be trusted" in note and "100%" in note and "3.5 programs per CPU core" in note
    monkeypatch.setattr(timing_module, "load_per_core", lambda: None)
    assert "load average" not in busy_machine_note("the probe", [Timing((1.0, 2.0, 3.0))])


def test_a_grading_run_times_once_and_draws_no_conclusion(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    calls = []
    result = timing(lambda: calls.append(1), repeats=5, warmup=2, max_repeats=15)
    assert len(calls) == 1 and result.shortened and not result.reliable
    rounds = interleaved_timings({"a": lambda: calls.append("a")}, repeats=5, warmup=1)
    assert len(rounds["a"].samples) == 1 and not rounds["a"].reliable
    assert "grading run" in busy_machine_note("x", [result]).lower()
    assert result.per(2).shortened
