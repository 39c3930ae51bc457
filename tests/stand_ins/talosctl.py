"""Stand-in for talosctl (the real one cannot be installed here): the client
is talosctl v1.13.9; the node behind it runs Talos v1.9 .. v1.13 and answers
the way that version's machined does. Flags, YAML and apply-config checks:
tests/stand_ins/talosctl_cli.py.

| behaviour | upstream (siderolabs/talos) |
|---|---|
| `get machineconfig [id] -o yaml`: `node:` line, metadata, the config as a YAML string in `spec` | cmd/talosctl/cmd/talos/output/yaml.go@v1.13.9 (`mcYamlSpec`); pkg/machinery/resources/config/machine_config.go@v1.13.9 |
| ids: `v1alpha1` (what runs) on every version; `persistent` (what STATE holds, ahead of `v1alpha1` after `--mode=staged`) from v1.10 | pkg/machinery/resources/config/machine_config.go@v1.9.6 (no `PersistentID`), @v1.10.9 .. @v1.13.9 |
| `persistent` is set by every apply but `try`, and not after a boot from STATE (gone after a reboot) | internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go@v1.13.9 `ApplyConfiguration`; internal/app/machined/pkg/controllers/config/acquire.go@v1.10.9 ("if the only source is state, we do not need to persist it") |
| a missing id: `1 error occurred:\\n\\t* rpc error: code = NotFound desc = resource MachineConfigs.config.talos.dev(config/<id>@undefined) doesn't exist` | cmd/talosctl/cmd/talos/get.go@v1.13.9 (go-multierror); cmd/talosctl/pkg/talos/helpers/resources.go@v1.13.9 |
| `read /system/state/config.yaml`: the file on v1.9; from v1.10 `error reading: rpc error: code = NotFound desc = stat /system/state/config.yaml: no such file or directory` (STATE mounted only while Talos uses it; from v1.12 never) | commits d4aacb0d8 (v1.10.0), 9db6dc06c (v1.12.0); v1alpha1_server.go@v1.11.6 `Read`; cmd/talosctl/cmd/talos/read.go@v1.11.6; pkg/machinery/client/client.go@v1.11.6 `ReadStream` |
| `apply-config --mode=staged`: "Staged configuration to be applied after the next reboot", nothing runs until the next boot | v1alpha1_server.go@v1.9.6, @v1.13.9 |
| `upgrade` to a node older than v1.13: "New upgrade API is not available, falling back to legacy"; the node cordons and drains itself, the installer gets `machine.install.extraKernelArgs` | cmd/talosctl/cmd/talos/upgrade.go@v1.13.9 `talosUpgradeAPIVersionRange`; internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go@v1.11.6 `Upgrade` ("drain"); internal/pkg/install/install.go@v1.13.9 `OptionsFromUpgradeRequest` |
| `upgrade --legacy` on v1.13: the warning "Forcing use of legacy upgrade method...", then the legacy path above | upgrade.go@v1.13.9 `upgradeViaLifecycleService` |
| `upgrade` on v1.13 (LifecycleService): pull, write the image, then drain (`--drain`, default true; off with `--no-reboot`) with a kubeconfig fetched from the endpoint, then reboot; a drain that fails leaves the image written and the node not rebooted | upgrade.go@v1.13.9; cmd/talosctl/cmd/talos/drain.go@v1.13.9; cmd/talosctl/pkg/talos/kubeclient/kubeclient.go@v1.13.9 |
| the kubeconfig only from a control plane: `rpc error: code = Unimplemented desc = kubeconfig is only available on control plane nodes` | internal/app/internal/machinehelper/machinehelper.go@v1.13.9 `CheckControlplane`; v1alpha1_server.go@v1.13.9 `Kubeconfig` |
| LifecycleService's installer gets no `extraKernelArgs` (dropped on GRUB with `grubUseUKICmdline` false, its default) | internal/app/lifecycle/lifecycle.go@v1.13.9 `Upgrade`, container.go `buildInstallerArgs`; cmd/installer/pkg/install/install.go@v1.13.9 ("legacy code ... GRUB mode with GrubUseUKICmdline set to false") |
| errors printed bare on stderr, exit 1 | cmd/talosctl/cmd/root.go@v1.13.9 (`SilenceErrors`, `Execute`) |

With $FAKE_CLI_DIR set and $FAKE_TALOS_STATE not, it answers from scripted
rules instead (tests/stand_ins/talosctl_scripted.py). Otherwise the node
lives in $FAKE_TALOS_STATE:

- ``node.json``: version, schematic, extensions, reboots, maintenance,
  ``down_calls`` (API calls still refused while the node reboots; -1: never
  back), ``bootloader`` ("grub" by default, or "sd-boot"), ``kernel_args``
  (the extra kernel arguments the installed image boots with),
  ``controlplanes`` (addresses whose Talos API serves a kubeconfig),
  ``drains`` (who drained the node before each upgrade reboot),
  ``pending_image`` (an image written whose reboot did not happen);
- ``active.yaml`` (``v1alpha1``), ``config.yaml`` (the STATE partition's
  file, what the next boot runs), ``persistent.yaml`` (the ``persistent``
  resource, v1.10+, while it exists);
- ``serves-state-file``: the stand-in of before (every version serves the
  STATE file, only ``v1alpha1`` exists), to show which tests it lets pass;
- ``catalog.json``: the Image Factory's schematics (ID -> extension names);
- ``misbehave.json``: ``{"upgrade": "boots-old" | "no-extensions" |
  "never-returns" | "timeout" | "slow" | "loses-staged" (the STATE file is
  the running config again before the reboot) | "hangs-before" (fails with a
  deadline before the request reaches the node)}``; ``fail``: the
  next call fails with its content; ``version-empty``: the next ``version``
  calls (a count) print no Server section, as right after a reboot (set by
  an upgrade whose misbehave.json has ``version_empty``); ``garbage.json``
  (``command``, ``output``): the next call naming that command prints
  ``output`` and exits 0. ``read /proc/sys/kernel/random/boot_id`` answers a
  boot ID that changes with every reboot (the Read API serves any regular
  file, v1alpha1_server.go@v1.13.9 ``Read``).

Every call is appended to ``calls.jsonl``: argv, the talosconfig it was
given (path, mode, whether it had contexts) and whether it changed the node."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.stand_ins.talosctl_cli import Exit, config_diff, documents, immediate_problem, parse, v1alpha1, validate  # noqa: E402

if __name__ == "__main__" and os.environ.get("FAKE_CLI_DIR") and not os.environ.get("FAKE_TALOS_STATE"):
    # Scripted answers instead of a node (the doctor's tests).
    from tests.stand_ins.talosctl_scripted import main as scripted

    sys.exit(scripted(sys.argv[1:]))
STATE = Path(os.environ["FAKE_TALOS_STATE"])
CLIENT_TAG = "v1.13.9"
CONFIG_PATH = "/system/state/config.yaml"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
LIFECYCLE_FROM = (1, 13, 0)   # talosUpgradeAPIVersionRange ">1.13.0-alpha.2 <2.0.0"
PERSISTENT_FROM = (1, 10, 0)  # PersistentID, commit d4aacb0d8
NOT_FOUND = "rpc error: code = NotFound desc = resource MachineConfigs.config.talos.dev(config/{id}@undefined) doesn't exist"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("-")[0].split(".")[:3])


def load_node() -> dict:
    return json.loads((STATE / "node.json").read_text())


def save_node(node: dict) -> None:
    (STATE / "node.json").write_text(json.dumps(node, indent=2))


def read_text(name: str) -> str:
    path = STATE / name
    return path.read_text() if path.exists() else ""


def old_stand_in() -> bool:
    return (STATE / "serves-state-file").exists()


def serves_persistent(node: dict) -> bool:
    return not old_stand_in() and version_tuple(node["version"]) >= PERSISTENT_FROM


def fingerprint() -> str:
    """The node's state, without the bookkeeping of a node still rebooting."""
    digest = hashlib.sha256()
    node = json.loads(read_text("node.json") or "{}")
    node.pop("down_calls", None)
    digest.update(json.dumps(node, sort_keys=True).encode())
    for name in ("active.yaml", "config.yaml", "persistent.yaml"):
        digest.update(read_text(name).encode())
    return digest.hexdigest()


