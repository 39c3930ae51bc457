"""Host facts for planning offline, from what the user knows about the host.

The host plan needs the CPU vendor, the bootloader, the kernel and the GPU's
PCI functions. Over SSH, ``hostprep facts`` reads them. Offline they come
from, in order: the options of ``hostprep plan`` (``--cpu-vendor``,
``--bootloader``, ``--kernel``, ``--function``), a hand-written facts file
(docs/hostprep.md, "Planning offline"), else the defaults below (the guide's
pve5: a fresh Proxmox VE 8 host on Intel with GRUB). ``OfflineHost.summary``
is the one line that says what was assumed and where each value came from;
every offline plan starts with it.

Pure: no I/O apart from ``load_facts_file``, which reads the file it is given.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.hostprep.facts import (
    ETC_MODULES,
    GRUB_DEFAULT,
    KERNEL_CMDLINE,
    READ_FILES,
    HostFacts,
    PciFunction,
    facts_from_json,
    parse_kernel_version,
)
from components.pci import normalise_pci_address, pci_device

CPU_VENDORS = ("intel", "amd")
# The user's word -> the facts' bootloader. "grub" is GRUB on UEFI, the
# installer's default for ext4/LVM roots; systemd-boot is what the installer
# sets up for a ZFS root on UEFI, kept in sync by proxmox-boot-tool
# (pve-docs system-booting.adoc).
BOOTLOADERS = {"grub": "grub-uefi", "grub-uefi": "grub-uefi", "grub-bios": "grub-bios", "systemd-boot": "systemd-boot"}
DEFAULTS = {"cpu_vendor": "intel", "bootloader": "grub", "kernel": "6.8.12-4-pve"}
# A fresh host's files (Proxmox VE 8's installer writes these).
GRUB_FILE = 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="Proxmox VE"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
ZFS_CMDLINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs"
MODULES_FILE = "# /etc/modules: kernel modules to load at boot time.\n"
# PCI class by function number on an NVIDIA card (.0 the GPU, .1 HDMI audio,
# .2 USB xHCI, .3 USB Type-C UCSI), for functions given without a class.
FUNCTION_CLASSES = {0: "0x030000", 1: "0x040300", 2: "0x0c0330", 3: "0x0c8000"}
_VENDOR_DEVICE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
_CLASS = re.compile(r"^0x[0-9a-fA-F]{6}$")


class OfflineFactsError(ValueError):
    """An option or facts-file value that cannot be used: the message names it, the value and what is allowed."""


@dataclass(frozen=True)
class ExtraFunction:
    """A PCI function of a GPU's card besides the GPU itself (lspci -nn -s 01:00)."""

    address: str
    vendor_device: str
    class_code: str


@dataclass(frozen=True)
class OfflineHost:
    """What the user knows about the host; ``sources`` says where each value came from."""

    cpu_vendor: str = DEFAULTS["cpu_vendor"]
    bootloader: str = DEFAULTS["bootloader"]
    kernel: str = DEFAULTS["kernel"]
    functions: tuple[ExtraFunction, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, key: str) -> str:
        return self.sources.get(key, "assumed")

    def summary(self, gpus: list[Any]) -> str:
        """The first line of an offline plan: every assumption, and where it came from."""
        parts = [f"CPU {self.cpu_vendor} ({self.source('cpu_vendor')})", f"bootloader {self.bootloader} ({self.source('bootloader')})",
                 f"kernel {self.kernel} ({self.source('kernel')})"]
        for index, gpu in enumerate(gpus):
            extra = [fn.address for fn in self.functions if pci_device(fn.address) == pci_device(gpu.address)]
            known = ", ".join([gpu.address, *extra])
            parts.append(f"gpus[{index}] functions {known}" + (
                f" (gpus[{index}].allFunctions: true, but only these are known offline: add --function ADDRESS=VENDOR:DEVICE "
                f"for each other function 'lspci -nn -s {pci_device(gpu.address)[5:]}' lists)"
                if gpu.all_functions and not extra else ""))
        parts.append("IOMMU on unless Intel before kernel 6.8; each GPU alone in its IOMMU group; no guests read")
        return "Planned for an ASSUMED host (not read from yours): " + "; ".join(parts)


