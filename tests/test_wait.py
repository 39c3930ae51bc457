"""components/wait.py: the one bounded wait, on a fake clock."""

from __future__ import annotations

import pytest

from components.wait import wait_until
from tests.stand_ins.clock import FakeClock


def test_returns_the_first_done_answer_with_the_time_waited_and_the_attempts():
    clock, answers = FakeClock(100.0), iter([1, 2, 3, 4])
    outcome = wait_until(lambda: next(answers), lambda n: n == 3, timeout=60, interval=5, clock=clock, sleep=clock.sleep)
    assert (outcome.value, outcome.done, outcome.waited, outcome.attempts) == (3, True, 10.0, 3)
    assert clock.sleeps == [5, 5]


def test_backs_off_doubling_up_to_the_ceiling_and_never_sleeps_past_the_bound():
    clock = FakeClock(100.0)
    seen: list[tuple[float, float]] = []
    outcome = wait_until(lambda: None, lambda _: False, timeout=100, interval=5, max_interval=30, clock=clock,
                         sleep=clock.sleep, describe=lambda _, waited, remaining: seen.append((waited, remaining)))
    assert clock.sleeps == [5, 10, 20, 30, 30, 5]
    assert not outcome.done and outcome.waited == 100 and outcome.attempts == 7
    assert seen[-1] == (100, 0), "the last answer is described too, before giving up"


def test_a_probe_slower_than_the_bound_is_still_described_once():
    clock = FakeClock(100.0)

    def slow() -> str:
        clock.now += 50
        return "still there"

    seen: list[str] = []
    outcome = wait_until(slow, lambda _: False, timeout=10, interval=1, clock=clock, sleep=clock.sleep,
                         describe=lambda answer, waited, remaining: seen.append(f"{answer} {waited:g} {remaining:g}"))
    assert seen == ["still there 50 -40"] and not outcome.done and outcome.attempts == 1 and clock.sleeps == []


def test_a_done_first_answer_does_not_sleep_or_describe():
    clock = FakeClock(100.0)
    outcome = wait_until(lambda: "ok", lambda _: True, timeout=0, interval=1, clock=clock, sleep=clock.sleep,
                         describe=lambda *_: pytest.fail("described a done answer"))
    assert outcome.done and outcome.attempts == 1 and clock.sleeps == []


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        wait_until(lambda: 1, lambda _: True, timeout=-1, interval=1)
