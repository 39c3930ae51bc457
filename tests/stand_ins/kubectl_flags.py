"""kubectl's command line, parsed the way kubectl (cobra/pflag) parses it,
for the kubectl stand-in (tests/stand_ins/kubectl.py): its global flags and
the flags of every verb the program runs, with their value or boolean kind,
``--flag=value``, ``-ovalue``, combined boolean shorthands, ``--`` ending the
flags. What kubectl refuses is refused with kubectl's own message (exit 1):
unknown flag or shorthand, a flag without its value, a bad boolean or
duration, an unknown command, ``get`` without a resource, ``exec`` without
``--``, ``drain`` without a node.

Upstream: kubernetes/kubectl, tags kubernetes-1.33.0 .. kubernetes-1.35.7
(pkg/cmd/get/get.go, get_flags.go; pkg/cmd/exec/exec.go; pkg/cmd/version/
version.go; pkg/cmd/drain/drain.go (cordon, uncordon, drain);
pkg/cmd/delete/delete_flags.go; pkg/cmd/patch/patch.go; global flags from
`kubectl options`)."""

from __future__ import annotations

import re

# name -> (shorthand, kind): kind is "bool", "string", "int" or "duration".
GLOBAL = {
    "as": (None, "string"), "as-group": (None, "string"), "as-uid": (None, "string"), "cache-dir": (None, "string"),
    "certificate-authority": (None, "string"), "client-certificate": (None, "string"), "client-key": (None, "string"),
    "cluster": (None, "string"), "context": (None, "string"), "disable-compression": (None, "bool"),
    "insecure-skip-tls-verify": (None, "bool"), "kubeconfig": (None, "string"), "log-flush-frequency": (None, "duration"),
    "match-server-version": (None, "bool"), "namespace": ("n", "string"), "password": (None, "string"), "profile": (None, "string"),
    "profile-output": (None, "string"), "request-timeout": (None, "string"), "server": ("s", "string"),
    "tls-server-name": (None, "string"), "token": (None, "string"), "user": (None, "string"), "username": (None, "string"),
    "v": ("v", "string"), "vmodule": (None, "string"), "warnings-as-errors": (None, "bool"), "help": ("h", "bool"),
}
_DRAIN = {"force": (None, "bool"), "ignore-daemonsets": (None, "bool"), "delete-emptydir-data": (None, "bool"),
          "grace-period": (None, "int"), "timeout": (None, "duration"), "pod-selector": (None, "string"),
          "disable-eviction": (None, "bool"), "skip-wait-for-delete-timeout": (None, "int"), "chunk-size": (None, "int"),
          "dry-run": (None, "string"), "selector": ("l", "string")}
VERBS = {
    "get": {
        "all-namespaces": ("A", "bool"), "allow-missing-template-keys": (None, "bool"), "chunk-size": (None, "int"),
        "field-selector": (None, "string"), "filename": ("f", "string"), "ignore-not-found": (None, "bool"),
        "kustomize": ("k", "string"), "label-columns": ("L", "string"), "no-headers": (None, "bool"), "output": ("o", "string"),
        "output-watch-events": (None, "bool"), "raw": (None, "string"), "recursive": ("R", "bool"), "selector": ("l", "string"),
        "server-print": (None, "bool"), "show-kind": (None, "bool"), "show-labels": (None, "bool"),
        "show-managed-fields": (None, "bool"), "sort-by": (None, "string"), "subresource": (None, "string"),
        "template": (None, "string"), "watch": ("w", "bool"), "watch-only": (None, "bool"),
    },
    "exec": {"container": ("c", "string"), "filename": ("f", "string"), "pod-running-timeout": (None, "duration"),
             "quiet": ("q", "bool"), "stdin": ("i", "bool"), "tty": ("t", "bool")},
    "version": {"client": (None, "bool"), "output": ("o", "string")},
    "cordon": {"dry-run": (None, "string"), "selector": ("l", "string")},
    "uncordon": {"dry-run": (None, "string"), "selector": ("l", "string")},
    "drain": _DRAIN,
    "delete": {"all": (None, "bool"), "all-namespaces": ("A", "bool"), "field-selector": (None, "string"),
               "filename": ("f", "string"), "force": (None, "bool"), "grace-period": (None, "int"),
               "ignore-not-found": (None, "bool"), "interactive": ("i", "bool"), "now": (None, "bool"), "output": ("o", "string"),
               "raw": (None, "string"), "selector": ("l", "string"), "timeout": (None, "duration"), "wait": (None, "bool"),
               "dry-run": (None, "string")},
    "patch": {"patch": ("p", "string"), "patch-file": (None, "string"), "type": (None, "string"), "local": (None, "bool"),
              "field-manager": (None, "string"), "output": ("o", "string"), "filename": ("f", "string"),
              "dry-run": (None, "string"), "subresource": (None, "string")},
}
# Every other command kubectl has (`kubectl help`): its arguments are taken
# as given, so a call the program should never make is recorded as what it
# is, not refused as a typo.
OTHER_COMMANDS = frozenset(
    "create expose run set explain edit rollout scale autoscale certificate cluster-info top taint describe logs attach "
    "port-forward proxy cp auth debug events diff apply replace wait kustomize label annotate completion api-resources "
    "api-versions config plugin".split())
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$")


