"""Stand-in for kubectl / talosctl: answers from canned rules, records calls.

Run as `python fake_cli.py <tool> <args...>` (fakecli.install writes a wrapper
named after the tool). Rules live in $FAKE_CLI_DIR/<tool>.json: a list of
{"match": [words that must all be in argv], "responses": [{"stdout", "stderr",
"rc"}, ...]}; the first matching rule answers, stepping through its responses
on successive calls (the last one repeats). Every call is appended to
$FAKE_CLI_DIR/calls.jsonl with the mode and content of the --kubeconfig /
--talosconfig file it was given, so tests can check it was private."""

import json
import os
import stat
import sys
import time
from pathlib import Path

state = Path(os.environ["FAKE_CLI_DIR"])
tool, argv = sys.argv[1], sys.argv[2:]
record = {"tool": tool, "argv": argv, "config_path": None, "config_mode": None, "config_text": None,
          "env_kubeconfig": os.environ.get("KUBECONFIG")}
for flag in ("--kubeconfig", "--talosconfig"):
    if flag in argv:
        path = argv[argv.index(flag) + 1]
        record["config_path"] = path
        record["config_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
        record["config_text"] = Path(path).read_text()
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(record) + "\n")

rules = json.loads((state / f"{tool}.json").read_text())
for index, rule in enumerate(rules):
    if all(word in argv for word in rule["match"]):
        counter = state / f"{tool}.{index}.count"
        seen = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(seen + 1))
        answer = rule["responses"][min(seen, len(rule["responses"]) - 1)]
        time.sleep(answer.get("sleep", 0))
        sys.stdout.write(answer.get("stdout", ""))
        sys.stderr.write(answer.get("stderr", ""))
        sys.exit(answer.get("rc", 0))
sys.stderr.write(f"fake {tool}: no canned answer for {argv}\n")
sys.exit(99)
