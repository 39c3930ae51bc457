"""A simulated Proxmox host served by a real OpenSSH server.

The host is a file tree (``<base>/root``: /etc, /etc/pve, /proc bits,
/sys/bus/pci, /sys/kernel/iommu_groups) plus stand-ins that record their
calls in ``<base>/calls.jsonl`` and behave the way the real tools are
documented to:

- ``update-initramfs`` snapshots /etc/modprobe.d into the initramfs; on a
  host whose ESPs proxmox-boot-tool manages it also refreshes them (pve-docs
  system-booting: "update-initramfs ... will automatically trigger a refresh").
- ``update-grub`` sources /etc/default/grub, then /etc/default/grub.d/*.cfg
  (GRUB's grub-mkconfig), into /boot/grub; on a proxmox-boot-tool host it
  warns and runs ``proxmox-boot-tool refresh`` (proxmox-kernel-helper's
  /etc/grub.d/000_proxmox_boot_header).
- ``proxmox-boot-tool status|refresh`` (proxmox-kernel-helper): ``status``
  exits 2 with "E: /etc/kernel/proxmox-boot-uuids does not exist." on an
  unmanaged host; ``refresh`` there only says it skips the ESP sync.
  Managed ESPs are ``uefi`` (systemd-boot, reading /etc/kernel/cmdline) or
  ``grub`` (GRUB, reading /etc/default/grub and grub.d).
- ``pvesh get /cluster/resources``, ``qm`` and ``pct`` over the guests in
  ``<base>/guests.json`` and their configs under /etc/pve (pmxcfs layout:
  /etc/pve/local -> nodes/<node>).
- ``systemctl is-system-running``: "stopping" while a reboot shuts down.
- ``tee`` into /sys/bus/pci and ``modprobe``: PCI driver binding as the
  kernel does it (driver_override, unbind, drivers_probe, boot_vga, a driver
  that waits while its device is in use); see proxmox_sysfs.py, which names the
  kernel and driver files each behaviour mirrors.
- ``reboot`` really drops the connection: Proxmox stops every guest
  (pve-guests.service ExecStop: stopall), sshd and its sessions stop, the
  host "boots" and sshd comes back; guests with onboot=1 start again.

Booting follows what the boot image says, not what /etc says: the kernel
command line the bootloader tool generated, and for each device the driver
that wins at boot. vfio-pci claims a device only when the IOMMU is on,
vfio_pci is loaded (modules-load.d or /etc/modules, or a softdep), the boot
image's ``options vfio-pci ids=`` names it, and its own driver does not get
there first (blacklisted in the image, or ordered after vfio-pci by a softdep).

Standard library only: the stand-ins import this module.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.stand_ins import proxmox_ha, proxmox_sysfs

SSHD = "/usr/sbin/sshd"
TOOLS = ("update-grub", "update-initramfs", "proxmox-boot-tool", "efibootmgr", "reboot", "pvesh", "qm", "pct", "modprobe")
REPO = Path(__file__).resolve().parents[2]

GRUB_DEFAULT = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="Proxmox VE"
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""

# Uncomment to disable graphical terminal
#GRUB_TERMINAL=console
"""
KERNEL_CMDLINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"
ETC_MODULES = "# /etc/modules: kernel modules to load at boot time.\n"
ESP_UUID = "31C2-3D7A"


@dataclass
class SimDevice:
    address: str
    vendor_device: str
    class_code: str  # "0x030200"
    subsystem: str | None = None
    driver: str | None = None  # the driver the host would bind without vfio
    group: int = 0
    boot_vga: bool = False  # the firmware booted with this VGA device (boot_vga = 1)


@dataclass
class SimGuest:
    vmid: int
    name: str
    type: str = "qemu"  # "qemu" | "lxc"
    status: str = "running"  # at creation
    onboot: bool = True
    node: str = ""  # "" = this node; another name = a guest elsewhere in the cluster
    starts: bool = True  # False: its start fails after a boot (it does not come back)
    ha: str = ""  # a Proxmox HA resource with this requested state ("started", "stopped", "ignored"); "" = not HA-managed


