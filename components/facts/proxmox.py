"""What the Proxmox host prints: ``qm config <vmid>`` and ``lspci -nnk``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.facts.parsing import ParseError
from components.pci import normalise_pci_address, pci_device


@dataclass(frozen=True)
class HostpciEntry:
    slot: str
    mapping: str | None
    addresses: tuple[str, ...]  # normalised; "0000:3b:00" (no function) means every function
    options: dict[str, str]

    def covers(self, address: str) -> bool:
        address = normalise_pci_address(address)
        return any(address == entry or pci_device(address) == entry for entry in self.addresses)


@dataclass(frozen=True)
class QmConfig:
    options: dict[str, str]
    hostpci: dict[str, HostpciEntry]


_QM_LINE = re.compile(r"^(?P<key>[a-z][a-z0-9_-]*):\s?(?P<value>.*)$")
_HOSTPCI_KEY = re.compile(r"^hostpci\d+$")
_PCI_NO_FUNCTION = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])$")


def _hostpci_address(text: str) -> str:
    bare = _PCI_NO_FUNCTION.match(text)
    if bare:
        return f"{(bare.group(1) or '0000').lower()}:{bare.group(2).lower()}:{bare.group(3).lower()}"
    return normalise_pci_address(text)


def parse_hostpci(slot: str, value: str) -> HostpciEntry:
    """One ``hostpciN`` value: ``mapping=<name>,pcie=1`` or
    ``[host=]0000:3b:00.0[;0000:3b:00.1],pcie=1,rombar=1``."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ParseError(f"{slot} is empty")
    options: dict[str, str] = {}
    positional: list[str] = []
    for part in parts:
        key, sep, item = part.partition("=")
        if sep:
            options[key] = item
        else:
            positional.append(part)
    mapping = options.pop("mapping", None)
    raw = options.pop("host", None) or (positional[0] if positional else None)
    if mapping is None and raw is None:
        raise ParseError(f"{slot}: {value!r} names neither a mapping nor a PCI address")
    addresses: list[str] = []
    for item in (raw.split(";") if raw else []):
        try:
            addresses.append(_hostpci_address(item))
        except ValueError:
            raise ParseError(f"{slot}: {item!r} is not a PCI address") from None
    return HostpciEntry(slot, mapping, tuple(addresses), options)


def parse_qm_config(text: str) -> QmConfig:
    """``qm config <vmid>``: ``key: value`` lines of the current config (a
    snapshot section ``[name]`` ends it; ``#`` lines are the description)."""
    options: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            break
        match = _QM_LINE.match(line)
        if not match:
            raise ParseError(f"qm config line {number} is not 'key: value': {line[:80]!r}")
        options[match["key"]] = match["value"].strip()
    if not options:
        raise ParseError("qm config printed no 'key: value' lines")
    hostpci = {key: parse_hostpci(key, value) for key, value in options.items() if _HOSTPCI_KEY.match(key)}
    return QmConfig(options, hostpci)


# -- lspci -nnk ---------------------------------------------------------------

@dataclass(frozen=True)
class PciDevice:
    address: str  # normalised 0000:3b:00.0
    class_name: str
    class_code: str
    vendor_device: str
    description: str
    driver: str | None
    modules: tuple[str, ...] = ()
    subsystem: str | None = None


_LSPCI_DEVICE = re.compile(
    r"^(?P<address>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7])\s+"
    r"(?P<class_name>[^\[]+?)\s+\[(?P<class_code>[0-9a-fA-F]{4})\]:\s+"
    r"(?P<description>.*?)\s+\[(?P<vendor_device>[0-9a-fA-F]{4}:[0-9a-fA-F]{4})\](?:\s+\(rev [0-9a-fA-F]+\))?(?:\s+\(prog-if [^)]*\))?\s*$"
)
_LSPCI_SUBSYSTEM_ID = re.compile(r"\[([0-9a-fA-F]{4}:[0-9a-fA-F]{4})\]\s*$")


def parse_lspci_nnk(text: str) -> dict[str, PciDevice]:
    """``lspci -nnk [-D] [-s ...]``: a device line, then indented
    ``Subsystem:``, ``Kernel driver in use:`` and ``Kernel modules:`` lines."""
    devices: dict[str, PciDevice] = {}
    current: dict[str, Any] | None = None

    def finish() -> None:
        if current is not None:
            devices[current["address"]] = PciDevice(**current)

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not line[0].isspace():
            finish()
            match = _LSPCI_DEVICE.match(line)
            if not match:
                raise ParseError(f"lspci line {number} is not '<address> <class> [cccc]: <name> [vvvv:dddd]': {line[:100]!r}")
            current = {
                "address": normalise_pci_address(match["address"]),
                "class_name": match["class_name"],
                "class_code": match["class_code"].lower(),
                "vendor_device": match["vendor_device"].lower(),
                "description": match["description"],
                "driver": None,
            }
            continue
        if current is None:
            raise ParseError(f"lspci line {number} is indented but follows no device line: {line[:80]!r}")
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if key == "Kernel driver in use":
            current["driver"] = value
        elif key == "Kernel modules":
            current["modules"] = tuple(module.strip() for module in value.split(",") if module.strip())
        elif key == "Subsystem":
            found = _LSPCI_SUBSYSTEM_ID.search(value)
            current["subsystem"] = found.group(1).lower() if found else None
    finish()
    return devices
