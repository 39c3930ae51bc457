"""The stand-in for time: a clock that moves only when the code under test
sleeps. Every bounded wait (components/wait.py and the waits built on it)
takes its clock and its sleep injected; tests pass this one, so no test
depends on how fast the machine is."""

from __future__ import annotations


class FakeClock:
    """``clock()`` (or calling the object) reads the time; ``sleep(s)`` records
    the pause in ``sleeps`` and moves the time on by it, at once."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
