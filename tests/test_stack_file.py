"""Reading Pulumi.<stack>.yaml directly (render, doctor, talos): every problem
of the file is one ConfigError that names the file and the line, stray or
mis-namespaced keys are named with the key that was probably meant, and a
secret in plain text is refused as the program refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import ConfigError, load_stack_file, read_stack_file, stack_file
from tests.conftest import HOMELAB_STACK

HOMELAB = HOMELAB_STACK.read_text()
SECRET_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXktdjE"


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def replaced(old: str, new: str) -> str:
    assert old in HOMELAB, old
    return HOMELAB.replace(old, new, 1)


def error_for(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "Pulumi.case.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as error:
        load_stack_file(path)
    message = str(error.value)
    assert message.startswith(f"invalid stack configuration in {path} ("), message
    assert "Traceback" not in message
    return message


CASES = {
    # name: (file text, expected text, the line it names (a needle in the text) or None)
    "empty": ("", "the file is empty: it needs a `config:` section", None),
    "comments only": ("# nothing here\n", "the file is empty", None),
    "a list": ("- proxmox-talos-gpu:vm\n- x\n", "line 1: is not a Pulumi stack file: it holds a list, not a mapping", None),
    "a string": ("proxmox-talos-gpu\n", "line 1: is not a Pulumi stack file: it holds a single string, not a mapping", None),
    "config is a list": ("config:\n  - a\n", "line 1: `config:` must be a mapping", None),
    "YAML syntax": (replaced("    vmId: 1105\n", "    vmId: [1105\n"), "not valid YAML at column", None),
    "a tab": (replaced("    vmId: 1105\n", "\tvmId: 1105\n"), "not valid YAML: a tab character at column 1; YAML indents with spaces only", "vmId: 1105"),
    "confg typo": (replaced("config:", "confg:"), "confg: not a stack-file setting; did you mean 'config'?", "confg:"),
    "vm without namespace": (replaced("proxmox-talos-gpu:vm:", "vm:"),
                             "vm: a config key without a namespace (stack files name keys <namespace>:<name>); "
                             "did you mean 'proxmox-talos-gpu:vm'?", "  vm:"),
    "wrong namespace": (replaced("proxmox-talos-gpu:vm:", "proxmox_talos_gpu:vm:"),
                        "proxmox_talos_gpu:vm: namespace 'proxmox_talos_gpu' is not this project's (proxmox-talos-gpu); "
                        "did you mean 'proxmox-talos-gpu:vm'?", "proxmox_talos_gpu:vm:"),
    "typo in a section's key": (replaced("    vmId: 1105\n", "    vmid: 1105\n"), "proxmox-talos-gpu:vm.vmid = 1105: unknown key; did you mean 'vmId'?", "vmid: 1105"),
    "typo in a top-level key": (replaced("proxmox-talos-gpu:gpuStack:", "proxmox-talos-gpu:gpuStak:"),
                                "proxmox-talos-gpu:gpuStak = ", "gpuStak:"),
    "bad value": (replaced("    vmId: 1105\n", "    vmId: 5\n"), "proxmox-talos-gpu:vm.vmId = 5: Input should be greater than or equal to 100", "vmId: 5"),
    "bad value in a list": (replaced("      slot: hostpci0\n", "      slot: '0000:3b:00.0'\n"),
                            "proxmox-talos-gpu:gpus[0].slot = '0000:3b:00.0': expected a Proxmox slot name", "slot: '0000:3b:00.0'"),
    "duplicate key": (HOMELAB + "  proxmox-talos-gpu:readiness:\n    timeoutSeconds: 901\n  proxmox-talos-gpu:readiness:  # again\n    timeoutSeconds: 902\n",
                      "proxmox-talos-gpu:readiness: defined twice (also line", "readiness:  # again"),
    "plain-text secret": (HOMELAB + f"  proxmox-talos-gpu:sshPrivateKey: \"{SECRET_TEXT}\"\n",
                          "proxmox-talos-gpu:sshPrivateKey = '(hidden)': is stored in plain text; set it with `pulumi config set --secret sshPrivateKey`",
                          "sshPrivateKey"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_problem_names_the_file_and_the_line(tmp_path, name):
    text, expected, needle = CASES[name]
    message = error_for(tmp_path, text)
    assert expected in message, message
    if needle is not None:
        number = text[:text.index(needle) + 1].count("\n") + 1
        assert f"line {number}" in message, message


def test_a_secret_is_never_echoed_even_when_written_in_the_wrong_place(tmp_path):
    for text in (HOMELAB + f"  sshPrivateKey: \"{SECRET_TEXT}\"\n",
                 HOMELAB + f"  proxmox-talos-gpu:sshPrivateKey: \"{SECRET_TEXT}\"\n",
                 HOMELAB + f"sshPrivateKey: \"{SECRET_TEXT}\"\n",
                 HOMELAB + f"  proxmox-talos-gpus:sshPrivateKey: \"{SECRET_TEXT}\"\n"):
        message = error_for(tmp_path, text)
        assert "b3BlbnNzaC1rZXktdjE" not in message and "sshPrivateKey" in message, message


def test_an_encrypted_secret_and_provider_config_are_accepted(tmp_path):
    path = tmp_path / "Pulumi.ok.yaml"
    path.write_text("encryptionsalt: v1:abc\n" + HOMELAB
                    + "  proxmox-talos-gpu:sshPrivateKey:\n    secure: v1:AAABAGvP1\n  proxmoxve:insecure: true\n")
    assert load_stack_file(path).vm.vm_id == 1105
    assert "sshPrivateKey" not in read_stack_file(path)


def test_unreadable_files_name_the_file(tmp_path):
    (tmp_path / "Pulumi.folder.yaml").mkdir()
    for name, expected in (("Pulumi.absent.yaml", "no such file: copy Pulumi.homelab.yaml to Pulumi.absent.yaml"),
                           ("Pulumi.folder.yaml", "is a folder, not a stack file")):
        with pytest.raises(ConfigError) as error:
            load_stack_file(tmp_path / name)
        assert f"in {tmp_path / name} (" in str(error.value) and expected in str(error.value)
    message = error_for(tmp_path, HOMELAB.encode().replace(b"moody-good", b"moody-\xe9good", 1))
    assert f"line {line_of(HOMELAB, 'moody-good')}: not UTF-8 text (byte 0xe9)" in message


def test_read_stack_file_refuses_what_load_refuses(tmp_path):
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(HOMELAB.replace("config:", "confg:"))
    with pytest.raises(ConfigError, match="did you mean 'config'"):
        read_stack_file(path)


def test_a_stack_name_is_not_a_path(tmp_path):
    assert stack_file(tmp_path, "homelab") == tmp_path / "Pulumi.homelab.yaml"
    for bad in ("../etc/passwd", "", "a/b", "-x"):
        with pytest.raises(ConfigError, match="is not a stack name"):
            stack_file(tmp_path, bad)


def test_a_key_set_twice_inside_a_section_names_both_lines(tmp_path):
    from components.config import read_stack_file

    text = HOMELAB.replace("    vmId: 1105\n", "    vmId: 1105\n    cores: 6\n    cores: 8\n", 1)
    path = tmp_path / "Pulumi.twice.yaml"
    path.write_text(text)
    first = text.splitlines().index("    cores: 6") + 1
    with pytest.raises(ConfigError) as raised:
        read_stack_file(path)
    assert f"proxmox-talos-gpu:vm.cores: defined twice, at line {first} and line {first + 1}" in str(raised.value)
