"""The parts of the talosctl stand-in (tests/stand_ins/talosctl.py) that do
not depend on the node's version: flags parsed the way cobra/pflag do
(talosctl v1.13.9, cmd/talosctl/cmd/talos/*.go), machine config YAML read the
way Go's yaml.v3 reads it, and the checks machined's ApplyConfiguration makes
before it applies (internal/app/machined/internal/server/v1alpha1/
v1alpha1_server.go; CanApplyImmediate in
internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go, v1.9.6 ..
v1.13.9)."""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

import yaml

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream" / "talos"


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


NODOC_FIELDS = (("machine", "install", "extraKernelArgs"),)


def _properties(schema: dict, path: tuple[str, ...]) -> dict:
    """The properties the schema lists for the object at ``path[:-1]``."""
    definition = {"machine": "v1alpha1.MachineConfig", "install": "v1alpha1.InstallConfig"}.get(path[-2], "")
    return schema["$defs"].get(definition, {}).get("properties", {})


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
        checked = json.loads(json.dumps(config, default=str))
        # Fields machined decodes but the schema leaves out (`docgen:nodoc`):
        # machine.install.extraKernelArgs from v1.13, deprecated, still read
        # (pkg/machinery/config/types/v1alpha1/v1alpha1_types.go@v1.13.9
        # InstallExtraKernelArgs).
        for path in NODOC_FIELDS:
            parent = checked
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and path[-1] not in _properties(schema, path):
                parent.pop(path[-1], None)
        errors = sorted(validator.iter_errors(checked), key=lambda e: list(e.absolute_path))
        if errors:
            lines = "".join(f"\n\t* {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
            raise Exit(f"error applying new configuration: rpc error: code = InvalidArgument desc = {len(errors)} error(s) occurred:{lines}")