@dataclass
class SimSpec:
    cpu: str = "intel"  # "intel" | "amd"
    kernel: str = "6.5.13-5-pve"
    bootloader: str = "grub-bios"  # "grub-bios" | "grub-uefi" | "systemd-boot"
    boot_tool_managed: bool = False  # GRUB with ESPs proxmox-boot-tool keeps in sync (systemd-boot always is)
    iommu_firmware: bool = True
    devices: list[SimDevice] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # extra /etc files
    node: str = "pve5"
    ha_peer: str = ""  # another cluster node HA can migrate guests to (ha: shutdown_policy=migrate)
    guests: list[SimGuest] = field(default_factory=list)
    guest_start_delay: float = 0.2  # after sshd is back, onboot guests start
    guest_stop_seconds: float = 0.0  # each guest's shutdown on the way down (sshd stays up meanwhile)
    reboot_delay: float = 0.3
    never_return: bool = False
    reboot_mode: str = "ok"  # "ok" | "fail" (exit 1, dbus error) | "killed" (SIGKILL) | "noop" (exit 0, nothing happens)
    drop_on: dict[str, int] = field(default_factory=dict)  # tool -> call number that drops the connection
    hang_on: dict[str, int] = field(default_factory=dict)  # tool -> call number that never finishes
    enospc: str = ""  # base64 fails with ENOSPC writing a file whose host path starts with this (until <base>/enospc is emptied)
    probe_output: dict[str, list] = field(default_factory=dict)  # "efibootmgr"/"proxmox-boot-tool" -> [stdout, rc]

    @property
    def managed(self) -> bool:
        return self.bootloader == "systemd-boot" or self.boot_tool_managed


def t4(address: str = "0000:3b:00.0", group: int = 30) -> list[SimDevice]:
    return [SimDevice(address, "10de:1eb8", "0x030200", "10de:12a2", "nouveau", group)]


def consumer_card(address: str = "0000:01:00.0", group: int = 14) -> list[SimDevice]:
    slot = address.rsplit(".", 1)[0]
    return [
        SimDevice(f"{slot}.0", "10de:2204", "0x030000", "1458:403b", "nouveau", group),
        SimDevice(f"{slot}.1", "10de:1aef", "0x040300", "1458:403b", "snd_hda_intel", group),
    ]


def host_devices() -> list[SimDevice]:
    """What every simulated host has besides its GPUs."""
    return [
        SimDevice("0000:00:00.0", "8086:2020", "0x060000", "15d9:0998", None, 0),
        SimDevice("0000:00:01.0", "8086:2030", "0x060400", None, "pcieport", 1),
        SimDevice("0000:00:02.0", "8086:2031", "0x060400", None, "pcieport", 2),
        SimDevice("0000:05:00.0", "8086:1521", "0x020000", "15d9:1521", "igb", 5),
        SimDevice("0000:06:00.0", "144d:a808", "0x010802", "144d:a801", "nvme", 6),
    ]


def _module(name: str) -> str:
    return name.replace("-", "_")


