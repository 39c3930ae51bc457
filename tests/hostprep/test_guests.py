"""A reboot stops every guest on the host: the guests as facts, consent
(host.runningGuests), and this stack's Kubernetes node drained before and
uncordoned after, against the simulated host (pvesh/qm/pct over its guests)
and a strict stand-in kubectl whose node is Ready while the host runs its VM."""

from __future__ import annotations

import time

import pytest

from components.hostprep.errors import DrainError, GuestsRunningError
from components.hostprep.facts import STATE_DIR, VFIO_FILE
from components.hostprep.inputs import GpuSpec
from tests.stand_ins.proxmox_host_spec import SimGuest, SimSpec, t4

pytestmark = pytest.mark.sshd

T4 = "0000:3b:00.0"
T4_SPEC = (GpuSpec(T4, "10de:1eb8", "10de:12a2", None, 0),)
OWN = SimGuest(1105, "moody-good")
OTHERS = [SimGuest(101, "k8s-cp-1"), SimGuest(200, "nas", type="lxc"), SimGuest(300, "old-vm", status="stopped"),
          SimGuest(400, "elsewhere", node="pve6")]  # a running guest on another cluster node
OWN_INPUTS = {"own_vmids": (1105,), "node_name": "moody-good"}


def node_of(sim) -> dict:
    return {"moody-good": {"vm": {"sim": str(sim.host.base), "vmid": 1105}}}


def host_changes(sim) -> list[str]:
    return [c["tool"] for c in sim.host.calls() if c["tool"] in ("update-initramfs", "update-grub", "proxmox-boot-tool", "reboot")
            and c["args"] != ["status"]]


def test_refused_while_other_guests_run_writes_and_refreshes_but_does_not_reboot(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN, *OTHERS]))
    stand_in = kube(nodes=node_of(sim))
    _, plan = sim.engine(T4_SPEC, **OWN_INPUTS).plan()
    text = plan.render()
    for shown in ("1105 moody-good (qemu), onboot, this stack's VM", "101 k8s-cp-1 (qemu), onboot", "200 nas (lxc), onboot",
                  "reboot withheld (host.runningGuests: refuse)", "drain Kubernetes node moody-good"):
        assert shown in text, text
    assert "300 old-vm" not in text and "400 elsewhere" not in text  # stopped, or on another node
    with pytest.raises(GuestsRunningError) as error:
        sim.engine(T4_SPEC, **OWN_INPUTS).apply()
    message = str(error.value)
    for named in ("101 k8s-cp-1 (qemu)", "200 nas (lxc)", "`qm shutdown 101`", "`pct shutdown 200`", "--running-guests stop",
                  "host.runningGuests: stop", "takes effect at the host's next reboot"):
        assert named in message, message
    assert "2 running guest(s) besides this stack's VM 1105: 101 k8s-cp-1 (qemu), 200 nas (lxc)." in message
    assert host_changes(sim) == ["update-initramfs", "update-grub"]  # written and refreshed, never rebooted
    assert sim.host.read(VFIO_FILE) and sim.host.guest_status() == {1105: "running", 101: "running", 200: "running", 300: "stopped"}
    assert stand_in.calls() == []  # nothing drained for a reboot that does not happen


def test_only_this_stacks_vm_running_drains_reboots_and_uncordons(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN, SimGuest(300, "old-vm", status="stopped")]))
    stand_in = kube(nodes=node_of(sim), pods=[
        {"namespace": "media", "name": "jellyfin-0", "node": "moody-good", "owner": "StatefulSet", "emptydir": True},
        {"namespace": "kube-system", "name": "kube-proxy-x", "node": "moody-good", "owner": "DaemonSet"}])
    progress: list[str] = []
    result = sim.engine(T4_SPEC, progress=progress, **OWN_INPUTS).apply()
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci" and result.warnings == []
    verbs = stand_in.verbs()
    assert verbs[:3] == [["get", "node", "moody-good", "-o", "json"], ["cordon", "moody-good"],
                         ["drain", "moody-good", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=10s"]]
    assert verbs[-1] == ["uncordon", "moody-good"] and not stand_in.node("moody-good")["unschedulable"]
    assert [p["name"] for p in stand_in.load()["pods"]] == ["kube-proxy-x"]  # evicted all but the DaemonSet's
    reboot_at = next(c["time"] for c in sim.host.calls() if c["tool"] == "reboot")
    drained_at = next(c["time"] for c in stand_in.calls() if c["args"][0] == "drain")
    uncordoned_at = next(c["time"] for c in stand_in.calls() if c["args"][0] == "uncordon")
    assert drained_at < reboot_at < uncordoned_at
    assert sim.host.guest_status()[1105] == "running"  # onboot: back after the reboot
    assert not (sim.host.root / STATE_DIR.lstrip("/") / "cordoned/moody-good").exists()
    assert any("drained" in line for line in progress) and any("uncordoned" in line for line in progress)


def test_stop_policy_reboots_and_reports_guests_that_did_not_come_back(make_sim, kube):
    guests = [OWN, SimGuest(101, "ci-runner", starts=False), SimGuest(102, "scratch", onboot=False), SimGuest(200, "nas", type="lxc")]
    sim = make_sim(SimSpec(devices=t4(), guests=guests))
    kube(nodes=node_of(sim))
    result = sim.engine(T4_SPEC, running_guests="stop", options={"guest_timeout": 3.0}, **OWN_INPUTS).apply()
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci"
    assert sim.host.guest_status() == {1105: "running", 101: "stopped", 102: "stopped", 200: "running"}
    warnings = "\n".join(result.warnings)
    assert "101 ci-runner (qemu) was running before the reboot and has onboot=1, but is not running" in warnings
    assert "`qm start 101`" in warnings and "102 scratch (qemu) was running before the reboot and has no onboot" in warnings
    assert "200 nas" not in warnings and "1105" not in warnings


def test_drain_that_times_out_does_not_reboot_and_uncordons_again(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN]))
    stand_in = kube(nodes=node_of(sim), pods=[
        {"namespace": "rook-ceph", "name": "rook-ceph-osd-0", "node": "moody-good", "owner": "ReplicaSet", "pdb_blocks": True}])
    started = time.monotonic()
    with pytest.raises(DrainError) as error:
        sim.engine(T4_SPEC, options={"drain_timeout": 2.0}, **OWN_INPUTS).apply()
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert 'pods/"rook-ceph-osd-0" -n "rook-ceph": global timeout reached: 2s' in message
    assert "Nothing was rebooted" in message and "moody-good was uncordoned again" in message and "kubectl get pdb -A" in message
    assert sim.host.tool_calls("reboot") == [] and not stand_in.node("moody-good")["unschedulable"]
    assert stand_in.verbs()[-1] == ["uncordon", "moody-good"]
    assert not (sim.host.root / STATE_DIR.lstrip("/") / "cordoned/moody-good").exists()


