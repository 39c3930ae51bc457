"""PCI addresses as the config, the host's facts and lspci write them."""

from __future__ import annotations

import re

_PCI_FULL = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$")
_PCI_SHORT = re.compile(r"^([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$")


def normalise_pci_address(value: str) -> str:
    """``3b:00.0`` or ``0000:3B:00.0`` -> ``0000:3b:00.0``."""
    text = str(value).strip()
    if _PCI_FULL.match(text):
        return text.lower()
    if _PCI_SHORT.match(text):
        return "0000:" + text.lower()
    raise ValueError("expected a PCI address like 0000:3b:00.0 or 3b:00.0 (domain:bus:device.function)")


def pci_device(address: str) -> str:
    """The device part of a normalised PCI function address:
    ``0000:3b:00.1`` -> ``0000:3b:00`` (every function of one card shares it)."""
    return address.rsplit(".", 1)[0]
