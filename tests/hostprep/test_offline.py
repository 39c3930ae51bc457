"""Offline host plans take what the user knows (CPU vendor, bootloader,
kernel, the card's other functions), as options of `hostprep facts/plan` or
in a hand-written facts file, need no SSH key, and say in their first line
what they assume and where each value came from."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HOMELAB_STACK
from tools import hostprep as hostprep_cli

GPU = "0000:3b:00.0"


@pytest.fixture
def stack(tmp_path):
    """A node stack for a consumer card with allFunctions (its HDMI audio at .1)."""
    text = HOMELAB_STACK.read_text().replace('      subsystemId: "10de:12a2"\n', '      subsystemId: "10de:12a2"\n      allFunctions: true\n')
    assert "allFunctions: true" in text
    path = tmp_path / "Pulumi.mynode.yaml"
    path.write_text(text)
    return path


def plan(capsys, stack, *options):
    code = hostprep_cli.main(["plan", "--stack", str(stack), *options])
    out, err = capsys.readouterr()
    return code, out, err


def test_amd_with_systemd_boot_edits_the_kernel_cmdline_and_never_adds_intel_iommu(capsys, stack):
    """On a kernel before 6.8, where an Intel host would need intel_iommu=on."""
    code, out, err = plan(capsys, stack, "--cpu-vendor", "amd", "--bootloader", "systemd-boot", "--kernel", "6.5.13-6-pve")
    assert code == 0, err
    first, rest = out.split("\n", 1)
    assert first.startswith("Planned for an ASSUMED host (not read from yours): CPU amd (--cpu-vendor); "
                            "bootloader systemd-boot (--bootloader); kernel 6.5.13-6-pve (--kernel)"), first
    assert "update /etc/kernel/cmdline" in rest and "run `proxmox-boot-tool refresh`" in rest
    assert "/etc/default/grub" not in rest and "update-grub" not in rest
    assert "intel_iommu" not in rest


def test_intel_before_kernel_6_8_with_grub_turns_the_iommu_on_and_reboots(capsys, stack):
    code, out, err = plan(capsys, stack, "--cpu-vendor", "intel", "--bootloader", "grub", "--kernel", "6.5.13-6-pve")
    assert code == 0, err
    assert "update /etc/default/grub" in out and "intel_iommu=on" in out and "run `update-grub`" in out
    assert "reboot" in out.lower() and "/etc/kernel/cmdline" not in out


def test_without_options_every_value_is_named_as_assumed(capsys, stack):
    code, out, err = plan(capsys, stack, "--offline")
    assert code == 0, err
    first = out.splitlines()[0]
    assert "CPU intel (assumed); bootloader grub (assumed); kernel 6.8.12-4-pve (assumed)" in first
    assert (f"gpus[0] functions {GPU} (gpus[0].allFunctions: true, but only these are known offline: add --function "
            "ADDRESS=VENDOR:DEVICE for each other function 'lspci -nn -s 3b:00' lists)") in first


def test_all_functions_binds_every_function_given(capsys, stack):
    code, out, err = plan(capsys, stack, "--offline", "--function", "3b:00.1=10DE:10F8", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["functions"] == [GPU, "0000:3b:00.1"]
    assert f"gpus[0] functions {GPU}, 0000:3b:00.1; " in data["assumed"]
    assert "bind 10de:10f8,10de:1eb8 to vfio-pci" in "\n".join(change["reason"] for change in data["files"])


def test_a_hand_written_facts_file_is_read_and_options_override_it(capsys, stack, tmp_path):
    facts = tmp_path / "pve7.yaml"
    facts.write_text("cpuVendor: amd\nbootloader: systemd-boot\nkernel: 6.8.12-4-pve\n"
                     "functions:\n  - address: '0000:3b:00.1'\n    id: '10de:10f8'\n")
    code, out, err = plan(capsys, stack, "--host-facts", str(facts), "--kernel", "6.5.13-6-pve")
    assert code == 0, err
    first = out.splitlines()[0]
    assert f"CPU amd (--host-facts {facts}); bootloader systemd-boot (--host-facts {facts}); kernel 6.5.13-6-pve (--kernel)" in first
    assert f"gpus[0] functions {GPU}, 0000:3b:00.1;" in first
    assert "update /etc/kernel/cmdline" in out


@pytest.mark.parametrize(("content", "says"), [
    ("cpuVendor: arm\n", "--host-facts {f}: cpuVendor: 'arm' is not a CPU vendor; allowed: intel, amd"),
    ("cpu: amd\n", "--host-facts {f}: unknown key 'cpu'; a hand-written facts file has bootloader, cpuVendor, functions, kernel"),
    ("bootloader: lilo\n", "--host-facts {f}: bootloader: 'lilo' is not a bootloader; allowed: grub, grub-uefi, grub-bios, systemd-boot"),
    ("kernel: latest\n", "--host-facts {f}: kernel: 'latest' is not a kernel release; give what 'uname -r' prints"),
    ("functions:\n  - address: '0000:3b:00.1'\n    id: audio\n", "--host-facts {f}: functions[0].id: 'audio' is not a PCI vendor:device id"),
    ("functions:\n  - address: nowhere\n    id: '10de:10f8'\n", "--host-facts {f}: functions[0].address: 'nowhere' is not a PCI function address"),
    ("functions: 3\n", "--host-facts {f}: functions must be a list of {{address, id, class}} entries, got int"),
])
def test_each_hand_written_facts_problem_is_one_message_naming_the_key(capsys, stack, tmp_path, content, says):
    facts = tmp_path / "facts.yaml"
    facts.write_text(content)
    code, out, err = plan(capsys, stack, "--host-facts", str(facts))
    assert code == 2 and out == ""
    assert err.startswith("error: " + says.format(f=facts)), err
    assert "Traceback" not in err


def test_a_bad_function_option_names_the_form(capsys, stack):
    code, _, err = plan(capsys, stack, "--function", "0000:3b:00.1")
    assert code == 2 and "--function: '0000:3b:00.1' is not ADDRESS=VENDOR:DEVICE, e.g. 0000:01:00.1=10de:228e" in err


def test_facts_read_from_the_host_are_used_as_they_are(capsys, stack, tmp_path):
    from components.config import load_stack_file
    from components.hostprep.facts import facts_to_json
    from components.hostprep.offline import OfflineHost, offline_facts

    read = facts_to_json(offline_facts(load_stack_file(stack).gpus, OfflineHost(cpu_vendor="amd", bootloader="systemd-boot")))
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(read))
    code, out, err = plan(capsys, stack, "--host-facts", str(path))
    assert code == 0, err
    assert out.splitlines()[0] == f"Planned from the host facts in {path} (read from the host)"
    code, _, err = plan(capsys, stack, "--host-facts", str(path), "--cpu-vendor", "intel")
    assert code == 2 and "holds facts read from the host; --cpu-vendor, --bootloader, --kernel and --function describe a host by hand" in err


def test_offline_facts_print_what_the_plan_would_assume(capsys, stack):
    assert hostprep_cli.main(["facts", "--stack", str(stack), "--cpu-vendor", "amd", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu_vendor"] == "amd" and data["assumed"].startswith("Planned for an ASSUMED host") and GPU in data["functions"]


def test_connecting_without_a_key_says_how_to_plan_offline(capsys, stack):
    code, _, err = plan(capsys, stack)
    assert code == 2
    assert err.startswith("error: --identity is required: plan connects to the host over SSH. To plan without connecting, give "
                          "what you know (--cpu-vendor, --bootloader, --kernel) or --host-facts FILE")


def test_offline_options_do_not_apply_to_apply_or_undo(capsys, stack):
    for action in ("apply", "undo", "verify"):
        assert hostprep_cli.main([action, "--stack", str(stack), "--cpu-vendor", "amd"]) == 2
        assert f"{action} changes or checks the host itself: it connects (give --identity)" in capsys.readouterr().err


def test_offline_needs_a_stack_file(capsys, tmp_path):
    assert hostprep_cli.main(["plan", "--offline", "--gpu", GPU, "--project-dir", str(tmp_path)]) == 2
    assert f"error: no Pulumi.<stack>.yaml in {tmp_path}" in capsys.readouterr().err


def test_render_takes_the_hand_written_file_too(tmp_path, stack, capsys):
    from tools.render import main as render_main

    facts = tmp_path / "pve7.yaml"
    facts.write_text("cpuVendor: amd\nbootloader: systemd-boot\n")
    assert render_main(["--stack", str(stack), "--out", str(tmp_path / "out"), "--host-facts", str(facts)]) == 0
    capsys.readouterr()
    first = (tmp_path / "out" / "host" / "plan.txt").read_text().splitlines()[0]
    assert first.startswith(f"# Planned for an ASSUMED host (not read from yours): CPU amd (--host-facts {facts}); "
                            f"bootloader systemd-boot (--host-facts {facts}); kernel 6.8.12-4-pve (assumed)")
    assert (tmp_path / "out" / "host" / "files" / "etc" / "kernel" / "cmdline").is_file()
