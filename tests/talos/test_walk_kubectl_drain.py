"""The walk's own drain on Talos 1.13 (LifecycleService upgrades with
``--drain=false``, components/talos/upgrade_drain.py) against the kubectl
stand-in's cluster: the node is cordoned and drained while it still runs the
old version, upgraded, and uncordoned once it runs the new one; a drain
kubectl refuses stops the walk before the upgrade, with kubectl's reason."""

from __future__ import annotations

import json

from tests.stand_ins.kubectl_objects import FakeKubectl, node
from tests.stand_ins.test_kubectl import pod
from tests.talos.conftest import FakeTalosctl
from tests.talos.engine import engine, registration
from tests.talos.running_configs import as_text, worker_documents
from tests.talos.test_component import UPGRADE, run_node

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"


def patch_walk(homelab, talos: FakeTalosctl):
    schematic = next(iter(json.loads((talos.state / "catalog.json").read_text())["schematics"]))
    talos.node("v1.13.4", schematic, config=as_text(worker_documents("v1.13.4")))
    talos.set(controlplanes=["192.168.8.99"])
    run, _ = run_node(homelab)
    provider, props = registration(run, UPGRADE, "-talos-upgrade")
    return provider, {**props, "pollSeconds": 0.05, "kubeconfig": KUBECONFIG, "nodeName": "moody-good"}


def test_a_patch_upgrade_on_1_13_is_drained_by_the_program_and_uncordoned_after(homelab, fake_talosctl: FakeTalosctl,
                                                                                 fake_kubectl: FakeKubectl) -> None:
    provider, props = patch_walk(homelab, fake_talosctl)
    fake_kubectl.objects([node(), pod("jellyfin-0"), pod("device-plugin-x", owner="DaemonSet")])
    result = engine(provider, "create", props, fake_talosctl.env())
    assert "ok" in result, result
    assert fake_talosctl.get("version") == "v1.13.9" and fake_talosctl.reboots == 1
    upgrade = next(call["argv"] for call in fake_talosctl.calls() if "upgrade" in call["argv"])
    assert "--drain=false" in upgrade, "one drain: ours, not talosctl's as well"
    kube = [(call["args"][0], call["talos_version"], call["exit"]) for call in fake_kubectl.calls() if call["args"][0] != "get"]
    assert kube == [("cordon", "v1.13.4", 0), ("drain", "v1.13.4", 0), ("uncordon", "v1.13.9", 0)]
    drain = next(call["args"] for call in fake_kubectl.calls() if call["args"][0] == "drain")
    assert drain[:4] == ["drain", "moody-good", "--ignore-daemonsets", "--delete-emptydir-data"]
    assert {obj["metadata"]["name"] for obj in fake_kubectl.objects() if obj["kind"] == "Pod"} == {"device-plugin-x"}
    assert "unschedulable" not in (fake_kubectl.get("Node", "moody-good").get("spec") or {})
    assert "draining Kubernetes node moody-good before the reboot" in result["stderr"]


def test_a_drain_kubectl_refuses_stops_the_walk_before_the_upgrade(homelab, fake_talosctl: FakeTalosctl,
                                                                   fake_kubectl: FakeKubectl) -> None:
    provider, props = patch_walk(homelab, fake_talosctl)
    fake_kubectl.objects([node(), pod("debug-shell", owner=None)])
    result = engine(provider, "create", props, fake_talosctl.env())
    assert "error" in result, result
    assert "could not drain Kubernetes node moody-good" in result["message"] and "nothing was upgraded" in result["message"]
    assert "cannot delete Pods that declare no controller (use --force to override): media/debug-shell" in result["message"]
    assert fake_talosctl.get("version") == "v1.13.4" and fake_talosctl.reboots == 0
    assert not any("upgrade" in call["argv"] for call in fake_talosctl.calls())
    assert "unschedulable" not in (fake_kubectl.get("Node", "moody-good").get("spec") or {}), "uncordoned again"
