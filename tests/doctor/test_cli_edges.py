"""doctor at its edges: exit codes that mean something (0 only when something
passed and nothing failed, 3 when nothing could be verified), one progress
line per layer on stderr, a layer that does not answer in time is
unreachable (one skip line) in every layer and never a failed check, and a
tool's raw stderr is summarised, with the detail under --verbose."""

from __future__ import annotations

import io
import time
from pathlib import Path

import paramiko
import pytest

from components.kubectl import summarize_stderr
from tests.hostile import silent_port
from tools.doctor.cli import EXIT_FAILED, EXIT_OK, EXIT_UNVERIFIED, exit_code, main
from tools.doctor.model import LAYERS, CheckResult, Unreachable

ROOT = Path(__file__).resolve().parents[2]
HOMELAB_STACK = ROOT / "tests" / "data" / "stacks" / "Pulumi.homelab.yaml"
HOMELAB = HOMELAB_STACK.read_text()
TALOSCONFIG = "context: homelab\ncontexts:\n  homelab:\n    endpoints: [192.168.8.99]\n"

# What kubectl v1.32 prints when the API server refuses the connection
# (captured from a real kubectl against a closed port).
KUBECTL_REFUSED = "".join(
    f'E1130 04:36:23.43{n}898    8834 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API group list: '
    'Get \\"https://192.168.8.99:6443/api?timeout=32s\\": dial tcp 192.168.8.99:6443: connect: connection refused"\n'
    for n in range(5)
) + "The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?\n"