def talosconfig(flags: dict) -> dict:
    path = flags.get("talosconfig") or os.environ.get("TALOSCONFIG") or str(Path.home() / ".talos" / "config")
    if not Path(str(path)).is_file():
        raise Exit("failed to determine endpoints")
    data = yaml.safe_load(Path(str(path)).read_text()) or {}
    return data.get("contexts", {}).get(flags.get("context") or data.get("context")) or {}


def targets(flags: dict, context: dict) -> tuple[list[str], list[str]]:
    endpoints = flags.get("endpoints") or context.get("endpoints") or []
    if not endpoints:
        raise Exit("failed to determine endpoints")
    nodes = flags.get("nodes") or context.get("nodes") or []
    if not nodes:
        raise Exit("nodes are not set for the command: please use `--nodes` flag or configuration file to set the nodes to run the command against")
    return list(nodes), list(endpoints)  # type: ignore[arg-type]


def reachable(node: dict, address: str, insecure: bool = False) -> None:
    """Raise as talosctl does when the node's API does not answer."""
    if node.get("down_calls"):
        if node["down_calls"] > 0:
            node["down_calls"] -= 1
            save_node(node)
        raise Exit(f'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp {address}:50000: connect: connection refused"')
    if node.get("maintenance") and not insecure:
        raise Exit("rpc error: code = Unavailable desc = connection error: desc = \"transport: authentication handshake failed: tls: certificate required\"")


