"""The one way a provider or a component says what it does: a ``[tag]``
line through ``pulumi.log`` when the Pulumi SDK is loaded (under the engine
it reaches the engine; in a dynamic provider's own process, where no engine
is configured, ``pulumi.log`` writes it to stderr, which the engine shows),
and straight to stderr otherwise. Command-line tools write through
components.cli instead.

The SDK is never imported here: a planner or an engine module that logs
stays importable by the CLIs without it."""

from __future__ import annotations

import sys
from collections.abc import Callable


def logger(tag: str) -> Callable[[str], None]:
    """A function that writes ``[tag] message`` lines (info level)."""

    def say(message: str) -> None:
        line = f"[{tag}] {message}"
        pulumi_log = sys.modules.get("pulumi.log")
        if pulumi_log is not None:
            pulumi_log.info(line)
        else:
            print(line, file=sys.stderr, flush=True)

    say.__qualname__ = f"logger({tag!r})"
    return say
