"""Check or prepare a Proxmox host for GPU passthrough without Pulumi.

    python -m components.hostprep {facts,plan,apply,verify,undo} --host H --port P --user U \\
        --identity KEY --known-hosts FILE --gpu 0000:3b:00.0 [--gpu ...] [--json]

``facts``, ``plan`` and ``verify`` never change anything. Exit codes: 0 ok,
1 refused / not ready / failed, 2 usage, 3 SSH or host-key problem, 4 the
host did not come back after a reboot, 5 a reboot is needed but --no-reboot.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from components.config import normalise_pci_address
from components.hostprep.engine import EngineOptions, HostPrepEngine, HostPrepError, HostTimeoutError, RebootRequiredError, RefusedError, RunResult
from components.hostprep.facts import FactsError, facts_to_json
from components.hostprep.plan import GpuSpec, HostPrepInputs, PlanError
from components.hostprep.transport import SshTarget, SshTransport, TransportError, known_hosts_lines_for

EXIT_FAILED, EXIT_USAGE, EXIT_SSH, EXIT_TIMEOUT, EXIT_REBOOT = 1, 2, 3, 4, 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.hostprep", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("facts", "plan", "apply", "verify", "undo"))
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--user", default="root")
    parser.add_argument("--identity", required=True, type=Path, help="private key file (unencrypted OpenSSH/PEM)")
    parser.add_argument("--known-hosts", required=True, type=Path, help="known_hosts file holding the host's key (pinned; unknown keys are refused)")
    parser.add_argument("--gpu", action="append", required=True, help="PCI address of a GPU to pass through (repeat for more)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--owner", default="proxmox-talos-gpu/cli",
                        help="block owner on the host; use <project>/<stack> to act for a Pulumi stack (default: proxmox-talos-gpu/cli)")
    parser.add_argument("--intel-iommu", choices=("auto", "on"), default="auto")
    parser.add_argument("--no-iommu-pt", action="store_true", help="do not add iommu=pt")
    parser.add_argument("--no-reboot", action="store_true", help="never reboot; exit 5 when a reboot is needed")
    parser.add_argument("--reboot-on-undo", action="store_true", help="reboot after undo so the GPU returns to the host")
    parser.add_argument("--reboot-timeout", type=float, default=600.0, help="seconds to wait for the host after a reboot")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true", help="log every SSH command (secrets masked)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: the simulated host's file tree
    return parser


def _result_json(result: RunResult, addresses: list[str]) -> dict[str, Any]:
    return {"plan": result.plan.to_json(), "wrote": result.wrote, "ran": result.ran, "rebooted": result.rebooted,
            "verified": result.verified, "round_trips": result.round_trips, "outputs": result.outputs(addresses)}


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
        gpus = tuple(GpuSpec(address=normalise_pci_address(address)) for address in args.gpu)
    except ValueError as error:
        return fail(EXIT_USAGE, f"--gpu: {error}")
    try:
        key_text = args.identity.read_text()
        pins = known_hosts_lines_for(args.known_hosts.read_text(), args.host, args.port)
    except OSError as error:
        return fail(EXIT_USAGE, str(error))
    if not pins:
        name = args.host if args.port == 22 else f"[{args.host}]:{args.port}"
        return fail(EXIT_SSH, f"{args.known_hosts} has no key for {name}; check the key on the host's console and add it "
                              f"(`ssh-keyscan -p {args.port} {args.host}`, compared with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there)")
    target = SshTarget(args.host, args.port, args.user, private_key=key_text, host_key="\n".join(pins))
    inputs = HostPrepInputs(gpus=gpus, intel_iommu=args.intel_iommu, iommu_passthrough=not args.no_iommu_pt,
                            allow_reboot=not args.no_reboot, reboot_on_destroy=args.reboot_on_undo)
    options = EngineOptions(root=args.root, connect_timeout=args.connect_timeout, reboot_timeout=args.reboot_timeout,
                            progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True))

    def connect(timeout: float) -> SshTransport:
        return SshTransport.connect(target, timeout=timeout)

    engine = HostPrepEngine(connect, inputs, args.owner, options)
    addresses = [gpu.address for gpu in gpus]
    try:
        if args.action == "facts":
            facts = engine.facts()
            if emit:
                emit(facts_to_json(facts))
            else:
                print(f"cpu {facts.cpu_vendor}, kernel {facts.kernel_release}, {facts.bootloader} ({facts.bootloader_evidence})")
                print(f"IOMMU {'active' if facts.iommu_active else 'not active'}; /proc/cmdline: {facts.cmdline}")
                for fn in facts.functions.values():
                    print(f"{fn.address} {fn.vendor_device} {fn.kind} subsystem {fn.subsystem_id} driver {fn.driver or '-'} "
                          f"group {fn.iommu_group if fn.iommu_group is not None else '-'} with {', '.join(fn.group_members) or 'nothing else'}")
            return 0
        if args.action == "plan":
            _, plan = engine.plan()
            if emit:
                emit(plan.to_json())
            else:
                print(plan.render())
            return EXIT_FAILED if plan.refused else 0
        if args.action == "verify":
            _, report = engine.verify()
            if emit:
                emit({"ok": report.ok, "problems": list(report.problems), "checks": list(report.checks)})
            else:
                print("\n".join([f"ok: {c}" for c in report.checks] + [f"PROBLEM: {p}" for p in report.problems]))
            return 0 if report.ok else EXIT_FAILED
        result = engine.apply() if args.action == "apply" else engine.undo()
        if emit:
            emit(_result_json(result, addresses))
        else:
            print(result.plan.render(diffs=False))
            print(f"done: {len(result.wrote)} file(s) written, {len(result.ran)} command(s) run, "
                  f"rebooted: {'yes' if result.rebooted else 'no'}, {result.round_trips} SSH round trip(s)")
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
