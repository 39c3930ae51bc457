"""What every check of the doctor returns: a passed, failed or skipped
result, and a command's parsed output or the failed result saying why there
is none."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tools.doctor.model import CheckResult, Layer, Output

T = TypeVar("T")


def passed(layer: Layer, name: str, detail: str) -> CheckResult:
    return CheckResult(layer, name, "pass", detail)


def failed(layer: Layer, name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(layer, name, "fail", detail, remedy)


def skipped(layer: Layer, name: str, detail: str) -> CheckResult:
    return CheckResult(layer, name, "skip", detail)


def parsed(output: Output, parse: Callable[[str], T], fail: Callable[[str, str], CheckResult], *,
            unreadable: str, unparseable: str = "") -> T | CheckResult:
    """A command's parsed output, or the failed check that says why there is
    none: ``fail(detail, reason)`` with detail ``<unreadable>: <reason>`` when
    the command failed, ``<unparseable>: <reason>`` (or the parser's own
    message) when its output made no sense."""
    if not output.ok:
        return fail(f"{unreadable}: {output.error}", output.error)
    try:
        return parse(output.text or "")
    except ValueError as error:  # ParseError, and the Talos readers' ValueError naming the command
        return fail(f"{unparseable}: {error}" if unparseable else str(error), str(error))
