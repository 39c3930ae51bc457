"""Transport pieces that need no server: pins, masking, the atomic-write snippet."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import subprocess

import paramiko
import pytest

from components.masking import mask
from components.ssh.atomic import atomic_write_snippet
from components.ssh.errors import TransportError
from components.ssh.keys import fingerprint, known_hosts_lines_for, load_private_key, parse_host_key_pin

BLOB = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))
B64 = base64.b64encode(BLOB).decode()


def test_fingerprint_matches_openssh_format():
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(BLOB).digest()).decode().rstrip("=")
    assert fingerprint(BLOB) == expected and not expected.endswith("=")


def test_pin_accepts_fingerprint_or_known_hosts_lines():
    assert parse_host_key_pin(fingerprint(BLOB)).matches(BLOB)
    assert parse_host_key_pin(f"pve5.lan ssh-ed25519 {B64}").matches(BLOB)
    assert parse_host_key_pin(f"# comment\n@cert-authority * ssh-rsa AAAA\npve5 ssh-ed25519 {B64}\n").matches(BLOB)
    assert not parse_host_key_pin("SHA256:" + "A" * 43).matches(BLOB)


def test_pin_ignores_revoked_lines_and_refuses_nonsense():
    with pytest.raises(ValueError, match="empty"):
        parse_host_key_pin(f"@revoked pve5 ssh-ed25519 {B64}")
    with pytest.raises(ValueError, match="known_hosts"):
        parse_host_key_pin("pve5.lan")
    with pytest.raises(ValueError, match="base64"):
        parse_host_key_pin("pve5 ssh-ed25519 !!!notbase64")


def test_known_hosts_lookup_handles_ports_and_hashed_names():
    hashed = paramiko.HostKeys.hash_host("[pve5.lan]:2222")
    text = "\n".join([f"pve5.lan ssh-ed25519 {B64}", f"{hashed} ssh-ed25519 {B64}", f"other,pve5.lan ssh-rsa {B64}", f"@revoked pve5.lan ssh-ed25519 {B64}"])
    assert known_hosts_lines_for(text, "pve5.lan", 22) == [f"pve5.lan ssh-ed25519 {B64}", f"other,pve5.lan ssh-rsa {B64}"]
    assert known_hosts_lines_for(text, "pve5.lan", 2222) == [f"{hashed} ssh-ed25519 {B64}"]
    assert known_hosts_lines_for(text, "pve6.lan", 22) == []


def test_mask_hides_a_secret_and_each_of_its_lines():
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    text = f"key: {secret}; and a line alone: b3BlbnNzaC1rZXktdjEAAAAA"
    masked = mask(text, [secret])
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in masked and "BEGIN OPENSSH" not in masked


def test_private_key_errors_never_echo_the_key():
    with pytest.raises(TransportError) as error:
        load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----END OPENSSH PRIVATE KEY-----\n")
    assert "c2VjcmV0" not in str(error.value)


def test_atomic_write_snippet_replaces_content_keeps_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "etc" / "grub"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    content = b"new \xff bytes\nno newline at end"
    subprocess.run(["sh", "-e", "-s"], input=atomic_write_snippet(str(target), content, "tok1").encode(), check=True)
    assert target.read_bytes() == content
    assert target.stat().st_mode & 0o777 == 0o640
    assert os.listdir(target.parent) == ["grub"]


def test_atomic_write_snippet_creates_missing_file_with_given_mode(tmp_path):
    target = tmp_path / "new" / "file.conf"
    subprocess.run(["sh", "-e", "-s"], input=atomic_write_snippet(str(target), b"x\n", "tok2", mode="0600").encode(), check=True)
    assert target.read_bytes() == b"x\n" and target.stat().st_mode & 0o777 == 0o600


def test_atomic_write_never_leaves_a_half_written_target(tmp_path):
    """Kill the writer after the temp file is written: the target is untouched."""
    target = tmp_path / "grub"
    target.write_text("original\n")
    script = atomic_write_snippet(str(target), b"replacement\n", "tok3").replace("mv -f", "kill -9 $$; mv -f")
    subprocess.run(["sh", "-s"], input=script.encode())
    assert target.read_text() == "original\n"
    assert any(".ptg-tmp-tok3" in name for name in os.listdir(tmp_path))  # what the facts' stale-temp scan finds


def test_transport_logs_mask_the_private_key(caplog):
    from components.ssh.connect import SshTarget
    from components.ssh.transport import SshTransport

    class FakeChannel:
        def __init__(self):
            self.closed = False
            self.eof_received = True

        def exec_command(self, command): ...
        def sendall(self, data): ...
        def shutdown_write(self): ...
        def recv_ready(self): return False
        def recv_stderr_ready(self): return False
        def exit_status_ready(self): return True
        def recv_exit_status(self): return 0
        def close(self): ...

    class FakeTransport:
        def open_session(self, timeout=None): return FakeChannel()
        def is_active(self): return True
        def close(self): ...

    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretsecretsecret\n-----END OPENSSH PRIVATE KEY-----"
    transport = SshTransport(SshTarget("h", 22, "root", key, "SHA256:x"), FakeTransport(), command_timeout=5)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="components.ssh"):
        result = transport.run(f"echo '{key}' > /dev/null")
    assert result.ok and transport.round_trips == 1
    assert caplog.records and all("AAAAsecret" not in record.getMessage() for record in caplog.records)
    assert "AAAAsecret" not in repr(transport.target)


def test_atomic_write_temp_file_is_0600_before_it_takes_the_targets_mode(tmp_path):
    from components.ssh.atomic import temp_path

    target = tmp_path / "originals" / "grub"
    tmp = temp_path(str(target), "tok4")
    # Stop right after the temp file is written, before its chmod: what a reader on the host could see then.
    script = atomic_write_snippet(str(target), b"GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n", "tok4", mode="0600").replace(
        "if [ -e", f"stat -c %a -- {tmp} > {tmp_path}/mode; exit 0\nif [ -e", 1)
    subprocess.run(["sh", "-c", "umask 022; sh -s"], input=script.encode(), check=True)
    assert (tmp_path / "mode").read_text().strip() == "600"
