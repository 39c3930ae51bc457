"""Stand-in for talosctl (the real one cannot be installed here), as strict as
the real tool for the subcommands this program uses, built from talosctl's
source (siderolabs/talos v1.13.9, cmd/talosctl/cmd/talos/*.go) and Talos'
machined apply-config server (internal/app/machined/internal/server/
v1alpha1/v1alpha1_server.go).

Flags are parsed the way cobra/pflag do: the global ``--talosconfig``,
``-n/--nodes``, ``-e/--endpoints``, ``-c/--cluster``, ``--context`` on every
command, each command's own flags, ``--flag value``/``--flag=value``/
``-fvalue``; an unknown flag, a missing value, a bad duration or mode is an
error (exit 1) with pflag's wording, printed the way talosctl's root command
prints it.

The node lives in $FAKE_TALOS_STATE:

- ``node.json``: version, schematic, extensions, reboots, maintenance,
  ``down_calls`` (API calls still refused while the node reboots; -1 for a
  node that never comes back);
- ``active.yaml`` (the running config, ``get machineconfig``) and
  ``config.yaml`` (the config on the STATE partition, ``read
  /system/state/config.yaml``; ahead of the active one after a staged apply);
- ``catalog.json``: the Image Factory's schematics (ID -> extension names);
  an upgrade to an image whose schematic it does not know fails to pull;
- ``misbehave.json``: ``{"upgrade": "boots-old" | "no-extensions" |
  "never-returns" | "timeout" | "slow"}`` makes the next upgrade go wrong the
  way a real one can (rolled back to the old version; booted without the
  NVIDIA extensions; never back; ``--wait`` timing out while the node
  finishes later; back only after a few refused calls);
- ``fail``: the next call fails with its content.

Every call is appended to ``calls.jsonl``: argv, the talosconfig it was
given (path, mode, whether it had contexts) and whether the call changed the
node (``mutated``)."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path

import yaml

STATE = Path(os.environ["FAKE_TALOS_STATE"])
UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream" / "talos"
CLIENT_TAG = "v1.13.9"
CONFIG_PATH = "/system/state/config.yaml"


class Exit(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- flags ---

# name -> (shorthand, kind): kind is "bool", "string", "slice", "duration".
GLOBAL = {"talosconfig": ("", "string"), "nodes": ("n", "slice"), "endpoints": ("e", "slice"),
          "cluster": ("c", "string"), "context": ("", "string"), "siderov1-keys-dir": ("", "string")}
COMMANDS = {
    "version": {"short": ("", "bool"), "client": ("", "bool"), "insecure": ("i", "bool"), "json": ("", "bool")},
    "get": {"namespace": ("", "string"), "output": ("o", "string"), "watch": ("w", "bool"), "insecure": ("i", "bool")},
    "read": {},
    "apply-config": {"file": ("f", "string"), "insecure": ("i", "bool"), "dry-run": ("", "bool"),
                     "cert-fingerprint": ("", "slice"), "config-patch": ("p", "array"), "timeout": ("", "duration"),
                     "mode": ("m", "mode")},
    "upgrade": {"image": ("i", "string"), "namespace": ("", "string"), "reboot-mode": ("m", "string"),
                "progress": ("", "string"), "no-reboot": ("", "bool"), "drain": ("", "bool"),
                "drain-timeout": ("", "duration"), "wait": ("", "bool"), "debug": ("", "bool"),
                "timeout": ("", "duration"), "legacy": ("", "bool"), "force": ("f", "bool"),
                "insecure": ("", "bool"), "preserve": ("p", "bool"), "stage": ("s", "bool")},
}
ALIASES = {"apply": "apply-config", "cat": "read"}
DEPRECATED = {("upgrade", name): "legacy flag for MachineService.Upgrade fallback, to be removed in Talos 1.18"
              for name in ("force", "insecure", "preserve", "stage")}
MODES = ("auto", "no-reboot", "reboot", "staged", "try")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, object]]:
    """(command, positional args, flags) as cobra would see them."""
    command = next((arg for arg in _positionals_before_command(argv)), None)
    if command is None:
        raise Exit("talosctl: no command given (the real tool prints its help)")
    name = ALIASES.get(command, command)
    if name not in COMMANDS:
        raise Exit(f'unknown command "{command}" for "talosctl"')
    spec = {**GLOBAL, **COMMANDS[name]}
    shorts = {short: long for long, (short, _) in spec.items() if short}
    flags: dict[str, object] = {}
    positional: list[str] = []
    index, seen_command = 0, False
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            positional += argv[index:]
            break
        if arg.startswith("--"):
            long, has_value, value = arg[2:].partition("=")
            if long not in spec:
                raise Exit(f"unknown flag: --{long}")
            display = f"--{long}"
        elif arg.startswith("-") and len(arg) > 1:
            short, rest = arg[1], arg[2:]
            if short not in shorts:
                raise Exit(f"unknown shorthand flag: '{short}' in {arg}")
            long = shorts[short]
            has_value, value = ("=", rest[1:]) if rest.startswith("=") else (("=", rest) if rest else ("", ""))
            display = f"-{short}, --{long}"
        else:
            if not seen_command and arg == command:
                seen_command = True
            else:
                positional.append(arg)
            continue
        kind = spec[long][1]
        if kind == "bool":
            if has_value and value not in ("true", "false", "1", "0", "t", "f", "TRUE", "FALSE", "True", "False"):
                raise Exit(f'invalid argument "{value}" for "{display}" flag: strconv.ParseBool: parsing "{value}": invalid syntax')
            flags[long] = value in ("true", "1", "t", "TRUE", "True") if has_value else True
        else:
            if not has_value:
                if index >= len(argv):
                    raise Exit(f"flag needs an argument: {display.split(', ')[-1] if arg.startswith('--') else '-' + arg[1]}")
                value = argv[index]
                index += 1
            if kind == "duration" and not _DURATION.match(value):
                raise Exit(f'invalid argument "{value}" for "{display}" flag: time: invalid duration "{value}"')
            if kind == "mode" and value not in MODES:
                raise Exit(f'invalid argument "{value}" for "{display}" flag: possible options are: {", ".join(MODES)}')
            if kind == "slice":
                flags.setdefault(long, [])
                flags[long] += [part for part in value.split(",") if part]  # type: ignore[operator]
            elif kind == "array":
                flags.setdefault(long, [])
                flags[long].append(value)  # type: ignore[union-attr]
            else:
                flags[long] = value
        if (name, long) in DEPRECATED:
            print(f"Flag --{long} has been deprecated, {DEPRECATED[(name, long)]}", file=sys.stderr)
    return name, positional, flags


def _positionals_before_command(argv: list[str]):
    """The first word that is not a global flag or its value: the command."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("--"):
            long = arg[2:].partition("=")[0]
            if long in GLOBAL and "=" not in arg and GLOBAL[long][1] != "bool":
                skip = True
            continue
        if arg.startswith("-") and len(arg) > 1:
            if len(arg) == 2 and any(short == arg[1] for short, _ in GLOBAL.values()):
                skip = True
            continue
        yield arg


