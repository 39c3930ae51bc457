"""A simulated Proxmox host served by a real OpenSSH server.

The host is a file tree (``<base>/root``: /etc, /etc/pve, /proc bits,
/sys/bus/pci, /sys/kernel/iommu_groups) plus stand-ins that record their
calls in ``<base>/calls.jsonl`` and behave the way the real tools are
documented to. It lives in these parts:

| part | holds |
|---|---|
| proxmox_host.py | ``SimHost``: the tree and its state files, creation, sshd and the processes under it |
| proxmox_host_spec.py | ``SimSpec``, ``SimDevice``, ``SimGuest``; the devices (``t4``, ``consumer_card``, the host's own); a fresh install's files |
| proxmox_host_boot.py | the boot image the bootloader tools write, and booting from it |
| proxmox_host_bin.py | the host's bin/: the wrappers sshd's PATH finds, sh stand-ins and probes |
| proxmox_host_tools.py | the tools behind the wrappers (``tool_main``) and the detached reboot |
| proxmox_sysfs.py | PCI driver binding in sysfs (its own table names the kernel and driver files) |
| proxmox_ha.py | Proxmox HA around a reboot (its own table names the pve-ha-manager files) |

| behaviour | mirrors | lives in |
|---|---|---|
| ``update-initramfs`` snapshots /etc/modprobe.d into the initramfs; on a host whose ESPs proxmox-boot-tool manages it also refreshes them | pve-docs system-booting: "update-initramfs ... will automatically trigger a refresh" | proxmox_host_tools.py, proxmox_host_boot.py |
| ``update-grub`` sources /etc/default/grub, then /etc/default/grub.d/*.cfg, into /boot/grub; on a proxmox-boot-tool host it warns and runs ``proxmox-boot-tool refresh`` | GRUB's grub-mkconfig; proxmox-kernel-helper's /etc/grub.d/000_proxmox_boot_header | proxmox_host_tools.py, proxmox_host_boot.py |
| ``proxmox-boot-tool status`` exits 2 with "E: /etc/kernel/proxmox-boot-uuids does not exist." on an unmanaged host; ``refresh`` there only says it skips the ESP sync; managed ESPs are ``uefi`` (systemd-boot, reading /etc/kernel/cmdline) or ``grub`` (GRUB, reading /etc/default/grub and grub.d) | proxmox-kernel-helper (proxmox-boot-tool) | proxmox_host_tools.py |
| ``pvesh get /cluster/resources``, ``qm`` and ``pct`` over the guests in ``<base>/guests.json`` and their configs under /etc/pve (/etc/pve/local -> nodes/<node>) | pve-manager PVE/API2/Cluster.pm; the pmxcfs layout | proxmox_host_tools.py, proxmox_host.py |
| ``systemctl is-system-running``: "stopping" while a reboot shuts down | systemd's systemctl | proxmox_host_bin.py |
| ``tee`` into /sys/bus/pci and ``modprobe``: PCI driver binding as the kernel does it (driver_override, unbind, drivers_probe, boot_vga, a driver that waits while its device is in use) | the kernel and driver files in proxmox_sysfs.py's table | proxmox_sysfs.py, proxmox_host_bin.py |
| ``reboot`` really drops the connection: Proxmox stops every guest, sshd and its sessions stop, the host "boots" and sshd comes back; guests with onboot=1 start again | pve-guests.service ExecStop: stopall, ExecStart: startall | proxmox_host_tools.py, proxmox_host.py |
| booting follows the boot image, not /etc: the command line the bootloader tool generated, and per device the driver that wins at boot | the kernel's parameter parsing (the last one wins); modprobe.d(5) blacklist and softdep | proxmox_host_boot.py |

Standard library only: the stand-ins import this module in fresh processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from tests.stand_ins import proxmox_host_bin, proxmox_host_boot, proxmox_sysfs
from tests.stand_ins.proxmox_host_spec import ETC_MODULES, GRUB_DEFAULT, KERNEL_CMDLINE, SimDevice, SimGuest, SimSpec, host_devices

SSHD = "/usr/sbin/sshd"


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
        proxmox_host_bin.install(host, spec)
        # The host as installed: boot configuration generated, then booted.
        proxmox_host_boot.snapshot_initramfs(host)
        proxmox_host_boot.generate_boot_cmdline(host, host.boot_dir)
        if spec.managed:
            proxmox_host_boot.sync_esp(host)
        proxmox_host_boot.boot(host)
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

    # -- processes holding devices open ---------------------------------------

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
