"""Stand-in for kubectl / talosctl: answers from canned rules, records calls.

Run as `python fake_cli.py <tool> <args...>` (fakecli.install writes a wrapper
named after the tool). Every call is first appended to
$FAKE_CLI_DIR/calls.jsonl with the mode and content of the --kubeconfig /
--talosconfig file it was given, so tests can check it was private, and so a
call that changes something is on record even when it is refused.

kubectl's command line is then parsed the way kubectl (cobra/pflag) parses
it: its global flags, and the flags of `get`, `exec` and `version` with
their value or boolean kind, `--flag=value`, `-ovalue`, combined boolean
shorthands, `--` ending the flags. What kubectl refuses is refused with
kubectl's own message and exit code 1 (unknown flag or shorthand, a flag
without its value, a bad boolean, an unknown command, `get` without a
resource, `exec` without `--`).

Rules live in $FAKE_CLI_DIR/<tool>.json: a list of {"match": argv,
"responses": [{"stdout", "stderr", "rc", "sleep"}, ...]}. A rule answers only
the exact argv (order and values; the private config file's flag, whose path
changes each call, left out); it steps through its responses on successive
calls (the last one repeats). Anything else exits 99 naming the argv."""

import json
import os
import stat
import sys
import time
from pathlib import Path

CONFIG_FLAGS = ("--kubeconfig", "--talosconfig")

# kubectl's global flags (`kubectl options`, v1.32): name -> (shorthand, takes a value).
KUBECTL_GLOBAL = {
    "as": (None, True), "as-group": (None, True), "as-uid": (None, True), "cache-dir": (None, True),
    "certificate-authority": (None, True), "client-certificate": (None, True), "client-key": (None, True),
    "cluster": (None, True), "context": (None, True), "disable-compression": (None, False),
    "insecure-skip-tls-verify": (None, False), "kubeconfig": (None, True), "log-flush-frequency": (None, True),
    "match-server-version": (None, False), "namespace": ("n", True), "password": (None, True), "profile": (None, True),
    "profile-output": (None, True), "request-timeout": (None, True), "server": ("s", True), "tls-server-name": (None, True),
    "token": (None, True), "user": (None, True), "username": (None, True), "v": ("v", True), "vmodule": (None, True),
    "warnings-as-errors": (None, False), "help": ("h", False),
}
# The subcommands the program runs, with their own flags (`kubectl <verb> --help`, v1.32).
KUBECTL_VERBS = {
    "get": {
        "all-namespaces": ("A", False), "allow-missing-template-keys": (None, False), "chunk-size": (None, True),
        "field-selector": (None, True), "filename": ("f", True), "ignore-not-found": (None, False), "kustomize": ("k", True),
        "label-columns": ("L", True), "no-headers": (None, False), "output": ("o", True), "output-watch-events": (None, False),
        "raw": (None, True), "recursive": ("R", False), "selector": ("l", True), "server-print": (None, False),
        "show-kind": (None, False), "show-labels": (None, False), "show-managed-fields": (None, False), "sort-by": (None, True),
        "subresource": (None, True), "template": (None, True), "watch": ("w", False), "watch-only": (None, False),
    },
    "exec": {
        "container": ("c", True), "filename": ("f", True), "pod-running-timeout": (None, True), "quiet": ("q", False),
        "stdin": ("i", False), "tty": ("t", False),
    },
    "version": {"client": (None, False), "output": ("o", True)},
}
# Every other command kubectl has (`kubectl help`): its arguments are taken
# as given (their flags are not modelled), so a call the program should never
# make is recorded as what it is, not refused as a typo.
KUBECTL_OTHER_COMMANDS = frozenset(
    "create expose run set explain edit delete rollout scale autoscale certificate cluster-info top cordon uncordon drain taint "
    "describe logs attach port-forward proxy cp auth debug events diff apply patch replace wait kustomize label annotate "
    "completion api-resources api-versions config plugin".split())


class Usage(Exception):
    """kubectl refused the command line: its message, exit code 1."""


def _flag_table(flags):
    by_short = {short: name for name, (short, _) in flags.items() if short}
    return flags, by_short


def _bool(name, text):
    if text.lower() in ("1", "t", "true"):
        return True
    if text.lower() in ("0", "f", "false"):
        return False
    raise Usage(f'Error: invalid argument "{text}" for "--{name}" flag: strconv.ParseBool: parsing "{text}": invalid syntax')