# ------------------------------------------------------------ the node ---


def load_node() -> dict:
    return json.loads((STATE / "node.json").read_text())


def save_node(node: dict) -> None:
    (STATE / "node.json").write_text(json.dumps(node, indent=2))


def read_text(name: str) -> str:
    path = STATE / name
    return path.read_text() if path.exists() else ""


def fingerprint() -> str:
    """The node's state, without the bookkeeping of a node still rebooting."""
    digest = hashlib.sha256()
    node = json.loads(read_text("node.json") or "{}")
    node.pop("down_calls", None)
    digest.update(json.dumps(node, sort_keys=True).encode())
    for name in ("active.yaml", "config.yaml"):
        digest.update(read_text(name).encode())
    return digest.hexdigest()


def talosconfig(flags: dict) -> dict:
    path = flags.get("talosconfig") or os.environ.get("TALOSCONFIG") or str(Path.home() / ".talos" / "config")
    if not Path(str(path)).is_file():
        raise Exit("failed to determine endpoints")
    data = yaml.safe_load(Path(str(path)).read_text()) or {}
    context = data.get("contexts", {}).get(flags.get("context") or data.get("context")) or {}
    return context


def targets(flags: dict, context: dict) -> list[str]:
    endpoints = flags.get("endpoints") or context.get("endpoints") or []
    if not endpoints:
        raise Exit("failed to determine endpoints")
    nodes = flags.get("nodes") or context.get("nodes") or []
    if not nodes:
        raise Exit("nodes are not set for the command: please use `--nodes` flag or configuration file to set the nodes to run the command against")
    return list(nodes)  # type: ignore[arg-type]


