"""``hostprep facts`` and ``hostprep plan`` without connecting: the host as
the user describes it (components/hostprep/offline.py), no SSH key needed.

Chosen by any of --offline, --host-facts, --cpu-vendor, --bootloader,
--kernel or --function; the GPUs and host settings come from --stack (or the
folder's only stack file, as every tool takes it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.cli import StackChoiceError, choose_stack
from components.config_issues import PROJECT
from components.hostprep.facts import HostFacts, facts_to_json
from components.hostprep.inputs import inputs_from_config
from components.hostprep.offline import BOOTLOADERS, CPU_VENDORS, OfflineFactsError, OfflineHost, load_facts_file, offline_facts, offline_host
from components.hostprep.plan import plan_host

if TYPE_CHECKING:
    from components.config import StackConfig

OFFLINE_OPTIONS = ("offline", "host_facts", "cpu_vendor", "bootloader", "kernel", "function")


def add_offline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("planning offline (facts and plan only; no SSH, no --identity; GPUs and host settings from --stack)")
    group.add_argument("--offline", action="store_true", help="do not connect: plan for the host these options describe (default: off, "
                                                              "unless one of the options below is given)")
    group.add_argument("--host-facts", type=Path, metavar="FILE",
                       help="the host's facts: the JSON of 'hostprep facts --json', or a short file written by hand "
                            "(docs/hostprep.md, Planning offline) (default: none)")
    group.add_argument("--cpu-vendor", choices=CPU_VENDORS, help="the host's CPU: lscpu's Vendor ID, GenuineIntel or AuthenticAMD "
                                                                 "(default: the facts file's, else intel)")
    group.add_argument("--bootloader", choices=tuple(BOOTLOADERS), help="how the host boots, as 'proxmox-boot-tool status' says: grub "
                                                                        "(UEFI), grub-bios or systemd-boot (ZFS root on UEFI) "
                                                                        "(default: the facts file's, else grub)")
    group.add_argument("--kernel", metavar="RELEASE", help="the running kernel, as 'uname -r' prints it, e.g. 6.8.12-4-pve "
                                                           "(default: the facts file's, else 6.8.12-4-pve)")
    group.add_argument("--function", action="append", metavar="ADDRESS=VENDOR:DEVICE",
                       help="another function of a GPU's card, e.g. 0000:01:00.1=10de:228e for its HDMI audio (lspci -nn -s 01:00); "
                            "repeat for more (default: none, only the GPU function of each gpus[] entry)")


def offline_requested(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) for name in OFFLINE_OPTIONS)


def _stack(args: argparse.Namespace, usage_error: Callable[[str], Exception]) -> tuple[str, StackConfig]:
    from components.config import ConfigError, load_stack_file  # the schema, only when planning offline

    try:
        stack = choose_stack(args.project_dir, args.stack)
        if stack.chosen:
            print(f"hostprep: {stack.chosen}", file=sys.stderr)
        return stack.name, load_stack_file(stack.path)
    except (ConfigError, StackChoiceError) as error:
        raise usage_error(str(error)) from None


def offline_inputs(args: argparse.Namespace, usage_error: Callable[[str], Exception]) -> tuple[str, StackConfig, HostFacts, str]:
    """(stack, config, facts, first line): the facts read from --host-facts
    as they are, or built from what the options and a hand-written file say."""
    if args.action not in ("facts", "plan"):
        raise usage_error(f"{args.action} changes or checks the host itself: it connects (give --identity), so the offline "
                          "options (--offline, --host-facts, --cpu-vendor, --bootloader, --kernel, --function) do not apply")
    name, cfg = _stack(args, usage_error)
    try:
        loaded = load_facts_file(args.host_facts) if args.host_facts else OfflineHost()
        if isinstance(loaded, HostFacts):
            if any((args.cpu_vendor, args.bootloader, args.kernel, args.function)):
                raise usage_error(f"--host-facts {args.host_facts} holds facts read from the host; --cpu-vendor, --bootloader, --kernel "
                                  "and --function describe a host by hand: give one or the other")
            return name, cfg, loaded, f"Planned from the host facts in {args.host_facts} (read from the host)"
        host = offline_host(cpu_vendor=args.cpu_vendor, bootloader=args.bootloader, kernel=args.kernel,
                            functions=args.function, base=loaded)
    except OfflineFactsError as error:
        raise usage_error(str(error)) from None
    return name, cfg, offline_facts(cfg.gpus, host), host.summary(cfg.gpus)


def run_offline(args: argparse.Namespace, emit: Any, usage_error: Callable[[str], Exception]) -> int:
    """Print the facts or the plan; 1 when the plan is refused, as the SSH form."""
    name, cfg, facts, first = offline_inputs(args, usage_error)
    if args.action == "facts":
        if emit:
            emit(facts_to_json(facts) | {"assumed": first})
        else:
            print(first)
            print(f"cpu {facts.cpu_vendor}, kernel {facts.kernel_release}, {facts.bootloader} ({facts.bootloader_evidence})")
            for fn in facts.functions.values():
                print(f"{fn.address} {fn.vendor_device} {fn.kind} group {fn.iommu_group}")
        return 0
    if not cfg.host.enabled:
        print(f"host.enabled is false in Pulumi.{name}.yaml: the program does not touch the Proxmox host")
        return 0
    plan = plan_host(inputs_from_config(cfg), facts, f"{PROJECT}/{name}")
    if emit:
        emit(plan.to_json() | {"assumed": first})
    else:
        print(first)
        print(plan.render())
    return 1 if plan.refused else 0
