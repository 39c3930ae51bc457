"""A simulated Proxmox host served by a real OpenSSH server.

The host is a file tree (``<base>/root``: /etc, /proc bits, /sys/bus/pci,
/sys/kernel/iommu_groups) plus stand-ins for update-grub, update-initramfs,
proxmox-boot-tool, efibootmgr and reboot that record their calls in
``<base>/calls.jsonl``. ``reboot`` really drops the connection (stops this
sshd and its sessions), "boots" (a new /proc/cmdline from what the
bootloader tool generated, drivers bound per the initramfs' modprobe files,
IOMMU groups once the IOMMU is on, a new boot_id) and starts sshd again
after a delay. Standard library only: the stand-ins import this module.
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

SSHD = "/usr/sbin/sshd"
TOOLS = ("update-grub", "update-initramfs", "proxmox-boot-tool", "efibootmgr", "reboot")
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


@dataclass
class SimDevice:
    address: str
    vendor_device: str
    class_code: str  # "0x030200"
    subsystem: str | None = None
    driver: str | None = None  # the driver the host would bind without vfio
    group: int = 0


@dataclass
class SimSpec:
    cpu: str = "intel"  # "intel" | "amd"
    kernel: str = "6.5.13-5-pve"
    bootloader: str = "grub-bios"  # "grub-bios" | "grub-uefi" | "systemd-boot"
    iommu_firmware: bool = True
    devices: list[SimDevice] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # extra /etc files
    reboot_delay: float = 0.3
    never_return: bool = False
    drop_on: dict[str, int] = field(default_factory=dict)  # tool -> call number that drops the connection


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
            if path.is_file() and not path.is_symlink():
                out[str(path.relative_to(self.root))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
        return out

    def temp_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.ptg-tmp-*"))

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
        for path, content in spec.files.items():
            target = host.root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        proc = host.root / "proc"
        (proc / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
        vendor = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}[spec.cpu]
        model = "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz" if spec.cpu == "intel" else "AMD EPYC 7302P 16-Core Processor"
        (proc / "cpuinfo").write_text("".join(f"processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: 6\nmodel name\t: {model}\n\n" for n in range(2)))
        (proc / "sys/kernel/osrelease").write_text(spec.kernel + "\n")
        if spec.bootloader != "grub-bios":
            (host.root / "sys/firmware/efi").mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            host._install_tool(tool)
        host._install_probes(spec)
        if "mv" in spec.drop_on:
            host._install_tool("mv")
        # The host as installed: boot configuration generated, then booted.
        host.generate_boot_cmdline()
        host.snapshot_initramfs(esp=True)
        host.boot()
        return host

    def _install_tool(self, tool: str) -> None:
        script = self.bin / tool
        script.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            f"from tests.hostprep.simhost import tool_main\nsys.exit(tool_main({str(self.base)!r}, {tool!r}, sys.argv[1:]))\n")
        script.chmod(0o755)

    def _install_probes(self, spec: SimSpec) -> None:
        """The read-only probes every facts read runs, as sh (no Python start-up):
        their output comes from the same tool_main, captured once."""
        calls = self.base / "calls.jsonl"
        for tool, args in (("efibootmgr", ["-v"]), ("proxmox-boot-tool", ["status"])):
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

    def generate_boot_cmdline(self) -> None:
        spec = self.spec
        if spec.bootloader == "systemd-boot":
            line = (self.read("/etc/kernel/cmdline") or "").strip()
            cmdline = f"initrd=\\EFI\\proxmox\\{spec.kernel}\\initrd.img-{spec.kernel} {line}"
        else:
            out = subprocess.run(["sh", "-c", '. "$1"; printf "%s\\n%s" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"', "sh",
                                  str(self.root / "etc/default/grub")], capture_output=True, text=True, check=True).stdout
            linux, _, default = out.partition("\n")
            cmdline = " ".join(f"BOOT_IMAGE=/boot/vmlinuz-{spec.kernel} root=/dev/mapper/pve-root ro {linux} {default}".split())
        (self.boot_dir / "cmdline").write_text(cmdline + "\n")

    def snapshot_initramfs(self, *, esp: bool = False) -> None:
        """update-initramfs: copy the modprobe and modules-load files into the image."""
        image = self.boot_dir / "initramfs"
        shutil.rmtree(image, ignore_errors=True)
        for sub in ("modprobe.d", "modules-load.d"):
            (image / sub).mkdir(parents=True)
            for conf in sorted((self.root / "etc" / sub).glob("*.conf")):
                shutil.copy(conf, image / sub / conf.name)
        if esp:
            self.sync_esp()

    def sync_esp(self) -> None:
        """proxmox-boot-tool refresh copies the initramfs to the ESP."""
        shutil.rmtree(self.boot_dir / "esp", ignore_errors=True)
        shutil.copytree(self.boot_dir / "initramfs", self.boot_dir / "esp")

    def boot(self) -> None:
        """Boot: the command line the bootloader tool generated, drivers per
        the initramfs, IOMMU groups when the IOMMU is on."""
        spec = self.spec
        cmdline = (self.boot_dir / "cmdline").read_text().strip()
        tokens = cmdline.split()
        kernel = tuple(int(x) for x in spec.kernel.split("-")[0].split(".")[:2])
        iommu = spec.iommu_firmware and "intel_iommu=off" not in tokens and "amd_iommu=off" not in tokens and (
            spec.cpu == "amd" or kernel >= (6, 8) or "intel_iommu=on" in tokens)
        image = self.boot_dir / ("esp" if spec.bootloader == "systemd-boot" else "initramfs")
        ids: list[str] = []
        blacklist: set[str] = set()
        log = []
        for conf in sorted((image / "modprobe.d").glob("*.conf")):
            for line in conf.read_text().splitlines():
                words = line.split()
                if words[:2] in (["options", "vfio-pci"], ["options", "vfio_pci"]):
                    for word in words[2:]:
                        if word.startswith("ids="):
                            ids = word[4:].split(",")  # last wins, as in the kernel
                if words[:1] == ["blacklist"] and len(words) > 1:
                    blacklist.add(words[1])
        for conf in sorted((image / "modules-load.d").glob("*.conf")):
            for module in conf.read_text().split():
                if module == "vfio_virqfd" and kernel >= (6, 2):
                    log.append("systemd-modules-load: Failed to find module 'vfio_virqfd'")
        (self.boot_dir / "dmesg").write_text("\n".join(log) + ("\n" if log else ""))
        (self.root / "proc/cmdline").write_text(cmdline + "\n")
        (self.root / "proc/sys/kernel/random/boot_id").write_text(str(uuid.uuid4()) + "\n")
        sys_dir = self.root / "sys"
        shutil.rmtree(sys_dir / "bus", ignore_errors=True)
        shutil.rmtree(sys_dir / "kernel", ignore_errors=True)
        devices = sys_dir / "bus/pci/devices"
        devices.mkdir(parents=True)
        (sys_dir / "kernel/iommu_groups").mkdir(parents=True)
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
            if iommu and device.vendor_device in ids:
                driver: str | None = "vfio-pci"
            elif device.driver in blacklist:
                driver = None
            else:
                driver = device.driver
            if driver:
                (sys_dir / "bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
                os.symlink(f"../../drivers/{driver}", path / "driver")
            if iommu:
                group = sys_dir / "kernel/iommu_groups" / str(device.group) / "devices"
                group.mkdir(parents=True, exist_ok=True)
                os.symlink(f"../../../../bus/pci/devices/{device.address}", group / device.address)
                os.symlink(f"../../../kernel/iommu_groups/{device.group}", path / "iommu_group")

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
    if tool == "mv":
        os.execv("/bin/mv", ["mv", *args])
    if tool == "update-initramfs":
        if args != ["-u", "-k", "all"]:
            print(f"update-initramfs: unexpected arguments {args}", file=sys.stderr)
            return 2
        host.snapshot_initramfs()
        print(f"update-initramfs: Generating /boot/initrd.img-{spec.kernel}")
        return 0
    if tool == "update-grub":
        host.generate_boot_cmdline()
        print("Generating grub configuration file ...\ndone")
        return 0
    if tool == "proxmox-boot-tool":
        managed = spec.bootloader == "systemd-boot"
        if args[:1] == ["status"]:
            if not managed:
                print("E: /etc/kernel/proxmox-boot-uuids does not exist.", file=sys.stderr)
                return 2
            print("Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..\nSystem currently booted with uefi")
            print(f"31C2-3D7A is configured with: uefi (versions: {spec.kernel})")
            return 0
        if args[:1] == ["refresh"]:
            if not managed:
                print("E: /etc/kernel/proxmox-boot-uuids does not exist.", file=sys.stderr)
                return 2
            host.generate_boot_cmdline()
            host.sync_esp()
            print("Running hook script 'proxmox-auto-removal'..\nCopying and configuring kernels on /dev/disk/by-uuid/31C2-3D7A")
            return 0
        return 2
    if tool == "efibootmgr":
        if spec.bootloader == "grub-bios":
            print("EFI variables are not supported on this system.", file=sys.stderr)
            return 2
        loader = "\\EFI\\systemd\\systemd-bootx64.efi" if spec.bootloader == "systemd-boot" else "\\EFI\\proxmox\\shimx64.efi"
        name = "Linux Boot Manager" if spec.bootloader == "systemd-boot" else "proxmox"
        print("BootCurrent: 0006\nTimeout: 1 seconds\nBootOrder: 0006,0001\n"
              "Boot0001* UEFI: PXE IPv4 Intel(R) I350 Gigabit Network Connection\tPciRoot(0x0)/Pci(0x1c,0x0)/MAC(ac1f6b000000,1)/IPv4(0.0.0.0)\n"
              f"Boot0006* {name}\tHD(2,GPT,8a5c0b36-0000-4000-8000-000000000000,0x800,0x100000)/File({loader})")
        return 0
    if tool == "reboot":
        helper = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                                   f"from tests.hostprep.simhost import reboot_helper; reboot_helper({base!r})"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        (host.base / "reboot-helper.pid").write_text(str(helper.pid))
        return 0
    return 127


def reboot_helper(base: str) -> None:
    """Detached: take sshd and its sessions down, boot, bring sshd back."""
    host = SimHost(Path(base))
    time.sleep(0.05)  # let `reboot` itself return, as systemctl does
    host.stop_sshd()
    host.boot()
    spec = host.spec
    if spec.never_return:
        host.record("boot", [], never_return=True)
        return
    time.sleep(spec.reboot_delay)
    host.record("boot", [])
    host.start_sshd()
    (host.base / "reboot-helper.pid").unlink(missing_ok=True)
