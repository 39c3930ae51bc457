"""NVIDIA chip names as ``lspci`` prints them, and the row of the chip table
(``components.gpu_capabilities.CHIPS``) each one belongs to.

``lspci -nn -s 0000:01:00.0`` on the Proxmox host names the chip:
``NVIDIA Corporation GA106 [GeForce RTX 3060 Lite Hash Rate] [10de:2504]``,
``NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8]``. ``gpus[].model``
takes that name (any case, with or without the ``GL``/``M`` suffix of
workstation and mobile parts, with or without the bracketed product) or the
row's own name (``ga10x``), and the config holds the row's name. The names
come from the pci.ids database lspci reads (pciutils; pci-ids.ucw.cz,
vendor 10de) and NVIDIA's chip lists in the Video Codec SDK 13.0 NVDEC and
NVENC application notes; docs/consumers.md shows the table.
"""

from __future__ import annotations

import re

# lspci's chip name -> the chip-table row.
LSPCI_CHIPS: dict[str, str] = {
    # Pascal: GP108 (GT 1030) has no NVENC, the others do.
    "GP100": "gp10x", "GP102": "gp10x", "GP104": "gp10x", "GP106": "gp10x", "GP107": "gp10x",
    "GP108": "gp108",
    # Volta.
    "GV100": "gv100",
    # Turing: TU10x (RTX 20, Tesla T4, Quadro RTX) and TU11x (GTX 16).
    "TU102": "tu10x", "TU104": "tu10x", "TU106": "tu10x",
    "TU116": "tu11x", "TU117": "tu11x",
    # Ampere: GA100 (A100, A30) has no NVENC and no AV1 decoding; GA10x does.
    "GA100": "ga100",
    "GA102": "ga10x", "GA103": "ga10x", "GA104": "ga10x", "GA106": "ga10x", "GA107": "ga10x",
    # Ada.
    "AD102": "ad10x", "AD103": "ad10x", "AD104": "ad10x", "AD106": "ad10x", "AD107": "ad10x",
    # Hopper.
    "GH100": "gh100",
    # Blackwell: GB100 (B100, B200) and GB20x (RTX 50, RTX PRO Blackwell).
    "GB100": "gb100",
    "GB202": "gb20x", "GB203": "gb20x", "GB205": "gb20x", "GB206": "gb20x", "GB207": "gb20x",
}

ROWS: tuple[str, ...] = tuple(dict.fromkeys(LSPCI_CHIPS.values()))

# The chip name at the start of what lspci prints after "NVIDIA Corporation":
# two letters, three digits, then an optional suffix (GL workstation, M/GLM mobile).
_LSPCI = re.compile(r"^(?P<chip>[A-Za-z]{2}\d{3})[A-Za-z]{0,4}(?:\s*\[.*\])?$")


def chips_of(row: str) -> tuple[str, ...]:
    """The lspci chip names of one row, e.g. ``ga10x`` -> GA102, GA103, ..."""
    return tuple(chip for chip, owner in LSPCI_CHIPS.items() if owner == row)


def allowed_text() -> str:
    """What ``gpus[].model`` accepts, for error messages."""
    return ("a chip name as `lspci -nn` prints it, e.g. " + ", ".join(("GA106", "TU104GL", "AD102", "GP104", "GH100"))
            + " (" + ", ".join(LSPCI_CHIPS) + "), or a row of the chip table: " + ", ".join(ROWS)
            + " (docs/consumers.md, chip table)")


def chip_row(value: object) -> object:
    """The chip-table row ``value`` names; a ValueError saying what is
    allowed otherwise. Anything but a string is left to the type check."""
    if not isinstance(value, str):
        return value
    text = value.strip().removeprefix("NVIDIA Corporation ").strip()
    if text.lower() in ROWS:
        return text.lower()
    match = _LSPCI.match(text)
    if match and match.group("chip").upper() in LSPCI_CHIPS:
        return LSPCI_CHIPS[match.group("chip").upper()]
    raise ValueError(f"not an NVIDIA chip this program knows; allowed: {allowed_text()}")
