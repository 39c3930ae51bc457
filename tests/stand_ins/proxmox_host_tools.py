"""The simulated Proxmox host's tools (tests/stand_ins/proxmox_host.py), run
on the "host" through sshd by the wrappers in its bin/
(tests/stand_ins/proxmox_host_bin.py): ``update-initramfs``, ``update-grub``,
``proxmox-boot-tool``, ``efibootmgr``, ``pvesh``, ``qm``/``pct``,
``modprobe``, ``reboot`` and the detached reboot that follows. Each call is
recorded in ``<base>/calls.jsonl``; the table in proxmox_host.py names the
upstream each behaviour mirrors.

Standard library only: the wrappers import this module in fresh processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.stand_ins import proxmox_ha, proxmox_host_boot, proxmox_sysfs
from tests.stand_ins.proxmox_host import SimHost
from tests.stand_ins.proxmox_host_bin import REPO
from tests.stand_ins.proxmox_host_spec import ESP_UUID, SimSpec


def tool_main(base: str, tool: str, args: list[str]) -> int:
    host = SimHost(Path(base))
    spec = host.spec
    count = host.record(tool, args)
    if spec.drop_on.get(tool) == count:
        host.record(tool, args, dropped=True)
        host.drop_sessions()
    if spec.hang_on.get(tool) == count:
        host.record(tool, args, hanging=True)
        (host.base / f"hang-{tool}-{os.getpid()}.pid").write_text(str(os.getpid()))

        def terminated(signum: int, _frame: object) -> None:
            host.record(tool, args, terminated=signum)
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, terminated)
        while True:
            time.sleep(3600)
    if tool == "mv":
        os.execv("/bin/mv", ["mv", *args])
    if tool == "update-initramfs":
        if args != ["-u", "-k", "all"]:
            print(f"update-initramfs: unexpected arguments {args}", file=sys.stderr)
            return 2
        proxmox_host_boot.snapshot_initramfs(host)
        print(f"update-initramfs: Generating /boot/initrd.img-{spec.kernel}")
        if spec.managed:  # /etc/initramfs/post-update.d/proxmox-boot-sync
            print("Running hook script 'zz-proxmox-boot'..")
            proxmox_host_boot.sync_esp(host)
        return 0
    if tool == "update-grub":
        if args:
            print(f"update-grub: unexpected arguments {args}", file=sys.stderr)
            return 2
        print("Generating grub configuration file ...")
        if spec.managed:  # /etc/grub.d/000_proxmox_boot_header
            print("W: This system is booted via proxmox-boot-tool:\nW: Running update-grub does not update the correct config!\n"
                  "W: Running: 'proxmox-boot-tool refresh'.", file=sys.stderr)
            proxmox_host_boot.sync_esp(host)
        proxmox_host_boot.generate_boot_cmdline(host, host.boot_dir)
        print("done")
        return 0
    if tool == "proxmox-boot-tool":
        return _boot_tool(host, spec, args)
    if tool == "efibootmgr":
        if args != ["-v"]:
            return 2
        if spec.bootloader == "grub-bios":
            print("EFI variables are not supported on this system.", file=sys.stderr)
            return 2
        loader = "\\EFI\\systemd\\systemd-bootx64.efi" if spec.bootloader == "systemd-boot" else "\\EFI\\proxmox\\shimx64.efi"
        name = "Linux Boot Manager" if spec.bootloader == "systemd-boot" else "proxmox"
        print("BootCurrent: 0006\nTimeout: 1 seconds\nBootOrder: 0006,0001\n"
              "Boot0001* UEFI: PXE IPv4 Intel(R) I350 Gigabit Network Connection\tPciRoot(0x0)/Pci(0x1c,0x0)/MAC(ac1f6b000000,1)/IPv4(0.0.0.0)\n"
              f"Boot0006* {name}\tHD(2,GPT,8a5c0b36-0000-4000-8000-000000000000,0x800,0x100000)/File({loader})")
        return 0
    if tool == "pvesh":
        return _pvesh(host, spec, args)
    if tool in ("qm", "pct"):
        return _guest_tool(host, spec, tool, args)
    if tool == "modprobe":
        return proxmox_sysfs.modprobe_main(base, args)
    if tool == "reboot":
        if spec.reboot_mode == "fail":
            print("Failed to connect to bus: No such file or directory", file=sys.stderr)
            return 1
        if spec.reboot_mode == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        if spec.reboot_mode == "noop":
            return 0
        helper = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                                   f"from tests.stand_ins.proxmox_host_tools import reboot_helper; reboot_helper({base!r})"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        (host.base / "reboot-helper.pid").write_text(str(helper.pid))
        return 0
    return 127


def _boot_tool(host: SimHost, spec: SimSpec, args: list[str]) -> int:
    if args[:1] == ["status"]:
        if not spec.managed:
            print("E: /etc/kernel/proxmox-boot-uuids does not exist.", file=sys.stderr)
            return 2
        print("Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..")
        print(f"System currently booted with {'legacy bios' if spec.bootloader == 'grub-bios' else 'uefi'}")
        mode = "uefi" if spec.bootloader == "systemd-boot" else "grub"
        print(f"{ESP_UUID} is configured with: {mode} (versions: {spec.kernel})")
        return 0
    if args == ["refresh"]:
        print("Running hook script 'proxmox-auto-removal'..\nRunning hook script 'zz-proxmox-boot'..")
        if not spec.managed:
            print("No /etc/kernel/proxmox-boot-uuids found, skipping ESP sync.", file=sys.stderr)
            return 0
        if spec.bootloader == "systemd-boot" and "root=" not in (host.read("/etc/kernel/cmdline") or ""):
            print("No root= parameter in /etc/kernel/cmdline found!", file=sys.stderr)
            return 1
        print(f"Copying and configuring kernels on /dev/disk/by-uuid/{ESP_UUID}")
        proxmox_host_boot.sync_esp(host)
        return 0
    print(f"USAGE: proxmox-boot-tool <commands> [ARGS] (got {args})", file=sys.stderr)
    return 1


def _pvesh(host: SimHost, spec: SimSpec, args: list[str]) -> int:
    """`pvesh get /cluster/resources [--type vm] [--output-format json|json-pretty]`
    as pve-manager's PVE/API2/Cluster.pm answers it; anything else is refused."""
    if args[:2] != ["get", "/cluster/resources"]:
        print(f"No '{args[0] if args else ''}' handler defined for '{args[1] if len(args) > 1 else ''}'", file=sys.stderr)
        return 255
    options, rest = {}, args[2:]
    while rest:
        if rest[0] in ("--type", "--output-format") and len(rest) > 1:
            options[rest[0]] = rest[1]
            rest = rest[2:]
        else:
            print(f"Unknown option: {rest[0].lstrip('-')}\n400 unable to parse option", file=sys.stderr)
            return 255
    if options.get("--type", "vm") not in ("vm", "storage", "node", "sdn") or options.get("--output-format", "text") not in ("json", "json-pretty", "text"):
        print("400 Parameter verification failed.", file=sys.stderr)
        return 255
    status = host.guest_status()
    items = []
    if options.get("--type") in (None, "vm"):
        for guest in spec.guests:
            home = guest.node or spec.node
            node = proxmox_ha.location(host.base, guest, home)  # HA may have migrated it
            items.append({"id": f"{guest.type}/{guest.vmid}", "type": guest.type, "vmid": guest.vmid, "name": guest.name, "node": node,
                          "status": status.get(guest.vmid, guest.status) if home == spec.node else guest.status, "template": 0,
                          "maxmem": 2147483648, "maxcpu": 2, "uptime": 100 if status.get(guest.vmid) == "running" else 0})
            if guest.ha:
                items[-1]["hastate"] = proxmox_ha.hastate(host.base, guest)
    if options.get("--type") in (None, "node"):
        items.append({"id": f"node/{spec.node}", "type": "node", "node": spec.node, "status": "online"})
    pretty = options.get("--output-format") == "json-pretty"
    print(json.dumps(items, indent=4 if pretty else None))
    return 0