def reboot(node: dict) -> None:
    """A reboot: the STATE partition's config becomes the running one, and
    the in-memory ``persistent`` resource is gone (a boot from STATE alone
    does not set it)."""
    node["reboots"] += 1
    node.pop("pending_image", None)
    (STATE / "active.yaml").write_text(read_text("config.yaml"))
    (STATE / "persistent.yaml").unlink(missing_ok=True)


# ------------------------------------------------------------- commands ---


def cmd_version(node: dict, nodes: list[str], flags: dict) -> None:
    print(f"Client:\n\tTag:         {CLIENT_TAG}\n\tSHA:         5b9ba0d3\n\tBuilt:       \n\tGo version:  go1.25.9\n\tOS/Arch:     linux/amd64")
    if flags.get("client"):
        return
    empty = int(read_text("version-empty") or 0)
    if empty > 0:
        # Right after a reboot apid answers before machined: no Server part.
        (STATE / "version-empty").write_text(str(empty - 1))
        return
    for address in nodes:
        reachable(node, address, bool(flags.get("insecure")))
        print(f"Server:\n\tNODE:        {address}\n\tTag:         {node['version']}\n\tSHA:         0d2a4e9c\n\tBuilt:       \n"
              "\tGo version:  go1.24.11\n\tOS/Arch:     linux/amd64\n\tEnabled:     RBAC")


def resource(address: str, namespace: str, type_: str, id_: str, spec: object) -> str:
    return f"node: {address}\n" + yaml.safe_dump({"metadata": {"namespace": namespace, "type": type_, "id": id_, "version": 1,
                                                               "owner": "", "phase": "running"}, "spec": spec},
                                                 sort_keys=False, indent=4)


def machine_configs(node: dict) -> dict[str, str]:
    """The MachineConfig resources the node serves, by id."""
    out = {"v1alpha1": read_text("active.yaml")}
    if serves_persistent(node) and (STATE / "persistent.yaml").exists():
        out["persistent"] = read_text("persistent.yaml")
    return out