def _occurrences(arg, table, shorts, verb, where):
    """The flags one argument sets: (name, value written in it or None, how
    kubectl names it in messages). ``--name[=value]``, or shorthands
    ``-abc`` / ``-ovalue`` / ``-o=value``."""
    if arg.startswith("--"):
        name, has_value, value = arg[2:].partition("=")
        if name in table:
            return [(name, value if has_value else None, f"--{name}")]
        unknown = f"unknown flag: --{name}"
    else:
        found, letters = [], arg[1:]
        while letters and letters[0] in shorts:
            letter, letters = letters[0], letters[1:]
            name = shorts[letter]
            if table[name][1]:  # takes a value: the rest of the argument is it
                found.append((name, letters.removeprefix("=") or None, f"'{letter}' in {arg}"))
                return found
            found.append((name, None, f"'{letter}' in {arg}"))
        if not letters:
            return found
        unknown = f"unknown shorthand flag: '{letters[0]}' in {arg}"
    if verb is None:
        raise Usage(f"Error: flags cannot be placed before plugin name: {arg}")
    raise Usage(f"Error: {unknown}\nSee '{where} --help' for usage.")


def parse_kubectl(argv):
    """(verb, positional arguments, {flag: value}, command after `--`), or
    Usage with kubectl's message."""
    flags, verb, positional, after = {}, None, [], None
    table, shorts = _flag_table(KUBECTL_GLOBAL)
    where = "kubectl"
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            after = argv[index:]
            break
        if arg.startswith("-") and len(arg) > 1:
            for name, inline, shown in _occurrences(arg, table, shorts, verb, where):
                if not table[name][1]:
                    flags[name] = True if inline is None else _bool(name, inline)
                    continue
                if inline is None:
                    if index >= len(argv):
                        raise Usage(f"Error: flag needs an argument: {shown}\nSee '{where} --help' for usage.")
                    inline, index = argv[index], index + 1
                flags[name] = inline
            continue
        if verb is None:
            if arg not in KUBECTL_VERBS and arg not in KUBECTL_OTHER_COMMANDS:
                raise Usage(f'Error: unknown command "{arg}" for "kubectl"\nRun \'kubectl --help\' for usage.')
            verb, where = arg, f"kubectl {arg}"
            if verb not in KUBECTL_VERBS:  # flags not modelled: take the rest as given
                return verb, argv[index:], flags, None
            table, shorts = _flag_table({**KUBECTL_GLOBAL, **KUBECTL_VERBS[verb]})
            continue
        positional.append(arg)
    # `get --raw PATH` (staging/src/k8s.io/kubectl/pkg/cmd/get/get.go, v1.32):
    # Complete refuses arguments beside it before it asks for a resource type;
    # Validate refuses -o with it.
    if verb == "get" and "raw" in flags:
        if positional:
            raise Usage("error: arguments may not be passed when --raw is specified")
        if "output" in flags:
            raise Usage("error: --raw and --output are mutually exclusive\nSee 'kubectl get -h' for help and examples")
        return verb, positional, flags, after
    if verb == "get" and not positional:
        raise Usage('You must specify the type of resource to get. Use "kubectl api-resources" for a complete list of supported resources.\n\n'
                    "error: Required resource not specified.\n"
                    'Use "kubectl explain <resource>" for a detailed description of that resource (e.g. kubectl explain pods).\n'
                    "See 'kubectl get -h' for help and examples")
    if verb == "exec":
        if len(positional) > 1:
            raise Usage("error: exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead\n"
                        "See 'kubectl exec -h' for help and examples")
        if not positional and "filename" not in flags:
            raise Usage("error: pod, type/name or --filename must be specified")
        if not after:
            raise Usage("error: you must specify at least one command for the container")
    return verb, positional, flags, after


def without_config_flag(argv):
    """argv less the private config file's flag (its path changes per call)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in CONFIG_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            out.append(arg)
    return out


def main():
    state = Path(os.environ["FAKE_CLI_DIR"])
    tool, argv = sys.argv[1], sys.argv[2:]
    record = {"tool": tool, "argv": argv, "config_path": None, "config_mode": None, "config_text": None,
              "env_kubeconfig": os.environ.get("KUBECONFIG")}
    for flag in CONFIG_FLAGS:
        if flag in argv:
            path = argv[argv.index(flag) + 1]
            record["config_path"] = path
            record["config_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
            record["config_text"] = Path(path).read_text()
    with open(state / "calls.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")

    if tool == "kubectl":
        try:
            parse_kubectl(argv)
        except Usage as error:
            sys.stderr.write(f"{error}\n")
            sys.exit(1)
    command = without_config_flag(argv)
    rules_file = state / f"{tool}.json"
    rules = json.loads(rules_file.read_text()) if rules_file.exists() else []
    for index, rule in enumerate(rules):
        if rule["match"] == command:
            counter = state / f"{tool}.{index}.count"
            seen = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(seen + 1))
            answer = rule["responses"][min(seen, len(rule["responses"]) - 1)]
            time.sleep(answer.get("sleep", 0))
            sys.stdout.write(answer.get("stdout", ""))
            sys.stderr.write(answer.get("stderr", ""))
            sys.exit(answer.get("rc", 0))
    sys.stderr.write(f"fake {tool}: no canned answer for {command}\n")
    sys.exit(99)


if __name__ == "__main__":
    main()