def offline_host(*, cpu_vendor: str | None = None, bootloader: str | None = None, kernel: str | None = None,
                 functions: list[str] | None = None, base: OfflineHost | None = None) -> OfflineHost:
    """``base`` (a facts file's, or the defaults) with the options given; OfflineFactsError names a bad one."""
    host = base or OfflineHost()
    sources = dict(host.sources)
    values: dict[str, Any] = {}
    if cpu_vendor is not None:
        values["cpu_vendor"], sources["cpu_vendor"] = _cpu_vendor(cpu_vendor, "--cpu-vendor"), "--cpu-vendor"
    if bootloader is not None:
        values["bootloader"], sources["bootloader"] = _bootloader(bootloader, "--bootloader"), "--bootloader"
    if kernel is not None:
        values["kernel"], sources["kernel"] = _kernel(kernel, "--kernel"), "--kernel"
    if functions:
        values["functions"] = host.functions + tuple(_function_option(text) for text in functions)
    return dataclasses.replace(host, **values, sources=sources)


def _cpu_vendor(value: Any, key: str) -> str:
    text = str(value).strip().lower()
    if text not in CPU_VENDORS:
        raise OfflineFactsError(f"{key}: {value!r} is not a CPU vendor; allowed: intel, amd (lscpu's 'Vendor ID': GenuineIntel, AuthenticAMD)")
    return text


def _bootloader(value: Any, key: str) -> str:
    text = str(value).strip().lower()
    if text not in BOOTLOADERS:
        raise OfflineFactsError(f"{key}: {value!r} is not a bootloader; allowed: {', '.join(BOOTLOADERS)} "
                                "('proxmox-boot-tool status' on the host says which)")
    return text


def _kernel(value: Any, key: str) -> str:
    text = str(value).strip()
    if not re.match(r"^\d+\.\d+", text):
        raise OfflineFactsError(f"{key}: {value!r} is not a kernel release; give what 'uname -r' prints, e.g. 6.8.12-4-pve")
    return text


def _function(address: Any, vendor_device: Any, class_code: Any, key: str) -> ExtraFunction:
    try:
        normal = normalise_pci_address(str(address))
    except ValueError:
        raise OfflineFactsError(f"{key}.address: {address!r} is not a PCI function address like 0000:01:00.1") from None
    if not _VENDOR_DEVICE.match(str(vendor_device)):
        raise OfflineFactsError(f"{key}.id: {vendor_device!r} is not a PCI vendor:device id like 10de:228e "
                                "(the [....:....] lspci -nn prints)")
    number = int(normal.rsplit(".", 1)[1])
    chosen = class_code if class_code is not None else FUNCTION_CLASSES.get(number, "0x040300")
    if not _CLASS.match(str(chosen)):
        raise OfflineFactsError(f"{key}.class: {class_code!r} is not a PCI class like 0x040300 (0x and 6 hex digits)")
    return ExtraFunction(normal, str(vendor_device).lower(), str(chosen).lower())


def _function_option(text: str) -> ExtraFunction:
    address, sep, vendor_device = text.partition("=")
    if not sep:
        raise OfflineFactsError(f"--function: {text!r} is not ADDRESS=VENDOR:DEVICE, e.g. 0000:01:00.1=10de:228e")
    return _function(address, vendor_device, None, f"--function {text}")


HAND_KEYS = {"cpuVendor", "bootloader", "kernel", "functions"}


def hand_facts(data: dict[str, Any], where: str) -> OfflineHost:
    """The hand-written facts file's content (docs/hostprep.md): each key optional,
    unknown keys refused so a typo does not silently fall back to a default."""
    unknown = sorted(set(data) - HAND_KEYS)
    if unknown:
        raise OfflineFactsError(f"{where}: unknown key {unknown[0]!r}; a hand-written facts file has {', '.join(sorted(HAND_KEYS))} "
                                "(docs/hostprep.md, Planning offline)")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, name, check in (("cpuVendor", "cpu_vendor", _cpu_vendor), ("bootloader", "bootloader", _bootloader),
                             ("kernel", "kernel", _kernel)):
        if key in data:
            values[name], sources[name] = check(data[key], f"{where}: {key}"), where
    listed = data.get("functions", [])
    if not isinstance(listed, list):
        raise OfflineFactsError(f"{where}: functions must be a list of {{address, id, class}} entries, got {type(listed).__name__}")
    functions = []
    for index, item in enumerate(listed):
        key = f"{where}: functions[{index}]"
        if not isinstance(item, dict) or "address" not in item or "id" not in item:
            raise OfflineFactsError(f"{key}: give address and id (class optional), e.g. {{address: '0000:01:00.1', id: '10de:228e'}}")
        extra = sorted(set(item) - {"address", "id", "class"})
        if extra:
            raise OfflineFactsError(f"{key}: unknown key {extra[0]!r}; allowed: address, id, class")
        functions.append(_function(item["address"], item["id"], item.get("class"), key))
    return OfflineHost(**values, functions=tuple(functions), sources=sources)