def _guest_tool(host: SimHost, spec: SimSpec, tool: str, args: list[str]) -> int:
    """qm / pct status|start|shutdown|stop|set --onboot|config VMID."""
    if len(args) < 2 or not args[1].isdigit():
        print(f"400 not enough arguments\n{tool} <command> <vmid> [OPTIONS]", file=sys.stderr)
        return 255
    command, vmid = args[0], int(args[1])
    kind = "qemu" if tool == "qm" else "lxc"
    guest = next((g for g in host.local_guests() if g.vmid == vmid and g.type == kind), None)
    if guest is None:
        folder = "qemu-server" if kind == "qemu" else "lxc"
        print(f"Configuration file 'nodes/{spec.node}/{folder}/{vmid}.conf' does not exist", file=sys.stderr)
        return 2
    status = host.guest_status().get(vmid, "stopped")
    if command == "status" and len(args) == 2:
        print(f"status: {status}")
        return 0
    if command == "config" and len(args) == 2:
        print(host.guest_conf(guest).read_text().split("\n\n[", 1)[0].rstrip("\n"))
        return 0
    if command in ("shutdown", "stop") and len(args) in (2, 4):
        host.set_guest_status(vmid, "stopped")
        return 0
    if command == "start" and len(args) == 2:
        if status == "running":
            print(f"{'VM' if kind == 'qemu' else 'CT'} {vmid} already running", file=sys.stderr)
            return 255
        if not guest.starts:
            print(f"start failed: {'QEMU exited with code 1' if kind == 'qemu' else 'command lxc-start failed'}", file=sys.stderr)
            return 255
        host.set_guest_status(vmid, "running")
        return 0
    if command == "set" and len(args) == 4 and args[2] in ("--onboot", "-onboot") and args[3] in ("0", "1"):
        conf = host.guest_conf(guest)
        head, sep, snapshots = conf.read_text().partition("\n\n[")
        lines = [line for line in head.splitlines() if not line.startswith("onboot:")] + (["onboot: 1"] if args[3] == "1" else [])
        conf.write_text("\n".join(lines) + "\n" + (sep + snapshots if sep else ""))
        return 0
    print(f"400 unable to parse arguments: {' '.join(args)}", file=sys.stderr)
    return 255