def test_rerun_after_consent_reboots_once_without_rewriting(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN, SimGuest(101, "k8s-cp-1")]))
    kube(nodes=node_of(sim))
    with pytest.raises(GuestsRunningError):
        sim.engine(T4_SPEC, **OWN_INPUTS).apply()
    refreshed = host_changes(sim)
    result = sim.engine(T4_SPEC, running_guests="stop", **OWN_INPUTS).apply()
    assert result.rebooted and not result.wrote and not result.ran  # written and refreshed by the refused run
    assert host_changes(sim) == [*refreshed, "reboot"]
    assert sim.host.guest_status() == {1105: "running", 101: "running"} and sim.host.driver(T4) == "vfio-pci"
    reads = len(sim.host.tool_calls("pvesh"))
    again = sim.engine(T4_SPEC, **OWN_INPUTS).apply()  # converged: one exec, no pvesh
    assert again.round_trips == 1 and not again.rebooted and len(sim.host.tool_calls("pvesh")) == reads


def test_rerun_after_the_admin_shut_the_others_down_reboots(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN, SimGuest(200, "nas", type="lxc", onboot=False)]))
    kube(nodes=node_of(sim))
    with pytest.raises(GuestsRunningError, match="`pct shutdown 200`"):
        sim.engine(T4_SPEC, **OWN_INPUTS).apply()
    sim.ssh("pct shutdown 200")
    result = sim.engine(T4_SPEC, **OWN_INPUTS).apply()
    assert result.rebooted and sim.host.guest_status()[200] == "stopped" and result.warnings == []


def test_unreachable_cluster_stops_the_reboot_under_refuse_and_not_under_stop(make_sim, tmp_path, monkeypatch):
    """The real kubectl, pointed at a port nothing listens on."""
    import shutil

    from tests.hostprep.conftest import free_port

    assert shutil.which("kubectl"), "kubectl must be on PATH for this test"
    config = (f"apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: 'https://127.0.0.1:{free_port()}'}}\n  name: c\n"
              "contexts:\n- context: {cluster: c, user: u}\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n")
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN]))
    with pytest.raises(DrainError) as error:
        sim.engine(T4_SPEC, options={"kubeconfig": config}, **OWN_INPUTS).apply()
    assert "cannot reach the Kubernetes cluster to drain node moody-good" in str(error.value)
    assert "was refused" in str(error.value) and "--running-guests stop" in str(error.value)
    assert sim.host.tool_calls("reboot") == []
    result = sim.engine(T4_SPEC, running_guests="stop", options={"kubeconfig": config}, **OWN_INPUTS).apply()
    assert result.rebooted and any("rebooted without draining it" in w for w in result.warnings)
    assert "t}" not in "\n".join(result.warnings)  # no kubeconfig content in messages


def test_node_not_ready_after_the_reboot_stays_cordoned_until_a_later_run(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(1105, "moody-good", starts=False)]))
    stand_in = kube(nodes=node_of(sim))
    result = sim.engine(T4_SPEC, options={"guest_timeout": 2.0}, **OWN_INPUTS).apply()
    assert result.rebooted and stand_in.node("moody-good")["unschedulable"]
    assert any("not Ready" in w and "stays cordoned" in w for w in result.warnings)
    marker = sim.host.root / STATE_DIR.lstrip("/") / "cordoned/moody-good"
    assert marker.exists()
    sim.host.set_guest_status(1105, "running")  # the admin starts the VM; the node becomes Ready
    again = sim.engine(T4_SPEC, **OWN_INPUTS).apply()
    assert not again.rebooted and not stand_in.node("moody-good")["unschedulable"] and not marker.exists()
    assert stand_in.verbs()[-1] == ["uncordon", "moody-good"]


def test_node_cordoned_by_someone_else_is_drained_but_left_cordoned(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN]))
    stand_in = kube(nodes={"moody-good": {"vm": {"sim": str(sim.host.base), "vmid": 1105}, "unschedulable": True}})
    result = sim.engine(T4_SPEC, **OWN_INPUTS).apply()
    assert result.rebooted and stand_in.node("moody-good")["unschedulable"]
    assert ["cordon", "moody-good"] not in stand_in.verbs() and ["uncordon", "moody-good"] not in stand_in.verbs()
    assert any("already cordoned before this run" in w for w in result.warnings)
