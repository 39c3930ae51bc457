"""The simulated Proxmox host's boot (tests/stand_ins/proxmox_host.py): the
boot image the bootloader tools write, and what the kernel does with it.

Booting follows what the boot image says, not what /etc says: the kernel
command line the bootloader tool generated, and for each device the driver
that wins at boot. vfio-pci claims a device only when the IOMMU is on,
vfio_pci is loaded (modules-load.d or /etc/modules, or a softdep), the boot
image's ``options vfio-pci ids=`` names it, and its own driver does not get
there first (blacklisted in the image, or ordered after vfio-pci by a softdep).
The table in proxmox_host.py names the upstream each behaviour mirrors.

Standard library only: the stand-ins import this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tests.stand_ins import proxmox_sysfs

if TYPE_CHECKING:
    from tests.stand_ins.proxmox_host import SimHost


def _module(name: str) -> str:
    return name.replace("-", "_")


def grub_cmdline(host: SimHost) -> str:
    """The kernel command line grub-mkconfig writes: /etc/default/grub,
    then /etc/default/grub.d/*.cfg, sourced by /bin/sh in that order."""
    script = ('. "$1"; for x in "$2"/*.cfg; do if [ -e "$x" ]; then . "$x"; fi; done; '
              'printf "%s\\n%s" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"')
    out = subprocess.run(["sh", "-c", script, "sh", str(host.root / "etc/default/grub"), str(host.root / "etc/default/grub.d")],
                         capture_output=True, text=True, check=True).stdout
    linux, _, default = out.partition("\n")
    kernel = host.spec.kernel
    return " ".join(f"BOOT_IMAGE=/boot/vmlinuz-{kernel} root=/dev/mapper/pve-root ro {linux} {default}".split())


def generate_boot_cmdline(host: SimHost, target: Path) -> None:
    """The command line a boot from ``target`` (/boot or the ESP) gets."""
    spec = host.spec
    if spec.bootloader == "systemd-boot":
        line = (host.read("/etc/kernel/cmdline") or "").splitlines()[0].strip()
        cmdline = f"initrd=\\EFI\\proxmox\\{spec.kernel}\\initrd.img-{spec.kernel} {line}"
    else:
        cmdline = grub_cmdline(host)
    target.mkdir(parents=True, exist_ok=True)
    (target / "cmdline").write_text(cmdline + "\n")


def snapshot_initramfs(host: SimHost) -> None:
    """update-initramfs: copy the modprobe and modules-load files into /boot's image."""
    image = host.boot_dir / "initramfs"
    shutil.rmtree(image, ignore_errors=True)
    for sub in ("modprobe.d", "modules-load.d"):
        (image / sub).mkdir(parents=True)
        for conf in sorted((host.root / "etc" / sub).glob("*.conf")):
            shutil.copy(conf, image / sub / conf.name)


def sync_esp(host: SimHost) -> None:
    """proxmox-boot-tool refresh: the initramfs and a freshly generated
    command line onto the ESP (zz-proxmox-boot)."""
    esp = host.boot_dir / "esp"
    shutil.rmtree(esp, ignore_errors=True)
    shutil.copytree(host.boot_dir / "initramfs", esp / "initramfs")
    generate_boot_cmdline(host, esp)


def boot(host: SimHost) -> None:
    """Boot from the ESP (proxmox-boot-tool hosts) or /boot: its command
    line; drivers per its initramfs and the root fs's module lists."""
    spec = host.spec
    source = host.boot_dir / "esp" if spec.managed else host.boot_dir
    cmdline = (source / "cmdline").read_text().strip()
    image = host.boot_dir / "esp/initramfs" if spec.managed else host.boot_dir / "initramfs"
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
    for conf in [*sorted((host.root / "etc/modules-load.d").glob("*.conf")), host.root / "etc/modules"]:
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
    (host.boot_dir / "dmesg").write_text("\n".join(log) + ("\n" if log else ""))
    (host.root / "proc/cmdline").write_text(cmdline + "\n")
    (host.root / "proc/sys/kernel/random/boot_id").write_text(str(uuid.uuid4()) + "\n")
    sys_dir = host.root / "sys"
    for proc in (host.root / "proc").glob("[0-9]*"):  # every process of the old boot is gone
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
    proxmox_sysfs.populate(host.root, spec.devices, running)
