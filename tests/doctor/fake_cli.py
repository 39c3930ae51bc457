"""Run as `python fake_cli.py <tool> <args...>` (fakecli.install writes a
wrapper named after the tool).

kubectl is the shared stand-in, tests/stand_ins/kubectl.py, answering from
the scripted rules in $FAKE_CLI_DIR/kubectl.json after it has parsed the
command line as kubectl does (tests/stand_ins/kubectl_flags.py).

talosctl answers from $FAKE_CLI_DIR/talosctl.json the same way (a list of
{"match": argv less --talosconfig, "responses": [{"stdout", "stderr", "rc",
"sleep"}, ...]}, the last response repeating; anything else exits 99), after
the command line has passed the talosctl stand-in's parser
(tests/stand_ins/talosctl_cli.py) where it models the command. Every call is
first appended to $FAKE_CLI_DIR/calls.jsonl with the mode and content of the
config file it was given."""

import json
import os
import stat
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.stand_ins import kubectl  # noqa: E402
from tests.stand_ins.kubectl_flags import Usage  # noqa: E402,F401  (kept for the tests that import it here)
from tests.stand_ins.kubectl_flags import parse as parse_kubectl  # noqa: E402,F401


def talosctl(argv):
    state = Path(os.environ["FAKE_CLI_DIR"])
    record = {"tool": "talosctl", "argv": argv, "config_path": None, "config_mode": None, "config_text": None,
              "env_kubeconfig": os.environ.get("KUBECONFIG")}
    if "--talosconfig" in argv:
        path = argv[argv.index("--talosconfig") + 1]
        record.update(config_path=path, config_mode=oct(stat.S_IMODE(os.stat(path).st_mode)), config_text=Path(path).read_text())
    with open(state / "calls.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    from tests.stand_ins import talosctl_cli

    try:
        command, _, _ = talosctl_cli.parse(argv)
    except talosctl_cli.Exit as error:
        if "is not modelled" not in str(error) and "unknown command" not in str(error):
            sys.stderr.write(f"{error}\n")
            sys.exit(error.code)
    command = kubectl.without_config_flag(argv, "--talosconfig")
    rules_file = state / "talosctl.json"
    rules = json.loads(rules_file.read_text()) if rules_file.exists() else []
    for index, rule in enumerate(rules):
        if rule["match"] == command:
            counter = state / f"talosctl.{index}.count"
            seen = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(seen + 1))
            answer = rule["responses"][min(seen, len(rule["responses"]) - 1)]
            time.sleep(answer.get("sleep", 0))
            sys.stdout.write(answer.get("stdout", ""))
            sys.stderr.write(answer.get("stderr", ""))
            sys.exit(answer.get("rc", 0))
    sys.stderr.write(f"fake talosctl: no canned answer for {command}\n")
    sys.exit(99)


if __name__ == "__main__":
    if sys.argv[1] == "kubectl":
        sys.exit(kubectl.main(sys.argv[2:]))
    talosctl(sys.argv[2:])
