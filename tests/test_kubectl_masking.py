"""kubectl's errors are masked as talosctl's are (components/masking.py): an
error page that echoes the kubeconfig's bearer token, or a token in a URL,
never reaches an error message, KubectlError's stdout/stderr, or the
progress lines of the upgrade walk's drain."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.kubectl import KubectlError, get_node, kubeconfig_secrets, run_kubectl
from components.talos.upgrade_drain import WalkRefused, drain_first
from components.talos.upgrade_route import Route
from tests.doctor.fakecli import answer, install_on_path, rule

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLWZvci10ZXN0cw.sig-abcdef0123456789"
OTHER = "kube-apiserver-proxy-session-0123456789abcdef"
KEY_DATA = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUxhYmNkZWYwMTIzNDU2Nzg5"
KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "homelab",
    "clusters": [{"name": "homelab", "cluster": {"server": "https://192.168.8.99:6443"}}],
    "contexts": [{"name": "homelab", "context": {"cluster": "homelab", "user": "admin"}}],
    "users": [{"name": "admin", "user": {"token": TOKEN, "client-key-data": KEY_DATA}}]})
PAGE = ("Error from server (Forbidden): <html><body><h1>403 Forbidden</h1><pre>GET /api/v1/nodes/moody-good HTTP/1.1\n"
        f"Authorization: Bearer {TOKEN}\nX-Forwarded-Uri: /oauth2/start?rd=/&access_token={OTHER}\n"
        f"X-Client-Key: {KEY_DATA}</pre></body></html>\n")


def leaks(text: str) -> list[str]:
    return [secret for secret in (TOKEN, OTHER, KEY_DATA) if secret in text]


@pytest.fixture
def echoing_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cli = install_on_path(tmp_path, monkeypatch)
    cli.set_rules("kubectl", [rule(argv, answer(stderr=PAGE, rc=1)) for argv in (
        ["get", "node", "moody-good", "-o", "json"], ["cordon", "moody-good"], ["uncordon", "moody-good"],
        ["drain", "moody-good", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"])])
    return cli


def test_the_kubeconfigs_credentials_are_what_is_masked() -> None:
    assert set(kubeconfig_secrets(KUBECONFIG)) == {TOKEN, KEY_DATA}
    assert kubeconfig_secrets(None) == [] and kubeconfig_secrets("not: [yaml") == []


def test_an_error_page_echoing_the_token_is_masked_in_the_error(echoing_cluster) -> None:
    with pytest.raises(KubectlError) as caught:
        get_node("moody-good", kubeconfig=KUBECONFIG)
    error = caught.value
    assert "Bearer ***" in str(error) and "Error from server (Forbidden)" in error.stderr and "access_token=***" in error.stderr
    assert leaks(str(error)) == [] and leaks(error.stderr) == [] and leaks(error.stdout) == []
    assert echoing_cluster.calls("kubectl")[-1]["config_mode"] == "0o600"


def test_a_token_the_kubeconfig_does_not_hold_is_masked_too(echoing_cluster) -> None:
    with pytest.raises(KubectlError) as caught:
        run_kubectl(["get", "node", "moody-good", "-o", "json"], kubeconfig=None)
    assert leaks(caught.value.stderr.replace(KEY_DATA, "")) == [], "Bearer and URL tokens are masked without the kubeconfig"


def test_the_walks_drain_neither_says_nor_raises_the_token(echoing_cluster) -> None:
    said: list[str] = []
    route = Route("lifecycle", "program", ("--drain=false",), "Talos v1.13.4 upgrades through LifecycleService")
    props = {"nodeName": "moody-good", "kubeconfig": KUBECONFIG, "drainTimeoutSeconds": 300}
    with pytest.raises(WalkRefused) as caught:
        drain_first(route, props, "upgrade step 1 of 1, Talos v1.13.4 -> v1.13.9", said.append)
    assert "could not drain Kubernetes node moody-good" in str(caught.value) and "Bearer ***" in str(caught.value)
    assert leaks(str(caught.value)) == [] and leaks("\n".join(said)) == []
    assert [call["args"][0] for call in echoing_cluster.calls("kubectl")] == ["cordon", "uncordon"], "uncordoned again after the failure"
