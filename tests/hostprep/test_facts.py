"""Fact parsers on captured output (pve-docs examples, a Tesla T4 host's sysfs)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from components.hostprep.facts import GRUB_DEFAULT, VFIO_FILE, FactsError, parse_kernel_version
from components.hostprep.facts_boot import detect_bootloader, parse_boot_tool_status, parse_cpu_vendor, parse_efibootmgr_current
from components.hostprep.facts_pci import parse_pci, parse_vfio_options
from components.hostprep.facts_read import facts_script, parse_facts, split_sections

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_cpu_vendor_reads_intel_and_amd_from_cpuinfo():
    assert parse_cpu_vendor(fixture("cpuinfo-intel.txt").splitlines()[1]) == "intel"
    assert parse_cpu_vendor(fixture("cpuinfo-amd.txt").splitlines()[1]) == "amd"


@pytest.mark.parametrize("text", ["vendor_id\t: CentaurHauls", "vendor_id\t: HygonGenuine", "vendor_id\t: Genuine\x00Intel",
                                  "/proc/cpuinfo: binary file matches", "", "vendor_id\t: " + "\x1b[31m" * 40])
def test_cpu_vendor_refuses_anything_but_intel_and_amd_escaped_and_truncated(text):
    with pytest.raises(FactsError, match="not GenuineIntel or AuthenticAMD") as error:
        parse_cpu_vendor(text)
    message = str(error.value)
    assert "\x00" not in message and "\x1b" not in message and len(message) < 300


@pytest.mark.parametrize(("release", "version"), [("6.8.12-4-pve", (6, 8)), ("5.15.158-2-pve", (5, 15)), ("6.2.16-20-pve", (6, 2))])
def test_kernel_version_takes_major_and_minor(release, version):
    assert parse_kernel_version(release) == version


def test_kernel_version_refuses_garbage():
    with pytest.raises(FactsError):
        parse_kernel_version("unknown")


def test_boot_tool_status_lists_configured_esps():
    assert parse_boot_tool_status(0, fixture("pbt-status-systemd-boot.txt")) == ["uefi"]
    assert parse_boot_tool_status(0, fixture("pbt-status-grub-legacy.txt")) == ["grub"]
    assert parse_boot_tool_status(2, fixture("pbt-status-unmanaged.txt")) == []


def test_efibootmgr_current_entry_loader_in_both_output_formats():
    assert parse_efibootmgr_current(0, fixture("efibootmgr-systemd-boot.txt")) == "\\efi\\systemd\\systemd-bootx64.efi"
    assert parse_efibootmgr_current(0, fixture("efibootmgr-grub-uefi.txt")) == "\\efi\\proxmox\\grubx64.efi"
    assert "systemd-bootx64.efi" in (parse_efibootmgr_current(0, fixture("efibootmgr-v18-systemd-boot.txt")) or "")
    assert parse_efibootmgr_current(2, fixture("efibootmgr-bios.txt")) is None


@pytest.mark.parametrize(("efi", "efi_fixture", "efi_rc", "pbt_fixture", "pbt_rc", "expected"), [
    (False, "efibootmgr-bios.txt", 2, "pbt-status-unmanaged.txt", 2, ("grub-bios", False)),
    (False, "efibootmgr-bios.txt", 2, "pbt-status-grub-legacy.txt", 0, ("grub-bios", True)),
    (True, "efibootmgr-systemd-boot.txt", 0, "pbt-status-systemd-boot.txt", 0, ("systemd-boot", True)),
    (True, "efibootmgr-v18-systemd-boot.txt", 0, "pbt-status-systemd-boot.txt", 0, ("systemd-boot", True)),
    # The current entry wins over another loader in the boot order.
    (True, "efibootmgr-grub-uefi.txt", 0, "pbt-status-unmanaged.txt", 2, ("grub-uefi", False)),
    # efibootmgr not usable (exit 1, no output of its own): proxmox-boot-tool's mode decides.
    (True, "pbt-status-unmanaged.txt", 1, "pbt-status-systemd-boot.txt", 0, ("systemd-boot", True)),
])
def test_detect_bootloader(efi, efi_fixture, efi_rc, pbt_fixture, pbt_rc, expected):
    bootloader, managed, evidence, problem = detect_bootloader(efi=efi, efibootmgr_rc=efi_rc, efibootmgr_out=fixture(efi_fixture),
                                                               pbt_rc=pbt_rc, pbt_out=fixture(pbt_fixture))
    assert (bootloader, managed, problem) == (*expected, "")
    assert evidence


GARBAGE = "\x00\x13\xff%$#@!\nBootCurrnt 00zz\n"


@pytest.mark.parametrize(("efi", "efi_out", "efi_rc", "pbt_out", "pbt_rc", "problem"), [
    # garbage from either tool
    (True, GARBAGE, 0, fixture("pbt-status-systemd-boot.txt"), 0, "efibootmgr -v` output cannot be read"),
    (True, fixture("efibootmgr-systemd-boot.txt"), 0, GARBAGE, 0, "proxmox-boot-tool status` (rc=0) printed no ESP"),
    (True, fixture("efibootmgr-systemd-boot.txt"), 0, GARBAGE, 1, "proxmox-boot-tool status` (rc=1)"),
    # the evidence disagrees
    (True, fixture("efibootmgr-systemd-boot.txt"), 0, fixture("pbt-status-unmanaged.txt"), 2, "booted from \\efi\\systemd"),
    (True, fixture("efibootmgr-grub-uefi.txt"), 0, fixture("pbt-status-systemd-boot.txt"), 0, "(grub), but proxmox-boot-tool"),
    (False, fixture("efibootmgr-systemd-boot.txt"), 0, fixture("pbt-status-unmanaged.txt"), 2, "/sys/firmware/efi does not exist"),
    (True, fixture("efibootmgr-bios.txt"), 2, fixture("pbt-status-unmanaged.txt"), 2, "no EFI variables, but /sys/firmware/efi exists"),
    (True, fixture("efibootmgr-systemd-boot.txt"), 0, fixture("pbt-status-grub-legacy.txt"), 0, "booted with legacy bios"),
])
def test_detect_bootloader_refuses_garbage_or_disagreeing_evidence(efi, efi_out, efi_rc, pbt_out, pbt_rc, problem):
    _, _, _, found = detect_bootloader(efi=efi, efibootmgr_rc=efi_rc, efibootmgr_out=efi_out, pbt_rc=pbt_rc, pbt_out=pbt_out)
    assert problem in found
    assert "\x00" not in found


def test_parse_pci_reads_ids_drivers_groups_and_members():
    devices = parse_pci(fixture("pci-ids-t4.txt"), fixture("pci-links-t4.txt"))
    t4 = devices["0000:3b:00.0"]
    assert (t4.vendor_device, t4.class_code, t4.subsystem_id, t4.driver, t4.iommu_group) == ("10de:1eb8", "0x030200", "10de:12a2", "vfio-pci", 30)
    assert t4.group_members == ("0000:3a:00.0",)
    assert devices["0000:3a:00.0"].is_bridge and not t4.is_bridge
    assert devices["0000:00:00.0"].driver is None
    assert devices["0000:05:00.0"].group_members == ()  # igb ports in their own groups


def test_vfio_options_ignore_grep_errors_about_an_empty_modprobe_d():
    text = "grep: /sim/root/etc/modprobe.d/*.conf: No such file or directory\n"
    assert parse_vfio_options(text, "/sim/root") == ()
    assert parse_vfio_options("/etc/modprobe.d/vfio.conf:  options vfio_pci ids=10de:1eb8\n/etc/modprobe.d/x.conf:blacklist nouveau\n") == (
        ("/etc/modprobe.d/vfio.conf", "options vfio_pci ids=10de:1eb8"),)


def test_vfio_options_strip_the_root_prefix():
    text = "/sim/root/etc/modprobe.d/vfio.conf:options vfio-pci ids=10de:1eb8\n"
    assert parse_vfio_options(text, "/sim/root") == (("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1eb8"),)


def _section(name: str, body: str, *args: str) -> str:
    return f"@@ptg {' '.join((name, *args))}\n{base64.b64encode(body.encode()).decode()}\n"


def test_sections_keep_file_bytes_exact_even_when_they_look_like_headers():
    tricky = "@@ptg cpuinfo rc=0\nno trailing newline"
    sections = split_sections(_section("file", tricky, GRUB_DEFAULT, "present") + _section("cmdline", "x", "rc=0"))
    assert [(s.name, s.body) for s in sections] == [("file", tricky), ("cmdline", "x")]


def _full_output(**overrides: str) -> str:
    parts = {
        "cpuinfo": fixture("cpuinfo-intel.txt").splitlines()[1], "kernel": "6.5.13-5-pve\n", "cmdline": "BOOT_IMAGE=/boot/vmlinuz root=/dev/mapper/pve-root ro quiet\n",
        "boot_id": "0c7e9c2e-1d0a-4a5e-9f0e-3b0f0f5f2d11\n", "efi": "no\n", "pbt": fixture("pbt-status-unmanaged.txt"),
        "efibootmgr": fixture("efibootmgr-bios.txt"), "iommu_groups": "42\n",
        "pci_ids": fixture("pci-ids-t4.txt"), "pci_links": fixture("pci-links-t4.txt"), "vfio_options": "", "pending": "update-initramfs\n", "temps": "",
    }
    parts.update(overrides)
    rcs = {"pbt": "2", "efibootmgr": "2"}
    out = "".join(_section(name, body, f"rc={rcs.get(name, '0')}") for name, body in parts.items())
    out += _section("file", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', GRUB_DEFAULT, "present")
    out += _section("original", "", VFIO_FILE, "absent")
    return out


def test_parse_facts_builds_host_facts():
    facts = parse_facts(_full_output(), ["0000:3b:00.0"])
    assert (facts.cpu_vendor, facts.kernel_version, facts.bootloader, facts.iommu_active) == ("intel", (6, 5), "grub-bios", True)
    assert list(facts.functions) == ["0000:3b:00.0"] and len(facts.devices) == 5
    assert facts.files[GRUB_DEFAULT] == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    assert facts.files[VFIO_FILE] is None and facts.originals == {VFIO_FILE: None}
    assert facts.pending == ("update-initramfs",)


def test_parse_facts_sees_iommu_off_when_no_groups():
    assert parse_facts(_full_output(iommu_groups="0\n"), ["0000:3b:00.0"]).iommu_active is False


def test_parse_facts_refuses_output_without_a_kernel():
    output = _full_output().replace(_section("kernel", "6.5.13-5-pve\n", "rc=0"), "")
    with pytest.raises(FactsError, match="kernel"):
        parse_facts(output, ["0000:3b:00.0"])


def test_facts_script_is_valid_sh_and_reads_a_tree(tmp_path):
    """The script runs under plain sh against a root prefix and changes nothing."""
    root = tmp_path / "root"
    (root / "proc/sys/kernel/random").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(fixture("cpuinfo-amd.txt"))
    (root / "proc/sys/kernel/osrelease").write_text("6.8.12-4-pve\n")
    (root / "proc/cmdline").write_text("root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    (root / "proc/sys/kernel/random/boot_id").write_text("b\n")
    (root / "etc/kernel").mkdir(parents=True)
    (root / "etc/kernel/cmdline").write_bytes(b"root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    before = sorted(str(p) for p in root.rglob("*"))
    result = subprocess.run(["sh", "-s"], input=facts_script(str(root)), capture_output=True, text=True, check=True)
    facts = parse_facts(result.stdout, [], root=str(root))
    assert (facts.cpu_vendor, facts.kernel_release, facts.iommu_active) == ("amd", "6.8.12-4-pve", False)
    assert facts.files["/etc/kernel/cmdline"] == "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"
    assert sorted(str(p) for p in root.rglob("*")) == before