def _hand_written(path: Path) -> OfflineHost | None:
    """The hand-written form, when ``path`` holds a YAML mapping (not JSON); None when it does not."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return hand_facts(data, f"--host-facts {path}") if isinstance(data, dict) else None


def load_facts_file(path: Path) -> HostFacts | OfflineHost:
    """The host facts in ``path``: the JSON ``hostprep facts --json`` prints
    (HostFacts), or a hand-written file (OfflineHost); OfflineFactsError says what is wrong."""
    where = f"--host-facts {path}"
    make = (f"write it with `python -m components.hostprep facts --json ... > {path}`, or describe the host by hand "
            "(docs/hostprep.md, Planning offline)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OfflineFactsError(f"{where}: no such file; {make}") from None
    except IsADirectoryError:
        raise OfflineFactsError(f"{where}: is a folder, not the facts file; {make}") from None
    except OSError as error:
        raise OfflineFactsError(f"{where}: cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise OfflineFactsError(f"{where}: not UTF-8 JSON text; {make}") from None
    except json.JSONDecodeError as error:
        hand = _hand_written(path)
        if hand is not None:
            return hand
        raise OfflineFactsError(f"{where}: not JSON (line {error.lineno}, column {error.colno}: {error.msg}); {make}") from None
    if isinstance(data, dict) and "error" in data and "cpu_vendor" not in data:
        code = f" (exit code {data['exit_code']})" if "exit_code" in data else ""
        raise OfflineFactsError(f"{where} holds the error of a failed `hostprep facts` run{code}: {data['error']}; "
                               "fix that and run it again")
    if isinstance(data, dict) and not is_full_facts(data) and set(data) & HAND_KEYS:
        return hand_facts(data, where)
    if not isinstance(data, dict):
        raise OfflineFactsError(f"{where}: holds a JSON {type(data).__name__}, not the object `hostprep facts --json` writes; {make}")
    required = [f.name for f in dataclasses.fields(HostFacts)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise OfflineFactsError(f"{where}: not the JSON of `hostprep facts --json` (missing {', '.join(missing)}); {make}")
    try:
        return facts_from_json(data)
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        raise OfflineFactsError(f"{where}: not the JSON of `hostprep facts --json` ({type(error).__name__}: {error}); {make}") from None


def is_full_facts(data: Any) -> bool:
    """The JSON of ``hostprep facts --json`` (read from the host), not a hand-written file."""
    return isinstance(data, dict) and ("cpu_vendor" in data or "error" in data)


def offline_facts(gpus: list[Any], host: OfflineHost) -> HostFacts:
    """HostFacts of the host ``host`` describes: each configured GPU (and the
    functions given for its card) on its host driver, alone in one IOMMU group."""
    kernel = parse_kernel_version(host.kernel)
    functions: dict[str, PciFunction] = {}
    for index, gpu in enumerate(gpus):
        group = gpu.iommu_group if gpu.iommu_group is not None else 40 + index
        functions[gpu.address] = PciFunction(address=gpu.address, vendor_device=gpu.id, class_code="0x030000",
                                             subsystem_id=gpu.subsystem_id or "", driver="nouveau", iommu_group=group)
        for fn in host.functions:
            if pci_device(fn.address) == pci_device(gpu.address) and fn.address != gpu.address:
                functions[fn.address] = PciFunction(address=fn.address, vendor_device=fn.vendor_device, class_code=fn.class_code,
                                                    subsystem_id=gpu.subsystem_id or "", driver="snd_hda_intel" if fn.class_code == "0x040300" else None,
                                                    iommu_group=group)
    for fn in functions.values():
        members = tuple(sorted(other for other in functions if other != fn.address and functions[other].iommu_group == fn.iommu_group))
        functions[fn.address] = dataclasses.replace(fn, group_members=members)
    bootloader = BOOTLOADERS[host.bootloader]
    files: dict[str, str | None] = {path: None for path in READ_FILES}
    files[ETC_MODULES] = MODULES_FILE
    if bootloader == "systemd-boot":
        files[KERNEL_CMDLINE] = ZFS_CMDLINE + "\n"
        cmdline = f"initrd=\\EFI\\proxmox\\{host.kernel}\\initrd.img-{host.kernel} {ZFS_CMDLINE}"
    else:
        files[GRUB_DEFAULT] = GRUB_FILE
        cmdline = f"BOOT_IMAGE=/boot/vmlinuz-{host.kernel} root=/dev/mapper/pve-root ro quiet"
    return HostFacts(
        cpu_vendor=host.cpu_vendor, kernel_release=host.kernel, bootloader=bootloader, cmdline=cmdline,
        iommu_active=not (host.cpu_vendor == "intel" and kernel < (6, 8)), functions=functions, files=files,
        devices=dict(functions), boot_tool_managed=bootloader == "systemd-boot",
        bootloader_evidence=f"{host.source('bootloader')}: {host.bootloader}",
    )
