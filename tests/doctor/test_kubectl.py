"""components.kubectl: the one place that runs kubectl (stand-in on PATH)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.kubectl import KubectlError, classify_failure, run_kubectl
from tests.doctor.fakecli import FakeCli, answer, install_on_path, rule

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: s3cr3t-token-value-0123456789\n"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    cli = install_on_path(tmp_path, monkeypatch)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return cli


def test_kubeconfig_content_goes_to_a_private_temp_file_that_is_removed(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(["get", "node", "moody-good", "-o", "json"], answer('{"kind": "Node"}'))])
    assert run_kubectl(["get", "node", "moody-good", "-o", "json"], kubeconfig=KUBECONFIG) == '{"kind": "Node"}'
    [call] = fake.calls("kubectl")
    assert call["config_mode"] == "0o600"
    assert call["config_text"] == KUBECONFIG
    assert call["argv"][2:] == ["get", "node", "moody-good", "-o", "json"]
    assert not os.path.exists(call["config_path"]), "the temp kubeconfig must be removed after the call"


def test_temp_kubeconfig_is_removed_when_kubectl_fails(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(["get", "pods"], answer(stderr="error: boom\n", rc=1))])
    with pytest.raises(KubectlError):
        run_kubectl(["get", "pods"], kubeconfig=KUBECONFIG)
    [call] = fake.calls("kubectl")
    assert not os.path.exists(call["config_path"])


def test_no_kubeconfig_leaves_kubectl_to_its_own_defaults(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(["version"], answer("ok"))])
    run_kubectl(["version"])
    [call] = fake.calls("kubectl")
    assert call["config_path"] is None and "--kubeconfig" not in call["argv"]


def test_kubeconfig_paths_from_the_environment_are_passed_through_untouched(fake: FakeCli, tmp_path: Path) -> None:
    first, second = tmp_path / "admin.kubeconfig", tmp_path / "other.kubeconfig"
    first.write_text(KUBECONFIG)
    second.write_text(KUBECONFIG)
    fake.set_rules("kubectl", [rule(["version"], answer("ok"))])
    run_kubectl(["version"], kubeconfig=str(first))
    run_kubectl(["version"], kubeconfig=f"{first}:{second}")
    calls = fake.calls("kubectl")
    assert [call["env_kubeconfig"] for call in calls] == [str(first), f"{first}:{second}"]
    assert all(call["config_path"] is None for call in calls)
    assert first.exists() and second.exists(), "a caller's own kubeconfig files must not be deleted"


def test_kubeconfig_content_wins_over_a_kubeconfig_in_the_environment(fake: FakeCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ambient").write_text("ambient")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "ambient"))
    fake.set_rules("kubectl", [rule(["version"], answer("ok"))])
    run_kubectl(["version"], kubeconfig=KUBECONFIG)
    [call] = fake.calls("kubectl")
    assert call["env_kubeconfig"] is None and call["config_text"] == KUBECONFIG


def test_missing_kubectl_is_a_clear_missing_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KubectlError) as caught:
        run_kubectl(["get", "nodes"])
    assert caught.value.kind == "missing"
    assert "kubectl not found on PATH" in str(caught.value)


@pytest.mark.parametrize(("stderr", "kind"), [
    ('Error from server (NotFound): nodes "moody-good" not found\n', "not_found"),
    ("The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?\n", "unreachable"),
    ('E1127 07:01:02.000000 memcache.go:265] couldn\'t get current server API group list: Get "https://192.168.8.99:6443/api": dial tcp 192.168.8.99:6443: i/o timeout\n'
     "Unable to connect to the server: dial tcp 192.168.8.99:6443: i/o timeout\n", "unreachable"),
    ("error: You must be logged in to the server (Unauthorized)\n", "unreachable"),
    ('error: unable to upgrade connection: container not found ("app")\n', "failed"),
])
def test_failures_are_classified_from_kubectls_stderr(fake: FakeCli, stderr: str, kind: str) -> None:
    fake.set_rules("kubectl", [rule(["get", "node", "moody-good"], answer(stderr=stderr, rc=1))])
    with pytest.raises(KubectlError) as caught:
        run_kubectl(["get", "node", "moody-good"], kubeconfig=KUBECONFIG)
    assert caught.value.kind == kind
    assert caught.value.returncode == 1
    assert "s3cr3t-token-value" not in str(caught.value)
    assert classify_failure(stderr) == kind


def test_exec_failure_keeps_the_commands_own_message(fake: FakeCli) -> None:
    stderr = ('OCI runtime exec failed: exec failed: unable to start container process: exec: "nvidia-smi": '
              "executable file not found in $PATH: unknown\ncommand terminated with exit code 126\n")
    fake.set_rules("kubectl", [rule(["exec", "-n", "media", "jellyfin-0", "--", "nvidia-smi"], answer(stderr=stderr, rc=126))])
    with pytest.raises(KubectlError) as caught:
        run_kubectl(["exec", "-n", "media", "jellyfin-0", "--", "nvidia-smi"])
    assert caught.value.kind == "failed"
    assert "executable file not found" in str(caught.value)


def test_a_hanging_kubectl_times_out(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(["get", "nodes"], answer("late", sleep=10))])
    with pytest.raises(KubectlError) as caught:
        run_kubectl(["get", "nodes"], kubeconfig=KUBECONFIG, timeout=0.5)
    assert caught.value.kind == "timeout"
    assert "timed out after 0.5 s" in str(caught.value)
    [call] = fake.calls("kubectl")
    assert not os.path.exists(call["config_path"])
