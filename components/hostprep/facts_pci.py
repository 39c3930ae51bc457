"""Host facts, the PCI devices: ids, drivers and IOMMU groups from sysfs,
boot_vga and driver_override, the holders of a device, and vfio-pci
options set by other files."""

from __future__ import annotations

import dataclasses
import re

from components.hostprep.facts import (
    ADDRESS,
    FactsError,
    PciFunction,
    shown,
)

_ID_LINE = re.compile(rf"/devices/({ADDRESS})/(vendor|device|class|subsystem_vendor|subsystem_device):(.*)$")
_LINK_LINE = re.compile(rf"/devices/({ADDRESS})/(driver|iommu_group) (.*)$")
_ID_FORMATS = {  # sysfs prints these exactly so (drivers/pci/pci-sysfs.c)
    "vendor": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "device": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "subsystem_vendor": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "subsystem_device": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "class": (re.compile(r"0x[0-9a-fA-F]{6}"), "0x and 6 hex digits"),
}
DRIVER_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


def parse_pci(ids_text: str, links_text: str) -> dict[str, PciFunction]:
    """``grep -H`` of the sysfs id files plus ``find -printf '%p %l'`` of the
    driver/iommu_group links -> every device, with group members filled in.
    A value not in sysfs's exact format is refused."""
    raw: dict[str, dict[str, str]] = {}
    for line in ids_text.splitlines():
        match = _ID_LINE.search(line)
        if not match:
            continue
        address, attr, value = match.group(1), match.group(2), match.group(3)
        values = raw.setdefault(address, {})
        if attr in values:
            raise FactsError(f"sysfs {address}/{attr} holds more than one line ({shown(values[attr])!r}, {shown(value)!r}); "
                             "refusing to use it (nothing was written)")
        pattern, what = _ID_FORMATS[attr]
        if not pattern.fullmatch(value):
            raise FactsError(f"sysfs {address}/{attr} holds {shown(value)!r}, not {what}; refusing to use it (nothing was written)")
        values[attr] = value.lower()
    for line in links_text.splitlines():
        match = _LINK_LINE.search(line)
        if not match or match.group(1) not in raw:
            continue
        address, attr = match.group(1), match.group(2)
        target = match.group(3).strip().rstrip("/").rsplit("/", 1)[-1]
        if attr == "iommu_group" and not target.isdigit():
            raise FactsError(f"sysfs {address}/iommu_group points to {shown(target)!r}, not a group number; "
                             "cannot check the GPU's isolation, so nothing was written")
        if attr == "driver" and not DRIVER_NAME.fullmatch(target):
            raise FactsError(f"sysfs {address}/driver points to {shown(target)!r}, not a driver name; refusing to use it")
        raw[address][attr] = target
    groups: dict[int, list[str]] = {}
    for address, values in raw.items():
        if "iommu_group" in values:
            groups.setdefault(int(values["iommu_group"]), []).append(address)
    devices = {}
    for address, values in sorted(raw.items()):
        for required in ("vendor", "device", "class"):
            if required not in values:
                raise FactsError(f"sysfs {address} has no readable {required} file; refusing to use the PCI facts")
        group = int(values["iommu_group"]) if "iommu_group" in values else None
        sub_vendor, sub_device = values.get("subsystem_vendor"), values.get("subsystem_device")
        devices[address] = PciFunction(
            address=address,
            vendor_device=f"{values['vendor'][2:]}:{values['device'][2:]}",
            class_code=values["class"],
            subsystem_id=f"{sub_vendor[2:]}:{sub_device[2:]}" if sub_vendor and sub_device else None,
            driver=values.get("driver") or None,
            iommu_group=group,
            group_members=tuple(sorted(a for a in groups.get(group, []) if a != address)) if group is not None else (),
        )
    return devices


_BINDING_LINE = re.compile(rf"/devices/({ADDRESS})/(boot_vga|driver_override):(.*)$")


def parse_binding_attrs(ids_text: str, devices: dict[str, PciFunction]) -> dict[str, PciFunction]:
    """``boot_vga`` (VGA-class devices only: ``0`` or ``1``) and
    ``driver_override`` (``(null)`` when unset) from the same ``grep -H``
    output, as drivers/pci/pci-sysfs.c prints them; anything else is refused."""
    out = dict(devices)
    for line in ids_text.splitlines():
        match = _BINDING_LINE.search(line)
        if not match or match.group(1) not in out:
            continue
        address, attr, value = match.groups()
        if attr == "boot_vga":
            if value not in ("0", "1"):
                raise FactsError(f"sysfs {address}/boot_vga holds {shown(value)!r}, not 0 or 1; refusing to use it (nothing was written)")
            out[address] = dataclasses.replace(out[address], boot_vga=value == "1")
        elif value != "(null)":
            if not DRIVER_NAME.fullmatch(value):
                raise FactsError(f"sysfs {address}/driver_override holds {shown(value)!r}, not a driver name; refusing to use it")
            out[address] = dataclasses.replace(out[address], driver_override=value)
    return out


def parse_holders(text: str) -> tuple[tuple[int, str, str], ...]:
    """``<pid> <device> <comm>`` lines -> (pid, device, command); other lines are ignored."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\d{1,10}) (/dev/(?:nvidia[A-Za-z0-9-]*|vfio/[0-9a-z]+)) ?(.*)", line)
        if match:
            found.append((int(match.group(1)), match.group(2), shown(match.group(3).strip(), 32)))
    return tuple(sorted(set(found)))


def parse_vfio_options(text: str, root: str = "/") -> tuple[tuple[str, str], ...]:
    """``grep -H`` lines ``<file>:options vfio-pci ...`` -> (file, line), root
    stripped. Only lines naming a /etc/modprobe.d/*.conf file count."""
    prefix = root.rstrip("/")
    found = []
    pattern = re.compile(rf"^{re.escape(prefix)}(/etc/modprobe\.d/[^/:]+\.conf):(\s*options\s+vfio[-_]pci\b.*)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return tuple(found)
