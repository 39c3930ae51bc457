"""Offline helpers for the Talos node.

    python -m components.talos schematic-id FILE.yaml   # the factory's ID of any schematic file
    python -m components.talos schematic [--stack S] [--json]  # this stack's schematic YAML, ID and installer image
    python -m components.talos patch [--stack S] [--json]      # this stack's machine-config patch
    python -m components.talos config --stack S --running FILE (--out OUT | --diff)
                                                         # the config this stack would apply to a node running FILE
    python -m components.talos upgrade-plan --stack S --running-version vX.Y.Z [--device-plugin-installed]
                                            [--device-plugin-delivery helm|flux|git] [--no-kubeconfig]
                                            [--running FILE] [--json]
                                                         # the steps one `pulumi up` takes from that version

--stack S reads Pulumi.<S>.yaml in --project-dir (this project by default), or a
Pulumi.<name>.yaml file given as a path. Without it, the folder's only stack
file is used (the tool says which); with several, --stack is required.
schematic and patch still take the stack as a positional argument too (kept
for older scripts; --stack is the form every tool shares). --json prints
JSON instead of text (schematic, patch, upgrade-plan).
Exit codes: 0 printed; 2 a file that cannot be read or used (the message
names it and the line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from components.cli import PlainParser, StackChoiceError, add_project_dir, add_stack, choose_stack, program
from components.config import ConfigError, StackConfig, load_stack_file, parse_version
from components.talos.adopt import NodeState, plan_adoption
from components.talos.config_documents import AdoptError, load_documents, v1alpha1_index
from components.talos.machine_config import gpu_patch_yaml, node_spec
from components.talos.schematic import planned_installer, schematic_id
from components.talos.schematic_format import SchematicFormatError
from components.talos.upgrade_route import RouteRefused
from components.talos.versions import PathRefused
from components.talos.walk_plan import DEVICE_PLUGIN_DELIVERIES, render_plan, upgrade_plan


def _stack_config(args: argparse.Namespace) -> StackConfig:
    """The chosen stack's config; ``args.stack`` becomes its name. The one
    line saying which stack was taken, when none was named, goes to stderr."""
    if getattr(args, "stack_positional", None) is not None:
        if args.stack is not None and args.stack != args.stack_positional:
            raise StackChoiceError(f"two stacks given ({args.stack_positional} and --stack {args.stack}): give one")
        args.stack = args.stack_positional
    stack = choose_stack(args.project_dir, args.stack)
    if stack.chosen:
        print(f"talos: {stack.chosen}", file=sys.stderr)
    args.stack = stack.name
    return load_stack_file(stack.path)


def main(argv: list[str] | None = None) -> int:
    parser = PlainParser(prog=program("talos"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{schematic-id,schematic,patch,config,upgrade-plan}")
    sid = sub.add_parser("schematic-id", help="print the Image Factory ID of a schematic file, offline",
                         description="Print the Image Factory ID of a schematic file, computed offline as the factory does.")
    sid.add_argument("file", help="schematic in the factory's format (YAML or JSON); - reads stdin (no default: required)")
    for name, text in (("schematic", "print this stack's schematic, its ID and installer image"),
                       ("patch", "print this stack's machine-config patch")):
        command = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ", offline.")
        add_stack(command)
        command.add_argument("stack_positional", nargs="?", default=None, metavar="STACK",
                             help="the same as --stack STACK, kept for older scripts; use --stack (default: none, --stack decides)")
        add_project_dir(command)
        command.add_argument("--json", action="store_true", help="print one JSON object (schematic/patch, id, installer) (default: text)")
    adopt = sub.add_parser("config", help="write the machine config this stack would apply to a node whose current config is FILE "
                                          "(the node's own config with only the owned paths changed), offline")
    add_stack(adopt)
    add_project_dir(adopt)
    adopt.add_argument("--running", required=True, metavar="FILE",
                       help="the node's current machine config, as `talosctl get machineconfig v1alpha1 -o jsonpath='{.spec}'` prints it "
                            "(one or more YAML documents; - reads stdin); required")
    adopt.add_argument("--out", metavar="OUT", help="write the resulting config here, mode 0600 (it holds the node's secrets); "
                                                    "required unless --diff")
    adopt.add_argument("--diff", action="store_true", help="print the changed lines against FILE instead of writing OUT (default: off)")
    walk = sub.add_parser("upgrade-plan", help="print the steps one `pulumi up` takes a node from --running-version to talos.version "
                                                "(upgrades, waits, the device plugin's removal, the GPU Operator's install), touching nothing")
    add_stack(walk)
    add_project_dir(walk)
    walk.add_argument("--running-version", required=True, metavar="vX.Y.Z",
                      help="the Talos version the node runs now (`talosctl version`, the server's Tag); required")
    walk.add_argument("--device-plugin-installed", action="store_true",
                      help="the cluster has the nvidia-device-plugin release and RuntimeClass nvidia (default: off)")
    walk.add_argument("--device-plugin-delivery", choices=DEVICE_PLUGIN_DELIVERIES, metavar="{helm,flux,git}",
                      help="how the device plugin was installed, which decides how it is removed: helm (a Helm release), flux (a Flux "
                           "HelmRelease this program created: deleted, Flux uninstalls the chart) or git (a Flux HelmRelease a "
                           "Kustomization applies from Git: see gpuStack.flux.gitDevicePlugin); implies --device-plugin-installed "
                           "(default: as the stack delivers, gpuStack.delivery, git with gpuStack.flux.objects: git)")
    walk.add_argument("--no-kubeconfig", action="store_true",
                      help="the stack has no kubeconfig: a Talos 1.13+ upgrade is then drained by talosctl through a "
                           "control-plane talos.endpoint (default: the stack has one, and this program drains)")
    walk.add_argument("--running", metavar="FILE",
                      help="the node's running machine config (`talosctl get machineconfig v1alpha1 -o jsonpath='{.spec}'`): its "
                           "machine.install.extraKernelArgs decide whether a 1.13+ upgrade takes the legacy path (default: none)")
    walk.add_argument("--json", action="store_true",
                      help="print a JSON list of steps (kind, version, image, object, path, drain) (default: text)")
    args = parser.parse_args(argv)
    try:
        if args.command == "upgrade-plan":
            return print_upgrade_plan(args)
        if args.command == "config":
            return adopt_config(args)
        if args.command == "schematic-id":
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
            print(schematic_id(text))
            return 0
        cfg = _stack_config(args)
        rendered, sid_value, image = planned_installer(cfg.talos)
        if args.json:
            body = {"schematic": rendered} if args.command == "schematic" else {"patch": gpu_patch_yaml(cfg, image)}
            print(json.dumps(body | {"id": sid_value, "installer": image}, indent=2))
        elif args.command == "schematic":
            print(rendered, end="")
            print(f"# id: {sid_value}\n# installer: {image}")
        else:
            print(gpu_patch_yaml(cfg, image), end="")
        return 0
    except SchematicFormatError as error:
        print(f"talos: {args.file} is not a schematic in the Image Factory's format: {error}", file=sys.stderr)
    except OSError as error:
        print(f"talos: cannot read {args.file}: {error.strerror or error}", file=sys.stderr)
    except UnicodeDecodeError:
        print(f"talos: cannot read {args.file}: not UTF-8 text", file=sys.stderr)
    except (ConfigError, StackChoiceError) as error:
        print(f"talos: {error}", file=sys.stderr)
    except AdoptError as error:
        print(f"talos: {getattr(args, 'running', '')}: {error}", file=sys.stderr)
    return 2


def _running_version(documents: list, fallback: str) -> str:
    """The Talos version the node's install.image names (the version it was
    last installed or upgraded to), else ``fallback``."""
    image = str(((documents[v1alpha1_index(documents)].get("machine") or {}).get("install") or {}).get("image") or "")
    tag = image.rpartition(":")[2]
    try:
        parse_version(tag)
    except ValueError:
        return fallback
    return tag


def print_upgrade_plan(args: argparse.Namespace) -> int:
    try:
        parse_version(args.running_version)
        if not args.running_version.startswith("v"):
            raise ValueError
    except ValueError:
        print(f"talos: --running-version {args.running_version!r} is not a Talos version like v1.11.6", file=sys.stderr)
        return 2
    cfg = _stack_config(args)
    machine = None
    if args.running:
        try:
            documents = load_documents(Path(args.running).read_text(encoding="utf-8"))
            machine = documents[v1alpha1_index(documents)].get("machine") or {}
        except (OSError, UnicodeDecodeError, AdoptError) as error:
            print(f"talos: --running {args.running}: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
            return 2
    try:
        plan = upgrade_plan(cfg, args.running_version, stack_name=args.stack,
                            device_plugin_installed=args.device_plugin_installed or args.device_plugin_delivery is not None,
                            device_plugin_delivery=args.device_plugin_delivery, kubeconfig=not args.no_kubeconfig,
                            running_machine=machine)
    except (PathRefused, RouteRefused) as error:
        print(f"talos: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([step.as_dict() for step in plan], indent=2))
    else:
        print(render_plan(cfg, args.running_version, plan), end="")
    return 0


def adopt_config(args: argparse.Namespace) -> int:
    """The `config` command: the same planner as the TalosMachineConfig
    resource, on a config read from a file."""
    if not args.diff and not args.out:
        print("talos: give --out OUT (where to write the config) or --diff (print the changed lines)", file=sys.stderr)
        return 2
    cfg = _stack_config(args)
    _, offline_id, _ = planned_installer(cfg.talos)
    owned = node_spec(cfg.talos, offline_id).target
    try:
        text = sys.stdin.read() if args.running == "-" else Path(args.running).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"talos: cannot read {args.running}: {error}", file=sys.stderr)
        return 2
    documents = load_documents(text)
    version = _running_version(documents, cfg.talos.version)
    image = ((documents[v1alpha1_index(documents)].get("machine") or {}).get("install") or {}).get("image")
    plan = plan_adoption(NodeState(version=version, schematic=None, stored=text, running=text), owned,
                         upgrade_follows=image != owned.image)
    for line in plan.lines():
        print(line, file=sys.stderr)
    if args.diff:
        for line in plan.diff:
            print(line)
        return 0
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(plan.merged.text())
    except OSError as error:
        print(f"talos: cannot write {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (mode 0600)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from components.cli import run

    sys.exit(run("talos", main))
