"""Stand-in for kubectl with a small cluster behind it, for the subcommands
the mode migration and the upgrade walk use: ``get <type> [name] -o json``
(``-n/--namespace``, ``-A/--all-namespaces``, ``-l/--selector`` with
``key=value`` terms), ``delete <type> <name> [--ignore-not-found]``,
``version -o json``. Types resolve as kubectl resolves them (plural,
singular, short name or Kind, case-insensitive); an unknown flag or type,
a missing object, is an error with kubectl's wording and exit code 1.

The cluster is $FAKE_KUBE_STATE/objects.json (a list of objects);
$FAKE_KUBE_STATE/unreachable makes every call fail as kubectl does when the
API server does not answer. Calls go to calls.jsonl with ``mutated``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_KUBE_STATE"])

# plural -> (Kind, namespaced, other names)
TYPES = {
    "secrets": ("Secret", True, ("secret",)),
    "runtimeclasses": ("RuntimeClass", False, ("runtimeclass",)),
    "daemonsets": ("DaemonSet", True, ("daemonset", "ds")),
    "deployments": ("Deployment", True, ("deployment", "deploy")),
    "configmaps": ("ConfigMap", True, ("configmap", "cm")),
    "serviceaccounts": ("ServiceAccount", True, ("serviceaccount", "sa")),
    "services": ("Service", True, ("service", "svc")),
    "roles": ("Role", True, ("role",)),
    "rolebindings": ("RoleBinding", True, ("rolebinding",)),
    "clusterroles": ("ClusterRole", False, ("clusterrole",)),
    "clusterrolebindings": ("ClusterRoleBinding", False, ("clusterrolebinding",)),
    "nodes": ("Node", False, ("node", "no")),
}
GROUPS = {"runtimeclasses": ".node.k8s.io", "daemonsets": ".apps", "deployments": ".apps", "roles": ".rbac.authorization.k8s.io",
          "rolebindings": ".rbac.authorization.k8s.io", "clusterroles": ".rbac.authorization.k8s.io",
          "clusterrolebindings": ".rbac.authorization.k8s.io"}
FLAGS = {"--kubeconfig": True, "-n": True, "--namespace": True, "-A": False, "--all-namespaces": False, "-l": True,
         "--selector": True, "-o": True, "--output": True, "--ignore-not-found": False, "--wait": False,
         "--request-timeout": True}


class Exit(Exception):
    pass


def resolve(name: str) -> tuple[str, str, bool]:
    lowered = name.lower().split(".")[0]
    for plural, (kind, namespaced, others) in TYPES.items():
        if lowered in (plural, kind.lower(), *others):
            return plural, kind, namespaced
    raise Exit(f'error: the server doesn\'t have a resource type "{name}"')


def parse(argv: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    words: list[str] = []
    flags: dict[str, str | bool] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg.startswith("-"):
            name, has, value = arg.partition("=")
            if name not in FLAGS:
                raise Exit(f"error: unknown flag: {name}" if name.startswith("--") else f"error: unknown shorthand flag: '{name[1:]}' in {name}")
            if FLAGS[name] and not has:
                if index >= len(argv):
                    raise Exit(f"error: flag needs an argument: {name}")
                value = argv[index]
                index += 1
            flags[name.lstrip("-")] = value if FLAGS[name] else (value != "false" if has else True)
        else:
            words.append(arg)
    aliases = {"n": "namespace", "A": "all-namespaces", "l": "selector", "o": "output"}
    return words, {aliases.get(key, key): value for key, value in flags.items()}


def matches(obj: dict, selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def main() -> int:
    objects_path = STATE / "objects.json"
    objects = json.loads(objects_path.read_text()) if objects_path.exists() else []
    before = json.dumps(objects, sort_keys=True)
    code, out = 0, ""
    try:
        words, flags = parse(sys.argv[1:])
        if (STATE / "unreachable").exists():
            raise Exit("The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?")
        if not words:
            raise Exit("error: you must specify a command")
        if words[0] == "version":
            out = json.dumps({"clientVersion": {"gitVersion": "v1.34.1"}, "serverVersion": {"gitVersion": "v1.34.3"}})
        elif words[0] in ("get", "delete"):
            if len(words) < 2:
                raise Exit("error: you must specify the type of resource to get")
            plural, kind, namespaced = resolve(words[1])
            namespace = str(flags.get("namespace") or "default") if namespaced else None
            name = words[2] if len(words) > 2 else None
            if words[0] == "get" and flags.get("output") != "json":
                raise Exit("fake kubectl: only -o json is modelled")

            def here(obj: dict) -> bool:
                metadata = obj.get("metadata") or {}
                return (obj.get("kind") == kind and (not namespaced or flags.get("all-namespaces") or metadata.get("namespace") == namespace)
                        and (name is None or metadata.get("name") == name))

            found = [obj for obj in objects if here(obj) and matches(obj, flags.get("selector"))]  # type: ignore[arg-type]
            if name is not None and not found and not flags.get("ignore-not-found"):
                raise Exit(f'Error from server (NotFound): {plural}{GROUPS.get(plural, "")} "{name}" not found')
            if words[0] == "get":
                # With --ignore-not-found kubectl prints nothing for a missing name.
                out = (json.dumps(found[0]) if found else "") if name else json.dumps({"apiVersion": "v1", "kind": "List", "items": found})
            else:
                if name is None:
                    raise Exit("error: resource(s) were provided, but no name was specified")
                objects = [obj for obj in objects if not here(obj)]
                objects_path.write_text(json.dumps(objects))
                out = "".join(f'{plural.rstrip("s")} "{name}" deleted\n' for _ in found)
        else:
            raise Exit(f'error: unknown command "{words[0]}" for "kubectl"')
    except Exit as error:
        print(str(error), file=sys.stderr)
        code = 1
    print(out, end="" if out.endswith("\n") or not out else "\n")
    with open(STATE / "calls.jsonl", "a") as log:
        talos = Path(os.environ["FAKE_TALOS_STATE"]) / "node.json" if os.environ.get("FAKE_TALOS_STATE") else None
        # Where the Talos node was when this call ran (orders the migration
        # against the upgrades in tests that use both stand-ins).
        version = json.loads(talos.read_text())["version"] if talos and talos.exists() else None
        log.write(json.dumps({"argv": sys.argv[1:], "exit": code, "mutated": json.dumps(objects, sort_keys=True) != before,
                              "talos_version": version}) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
