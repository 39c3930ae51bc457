"""The simulated host's PCI driver binding in sysfs, as the kernel does it.

Writes to sysfs reach the simulated host through a ``tee`` stand-in (the
engine writes sysfs files with ``printf ... | tee FILE``, which works the
same on a real host); ``modprobe`` loads a driver. Each behaviour mirrors a
kernel or driver source file:

| behaviour | source |
|---|---|
| ``devices/X/driver_override``: reads ``(null)`` when unset; a write sets it (a trailing newline dropped), an empty write clears it; it neither unbinds nor loads anything | linux drivers/pci/pci-sysfs.c ``driver_override_show/store`` (v6.8); Documentation/ABI/testing/sysfs-bus-pci |
| ``drivers/D/unbind`` (also reached as ``devices/X/driver/unbind``): releases X from D; ``No such device`` when X is not bound to D | linux drivers/base/bus.c ``unbind_store`` (v6.8) |
| ``drivers_probe``: attaches an unbound X to the one driver its ``driver_override`` names (when that driver is loaded), otherwise to its own driver; nothing happens to a bound X; the write succeeds even when no driver binds | linux drivers/base/bus.c ``drivers_probe_store``; drivers/pci/pci-driver.c ``pci_match_device`` (commit 782a985d7af2) |
| ``drivers/D/bind``: ``Device or resource busy`` when X has a driver | linux drivers/base/bus.c ``bind_store`` |
| vfio-pci binds only a device with an IOMMU group | linux drivers/vfio/vfio_main.c ``vfio_device_set_group`` (``-EINVAL`` without a group) |
| ``devices/X/boot_vga`` exists only on VGA-class devices: 1 on the device the firmware booted with | linux drivers/pci/pci-sysfs.c ``boot_vga_show``, ``pci_dev_attrs_are_visible`` |
| the ``nvidia`` driver's unbind waits while a process holds ``/dev/nvidia*`` open ("NVRM: Attempting to remove device ... with non-zero usage count!") | NVIDIA/open-gpu-kernel-modules kernel-open/nvidia/nv-pci.c ``nv_pci_remove`` |
| vfio-pci's unbind waits while a process (QEMU) holds ``/dev/vfio/<group>`` open | linux drivers/vfio/vfio_main.c ``vfio_unregister_group_dev`` |
| ``modprobe vfio-pci`` loads the driver (``/sys/bus/pci/drivers/vfio-pci`` appears); the modprobe.d blacklist does not stop an explicit modprobe | kmod modprobe(8), modprobe.d(5) |

Standard library only: the stand-ins import this module.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Modules the simulated kernel can load (modprobe), by the driver name sysfs shows.
KNOWN_MODULES = {"vfio-pci": "vfio_pci", "vfio_pci": "vfio_pci", "nouveau": "nouveau", "nvidia": "nvidia",
                 "snd_hda_intel": "snd_hda_intel", "xhci_hcd": "xhci_pci"}


def pci(root: Path) -> Path:
    return root / "sys/bus/pci"


def load_driver(root: Path, driver: str) -> None:
    """A driver module is loaded: its folder with bind/unbind/new_id."""
    folder = pci(root) / "drivers" / driver
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bind", "unbind", "new_id"):
        (folder / name).touch()


def populate(root: Path, devices: list, loaded: set[str]) -> None:
    """At boot: driver_override and boot_vga per device, drivers_probe, the loaded drivers."""
    (pci(root) / "drivers_probe").touch()
    for driver in loaded:
        load_driver(root, driver)
    for device in devices:
        path = pci(root) / "devices" / device.address
        (path / "driver_override").write_text("(null)\n")
        if device.class_code.startswith("0x0300"):
            (path / "boot_vga").write_text("1\n" if device.boot_vga else "0\n")


def holders(root: Path, prefix: str) -> list[tuple[int, str]]:
    """(pid, comm) of the simulated processes holding a file under ``prefix`` open."""
    found = []
    for proc in sorted((root / "proc").glob("[0-9]*")):
        fds = proc / "fd"
        if not fds.is_dir():
            continue
        for fd in fds.iterdir():
            if fd.is_symlink() and os.readlink(fd).startswith(prefix):
                comm = (proc / "comm").read_text().strip() if (proc / "comm").exists() else "?"
                found.append((int(proc.name), comm))
                break
    return found


def hold(root: Path, pid: int, comm: str, device: str) -> None:
    """A simulated process ``pid`` opens ``device`` (e.g. nvidia-persistenced, /dev/nvidia0)."""
    proc = root / "proc" / str(pid)
    (proc / "fd").mkdir(parents=True, exist_ok=True)
    (proc / "comm").write_text(comm + "\n")
    index = len(list((proc / "fd").iterdir())) + 3
    os.symlink(device, proc / "fd" / str(index))


def release(root: Path, pid: int) -> None:
    """The process exits: its open files close."""
    proc = root / "proc" / str(pid)
    for fd in (proc / "fd").iterdir() if (proc / "fd").exists() else ():
        fd.unlink()
    for name in ("comm",):
        (proc / name).unlink(missing_ok=True)
    for sub in ("fd", ""):
        try:
            (proc / sub).rmdir()
        except OSError:
            pass


def driver_of(root: Path, address: str) -> str | None:
    link = pci(root) / "devices" / address / "driver"
    return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None


def _record(base: Path, **entry: object) -> None:
    with open(base / "calls.jsonl", "a") as handle:
        handle.write(json.dumps({"tool": "sysfs", "time": time.time(), **entry}) + "\n")


def _log(base: Path, line: str) -> None:
    with open(base / "boot" / "dmesg", "a") as handle:
        handle.write(line + "\n")


def _wait_while_held(base: Path, root: Path, prefix: str, message: str) -> None:
    if holders(root, prefix):
        _log(base, message)
        _record(base, blocked=message)
    while holders(root, prefix):
        time.sleep(0.05)


def _bind(base: Path, root: Path, address: str, driver: str) -> str | None:
    """Attach ``address`` to ``driver``; an error text when the probe fails."""
    device = pci(root) / "devices" / address
    if driver == "vfio-pci" and not (device / "iommu_group").is_symlink():
        _log(base, f"vfio-pci: probe of {address} failed with error -22")
        return "probe failed"
    os.symlink(f"../../drivers/{driver}", device / "driver")
    _record(base, bound=address, driver=driver)
    return None


def write(base: Path, target: str, value: str) -> str | None:
    """A write of ``value`` to sysfs file ``target``: None, or tee's error text."""
    root = base / "root"
    path = Path(os.path.realpath(target))
    try:
        relative = path.relative_to(pci(root))
    except ValueError:
        return "Permission denied"
    parts = relative.parts
    value = value[:-1] if value.endswith("\n") else value
    native = {d["address"]: d.get("driver") for d in json.loads((base / "spec.json").read_text())["devices"]}
    if parts == ("drivers_probe",):
        if value not in native or not (pci(root) / "devices" / value).is_dir():
            return "No such device"
        if driver_of(root, value) is None:
            override = (pci(root) / "devices" / value / "driver_override").read_text().strip()
            wanted = native[value] if override == "(null)" else override
            if wanted and (pci(root) / "drivers" / wanted).is_dir():
                _bind(base, root, value, wanted)
        return None
    if len(parts) == 3 and parts[0] == "devices" and parts[2] == "driver_override":
        if len(value) >= 4096:
            return "Invalid argument"
        path.write_text((value or "(null)") + "\n")
        _record(base, driver_override=parts[1], value=value)
        return None
    if len(parts) == 3 and parts[0] == "drivers" and parts[2] in ("unbind", "bind") and (pci(root) / "drivers" / parts[1]).is_dir():
        driver, address = parts[1], value
        if not (pci(root) / "devices" / address).is_dir():
            return "No such device"
        if parts[2] == "bind":
            if driver_of(root, address) is not None:
                return "Device or resource busy"
            return "No such device" if _bind(base, root, address, driver) else None
        if driver_of(root, address) != driver:
            return "No such device"
        if driver == "nvidia":
            _wait_while_held(base, root, "/dev/nvidia", f"NVRM: Attempting to remove device {address} with non-zero usage count!")
        if driver == "vfio-pci":
            group = os.readlink(pci(root) / "devices" / address / "iommu_group").rsplit("/", 1)[-1]
            _wait_while_held(base, root, f"/dev/vfio/{group}", f"vfio-pci {address}: Device is currently in use, blocked until device is released")
        (pci(root) / "devices" / address / "driver").unlink()
        _record(base, unbound=address, driver=driver)
        return None
    return "Permission denied"


def tee_main(base: str, args: list[str]) -> int:
    """`tee FILE` with FILE in the simulated sysfs (coreutils' error form)."""
    data = sys.stdin.read()
    if len(args) != 1:
        print(f"tee: the simulated host only writes one sysfs file at a time (got {args})", file=sys.stderr)
        return 1
    error = write(Path(base), args[0], data)
    if error:
        print(f"tee: {args[0]}: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(data)
    return 0


def modprobe_main(base: str, args: list[str]) -> int:
    root = Path(base) / "root"
    names = [a for a in args if not a.startswith("-")]
    if len(names) != 1 or names[0] not in KNOWN_MODULES:
        kernel = (root / "proc/sys/kernel/osrelease").read_text().strip()
        print(f"modprobe: FATAL: Module {names[0] if names else ''} not found in directory /lib/modules/{kernel}", file=sys.stderr)
        return 1
    name = "vfio-pci" if names[0] in ("vfio-pci", "vfio_pci") else names[0]
    load_driver(root, name)
    return 0