def cmd_get(node: dict, nodes: list[str], args: list[str], flags: dict) -> None:
    if not args or len(args) > 2:
        raise Exit(f"accepts between 1 and 2 arg(s), received {len(args)}")
    output = str(flags.get("output", "table"))
    if output != "yaml":
        raise Exit(f"fake talosctl: output {output!r} is not modelled (this program asks for yaml)", 2)
    kind = args[0].lower()
    out, errors = [], []
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
            served = machine_configs(node)
            if len(args) == 2 and args[1] not in served:
                errors.append(NOT_FOUND.format(id=args[1]))
                continue
            out += [resource(address, "config", "MachineConfigs.config.talos.dev", ident, text)
                    for ident, text in served.items() if len(args) == 1 or args[1] == ident]
        else:
            raise Exit(f"fake talosctl: resource {args[0]!r} is not modelled", 2)
    print("---\n".join(out), end="")
    if errors:
        raise Exit(f"{len(errors)} error{'s' if len(errors) > 1 else ''} occurred:\n" + "".join(f"\t* {e}\n" for e in errors))


def cmd_read(node: dict, nodes: list[str], args: list[str]) -> None:
    if len(args) != 1:
        raise Exit(f"accepts 1 arg(s), received {len(args)}")
    if len(nodes) > 1:
        raise Exit('command "read" is not supported with multiple nodes')
    reachable(node, nodes[0])
    if args[0] == BOOT_ID_PATH:
        # The kernel's boot ID: a new random UUID at every boot.
        digest = hashlib.sha256(f"boot-{node['reboots']}".encode()).hexdigest()
        print(f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}")
        return
    served = args[0] == CONFIG_PATH and (old_stand_in() or version_tuple(node["version"]) < PERSISTENT_FROM)
    if not served:
        raise Exit(f"error reading: rpc error: code = NotFound desc = stat {args[0]}: no such file or directory")
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
        if mode == "try":
            (STATE / "active.yaml").write_text(text)
        else:
            (STATE / "config.yaml").write_text(text)
            if serves_persistent(node):
                (STATE / "persistent.yaml").write_text(text)
            if mode == "no-reboot" or (mode == "auto" and not problem):
                (STATE / "active.yaml").write_text(text)
            elif mode in ("reboot", "auto"):
                reboot(node)
                save_node(node)
        print(details + (f": {problem}" if mode == "auto" and problem else ""), file=sys.stderr)


_IMAGE = re.compile(r"^factory\.talos\.dev/(?:[a-z0-9-]+-)?installer/(?P<id>[0-9a-f]{64}):(?P<version>v\d+\.\d+\.\d+)$")


def install_kernel_args(lifecycle: bool, node: dict) -> list[str]:
    """The extra kernel arguments the written image boots with."""
    machine = (v1alpha1(documents(read_text("config.yaml"))) or {}).get("machine") or {}
    install = machine.get("install") or {}
    wanted = [str(arg) for arg in install.get("extraKernelArgs") or []]
    if lifecycle and node.get("bootloader", "grub") == "grub" and not install.get("grubUseUKICmdline"):
        return []
    return wanted


