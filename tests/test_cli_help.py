"""Every option and argument of render, doctor and the talos CLI says in its
--help what it is and what its default is."""

from __future__ import annotations

import re

import pytest

from tools.doctor.cli import main as doctor_main
from tools.hostprep import main as hostprep_main
from tools.render import main as render_main
from tools.stacks import main as stacks_main
from tools.talos import main as talos_main
from tools.vm import main as vm_main


def entries(help_text: str) -> dict[str, str]:
    """argparse's argument list: each entry (``--out DIR``, ``stack``) with its
    help text, across wrapped lines, in every argument group. Sub-command
    lists are left out."""
    found: dict[str, str] = {}
    section, current, listed = "", None, False
    for line in help_text.splitlines():
        if re.match(r"^\S.*:$", line):
            section, current = line, None
            listed = listed or section.startswith(("options", "positional arguments"))  # argument groups follow these
            continue
        if not listed or not line.strip():
            current = None
            continue
        head = re.match(r"^  (\S.*?)(?:\s{2,}(.*))?$", line)
        if head and not line.startswith("   "):
            current = head.group(1)
            found[current] = head.group(2) or ""
        elif current is not None:
            found[current] += " " + line.strip()
    return found


def help_of(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("main", "argv", "expected"), [
    (render_main, ["--help"], {"--stack STACK", "--project-dir DIR", "--out DIR", "--host-facts FILE", "--json"}),
    (doctor_main, ["--help"], {"--stack STACK", "--project-dir DIR", "--layer {host,proxmox,talos,kubernetes,workload,monitoring}", "--json",
                               "--identity KEY_FILE", "--known-hosts FILE", "--timeout SECONDS", "--verbose"}),
    (talos_main, ["schematic-id", "--help"], {"file"}),
    (talos_main, ["schematic", "--help"], {"--stack STACK", "STACK", "--project-dir DIR"}),
    (talos_main, ["patch", "--help"], {"--stack STACK", "STACK", "--project-dir DIR"}),
    (hostprep_main, ["--help"], {"--stack STACK", "--project-dir DIR", "--identity IDENTITY", "--json", "--offline", "--host-facts FILE",
                                 "--cpu-vendor {intel,amd}", "--bootloader {grub,grub-uefi,grub-bios,systemd-boot}", "--kernel RELEASE",
                                 "--function ADDRESS=VENDOR:DEVICE"}),
    (vm_main, ["--help"], {"--stack STACK", "--project-dir DIR", "--json"}),
    (stacks_main, ["check", "--help"], {"--stack STACK", "--project-dir DIR", "--json"}),
], ids=["render", "doctor", "talos schematic-id", "talos schematic", "talos patch", "hostprep", "vm", "stacks check"])
def test_every_option_says_what_it_is_and_its_default(main, argv, expected, capsys):
    found = entries(help_of(main, argv, capsys))
    found.pop("-h, --help")
    assert expected <= set(found), f"missing from --help: {expected - set(found)}"
    for name, text in found.items():
        assert "default" in text and len(text.split()) >= 5, f"{name}: {text!r}"


def test_the_descriptions_are_whole_sentences(capsys):
    for main, argv in ((render_main, ["--help"]), (doctor_main, ["--help"])):
        text = help_of(main, argv, capsys)
        description = text.split("\n\n")[1]
        assert description.rstrip().endswith("."), description
