"""Render check results: an aligned table plus remedies, or JSON."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from tools.doctor.model import CheckResult

_HEADER = ("LAYER", "CHECK", "STATUS", "DETAIL")


def render_table(results: Sequence[CheckResult], width: int = 100) -> str:
    """Aligned columns, then a "Remedies" section for every failure, then totals."""
    rows = [_HEADER] + [(r.layer, r.name, r.status, r.detail) for r in results]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3] for row in rows]
    failures = [r for r in results if r.status == "fail"]
    if failures:
        lines += ["", "Remedies"]
        first_with: dict[str, str] = {}  # remedy -> the check it was printed under
        for result in failures:
            lines.append(f"  {result.layer} / {result.name}:")
            remedy = result.remedy or "(no remedy recorded)"
            if remedy in first_with:
                lines.append(f"    same as {first_with[remedy]}")
                continue
            first_with[remedy] = f"{result.layer} / {result.name}"
            lines += textwrap.wrap(remedy, width=width, initial_indent="    ", subsequent_indent="    ",
                                   break_long_words=False, break_on_hyphens=False)
    if not any(r.status in ("pass", "fail") for r in results):
        lines += ["", "Nothing was verified: every check was skipped. Give doctor a way in (--identity, KUBECONFIG, "
                      "TALOSCONFIG) or fix what the skip lines say, then run it again."]
    lines += ["", summary(results)]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def summary(results: Sequence[CheckResult]) -> str:
    counts = {status: sum(1 for r in results if r.status == status) for status in ("pass", "fail", "skip")}
    return f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([result.to_dict() for result in results], indent=2) + "\n"