def cmd_upgrade(node: dict, nodes: list[str], endpoints: list[str], args: list[str], flags: dict) -> None:
    if args:
        raise Exit(f'unknown command "{args[0]}" for "talosctl upgrade"')
    drain = bool(flags.get("drain", True)) and not flags.get("no-reboot")
    # RunE: --debug and --drain (default true) both force --wait (default true).
    wait = bool(flags.get("wait", True)) or bool(flags.get("debug")) or bool(flags.get("drain", True))
    if wait and flags.get("insecure"):
        raise Exit("cannot use --wait and --insecure together")
    image = str(flags.get("image") or f"ghcr.io/siderolabs/installer:{CLIENT_TAG}")
    catalog = json.loads(read_text("catalog.json") or "{}").get("schematics", {})
    details = json.loads(read_text("misbehave.json") or "{}")
    misbehave = details.get("upgrade")
    if misbehave == "hangs-before":
        # The first call, the version check, stalls until the client's
        # context ends: the node got no upgrade request (upgrade.go@v1.13.9
        # upgradeRun: TalosVersionCheck before the pull and the upgrade;
        # gRPC's DeadlineExceeded status).
        (STATE / "misbehave.json").unlink()
        time.sleep(float(details.get("seconds", 0)))
        raise Exit("error checking Talos version compatibility: rpc error: code = DeadlineExceeded desc = context deadline exceeded")
    for address in nodes:
        reachable(node, address, bool(flags.get("insecure")))
        lifecycle = version_tuple(node["version"]) >= LIFECYCLE_FROM and not flags.get("legacy")
        if flags.get("legacy"):
            print("WARNING: Forcing use of legacy upgrade method. This flag is deprecated and will be removed in Talos 1.18.", file=sys.stderr)
        elif not lifecycle:
            print("New upgrade API is not available, falling back to legacy", file=sys.stderr)
        match = _IMAGE.match(image)
        if not match or match["id"] not in catalog:
            raise Exit(f"error pulling upgrade image: 1 error occurred:\n\t* {address}: failed to pull image {image}: not found")
        node["kernel_args_next"] = install_kernel_args(lifecycle, node)
        if lifecycle:
            node["pending_image"] = image
            save_node(node)
            if drain:
                if endpoints[0] not in node.get("controlplanes", []):
                    raise Exit("error creating Kubernetes client for drain: error fetching kubeconfig from Talos API: "
                               "rpc error: code = Unimplemented desc = kubeconfig is only available on control plane nodes")
                node.setdefault("drains", []).append({"by": "talosctl", "reboot": node["reboots"] + 1})
            if flags.get("no-reboot"):
                save_node(node)
                print(f"{address}: upgrade completed")
                continue
        else:
            node.setdefault("drains", []).append({"by": "talos-node", "reboot": node["reboots"] + 1})
        if misbehave:
            (STATE / "misbehave.json").unlink()
        if misbehave == "loses-staged":
            # STATE rewritten with the running config before the reboot (a
            # later apply, an operator's edit): what was staged is gone.
            (STATE / "config.yaml").write_text(read_text("active.yaml"))
        reboot(node)
        node["kernel_args"] = node.pop("kernel_args_next")
        if misbehave == "boots-old":
            # The new image failed to boot; the A/B bootloader fell back.
            save_node(node)
            print(f"{address}: upgrade completed")
            continue
        node.update(version=match["version"], schematic=match["id"], extensions=list(catalog[match["id"]]))
        if details.get("version_empty"):
            (STATE / "version-empty").write_text(str(int(details["version_empty"])))
        if misbehave == "no-extensions":
            node["extensions"] = []
        if misbehave == "never-returns":
            node["down_calls"] = -1
        elif misbehave == "timeout":
            node["down_calls"] = int(details.get("down_calls", 2))
        elif misbehave == "slow":
            node["down_calls"] = int(details.get("down_calls", 3))
        save_node(node)
        if misbehave in ("never-returns", "timeout") and wait:
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
        garbage = STATE / "garbage.json"
        if garbage.exists() and json.loads(garbage.read_text())["command"] in argv:
            # Exit 0 with something else on stdout (a wrapper script, a proxy page).
            print(json.loads(garbage.read_text())["output"])
            garbage.unlink()
            raise Exit("", 0)
        fail = STATE / "fail"
        if fail.exists():
            message = fail.read_text()
            fail.unlink()
            raise Exit(message)
        command, args, flags = parse(argv)
        context = talosconfig(flags)
        nodes, endpoints = targets(flags, context)
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
            cmd_upgrade(node, nodes, endpoints, args, flags)
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
