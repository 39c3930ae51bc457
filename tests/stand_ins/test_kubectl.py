"""The kubectl stand-in refuses what kubectl refuses, with kubectl's words
(tests/stand_ins/kubectl.py names the upstream files), and the program's own
kubectl calls (components/kubectl.py) pass through it: cordon, drain with
its refusals and timeout, uncordon, get, version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.kubectl import KubectlError, cordon_node, drain_node, get_node, get_objects, server_version, uncordon_node
from tests.stand_ins.kubectl_objects import install_kubectl, node

STAND_IN = Path(__file__).resolve().parent / "kubectl.py"


def pod(name: str, *, owner: str | None = "ReplicaSet", emptydir: bool = False, pdb_blocks: bool = False, on: str = "moody-good") -> dict:
    metadata: dict = {"name": name, "namespace": "media"}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
    if pdb_blocks:
        metadata["annotations"] = {"stand-in/pdb-blocks": "true"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": on, "volumes": [{"name": "cache", "emptyDir": {}}] if emptydir else []}}


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = install_kubectl(tmp_path)
    monkeypatch.setenv("FAKE_KUBE_STATE", str(fake.state))
    monkeypatch.delenv("FAKE_CLI_DIR", raising=False)
    monkeypatch.setenv("PATH", f"{fake.bin_dir}:/usr/bin:/bin")
    return fake


def kubectl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STAND_IN), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("args", "stderr"), [
    (["get", "nodes", "--bogus"], "Error: unknown flag: --bogus\nSee 'kubectl get --help' for usage.\n"),
    (["drain", "moody-good", "-x"], "Error: unknown shorthand flag: 'x' in -x\nSee 'kubectl drain --help' for usage.\n"),
    (["drian", "moody-good"], 'Error: unknown command "drian" for "kubectl"\nRun \'kubectl --help\' for usage.\n'),
    (["drain"], "error: USAGE: drain NODE [flags]\nSee 'kubectl drain -h' for help and examples\n"),
    (["drain", "moody-good", "--timeout=5"], 'Error: invalid argument "5" for "--timeout" flag: time: invalid duration "5"\n'),
    (["drain", "moody-good", "--ignore-daemonsets=maybe"],
     'Error: invalid argument "maybe" for "--ignore-daemonsets" flag: strconv.ParseBool: parsing "maybe": invalid syntax\n'),
    (["version", "-o", "table"], "error: --output must be 'yaml' or 'json'\n"),
    (["get", "node", "nobody", "-o", "json"], 'Error from server (NotFound): nodes "nobody" not found\n'),
    (["cordon", "nobody"], 'Error from server (NotFound): nodes "nobody" not found\n'),
])
def test_refusals_are_kubectls(cluster, args: list[str], stderr: str) -> None:
    cluster.objects([node()])
    done = kubectl(*args)
    assert (done.returncode, done.stderr) == (1, stderr)
    assert cluster.calls()[-1]["exit"] == 1, "a refused call is on record too"


def test_the_programs_cordon_drain_uncordon(cluster) -> None:
    cluster.objects([node(), pod("jellyfin-0"), pod("device-plugin-x", owner="DaemonSet"), pod("cache", emptydir=True),
                     pod("elsewhere", on="other-node")])
    assert cordon_node("moody-good", kubeconfig=None) == "node/moody-good cordoned\n"
    out = drain_node("moody-good", timeout_seconds=300, kubeconfig=None)
    assert out.splitlines() == ["node/moody-good already cordoned", "evicting pod media/jellyfin-0", "evicting pod media/cache",
                                "pod/jellyfin-0 evicted", "pod/cache evicted", "node/moody-good drained"]
    left = {obj["metadata"]["name"] for obj in cluster.objects() if obj["kind"] == "Pod"}
    assert left == {"device-plugin-x", "elsewhere"}, "DaemonSet pods stay; other nodes' pods are untouched"
    assert get_node("moody-good")["spec"]["unschedulable"] is True
    assert uncordon_node("moody-good") == "node/moody-good uncordoned\n"
    assert "unschedulable" not in get_node("moody-good")["spec"]
    assert get_node("nobody") is None
    assert server_version(None) == "v1.34.3"


def test_drain_without_its_flags_refuses_as_kubectls_filters_do(cluster) -> None:
    cluster.objects([node(), pod("device-plugin-x", owner="DaemonSet"), pod("cache", emptydir=True), pod("bare", owner=None)])
    done = kubectl("drain", "moody-good")
    reason = ("[cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): media/device-plugin-x, "
              "cannot delete Pods with local storage (use --delete-emptydir-data to override): media/cache, "
              "cannot delete cannot delete Pods that declare no controller (use --force to override): media/bare]")
    assert done.returncode == 1 and done.stdout == "node/moody-good cordoned\n"
    assert done.stderr == (f'error: unable to drain node "moody-good" due to error: {reason}, continuing command...\n'
                           f"There are pending nodes to be drained:\n moody-good\nerror: {reason}\n")
    assert len([obj for obj in cluster.objects() if obj["kind"] == "Pod"]) == 3, "nothing is evicted"


def test_a_drain_a_disruption_budget_blocks_times_out_and_the_error_says_so(cluster) -> None:
    cluster.objects([node(), pod("jellyfin-0", pdb_blocks=True)])
    with pytest.raises(KubectlError) as caught:
        drain_node("moody-good", timeout_seconds=600, kubeconfig=None)
    assert caught.value.kind == "failed"
    assert 'error when evicting pods/"jellyfin-0" -n "media": global timeout reached: 10m0s' in str(caught.value)
    assert caught.value.stderr.count("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.") == 120
    assert caught.value.stdout == "node/moody-good cordoned\nevicting pod media/jellyfin-0\n"
    assert any(obj["metadata"]["name"] == "jellyfin-0" for obj in cluster.objects())


def test_version_json_has_kubectls_fields(cluster) -> None:
    done = kubectl("version", "--output", "json")
    assert done.returncode == 0 and set(json.loads(done.stdout)) == {"clientVersion", "kustomizeVersion", "serverVersion"}


def test_a_type_the_server_does_not_serve_names_its_group_and_the_program_takes_it_as_none(cluster) -> None:
    done = kubectl("get", "helmreleases.helm.toolkit.fluxcd.io", "-A", "-o", "json")
    assert (done.returncode, done.stderr) == (1, 'error: the server doesn\'t have a resource type "helmreleases" in group "helm.toolkit.fluxcd.io"\n')
    assert get_objects("helmreleases.helm.toolkit.fluxcd.io", all_namespaces=True, unserved_ok=True) == []
    with pytest.raises(KubectlError):
        get_objects("helmreleases.helm.toolkit.fluxcd.io", all_namespaces=True)


def test_get_prints_the_object_a_list_or_nothing_as_kubectl_does(cluster) -> None:
    cluster.objects([node(), node("other")])
    assert json.loads(kubectl("get", "node", "moody-good", "-o", "json").stdout)["kind"] == "Node"
    assert json.loads(kubectl("get", "nodes", "-o", "json").stdout)["kind"] == "List"
    assert kubectl("get", "node", "gone", "--ignore-not-found", "-o", "json").stdout == ""
