"""One bounded wait, with the clock and the sleep injected.

Every poll of the program (the GPU readiness gate, the device plugin's
uninstall by helm-controller, ...) has the same shape: ask, stop when the
answer is the wanted one, otherwise say what was seen and ask again, until a
bound. Tests pass a fake clock whose ``sleep`` advances it, so no test
depends on how fast the machine is.

The order of one round is fixed: probe, then ``done``, then ``describe`` (so
even a first probe that already took longer than the bound says what it
saw), then the bound, then sleep (never past the bound). The caller raises
its own error, with its own words, from the :class:`Outcome`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    value: T  # the last answer of ``probe``
    done: bool  # False: the bound passed first
    waited: float  # seconds on ``clock`` from the start to the last answer
    attempts: int


def wait_until(probe: Callable[[], T], done: Callable[[T], bool], *, timeout: float, interval: float,
               max_interval: float | None = None, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep,
               describe: Callable[[T, float, float], None] | None = None) -> Outcome[T]:
    """Call ``probe`` until ``done(answer)``, at most ``timeout`` seconds.

    Between calls it sleeps ``interval`` seconds, doubling up to
    ``max_interval`` when one is given. ``describe(answer, waited, remaining)``
    is called for every answer that is not done, the last one included
    (``remaining <= 0``)."""
    if timeout < 0 or interval < 0:
        raise ValueError(f"timeout and interval must not be negative (got {timeout:g}, {interval:g})")
    ceiling = interval if max_interval is None else max_interval
    start = clock()
    delay, attempts = interval, 0
    while True:
        attempts += 1
        answer = probe()
        waited = clock() - start
        if done(answer):
            return Outcome(answer, True, waited, attempts)
        remaining = timeout - waited
        if describe is not None:
            describe(answer, waited, remaining)
        if remaining <= 0:
            return Outcome(answer, False, waited, attempts)
        sleep(min(delay, remaining))
        delay = min(max(delay * 2, interval), ceiling)
