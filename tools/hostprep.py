"""Check or prepare a Proxmox host for GPU passthrough without Pulumi.

    python -m components.hostprep {facts,plan,apply,verify,undo} --stack S --identity KEY [flags]
    python -m components.hostprep {facts,plan} --stack S [--cpu-vendor amd] [--bootloader systemd-boot]
        [--kernel 6.8.12-4-pve] [--function 0000:01:00.1=10de:228e] [--host-facts FILE] [--offline]
    python -m components.hostprep {facts,plan,apply,verify,undo} --host H --identity KEY \\
        --known-hosts FILE --gpu 0000:3b:00.0 [--gpu ...] [flags]

With --stack the host, port, user, host key, GPUs and host settings come from
Pulumi.<stack>.yaml; a flag overrides its value. ``facts``, ``plan`` and
``verify`` never change anything. The offline form needs no SSH key: it plans
for the host its options (or a facts file) describe, and its first line says
what it assumed (docs/hostprep.md, "Planning offline"). Exit codes: 0 ok, 1 refused / not ready /
failed, 2 usage, 3 SSH or host-key problem, 4 the host did not come back
after a reboot, 5 a reboot is needed but not allowed (--no-reboot), 6 a
reboot is needed but would stop other running guests (--running-guests refuse).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from components.cli import PlainParser, add_project_dir, program
from components.config_issues import PROJECT
from components.hostprep.connections import EngineOptions
from components.hostprep.engine import HostPrepEngine
from components.hostprep.errors import GuestsRunningError, HostPrepError, HostTimeoutError, RebootRequiredError, RefusedError
from components.hostprep.facts import FactsError, HostFacts, facts_to_json
from components.hostprep.inputs import HAND_EDITS, RUNNING_GUESTS, GpuSpec, HostPrepInputs, PlanError
from components.hostprep.results import RunResult
from components.hostprep.spec import host_prep_spec
from components.pci import normalise_pci_address
from components.ssh.connect import SshTarget
from components.ssh.errors import TransportError
from components.ssh.keys import known_hosts_lines_for
from components.ssh.transport import SshTransport
from tools.hostprep_offline import add_offline_options, offline_requested, run_offline

EXIT_FAILED, EXIT_USAGE, EXIT_SSH, EXIT_TIMEOUT, EXIT_REBOOT, EXIT_GUESTS = 1, 2, 3, 4, 5, 6


class UsageError(ValueError):
    """Bad flags or stack file: exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = PlainParser(prog=program("hostprep"), description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("facts", "plan", "apply", "verify", "undo"),
                        help="facts/plan/verify only read; apply prepares the host; undo takes this owner's changes back (required, no default)")
    stack = parser.add_argument_group("where (from --stack, or given here; a flag overrides the stack)")
    stack.add_argument("--stack", metavar="STACK", help="read Pulumi.<STACK>.yaml from the project folder, or a Pulumi.<name>.yaml "
                                                        "file given as a path (default: none, give the flags below)")
    add_project_dir(stack)
    stack.add_argument("--host", help="the Proxmox host's SSH address (default: host.address of --stack; required without it)")
    stack.add_argument("--port", type=int, help="SSH port (default: host.port of --stack, else 22)")
    stack.add_argument("--user", help="SSH user (default: host.user of --stack, else root)")
    stack.add_argument("--identity", type=Path,
                       help="private key file, unencrypted OpenSSH/PEM, to connect (default: none; required unless planning "
                            "offline, see below; the stack keeps it as a secret)")
    stack.add_argument("--known-hosts", type=Path,
                       help="known_hosts file holding the host's key; any other key is refused (default: host.hostKey of --stack; required without it)")
    stack.add_argument("--gpu", action="append", help="PCI address of a GPU to pass through, repeat for more (default: gpus[].address of --stack)")
    stack.add_argument("--owner", help=f"block owner on the host (default: {PROJECT}/<S> with --stack, else {PROJECT}/cli)")
    host = parser.add_argument_group("host settings")
    host.add_argument("--intel-iommu", choices=("auto", "on"), help="intel_iommu=on: auto (Intel before kernel 6.8) or on (default: host.intelIommu, else auto)")
    host.add_argument("--no-iommu-pt", action="store_true", default=None, help="do not add iommu=pt (default: off, or host.iommuPassthroughMode: false)")
    host.add_argument("--no-reboot", action="store_true", default=None, help="never reboot; exit 5 when a reboot is needed (default: off, or host.allowReboot: false)")
    host.add_argument("--reboot-on-undo", action="store_true", default=None, help="reboot after undo so the GPU returns to the host (default: off, or host.rebootOnDestroy)")
    host.add_argument("--hand-edits", choices=HAND_EDITS, help="lines added by hand to files this program wrote: refuse, or overwrite them (default: host.handEdits, else refuse)")
    guests = parser.add_argument_group("guests and Kubernetes (a reboot stops every guest on the host)")
    guests.add_argument("--running-guests", choices=RUNNING_GUESTS,
                        help="refuse: no reboot while guests other than --own-vmid run; stop: let Proxmox shut them down (default: host.runningGuests, else refuse)")
    guests.add_argument("--own-vmid", type=int, action="append", metavar="N", help="this stack's VM, which a reboot may stop; repeat for more (default: vm.vmId of --stack, else none)")
    guests.add_argument("--node-name", help="its Kubernetes node, drained before the reboot and uncordoned after (default: vm.name of --stack, else none: no drain)")
    guests.add_argument("--kubeconfig", type=Path, help="kubeconfig for the drain (default: kubectl's own, $KUBECONFIG or ~/.kube/config)")
    times = parser.add_argument_group("time limits, in seconds")
    times.add_argument("--connect-timeout", type=float, default=10.0, help="each SSH connection attempt (default: 10)")
    times.add_argument("--command-timeout", type=float, help="each host command such as update-initramfs; it is stopped on the host after that (default: host.commandTimeoutSeconds, else 900)")
    times.add_argument("--reboot-timeout", type=float, help="waiting for the host after a reboot (default: host.rebootTimeoutSeconds, else 600)")
    times.add_argument("--drain-timeout", type=float, help="kubectl drain --timeout (default: host.drainTimeoutSeconds, else 300)")
    times.add_argument("--guest-timeout", type=float, help="after the reboot, waiting for onboot guests and the node to be Ready (default: host.guestTimeoutSeconds, else 600)")
    add_offline_options(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="machine-readable output on stdout (default: text)")
    out.add_argument("--verbose", action="store_true", help="log every SSH command, secrets masked (default: off)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: the simulated host's file tree
    return parser


def _stack_settings(name: str, directory: Path) -> dict[str, Any]:
    """The host settings of Pulumi.<name>.yaml; UsageError naming the file when it is unusable."""
    from components.cli import StackChoiceError, choose_stack
    from components.config import ConfigError, load_stack_file

    try:
        stack = choose_stack(directory, name)
        name = stack.name
        cfg = load_stack_file(stack.path)
    except (ConfigError, StackChoiceError) as error:
        raise UsageError(str(error)) from None
    spec = host_prep_spec(cfg, f"{PROJECT}/{name}")
    inputs = spec.inputs
    return {
        "host": spec.host, "port": spec.port, "user": spec.user, "host_key": spec.host_key,
        "gpus": [g.address for g in inputs.gpus], "owner": spec.owner,
        "intel_iommu": inputs.intel_iommu, "iommu_passthrough": inputs.iommu_passthrough,
        "allow_reboot": inputs.allow_reboot, "reboot_on_destroy": inputs.reboot_on_destroy, "hand_edits": inputs.hand_edits,
        "running_guests": inputs.running_guests, "own_vmids": list(inputs.own_vmids), "node_name": inputs.node_name,
        "command_timeout": spec.command_timeout_seconds, "reboot_timeout": spec.reboot_timeout_seconds,
        "drain_timeout": spec.drain_timeout_seconds, "guest_timeout": spec.guest_timeout_seconds,
    }


_DEFAULTS: dict[str, Any] = {
    "host": None, "port": 22, "user": "root", "host_key": None, "gpus": None, "owner": f"{PROJECT}/cli",
    "intel_iommu": "auto", "iommu_passthrough": True, "allow_reboot": True, "reboot_on_destroy": False, "hand_edits": "refuse",
    "running_guests": "refuse", "own_vmids": [], "node_name": None,
    "command_timeout": 900.0, "reboot_timeout": 600.0, "drain_timeout": 300.0, "guest_timeout": 600.0,
}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the stack file, then the flags."""
    merged = dict(_DEFAULTS)
    if args.stack:
        merged.update(_stack_settings(args.stack, args.project_dir))
    flags = {
        "host": args.host, "port": args.port, "user": args.user, "gpus": args.gpu, "owner": args.owner,
        "intel_iommu": args.intel_iommu, "hand_edits": args.hand_edits, "running_guests": args.running_guests,
        "own_vmids": args.own_vmid, "node_name": args.node_name, "command_timeout": args.command_timeout,
        "reboot_timeout": args.reboot_timeout, "drain_timeout": args.drain_timeout, "guest_timeout": args.guest_timeout,
        "iommu_passthrough": False if args.no_iommu_pt else None, "allow_reboot": False if args.no_reboot else None,
        "reboot_on_destroy": True if args.reboot_on_undo else None,
    }
    merged.update({key: value for key, value in flags.items() if value is not None})
    if not merged["host"]:
        raise UsageError("--host is required (or --stack, whose host.address is used)")
    if not merged["gpus"]:
        raise UsageError("--gpu is required (or --stack, whose gpus[].address are used)")
    for key in ("command_timeout", "reboot_timeout", "drain_timeout", "guest_timeout"):
        if merged[key] <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be a positive number of seconds, got {merged[key]}")
    return merged


def _host_key(args: argparse.Namespace, merged: dict[str, Any]) -> str:
    if args.known_hosts is not None:
        try:
            text = args.known_hosts.read_text()
        except OSError as error:
            raise UsageError(f"--known-hosts: {error}") from None
        pins = known_hosts_lines_for(text, merged["host"], merged["port"])
        if not pins:
            name = merged["host"] if merged["port"] == 22 else f"[{merged['host']}]:{merged['port']}"
            raise TransportError(f"{args.known_hosts} has no key for {name}; check the key on the host's console and add it "
                                 f"(`ssh-keyscan -p {merged['port']} {merged['host']}`, compared with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there)")
        return "\n".join(pins)
    if merged["host_key"]:
        return merged["host_key"]
    raise UsageError("--known-hosts is required (or --stack, whose host.hostKey pins the key)")


def _result_json(result: RunResult, addresses: list[str]) -> dict[str, Any]:
    return {"plan": result.plan.to_json(), "wrote": result.wrote, "ran": result.ran, "rebooted": result.rebooted,
            "verified": result.verified, "round_trips": result.round_trips, "outputs": result.outputs(addresses),
            "warnings": result.warnings}


def _guest_lines(facts: HostFacts) -> list[str]:
    if facts.guests is None:
        return [f"guests: not known ({facts.guests_problem or 'not read'})"]
    if not facts.guests:
        return [f"guests on node {facts.pve_node}: none"]
    return [f"guests on node {facts.pve_node}:"] + [
        f"  {g.label}: {g.status}{', onboot' if g.onboot else ''}" for g in facts.guests]


def _guests_json(facts: HostFacts) -> list[dict[str, Any]] | None:
    return None if facts.guests is None else [dataclasses.asdict(g) for g in facts.guests]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    emit = (lambda data: print(json.dumps(data, indent=2, sort_keys=True))) if args.json else None

    def fail(code: int, message: str) -> int:
        if args.json:
            print(json.dumps({"error": message, "exit_code": code}, indent=2))
        print(f"error: {message}", file=sys.stderr)
        return code

    try:
        return _run(args, emit)
    except UsageError as error:
        return fail(EXIT_USAGE, str(error))
    except GuestsRunningError as error:
        return fail(EXIT_GUESTS, str(error))
    except RefusedError as error:
        return fail(EXIT_FAILED, str(error))
    except RebootRequiredError as error:
        return fail(EXIT_REBOOT, str(error))
    except HostTimeoutError as error:
        return fail(EXIT_TIMEOUT, str(error))
    except TransportError as error:
        return fail(EXIT_SSH, str(error))
    except (HostPrepError, FactsError, PlanError) as error:
        return fail(EXIT_FAILED, str(error))
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return fail(EXIT_FAILED, "interrupted; files on the host are old or new, never half-written: run again to converge")
    except Exception as error:  # noqa: BLE001 - no traceback reaches a user; the message says what broke
        return fail(EXIT_FAILED, f"unexpected {type(error).__name__}: {error} (this is a bug in proxmox-talos-gpu; re-run with --verbose and report it)")


def _run(args: argparse.Namespace, emit: Any) -> int:
    if offline_requested(args):
        return run_offline(args, emit, UsageError)
    if args.identity is None:
        raise UsageError(f"--identity is required: {args.action} connects to the host over SSH. To plan without connecting, "
                         "give what you know (--cpu-vendor, --bootloader, --kernel) or --host-facts FILE, with --stack "
                         "(docs/hostprep.md, Planning offline)")
    merged = settings(args)
    try:
        gpus = tuple(GpuSpec(address=normalise_pci_address(address)) for address in merged["gpus"])
    except ValueError as error:
        raise UsageError(f"--gpu: {error}") from None
    try:
        key_text = args.identity.read_text()
    except OSError as error:
        raise UsageError(f"--identity: {error}") from None
    kubeconfig = None
    if args.kubeconfig is not None:
        if not args.kubeconfig.is_file():
            raise UsageError(f"--kubeconfig: {args.kubeconfig} is not a file")
        kubeconfig = str(args.kubeconfig.resolve())
    target = SshTarget(merged["host"], merged["port"], merged["user"], private_key=key_text, host_key=_host_key(args, merged))
    inputs = HostPrepInputs(gpus=gpus, intel_iommu=merged["intel_iommu"], iommu_passthrough=merged["iommu_passthrough"],
                            allow_reboot=merged["allow_reboot"], reboot_on_destroy=merged["reboot_on_destroy"],
                            running_guests=merged["running_guests"], own_vmids=tuple(merged["own_vmids"]),
                            node_name=merged["node_name"], hand_edits=merged["hand_edits"])
    options = EngineOptions(root=args.root, connect_timeout=args.connect_timeout, command_timeout=merged["command_timeout"],
                            reboot_timeout=merged["reboot_timeout"], drain_timeout=merged["drain_timeout"],
                            guest_timeout=merged["guest_timeout"], kubeconfig=kubeconfig,
                            progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True))

    def connect(timeout: float) -> SshTransport:
        return SshTransport.connect(target, timeout=timeout)

    engine = HostPrepEngine(connect, inputs, merged["owner"], options)
    addresses = [gpu.address for gpu in gpus]
    if args.action == "facts":
        facts = engine.facts(guests="always")
        if emit:
            emit(facts_to_json(facts))
        else:
            print(f"cpu {facts.cpu_vendor}, kernel {facts.kernel_release}, {facts.bootloader} ({facts.bootloader_evidence})")
            if facts.bootloader_problem:
                print(f"bootloader evidence problem: {facts.bootloader_problem}")
            print(f"IOMMU {'active' if facts.iommu_active else 'not active'}; /proc/cmdline: {facts.cmdline}")
            for fn in facts.functions.values():
                print(f"{fn.address} {fn.vendor_device} {fn.kind} subsystem {fn.subsystem_id} driver {fn.driver or '-'} "
                      f"group {fn.iommu_group if fn.iommu_group is not None else '-'} with {', '.join(fn.group_members) or 'nothing else'}")
            print("\n".join(_guest_lines(facts)))
        return 0
    if args.action == "plan":
        facts, plan = engine.plan(guests="always")
        if emit:
            emit(plan.to_json() | {"guests": _guests_json(facts)})
        else:
            print(plan.render())
            print("\n".join(_guest_lines(facts)))
        return EXIT_FAILED if plan.refused else 0
    if args.action == "verify":
        facts, report = engine.verify(guests="always")
        if emit:
            emit({"ok": report.ok, "problems": list(report.problems), "checks": list(report.checks), "guests": _guests_json(facts)})
        else:
            print("\n".join([f"ok: {c}" for c in report.checks] + [f"PROBLEM: {p}" for p in report.problems] + _guest_lines(facts)))
        return 0 if report.ok else EXIT_FAILED
    result = engine.apply() if args.action == "apply" else engine.undo()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if emit:
        emit(_result_json(result, addresses))
    else:
        print(result.plan.render(diffs=False))
        print(f"done: {len(result.wrote)} file(s) written, {len(result.ran)} command(s) run, "
              f"rebooted: {'yes' if result.rebooted else 'no'}, {result.round_trips} SSH round trip(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
