"""The one way a provider or a component says what it does: a ``[tag]``
line (info, or warn) through ``pulumi.log`` when the Pulumi SDK is loaded (under the engine
it reaches the engine; in a dynamic provider's own process, where no engine
is configured, ``pulumi.log`` writes it to stderr, which the engine shows),
and straight to stderr otherwise. Command-line tools write through
components.cli instead.

The SDK is never imported here: a planner or an engine module that logs
stays importable by the CLIs without it."""

from __future__ import annotations

import sys
from collections.abc import Callable

# The levels a line can have: pulumi.log's function of that name, and the
# prefix pulumi.log itself writes on stderr when no engine is configured
# (pulumi/log.py ``warn``); an info line goes to stderr as it is.
LEVELS = {"info": "", "warn": "warning: "}


def logger(tag: str, level: str = "info") -> Callable[[str], None]:
    """A function that writes ``[tag] message`` lines at ``level`` (one of
    LEVELS: ``info``, or ``warn`` for what the user should act on)."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LEVELS)}")

    def say(message: str) -> None:
        line = f"[{tag}] {message}"
        pulumi_log = sys.modules.get("pulumi.log")
        if pulumi_log is not None:
            getattr(pulumi_log, level)(line)
        else:
            print(LEVELS[level] + line, file=sys.stderr, flush=True)

    say.__qualname__ = f"logger({tag!r})" if level == "info" else f"logger({tag!r}, {level!r})"
    return say
