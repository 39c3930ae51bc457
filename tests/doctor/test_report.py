"""The table and JSON renderings."""

from __future__ import annotations

import json

from tools.doctor.model import CheckResult
from tools.doctor.report import render_json, render_table

RESULTS = [
    CheckResult("talos", "nvidia driver", "fail", "/proc/driver/nvidia/version missing", "List the modules in machine.kernel.modules."),
    CheckResult("talos", "kernel modules", "fail", "not loaded: nvidia", "List the modules in machine.kernel.modules."),
    CheckResult("kubernetes", "node", "pass", "moody-good registered, Ready"),
    CheckResult("workload", "reachable", "skip", "no kubeconfig"),
]


def test_table_aligns_columns_and_prints_each_remedy_once() -> None:
    text = render_table(RESULTS)
    lines = text.splitlines()
    assert [line.index("STATUS") if i == 0 else line.index(RESULTS[i - 1].status) for i, line in enumerate(lines[:5])] == [len("kubernetes  kernel modules  ")] * 5
    remedies = text.split("Remedies\n", 1)[1]
    assert remedies.count("machine.kernel.modules") == 1
    assert "  talos / kernel modules:\n    same as talos / nvidia driver" in remedies
    assert lines[-1] == "1 passed, 2 failed, 1 skipped"


def test_table_without_failures_has_no_remedies_section() -> None:
    assert "Remedies" not in render_table(RESULTS[2:])


def test_json_keeps_every_field() -> None:
    assert json.loads(render_json(RESULTS))[0] == {
        "layer": "talos", "name": "nvidia driver", "status": "fail",
        "detail": "/proc/driver/nvidia/version missing", "remedy": "List the modules in machine.kernel.modules.",
    }