def doctor(*argv: str, **kwargs) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = main(["--stack", "homelab", *argv], stdout=out, stderr=err, **kwargs)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def tool(bin_dir: Path, name: str, script: str) -> None:
    """A stand-in executable: a POSIX sh script."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def only_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bin_dir: Path) -> None:
    """PATH with just ``bin_dir`` (the stand-ins name /bin tools by path); HOME empty."""
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("TALOSCONFIG", raising=False)


@pytest.mark.parametrize(("statuses", "code"), [
    (("pass", "skip"), EXIT_OK),
    (("pass", "fail", "skip"), EXIT_FAILED),
    (("fail",), EXIT_FAILED),
    (("skip", "skip"), EXIT_UNVERIFIED),
    ((), EXIT_UNVERIFIED),
])
def test_exit_code_is_0_only_when_something_passed_and_nothing_failed(statuses, code):
    assert exit_code([CheckResult("host", f"c{i}", status, "") for i, status in enumerate(statuses)]) == code


def test_nothing_verified_exits_3_with_one_progress_line_per_layer():
    unreachable = {layer: (lambda cfg, layer=layer: Unreachable(f"{layer} is down")) for layer in LAYERS}
    code, out, err, _ = doctor(gatherers=unreachable)
    assert code == EXIT_UNVERIFIED == 3
    assert "Nothing was verified: every check was skipped." in out and out.splitlines()[-1] == "0 passed, 0 failed, 6 skipped"
    progress = err.splitlines()
    assert [line.split(":", 2)[1].strip() for line in progress] == [f"[{i}/{len(LAYERS)}] {layer}" for i, layer in enumerate(LAYERS, 1)]
    assert progress[0] == "doctor: [1/6] host: SSH to root@pve5.lan:22: IOMMU and the GPU's driver (up to 30 s per step)"


def test_a_hanging_talosctl_is_unreachable_not_three_failures(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    calls = tmp_path / "talosctl-calls"
    tool(bin_dir, "talosctl", f"echo asked >> {calls}\nexec /bin/sleep 30\n")
    only_tools(monkeypatch, tmp_path, bin_dir)
    (tmp_path / "talosconfig").write_text(TALOSCONFIG)
    monkeypatch.setenv("TALOSCONFIG", str(tmp_path / "talosconfig"))
    code, out, err, took = doctor("--layer", "talos", "--timeout", "1")
    rows = [line.split(None, 3) for line in out.splitlines()[1:] if line.startswith("talos")]
    assert rows == [["talos", "reachable", "skip", "talosctl cannot reach 192.168.8.123: no answer within 1 s (endpoint 192.168.8.99)"]]
    assert code == EXIT_UNVERIFIED and "Remedies" not in out
    assert calls.read_text().splitlines() == ["asked"], "the node is asked once, not once per check"
    assert took < 30, f"{took:.1f} s: the hanging talosctl was waited out instead of stopped after 1 s"


def test_kubectls_raw_stderr_is_summarised_and_kept_for_verbose(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    (tmp_path / "stderr.txt").write_text(KUBECTL_REFUSED)
    tool(bin_dir, "kubectl", f"/bin/cat {tmp_path / 'stderr.txt'} >&2\nexit 1\n")
    only_tools(monkeypatch, tmp_path, bin_dir)
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    code, out, err, _ = doctor("--layer", "kubernetes")
    assert code == EXIT_UNVERIFIED
    assert "was refused - did you specify the right host or port?" in out
    assert "memcache.go" not in out + err and "E1130" not in out + err
    code, out, err, _ = doctor("--layer", "kubernetes", "--verbose")
    assert code == EXIT_UNVERIFIED and "memcache.go" not in out
    assert "doctor: debug: tools.doctor.runners: kubectl get node moody-good -o json (exit 1), its stderr:" in err
    assert "memcache.go:265" in err


def test_a_silent_ssh_port_with_a_short_timeout_still_prints_the_table(tmp_path):
    key = tmp_path / "id_rsa"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(key))
    with silent_port() as port:
        stack = HOMELAB.replace("    address: pve5.lan\n", f"    address: 127.0.0.1\n    port: {port}\n")
        (tmp_path / "Pulumi.silent.yaml").write_text(stack)
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        code = main(["--stack", "silent", "--project-dir", str(tmp_path), "--layer", "host", "--layer", "proxmox", "--timeout", "1",
                     "--identity", str(key), "--known-hosts", str(tmp_path / "known_hosts")], stdout=out, stderr=err)
        took = time.monotonic() - started
    rows = [line.split(None, 3) for line in out.getvalue().splitlines()[1:3]]
    reason = f"root@127.0.0.1:{port}: no SSH banner within 1 s"
    assert [row[:3] for row in rows] == [["host", "reachable", "skip"], ["proxmox", "reachable", "skip"]], out.getvalue()
    assert all(row[3].startswith(reason) for row in rows), rows
    # Bounded by the 1 s timeout, not paramiko's own 15 s banner default (per layer).
    assert code == EXIT_UNVERIFIED and took < 15
    assert err.getvalue().count("doctor: [") == 2 and "Traceback" not in err.getvalue()


def test_a_timeout_that_is_not_a_number_above_zero_is_a_usage_error():
    code, out, err, _ = doctor("--timeout", "0")
    assert code == 2 and out == "" and "--timeout 0: give a number of seconds above 0" in err


@pytest.mark.parametrize(("stderr", "summary"), [
    (KUBECTL_REFUSED, "The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?"),
    # klog lines only (kubectl killed before its verdict): the last message, without the klog header
    ("".join(KUBECTL_REFUSED.splitlines(keepends=True)[:5]),
     'couldn\'t get current server API group list: Get "https://192.168.8.99:6443/api?timeout=32s": dial tcp 192.168.8.99:6443: connect: connection refused'),
    ('Error from server (NotFound): nodes "moody-good" not found\n', 'Error from server (NotFound): nodes "moody-good" not found'),
    ("", ""),
])
def test_kubectl_stderr_summary(stderr, summary):

    assert summarize_stderr(stderr) == summary


def test_a_command_run_by_kubectl_exec_keeps_its_own_message():

    ffmpeg = ("[h264_nvenc @ 0x55d0c8a4e2c0] OpenEncodeSessionEx failed: unsupported device (2): (no details)\n"
              "[h264_nvenc @ 0x55d0c8a4e2c0] No capable devices found\n"
              "[vost#0:0/h264_nvenc @ 0x55d0c8a4d180] Error while opening encoder\n")
    assert "unsupported device (2)" in summarize_stderr(ffmpeg) and summarize_stderr(ffmpeg).count(" | ") == 2