def reachable(node: dict, address: str, insecure: bool = False) -> None:
    """Raise as talosctl does when the node's API does not answer."""
    if node.get("down_calls"):
        if node["down_calls"] > 0:
            node["down_calls"] -= 1
            save_node(node)
        raise Exit(f'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp {address}:50000: connect: connection refused"')
    if node.get("maintenance") and not insecure:
        raise Exit("rpc error: code = Unavailable desc = connection error: desc = \"transport: authentication handshake failed: tls: certificate required\"")


class TalosYamlLoader(yaml.SafeLoader):
    """Go's yaml.v3 reads 0o644 as an integer (file permissions)."""


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text[2:], 8) if text.startswith("0o") else yaml.SafeLoader.construct_yaml_int(loader, node)


TalosYamlLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^0o[0-7]+$"), list("0"))
TalosYamlLoader.add_constructor("tag:yaml.org,2002:int", _int)


def documents(text: str) -> list:
    return [document for document in yaml.load_all(text, Loader=TalosYamlLoader) if document is not None]


# Talos CanApplyImmediate (v1.9 .. v1.13): these may change without a reboot.
IMMEDIATE_MACHINE = {"ca", "acceptedCAs", "time", "certCANs", "install", "network", "sysfs", "sysctls", "logging",
                     "controlplane", "kubelet", "kernel", "registries", "pods", "seccompProfiles", "nodeAnnotations",
                     "nodeLabels", "nodeTaints"}
IMMEDIATE_FEATURES = {"kubernetesTalosAPIAccess", "kubePrism", "hostDNS", "imageCache", "nodeAddressSortAlgorithm"}


def v1alpha1(docs: list) -> dict | None:
    return next((doc for doc in docs if isinstance(doc, dict) and doc.get("version") == "v1alpha1" and "kind" not in doc), None)


def immediate_problem(current_text: str, new_text: str) -> str | None:
    current, new = v1alpha1(documents(current_text)), v1alpha1(documents(new_text))
    if current is None or new is None:
        return "current config is not v1alpha1" if current is None else "new config is not v1alpha1"
    new = json.loads(json.dumps(new))
    for key in ("debug", "cluster"):
        new.pop(key, None)
        if key in current:
            new[key] = current[key]
    cm, nm = current.get("machine") or {}, new.setdefault("machine", {})
    for key in IMMEDIATE_MACHINE:
        nm.pop(key, None)
        if key in cm:
            nm[key] = cm[key]
    if isinstance(nm.get("features"), dict) and isinstance(cm.get("features"), dict):
        for key in IMMEDIATE_FEATURES:
            nm["features"].pop(key, None)
            if key in cm["features"]:
                nm["features"][key] = cm["features"][key]
    if json.dumps(new, sort_keys=True, default=str) != json.dumps(current, sort_keys=True, default=str):
        return "this config change can't be applied in immediate mode\ndiff:\n" + "".join(config_diff(yaml.safe_dump(current), yaml.safe_dump(new)))
    return None


def config_diff(before: str, after: str) -> list[str]:
    return list(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), "a", "b"))