class Usage(Exception):
    """kubectl refused the command line: its message, exit code 1."""


def _value(name: str, kind: str, text: str) -> object:
    if kind == "bool":
        if text.lower() in ("1", "t", "true"):
            return True
        if text.lower() in ("0", "f", "false"):
            return False
        raise Usage(f'Error: invalid argument "{text}" for "--{name}" flag: strconv.ParseBool: parsing "{text}": invalid syntax')
    if kind == "int" and not re.fullmatch(r"[-+]?[0-9]+", text):
        raise Usage(f'Error: invalid argument "{text}" for "--{name}" flag: strconv.ParseInt: parsing "{text}": invalid syntax')
    if kind == "duration" and not _DURATION.match(text):
        raise Usage(f'Error: invalid argument "{text}" for "--{name}" flag: time: invalid duration "{text}"')
    return text


def _occurrences(arg: str, table: dict, shorts: dict, verb: str | None, where: str) -> list[tuple[str, str | None, str]]:
    """The flags one argument sets: (name, value written in it or None, how
    kubectl names it in messages)."""
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
            if table[name][1] != "bool":  # takes a value: the rest of the argument is it
                found.append((name, letters.removeprefix("=") or None, f"'{letter}' in {arg}"))
                return found
            found.append((name, None, f"'{letter}' in {arg}"))
        if not letters:
            return found
        unknown = f"unknown shorthand flag: '{letters[0]}' in {arg}"
    if verb is None:
        raise Usage(f"Error: flags cannot be placed before plugin name: {arg}")
    raise Usage(f"Error: {unknown}\nSee '{where} --help' for usage.")


def parse(argv: list[str]) -> tuple[str | None, list[str], dict[str, object], list[str] | None]:
    """(verb, positional arguments, {flag: value}, command after ``--``), or
    Usage with kubectl's message."""
    flags: dict[str, object] = {}
    verb, positional, after = None, [], None
    table = GLOBAL
    shorts = {short: name for name, (short, _) in table.items() if short}
    where, index = "kubectl", 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            after = argv[index:]
            break
        if arg.startswith("-") and len(arg) > 1:
            for name, inline, shown in _occurrences(arg, table, shorts, verb, where):
                kind = table[name][1]
                if kind == "bool":
                    flags[name] = True if inline is None else _value(name, kind, inline)
                    continue
                if inline is None:
                    if index >= len(argv):
                        raise Usage(f"Error: flag needs an argument: {shown}\nSee '{where} --help' for usage.")
                    inline, index = argv[index], index + 1
                flags[name] = _value(name, kind, inline)
            continue
        if verb is None:
            if arg not in VERBS and arg not in OTHER_COMMANDS:
                raise Usage(f'Error: unknown command "{arg}" for "kubectl"\nRun \'kubectl --help\' for usage.')
            verb, where = arg, f"kubectl {arg}"
            if verb not in VERBS:
                return verb, argv[index:], flags, None
            table = {**GLOBAL, **VERBS[verb]}
            shorts = {short: name for name, (short, _) in table.items() if short}
            continue
        positional.append(arg)
    _check(verb, positional, flags, after)
    return verb, positional, flags, after


def _check(verb: str | None, positional: list[str], flags: dict[str, object], after: list[str] | None) -> None:
    """What each verb's Complete/Validate refuses before it asks the server."""
    if verb == "get" and "raw" in flags:  # pkg/cmd/get/get.go Complete, Validate
        if positional:
            raise Usage("error: arguments may not be passed when --raw is specified")
        if "output" in flags:
            raise Usage("error: --raw and --output are mutually exclusive\nSee 'kubectl get -h' for help and examples")
        return
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
    if verb in ("cordon", "uncordon", "drain"):  # pkg/cmd/drain/drain.go Complete
        if not positional and "selector" not in flags:
            raise Usage(f"error: USAGE: {verb} NODE [flags]\nSee 'kubectl {verb} -h' for help and examples")
        if positional and flags.get("selector"):
            raise Usage(f"error: cannot specify both a node name and a --selector option\nSee 'kubectl {verb} -h' for help and examples")
    if verb == "version" and flags.get("output") not in (None, "", "json", "yaml"):  # pkg/cmd/version/version.go Validate
        raise Usage("error: --output must be 'yaml' or 'json'")


def go_duration(text: str) -> str:
    """A Go duration as Go prints it (``600s`` -> ``10m0s``, ``90s`` -> ``1m30s``), as
    kubectl's ``%v`` of a time.Duration does."""
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    seconds = sum(float(n) * scale[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text))
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    out += f"{int(minutes)}m" if hours or minutes else ""
    return out + f"{secs:g}s"


def seconds(text: str) -> float:
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * scale[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text))
