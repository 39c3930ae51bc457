"""The managed vfio file: one block per stack, and the lines derived from
all blocks after them (one `options vfio-pci ids=` line, the softdeps)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Drivers that may claim a GPU's companion function before vfio-pci does.
SOFTDEP_BY_CLASS = {"0403": "snd_hda_intel", "0c03": "xhci_pci", "0c80": "i2c_nvidia_gpu"}


@dataclass(frozen=True)
class Block:
    """One stack's block; the stack is the key it is filed under."""

    functions: tuple[tuple[str, str, str], ...]  # (address, vendor:device, class)


_BLOCK = re.compile(r"^# BEGIN (?P<owner>\S+)\n(?P<body>(?:.*\n)*?)# END (?P=owner)$", re.M)
FUNCTION_LINE = re.compile(r"^# function (\S+) ([0-9a-f]{4}:[0-9a-f]{4}) (0x[0-9a-f]{6})$")
VFIO_HEADER = (
    "# Managed by proxmox-talos-gpu: binds passed-through GPUs to vfio-pci.",
    "# One block per stack; each stack edits only its own block, and the lines",
    "# after the blocks are derived from all of them. Do not edit by hand.",
)


def parse_blocks(content: str | None) -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    for match in _BLOCK.finditer(content or ""):
        functions = tuple(m.groups() for m in (FUNCTION_LINE.match(line) for line in match.group("body").splitlines()) if m)
        blocks[match.group("owner")] = Block(functions)  # type: ignore[arg-type]
    return blocks


def render_vfio_file(blocks: dict[str, Block]) -> str | None:
    """The whole file from every stack's block; None when no block is left.
    `options vfio-pci ids=` is last-wins, so there is exactly one such line,
    the union of all blocks."""
    if not blocks:
        return None
    out = list(VFIO_HEADER)
    ids: set[str] = set()
    softdeps: set[str] = set()
    for owner in sorted(blocks):
        out.append(f"# BEGIN {owner}")
        for address, vendor_device, class_code in blocks[owner].functions:
            out.append(f"# function {address} {vendor_device} {class_code}")
            ids.add(vendor_device)
            module = SOFTDEP_BY_CLASS.get(class_code[2:6])
            if module:
                softdeps.add(module)
        out.append(f"# END {owner}")
    out.append(f"options vfio-pci ids={','.join(sorted(ids))}")
    out.extend(f"softdep {module} pre: vfio-pci" for module in sorted(softdeps))
    return "\n".join(out) + "\n"