def reboot_helper(base: str) -> None:
    """Detached: shut down as systemd does (guests first while sshd still
    runs, then sshd and its sessions), boot, bring sshd back, start the
    onboot guests."""
    host = SimHost(Path(base))
    time.sleep(0.05)  # let `reboot` itself return, as systemctl does
    host.set_sysstate("stopping")
    spec = host.spec
    proxmox_ha.shutdown(host)  # the HA LRM, per ha: shutdown_policy
    for guest in host.local_guests():  # pve-guests.service ExecStop: pvesh create /nodes/localhost/stopall
        if host.guest_status().get(guest.vmid) == "running" and not proxmox_ha.managed(guest):
            time.sleep(spec.guest_stop_seconds)
            host.set_guest_status(guest.vmid, "stopped")
    host.stop_sshd()
    proxmox_host_boot.boot(host)
    if spec.never_return:
        host.record("boot", [], never_return=True)
        return
    time.sleep(spec.reboot_delay)
    host.record("boot", [])
    host.set_sysstate("running")
    host.start_sshd()
    time.sleep(spec.guest_start_delay)
    for guest in host.local_guests():  # pve-guests.service ExecStart: startall (onboot=1 only; HA-managed ones skipped)
        if host.onboot(guest) and guest.starts and not proxmox_ha.managed(guest):
            host.set_guest_status(guest.vmid, "running")
    proxmox_ha.after_boot(host)
    (host.base / "reboot-helper.pid").unlink(missing_ok=True)