def validate(text: str, node: dict) -> None:
    """What machined's ApplyConfiguration refuses before applying."""
    try:
        docs = documents(text)
    except yaml.YAMLError as error:
        raise Exit(f"error applying new configuration: rpc error: code = InvalidArgument desc = {error}") from None
    config = v1alpha1(docs)
    if config is None and not node.get("maintenance"):
        raise Exit("error applying new configuration: rpc error: code = InvalidArgument desc = the applied machine configuration "
                   "doesn't contain v1alpha1 config, did you mean to patch the machine config instead?")
    major, minor = (int(part) for part in node["version"].lstrip("v").split(".")[:2])
    schemas = sorted(UPSTREAM.glob(f"config.schema.v{major}.{minor}.*.json"))
    if schemas and config is not None:
        import jsonschema

        schema = json.loads(schemas[-1].read_text())
        validator = jsonschema.Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/v1alpha1.Config"})
        errors = sorted(validator.iter_errors(json.loads(json.dumps(config, default=str))), key=lambda e: list(e.absolute_path))
        if errors:
            lines = "".join(f"\n\t* {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
            raise Exit(f"error applying new configuration: rpc error: code = InvalidArgument desc = {len(errors)} error(s) occurred:{lines}")


def reboot(node: dict) -> None:
    """A reboot: the STATE partition's config becomes the running one."""
    node["reboots"] += 1
    (STATE / "active.yaml").write_text(read_text("config.yaml"))


# ------------------------------------------------------------- commands ---


def cmd_version(node: dict, nodes: list[str], flags: dict) -> None:
    print(f"Client:\n\tTag:         {CLIENT_TAG}\n\tSHA:         5b9ba0d3\n\tBuilt:       \n\tGo version:  go1.25.9\n\tOS/Arch:     linux/amd64")
    if flags.get("client"):
        return
    for address in nodes:
        reachable(node, address, bool(flags.get("insecure")))
        print(f"Server:\n\tNODE:        {address}\n\tTag:         {node['version']}\n\tSHA:         0d2a4e9c\n\tBuilt:       \n"
              "\tGo version:  go1.24.11\n\tOS/Arch:     linux/amd64\n\tEnabled:     RBAC")


def resource(address: str, namespace: str, type_: str, id_: str, spec: object) -> str:
    return yaml.safe_dump({"node": address, "metadata": {"namespace": namespace, "type": type_, "id": id_, "version": 1,
                                                         "owner": "", "phase": "running"}, "spec": spec},
                          sort_keys=False, indent=4)


def cmd_get(node: dict, nodes: list[str], args: list[str], flags: dict) -> None:
    if not args or len(args) > 2:
        raise Exit(f"accepts between 1 and 2 arg(s), received {len(args)}")
    output = str(flags.get("output", "table"))
    if output != "yaml":
        raise Exit(f"fake talosctl: output {output!r} is not modelled (this program asks for yaml)", 2)
    kind = args[0].lower()
    out = []
    for address in nodes:
        reachable(node, address, bool(flags.get("insecure")))
        if kind in ("extensions", "extensionstatus", "extensionstatuses", "extensionstatuses.runtime.talos.dev"):
            items = [(str(index), name, f"{node.get('driver', '580.95.05')}-{node['version']}" if "nvidia" in name else "10.0.2")
                     for index, name in enumerate(node.get("extensions", []))]
            if node.get("schematic"):
                items.append((str(len(items)), "schematic", node["schematic"]))
            items.append(("modules.dep", "modules.dep", "6.12.57-talos"))
            out += [resource(address, "runtime", "ExtensionStatuses.runtime.talos.dev", ident,
                             {"image": f"{ident}.sqsh", "metadata": {"name": name, "version": version, "author": "Sidero Labs"}})
                    for ident, name, version in items if len(args) == 1 or args[1] == ident]
        elif kind in ("machineconfig", "machineconfigs", "mc", "machineconfigs.config.talos.dev"):
            if len(args) == 2 and args[1] != "v1alpha1":
                raise Exit(f'rpc error: code = NotFound desc = resource MachineConfigs.config.talos.dev(config/{args[1]}@undefined) doesn\'t exist')
            out.append(resource(address, "config", "MachineConfigs.config.talos.dev", "v1alpha1", read_text("active.yaml")))
        else:
            raise Exit(f"fake talosctl: resource {args[0]!r} is not modelled", 2)
    print("---\n".join(out), end="")


def cmd_read(node: dict, nodes: list[str], args: list[str]) -> None:
    if len(args) != 1:
        raise Exit(f"accepts 1 arg(s), received {len(args)}")
    if len(nodes) > 1:
        raise Exit('command "read" is not supported with multiple nodes')
    reachable(node, nodes[0])
    if args[0] != CONFIG_PATH:
        raise Exit(f"error reading file: rpc error: code = Unknown desc = open {args[0]}: no such file or directory")
    print(read_text("config.yaml"), end="")


def cmd_apply(node: dict, nodes: list[str], args: list[str], flags: dict) -> None:
    if args:
        raise Exit("expected no positional arguments")
    if not flags.get("file"):
        raise Exit("no filename supplied for configuration")
    if flags.get("config-patch"):
        raise Exit("fake talosctl: --config-patch is not modelled", 2)
    try:
        text = Path(str(flags["file"])).read_text()
    except OSError as error:
        raise Exit(f'failed to read configuration from "{flags["file"]}": {error}') from None
    mode = str(flags.get("mode", "auto"))
    for address in nodes:
        reachable(node, address, bool(flags.get("insecure")))
        validate(text, node)
        problem = immediate_problem(read_text("active.yaml"), text) if mode in ("auto", "no-reboot", "try") else None
        if mode in ("no-reboot", "try") and problem:
            raise Exit(f"error applying new configuration: rpc error: code = InvalidArgument desc = {problem}")
        details = {"staged": "Staged configuration to be applied after the next reboot",
                   "reboot": "Applied configuration with a reboot"}.get(mode)
        if details is None:
            details = "Applied configuration with a reboot" if problem else "Applied configuration without a reboot"
        if flags.get("dry-run"):
            diff = "".join(config_diff(read_text("active.yaml"), text)) or "No changes."
            print(f"Dry run summary:\n{details} (skipped in dry-run).\nConfig diff:\n\n{diff}", file=sys.stderr)
            continue
        (STATE / "config.yaml").write_text(text)
        if mode in ("no-reboot", "try") or (mode == "auto" and not problem):
            (STATE / "active.yaml").write_text(text)
        elif mode in ("reboot", "auto"):
            reboot(node)
            save_node(node)
        print(details + (f": {problem}" if mode == "auto" and problem else ""), file=sys.stderr)


_IMAGE = re.compile(r"^factory\.talos\.dev/(?:[a-z0-9-]+-)?installer/(?P<id>[0-9a-f]{64}):(?P<version>v\d+\.\d+\.\d+)$")


def cmd_upgrade(node: dict, nodes: list[str], args: list[str], flags: dict) -> None:
    if args:
        raise Exit(f'unknown command "{args[0]}" for "talosctl upgrade"')
    if flags.get("wait", True) and flags.get("insecure"):
        raise Exit("cannot use --wait and --insecure together")
    image = str(flags.get("image") or f"ghcr.io/siderolabs/installer:{CLIENT_TAG}")
    catalog = json.loads(read_text("catalog.json") or "{}").get("schematics", {})
    details = json.loads(read_text("misbehave.json") or "{}")
    misbehave = details.get("upgrade")
    for address in nodes:
        reachable(node, address, bool(flags.get("insecure")))
        match = _IMAGE.match(image)
        if not match or match["id"] not in catalog:
            raise Exit(f"error pulling upgrade image: 1 error occurred:\n\t* {address}: failed to pull image {image}: not found")
        if tuple(int(p) for p in node["version"].lstrip("v").split(".")) < (1, 13, 0):
            print("New upgrade API is not available, falling back to legacy", file=sys.stderr)
        if misbehave:
            (STATE / "misbehave.json").unlink()
        reboot(node)
        if misbehave == "boots-old":
            # The new image failed to boot; the A/B bootloader fell back.
            save_node(node)
            print(f"{address}: upgrade completed")
            continue
        node.update(version=match["version"], schematic=match["id"], extensions=list(catalog[match["id"]]))
        if misbehave == "no-extensions":
            node["extensions"] = []
        if misbehave == "never-returns":
            node["down_calls"] = -1
        elif misbehave == "timeout":
            node["down_calls"] = int(details.get("down_calls", 2))
        elif misbehave == "slow":
            node["down_calls"] = int(details.get("down_calls", 3))
        save_node(node)
        if misbehave in ("never-returns", "timeout") and flags.get("wait", True):
            raise Exit(f"error during upgrade: {address}: failed waiting for the node to come back: context deadline exceeded")
        print(f"{address}: upgrade completed")


def main() -> int:
    argv = sys.argv[1:]
    record = {"argv": argv, "talosconfig": None, "talosconfig_mode": None, "talosconfig_has_contexts": None, "mutated": False}
    if "--talosconfig" in argv and argv.index("--talosconfig") + 1 < len(argv):
        path = argv[argv.index("--talosconfig") + 1]
        record["talosconfig"] = path
        if os.path.exists(path):
            record["talosconfig_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
            record["talosconfig_has_contexts"] = "contexts:" in Path(path).read_text()
    before = fingerprint()
    code = 0
    try:
        fail = STATE / "fail"
        if fail.exists():
            message = fail.read_text()
            fail.unlink()
            raise Exit(message)
        command, args, flags = parse(argv)
        context = talosconfig(flags)
        nodes = targets(flags, context)
        node = load_node()
        if command == "version":
            cmd_version(node, nodes, flags)
        elif command == "get":
            cmd_get(node, nodes, args, flags)
        elif command == "read":
            cmd_read(node, nodes, args)
        elif command == "apply-config":
            cmd_apply(node, nodes, args, flags)
        elif command == "upgrade":
            cmd_upgrade(node, nodes, args, flags)
    except Exit as error:
        print(str(error), file=sys.stderr)
        code = error.code
    record["mutated"] = fingerprint() != before
    record["exit"] = code
    with open(STATE / "calls.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