class SimHost:
    """The simulated host on disk; ``base`` holds root/, bin/, sshd/, boot/."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.root = self.base / "root"
        self.bin = self.base / "bin"
        self.boot_dir = self.base / "boot"
        self.sshd_dir = self.base / "sshd"

    # -- state ---------------------------------------------------------------

    @property
    def spec(self) -> SimSpec:
        data = json.loads((self.base / "spec.json").read_text())
        data["devices"] = [SimDevice(**d) for d in data["devices"]]
        data["guests"] = [SimGuest(**g) for g in data["guests"]]
        return SimSpec(**data)

    def save_spec(self, spec: SimSpec) -> None:
        (self.base / "spec.json").write_text(json.dumps(asdict(spec), indent=1))

    def update_spec(self, **changes: object) -> None:
        spec = self.spec
        for key, value in changes.items():
            setattr(spec, key, value)
        self.save_spec(spec)

    def calls(self) -> list[dict]:
        path = self.base / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def tool_calls(self, tool: str) -> list[list[str]]:
        return [c["args"] for c in self.calls() if c["tool"] == tool]

    def record(self, tool: str, args: list[str], **extra: object) -> int:
        with open(self.base / "calls.jsonl", "a") as handle:
            handle.write(json.dumps({"tool": tool, "args": args, "time": time.time(), **extra}) + "\n")
        return len(self.tool_calls(tool))

    def read(self, path: str) -> str | None:
        file = self.root / path.lstrip("/")
        return file.read_text() if file.exists() else None

    def write(self, path: str, content: str) -> None:
        file = self.root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(content)

    def boot_id(self) -> str:
        return (self.root / "proc/sys/kernel/random/boot_id").read_text().strip()

    def cmdline(self) -> str:
        return (self.root / "proc/cmdline").read_text().strip()

    def driver(self, address: str) -> str | None:
        link = self.root / "sys/bus/pci/devices" / address / "driver"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def snapshot(self, under: str = "etc") -> dict[str, tuple[bytes, int]]:
        """Every file under ``root/<under>`` -> (bytes, mode): for byte-for-byte checks."""
        out = {}
        top = self.root / under
        for path in sorted(top.rglob("*")):
            if path.is_file() and not path.is_symlink() and not str(path.relative_to(self.root)).startswith("etc/pve/"):
                out[str(path.relative_to(self.root))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
        return out

    def temp_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.ptg-tmp-*"))

    # -- guests ------------------------------------------------------------------

    def guest_status(self) -> dict[int, str]:
        path = self.base / "guests.json"
        return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}

    def set_guest_status(self, vmid: int, status: str) -> None:
        states = self.guest_status()
        states[vmid] = status
        tmp = self.base / "guests.json.tmp"
        tmp.write_text(json.dumps({str(k): v for k, v in states.items()}))
        tmp.replace(self.base / "guests.json")

    def guest_conf(self, guest: SimGuest) -> Path:
        node = guest.node or self.spec.node
        return self.root / "etc/pve/nodes" / node / ("qemu-server" if guest.type == "qemu" else "lxc") / f"{guest.vmid}.conf"

    def onboot(self, guest: SimGuest) -> bool:
        conf = self.guest_conf(guest)
        if not conf.exists():
            return False
        for line in conf.read_text().splitlines():
            if line.startswith("["):
                break
            if line.startswith("onboot:"):
                return line.split(":", 1)[1].strip() == "1"
        return False

    def local_guests(self) -> list[SimGuest]:
        spec = self.spec
        return [g for g in spec.guests if not g.node or g.node == spec.node]

    def set_sysstate(self, state: str) -> None:
        (self.base / "sysstate").write_text(state + "\n")

    # -- creation --------------------------------------------------------------

    @classmethod
    def create(cls, base: Path, spec: SimSpec) -> SimHost:
        host = cls(base)
        for directory in (host.root, host.bin, host.boot_dir, host.sshd_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if not any(d.address == "0000:00:00.0" for d in spec.devices):
            spec.devices = host_devices() + spec.devices
        host.save_spec(spec)
        etc = host.root / "etc"
        for sub in ("default", "kernel", "modprobe.d", "modules-load.d"):
            (etc / sub).mkdir(parents=True, exist_ok=True)
        (etc / "modprobe.d/pve-blacklist.conf").write_text("# This file contains a list of modules which are not supported by Proxmox VE\n\n# nvidiafb see bugreport https://bugzilla.proxmox.com/show_bug.cgi?id=701\nblacklist nvidiafb\n")
        (etc / "modules").write_text(ETC_MODULES)
        if spec.bootloader == "systemd-boot":
            (etc / "kernel/cmdline").write_text(KERNEL_CMDLINE)
        (etc / "default/grub").write_text(GRUB_DEFAULT)
        host._create_pve(spec)
        for path, content in spec.files.items():
            host.write(path, content)
        proc = host.root / "proc"
        (proc / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
        vendor = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}[spec.cpu]
        model = "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz" if spec.cpu == "intel" else "AMD EPYC 7302P 16-Core Processor"
        (proc / "cpuinfo").write_text("".join(f"processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: 6\nmodel name\t: {model}\n\n" for n in range(2)))
        (proc / "sys/kernel/osrelease").write_text(spec.kernel + "\n")
        if spec.bootloader != "grub-bios":
            (host.root / "sys/firmware/efi").mkdir(parents=True, exist_ok=True)
        host.set_sysstate("running")
        for tool in TOOLS:
            host._install_tool(tool)
        host._install_shell_tools(spec)
        host._install_probes(spec)
        if "mv" in spec.drop_on:
            host._install_tool("mv")
        # The host as installed: boot configuration generated, then booted.
        host.snapshot_initramfs()
        host.generate_boot_cmdline(host.boot_dir)
        if spec.managed:
            host.sync_esp()
        host.boot()
        for guest in host.local_guests():
            host.set_guest_status(guest.vmid, guest.status)
        return host

    def _create_pve(self, spec: SimSpec) -> None:
        """/etc/pve as pmxcfs lays it out: nodes/<name>/{qemu-server,lxc}, and
        local, qemu-server, lxc linking to this node's folders."""
        pve = self.root / "etc/pve"
        for node in {spec.node, *(g.node for g in spec.guests if g.node)}:
            for sub in ("qemu-server", "lxc"):
                (pve / "nodes" / node / sub).mkdir(parents=True, exist_ok=True)
        os.symlink(f"nodes/{spec.node}", pve / "local")
        os.symlink(f"nodes/{spec.node}/qemu-server", pve / "qemu-server")
        os.symlink(f"nodes/{spec.node}/lxc", pve / "lxc")
        for guest in spec.guests:
            key = "name" if guest.type == "qemu" else "hostname"
            lines = [f"{key}: {guest.name}", "memory: 2048"] + (["onboot: 1"] if guest.onboot else [])
            # A snapshot section with the other onboot setting: only the current config counts.
            self.guest_conf(guest).write_text("\n".join(lines) + f"\n\n[snap1]\nonboot: {0 if guest.onboot else 1}\n")

    def _install_tool(self, tool: str) -> None:
        script = self.bin / tool
        script.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            f"from tests.stand_ins.proxmox_host import tool_main\nsys.exit(tool_main({str(self.base)!r}, {tool!r}, sys.argv[1:]))\n")
        script.chmod(0o755)

    def _install_shell_tools(self, spec: SimSpec) -> None:
        """Stand-ins every facts read runs, as sh (no Python start-up)."""
        state = shlex.quote(str(self.base / "sysstate"))
        (self.bin / "systemctl").write_text("\n".join([
            "#!/bin/sh",
            'if [ "$*" = is-system-running ]; then',
            f"  read -r s < {state}; echo \"$s\"; [ \"$s\" = running ]; exit $?",
            "fi",
            'echo "Unknown command verb $1." >&2; exit 1', ""]))
        (self.bin / "systemctl").chmod(0o755)
        # tee into the simulated sysfs goes through the kernel's rules (proxmox_sysfs.py); anything else is coreutils' tee.
        (self.bin / "tee").write_text("\n".join([
            "#!/bin/sh",
            f'case "$*" in {shlex.quote(str(self.root / "sys"))}/*)',
            f"  exec {shlex.quote(sys.executable)} -c {shlex.quote(f'import sys; sys.path.insert(0, {str(REPO)!r}); from tests.stand_ins.proxmox_sysfs import tee_main; sys.exit(tee_main({str(self.base)!r}, sys.argv[1:]))')} \"$@\";;",
            "esac",
            'exec /usr/bin/tee "$@"', ""]))
        (self.bin / "tee").chmod(0o755)
        if not spec.enospc:
            return
        # base64 writing into a file whose path starts with root + spec.enospc (while
        # <base>/enospc holds that): part of the data, then ENOSPC (GNU coreutils' message).
        enospc = self.base / "enospc"
        enospc.write_text(f"{self.root}{spec.enospc}")
        (self.bin / "base64").write_text("\n".join([
            "#!/bin/sh",
            f"read -r full < {shlex.quote(str(enospc))} 2>/dev/null",
            'if [ -n "$full" ]; then case "$(readlink /proc/$$/fd/1 2>/dev/null)" in "$full"*)',
            "  /usr/bin/base64 \"$@\" | head -c 7",
            "  echo 'base64: write error: No space left on device' >&2; exit 1;;",
            "esac; fi",
            'exec /usr/bin/base64 "$@"', ""]))
        (self.bin / "base64").chmod(0o755)

    def _install_probes(self, spec: SimSpec) -> None:
        """The read-only probes every facts read runs, as sh (no Python start-up):
        their output comes from the same tool_main, captured once."""
        calls = self.base / "calls.jsonl"
        for tool, args in (("efibootmgr", ["-v"]), ("proxmox-boot-tool", ["status"])):
            if tool in spec.probe_output:
                stdout, rc = spec.probe_output[tool]
                out = subprocess.CompletedProcess([], rc, stdout, "")
            else:
                out = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True)
            calls.unlink(missing_ok=True)
            real = self.bin / f".{tool}.py"
            (self.bin / tool).rename(real)
            probe = self.bin / tool
            probe.write_text("\n".join([
                "#!/bin/sh",
                f'if [ "$*" = {shlex.quote(" ".join(args))} ]; then',
                f"  printf '%s\\n' {shlex.quote(json.dumps({'tool': tool, 'args': args}))} >> {shlex.quote(str(calls))}",
                f"  printf '%s' {shlex.quote(out.stdout)}; printf '%s' {shlex.quote(out.stderr)} >&2; exit {out.returncode}",
                "fi",
                f'exec {shlex.quote(str(real))} "$@"', ""]))
            probe.chmod(0o755)

    # -- what the host's tools do ----------------------------------------------

    def grub_cmdline(self) -> str:
        """The kernel command line grub-mkconfig writes: /etc/default/grub,
        then /etc/default/grub.d/*.cfg, sourced by /bin/sh in that order."""
        script = ('. "$1"; for x in "$2"/*.cfg; do if [ -e "$x" ]; then . "$x"; fi; done; '
                  'printf "%s\\n%s" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"')
        out = subprocess.run(["sh", "-c", script, "sh", str(self.root / "etc/default/grub"), str(self.root / "etc/default/grub.d")],
                             capture_output=True, text=True, check=True).stdout
        linux, _, default = out.partition("\n")
        kernel = self.spec.kernel
        return " ".join(f"BOOT_IMAGE=/boot/vmlinuz-{kernel} root=/dev/mapper/pve-root ro {linux} {default}".split())

    def generate_boot_cmdline(self, target: Path) -> None:
        """The command line a boot from ``target`` (/boot or the ESP) gets."""
        spec = self.spec
        if spec.bootloader == "systemd-boot":
            line = (self.read("/etc/kernel/cmdline") or "").splitlines()[0].strip()
            cmdline = f"initrd=\\EFI\\proxmox\\{spec.kernel}\\initrd.img-{spec.kernel} {line}"
        else:
            cmdline = self.grub_cmdline()
        target.mkdir(parents=True, exist_ok=True)
        (target / "cmdline").write_text(cmdline + "\n")

    def snapshot_initramfs(self) -> None:
        """update-initramfs: copy the modprobe and modules-load files into /boot's image."""
        image = self.boot_dir / "initramfs"
        shutil.rmtree(image, ignore_errors=True)
        for sub in ("modprobe.d", "modules-load.d"):
            (image / sub).mkdir(parents=True)
            for conf in sorted((self.root / "etc" / sub).glob("*.conf")):
                shutil.copy(conf, image / sub / conf.name)

    def sync_esp(self) -> None:
        """proxmox-boot-tool refresh: the initramfs and a freshly generated
        command line onto the ESP (zz-proxmox-boot)."""
        esp = self.boot_dir / "esp"
        shutil.rmtree(esp, ignore_errors=True)
        shutil.copytree(self.boot_dir / "initramfs", esp / "initramfs")
        self.generate_boot_cmdline(esp)

    def boot(self) -> None:
        """Boot from the ESP (proxmox-boot-tool hosts) or /boot: its command
        line; drivers per its initramfs and the root fs's module lists."""
        spec = self.spec
        source = self.boot_dir / "esp" if spec.managed else self.boot_dir
        cmdline = (source / "cmdline").read_text().strip()
        image = self.boot_dir / "esp/initramfs" if spec.managed else self.boot_dir / "initramfs"
        tokens = cmdline.split()
        kernel = tuple(int(x) for x in spec.kernel.split("-")[0].split(".")[:2])
        # Each parameter as the kernel parses it: in order, the last one wins.
        last = {t.split("=", 1)[0]: t.split("=", 1)[-1] for t in tokens}
        default_on = spec.cpu == "amd" or kernel >= (6, 8)
        wanted = last.get("intel_iommu" if spec.cpu == "intel" else "amd_iommu")
        iommu = spec.iommu_firmware and wanted != "off" and last.get("iommu") != "off" and (default_on or wanted == "on")
        ids: list[str] = []
        blacklist: set[str] = set()
        softdeps: dict[str, set[str]] = {}
        for conf in sorted((image / "modprobe.d").glob("*.conf")):
            for line in conf.read_text().splitlines():
                words = line.split()
                if words[:2] in (["options", "vfio-pci"], ["options", "vfio_pci"]):
                    for word in words[2:]:
                        if word.startswith("ids="):
                            ids = word[4:].split(",")  # last wins, as in the kernel
                if words[:1] == ["blacklist"] and len(words) > 1:
                    blacklist.add(_module(words[1]))
                if words[:1] == ["softdep"] and len(words) > 3 and words[2] == "pre:":
                    softdeps.setdefault(_module(words[1]), set()).update(_module(w) for w in words[3:] if not w.endswith(":"))
        log = []
        loaded: set[str] = set()
        for conf in [*sorted((self.root / "etc/modules-load.d").glob("*.conf")), self.root / "etc/modules"]:
            if not conf.exists():
                continue
            for line in conf.read_text().splitlines():
                module = line.split("#", 1)[0].strip()
                if not module:
                    continue
                if module == "vfio_virqfd" and kernel >= (6, 2):
                    log.append("systemd-modules-load: Failed to find module 'vfio_virqfd'")
                loaded.add(_module(module))
        native_loading = {d.driver for d in spec.devices if d.driver and _module(d.driver) not in blacklist}
        vfio_loaded = "vfio_pci" in loaded or any("vfio_pci" in softdeps.get(_module(drv), ()) for drv in native_loading)
        (self.boot_dir / "dmesg").write_text("\n".join(log) + ("\n" if log else ""))
        (self.root / "proc/cmdline").write_text(cmdline + "\n")
        (self.root / "proc/sys/kernel/random/boot_id").write_text(str(uuid.uuid4()) + "\n")
        sys_dir = self.root / "sys"
        for proc in (self.root / "proc").glob("[0-9]*"):  # every process of the old boot is gone
            shutil.rmtree(proc, ignore_errors=True)
        shutil.rmtree(sys_dir / "bus", ignore_errors=True)
        shutil.rmtree(sys_dir / "kernel", ignore_errors=True)
        devices = sys_dir / "bus/pci/devices"
        devices.mkdir(parents=True)
        (sys_dir / "kernel/iommu_groups").mkdir(parents=True)
        running = {"vfio-pci"} if vfio_loaded else set()  # driver modules the boot loaded
        for device in spec.devices:
            path = devices / device.address
            path.mkdir()
            vendor, dev = device.vendor_device.split(":")
            (path / "vendor").write_text(f"0x{vendor}\n")
            (path / "device").write_text(f"0x{dev}\n")
            (path / "class").write_text(f"{device.class_code}\n")
            sub_vendor, sub_device = (device.subsystem or "0000:0000").split(":")
            (path / "subsystem_vendor").write_text(f"0x{sub_vendor}\n")
            (path / "subsystem_device").write_text(f"0x{sub_device}\n")
            native = _module(device.driver) if device.driver else None
            native_first = native is not None and native not in blacklist and "vfio_pci" not in softdeps.get(native, set())
            if iommu and vfio_loaded and device.vendor_device in ids and not native_first:
                driver: str | None = "vfio-pci"
            elif device.driver and native not in blacklist:
                driver = device.driver
            else:
                driver = None
            if driver:
                running.add(driver)
                (sys_dir / "bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
                os.symlink(f"../../drivers/{driver}", path / "driver")
            if iommu:
                group = sys_dir / "kernel/iommu_groups" / str(device.group) / "devices"
                group.mkdir(parents=True, exist_ok=True)
                os.symlink(f"../../../../bus/pci/devices/{device.address}", group / device.address)
                os.symlink(f"../../../kernel/iommu_groups/{device.group}", path / "iommu_group")
        proxmox_sysfs.populate(self.root, spec.devices, running)

    def hold(self, pid: int, comm: str, device: str) -> None:
        """A process on the host opens ``device`` (nvidia-persistenced /dev/nvidia0, QEMU /dev/vfio/30)."""
        proxmox_sysfs.hold(self.root, pid, comm, device)

    def release(self, pid: int) -> None:
        proxmox_sysfs.release(self.root, pid)

    # -- sshd ------------------------------------------------------------------

    def sshd_config(self, port: int) -> Path:
        config = self.sshd_dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1",
            f"HostKey {self.sshd_dir / 'host_ed25519'}", f"HostKey {self.sshd_dir / 'host_rsa'}",
            f"PidFile {self.sshd_dir / 'sshd.pid'}", f"AuthorizedKeysFile {self.sshd_dir / 'authorized_keys'}",
            "PermitRootLogin yes", "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "MaxStartups 100", "LogLevel VERBOSE",
            # SHLVL=1: bash then skips ~/.bashrc for ssh commands, so a test machine's
            # shell setup (pyenv, ...) neither slows nor changes the simulated host.
            f"SetEnv PATH={self.bin}:/usr/sbin:/usr/bin:/sbin:/bin SHLVL=1",
        ]) + "\n")
        (self.sshd_dir / "port").write_text(str(port))
        return config

    def start_sshd(self) -> int:
        """Start sshd (detached, so a simulated reboot can stop and restart it)."""
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        port = int((self.sshd_dir / "port").read_text())
        process = subprocess.Popen([SSHD, "-D", "-f", str(self.sshd_dir / "sshd_config"), "-E", str(self.sshd_dir / "sshd.log")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        (self.sshd_dir / "master.pid").write_text(str(process.pid))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited with {process.returncode}: {(self.sshd_dir / 'sshd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return process.pid
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sshd did not start listening within 10 s")

    def stop_sshd(self) -> None:
        """Kill the sshd this host started and every session under it (by pid)."""
        pid_file = self.sshd_dir / "master.pid"
        if not pid_file.exists():
            return
        master = int(pid_file.read_text())
        for pid in reversed(descendants(master)):
            _kill(pid, signal.SIGKILL)
        _kill(master, signal.SIGTERM)
        for _ in range(200):
            if not _alive(master):
                break
            time.sleep(0.01)
        else:
            _kill(master, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    def drop_sessions(self) -> None:
        """Cut every SSH connection, as a network failure would (sshd keeps listening)."""
        master = int((self.sshd_dir / "master.pid").read_text())
        me = os.getpid()
        for pid in reversed(descendants(master)):
            if pid != me:
                _kill(pid, signal.SIGKILL)
        _kill(me, signal.SIGKILL)

    def stop_helpers(self) -> None:
        helper = self.base / "reboot-helper.pid"
        if helper.exists():
            _kill(int(helper.read_text()), signal.SIGKILL)
            helper.unlink(missing_ok=True)
        # Commands left hanging on the "host" (outside sshd's tree once orphaned).
        for pid_file in self.base.glob("hang-*.pid"):
            _kill(int(pid_file.read_text()), signal.SIGKILL)
            pid_file.unlink(missing_ok=True)

    def processes(self, tool: str) -> list[int]:
        """Live processes of a hanging stand-in (recorded by pid)."""
        return [int(p.read_text()) for p in self.base.glob(f"hang-{tool}-*.pid") if _alive(int(p.read_text()))]


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid`` (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            out.append(child)
            queue.append(child)
    return out


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return status != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------
# Stand-ins (run on the "host" through sshd)
# --------------------------------------------------------------------------


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
        host.snapshot_initramfs()
        print(f"update-initramfs: Generating /boot/initrd.img-{spec.kernel}")
        if spec.managed:  # /etc/initramfs/post-update.d/proxmox-boot-sync
            print("Running hook script 'zz-proxmox-boot'..")
            host.sync_esp()
        return 0
    if tool == "update-grub":
        if args:
            print(f"update-grub: unexpected arguments {args}", file=sys.stderr)
            return 2
        print("Generating grub configuration file ...")
        if spec.managed:  # /etc/grub.d/000_proxmox_boot_header
            print("W: This system is booted via proxmox-boot-tool:\nW: Running update-grub does not update the correct config!\n"
                  "W: Running: 'proxmox-boot-tool refresh'.", file=sys.stderr)
            host.sync_esp()
        host.generate_boot_cmdline(host.boot_dir)
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
                                   f"from tests.stand_ins.proxmox_host import reboot_helper; reboot_helper({base!r})"],
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
        host.sync_esp()
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
    host.boot()
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
