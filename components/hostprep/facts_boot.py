"""Host facts, the boot: CPU vendor, kernel version, and which bootloader
the host booted with (proxmox-boot-tool status, efibootmgr -v)."""

from __future__ import annotations

import re

from components.hostprep.facts import (
    CPU_VENDORS,
    FactsError,
    shown,
)


def parse_cpu_vendor(text: str) -> str:
    """``vendor_id : GenuineIntel`` -> "intel"; AuthenticAMD -> "amd".
    Anything else is refused: the IOMMU rules here are for those two only."""
    value = text.split(":", 1)[1].strip() if ":" in text else text.strip()
    vendor = CPU_VENDORS.get(value)
    if vendor is None:
        raise FactsError(f"/proc/cpuinfo: vendor_id is {shown(value, 40)!r}, not GenuineIntel or AuthenticAMD; "
                         "this program only knows the IOMMU settings of Intel and AMD CPUs, so it changes nothing")
    return vendor


_ESP_LINE = re.compile(r"^\S+ is configured with: (uefi|grub)\b", re.M)


def parse_boot_tool_status(rc: int, text: str) -> list[str] | None:
    """Modes of the ESPs proxmox-boot-tool keeps in sync (["uefi"], ["grub"]);
    [] when it manages none (exit 2, "… proxmox-boot-uuids does not exist");
    None when the output cannot be read."""
    if rc == 2 and "proxmox-boot-uuids does not exist" in text:
        return []
    if rc != 0:
        return None
    modes = _ESP_LINE.findall(text)
    return modes or None


def parse_efibootmgr_current(rc: int, text: str) -> str | None:
    """The loader file of the entry the host booted from, lowercased; None
    when the host has no EFI variables (a BIOS boot); "" when the output
    cannot be read (no BootCurrent, or no entry for it)."""
    if "EFI variables are not supported" in text:
        return None
    if rc != 0:
        return ""
    current = re.search(r"^BootCurrent:\s*([0-9A-Fa-f]{4})\s*$", text, re.M)
    if not current:
        return ""
    entry = re.search(rf"^Boot{current.group(1)}\*?\s+(.*)$", text, re.M)
    if not entry:
        return ""
    file_match = re.search(r"File\(([^)]*)\)", entry.group(1))
    return (file_match.group(1) if file_match else entry.group(1)).lower()


def _loader_kind(loader: str) -> str | None:
    if "systemd" in loader:
        return "systemd-boot"
    if "grub" in loader or "shim" in loader:
        return "grub"
    return None  # another loader name (e.g. the removable \EFI\BOOT\BOOTX64.EFI): no evidence either way


def detect_bootloader(*, efi: bool, efibootmgr_rc: int, efibootmgr_out: str, pbt_rc: int, pbt_out: str) -> tuple[str, bool, str, str]:
    """(bootloader, proxmox-boot-tool manages it, evidence, problem) from the
    two tools' output, as pve-docs "Determine which Bootloader is Used" says.
    ``problem`` is non-empty when the evidence cannot be read or disagrees:
    the planner then refuses instead of editing a file the host may not boot from."""
    modes = parse_boot_tool_status(pbt_rc, pbt_out)
    loader = parse_efibootmgr_current(efibootmgr_rc, efibootmgr_out)
    problems = []
    if modes is None:
        problems.append(f"`proxmox-boot-tool status` (rc={pbt_rc}) printed no ESP this program can read: {shown(pbt_out.strip(), 120)!r}")
    booted = re.search(r"^System currently booted with (uefi|legacy bios)", pbt_out, re.M)
    if booted and (booted.group(1) == "uefi") != efi:
        problems.append(f"proxmox-boot-tool says the system booted with {booted.group(1)}, but /sys/firmware/efi {'exists' if efi else 'does not exist'}")
    if loader == "" and efibootmgr_rc == 0:
        problems.append(f"`efibootmgr -v` output cannot be read (no BootCurrent entry): {shown(efibootmgr_out.strip(), 120)!r}")
    if loader is None and efi:
        problems.append("efibootmgr reports no EFI variables, but /sys/firmware/efi exists")
    if loader and not efi:
        problems.append(f"efibootmgr names a current EFI entry ({loader}), but /sys/firmware/efi does not exist")
    kind = _loader_kind(loader) if loader else None
    managed = bool(modes)
    if modes and len(set(modes)) > 1:
        problems.append(f"proxmox-boot-tool keeps ESPs with different loaders ({', '.join(sorted(set(modes)))})")
    if modes and modes[0] == "uefi":
        bootloader, evidence = "systemd-boot", "proxmox-boot-tool status: ESP configured with uefi (systemd-boot)"
        if not efi:
            problems.append("proxmox-boot-tool keeps a systemd-boot (uefi) ESP, but the host did not boot with UEFI")
    elif modes:
        bootloader = "grub-uefi" if efi else "grub-bios"
        evidence = "proxmox-boot-tool status: ESP configured with grub"
    else:
        # Without proxmox-boot-tool a Proxmox VE host boots with GRUB (systemd-boot is only set up through it).
        bootloader = "grub-uefi" if efi else "grub-bios"
        evidence = "no proxmox-boot-tool ESPs: GRUB" + (" (UEFI)" if efi else " (legacy BIOS, no EFI variables)")
    if kind and kind != ("systemd-boot" if bootloader == "systemd-boot" else "grub"):
        problems.append(f"efibootmgr -v says the host booted from {loader} ({kind}), but {evidence}")
    elif kind:
        evidence += f"; efibootmgr -v: booted from {loader}"
    return bootloader, managed, evidence, "; ".join(problems)
