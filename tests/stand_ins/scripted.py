"""The scripted answers of the kubectl and talosctl stand-ins (their mode for
the doctor's tests): $FAKE_CLI_DIR/<tool>.json is a list of {"match": argv
less the config flag, "responses": [{"stdout", "stderr", "rc", "sleep"},
...]}; each matching call takes the next response, the last one repeating;
a call no rule matches exits 99 naming itself."""

from __future__ import annotations

import json
from pathlib import Path


def scripted_answer(state: Path, tool: str, command: list[str]) -> tuple[str, str, int, float]:
    """(stdout, stderr, exit code, seconds to wait first) for ``command``."""
    rules_file = state / f"{tool}.json"
    rules = json.loads(rules_file.read_text()) if rules_file.exists() else []
    for index, rule in enumerate(rules):
        if rule["match"] == command:
            counter = state / f"{tool}.{index}.count"
            seen = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(seen + 1))
            answer = rule["responses"][min(seen, len(rule["responses"]) - 1)]
            return answer.get("stdout", ""), answer.get("stderr", ""), answer.get("rc", 0), answer.get("sleep", 0)
    return "", f"fake {tool}: no canned answer for {command}\n", 99, 0
