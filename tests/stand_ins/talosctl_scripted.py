"""The talosctl stand-in's scripted mode (tests/stand_ins/talosctl.py runs it
when $FAKE_CLI_DIR is set and $FAKE_TALOS_STATE is not): the doctor's tests
script what each command prints, as they do for kubectl
(tests/stand_ins/kubectl.py's scripted mode).

The command line first passes the stand-in's talosctl parser
(tests/stand_ins/talosctl_cli.py: talosctl v1.13.9's flags), which refuses
what talosctl refuses, with its error form, wherever it models the command.
Then the answer comes from the rules in $FAKE_CLI_DIR/talosctl.json
(tests/stand_ins/scripted.py, as kubectl's come from kubectl.json). Every call is
first appended to $FAKE_CLI_DIR/calls.jsonl with the mode and content of the
config file it was given."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

from tests.stand_ins import talosctl_cli
from tests.stand_ins.kubectl import without_config_flag
from tests.stand_ins.scripted import scripted_answer


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_CLI_DIR"])
    record = {"tool": "talosctl", "argv": argv, "config_path": None, "config_mode": None, "config_text": None,
              "env_kubeconfig": os.environ.get("KUBECONFIG")}
    if "--talosconfig" in argv:
        path = argv[argv.index("--talosconfig") + 1]
        record.update(config_path=path, config_mode=oct(stat.S_IMODE(os.stat(path).st_mode)), config_text=Path(path).read_text())
    with open(state / "calls.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    try:
        talosctl_cli.parse(argv)
    except talosctl_cli.Exit as error:
        if "is not modelled" not in str(error) and "unknown command" not in str(error):
            sys.stderr.write(f"{error}\n")
            return error.code
    stdout, stderr, code, wait = scripted_answer(state, "talosctl", without_config_flag(argv, "--talosconfig"))
    time.sleep(wait)
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return code
