"""vm.source: existing against the stand-in Proxmox API (real HTTPS,
proxmoxer) and the stand-in kubectl: attach and undo leave every key the
program does not own as it was, byte for byte; a concurrent edit is refused;
the node restarts once, drained; each refusal names its key and writes nothing."""

from __future__ import annotations

import pytest

from components.vm.api import ApiTarget, ProxmoxUnreachable, connect
from components.vm.engine import RefusedError
from components.vm.restart import RestartError
from tests.stand_ins.proxmox_api import parse_config
from tests.vm.conftest import MOODY_GOOD, FakeClock, homelab_raw, make_engine

OWNED = ("hostpci0", "balloon")


def _without_owned(config: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in config.items() if k not in OWNED}


def test_attach_then_undo_leaves_two_disks_and_two_nics_byte_for_byte(pve, kube) -> None:
    sim, server = pve
    result = make_engine(server).apply()
    current = sim.current(1105)
    assert current["hostpci0"] == "mapping=moody-good-gpu0,pcie=1" and current["balloon"] == "0", sim.vms[1105].raw
    assert _without_owned(current) == _without_owned(parse_config(MOODY_GOOD)[0]), "a key the program does not own changed"
    assert current["scsi1"] == "ceph-osd:vm-1105-disk-1,backup=0,iothread=1,size=2000G" and "net1" in current
    assert result.restarted and result.pending == [] and sim.vms[1105].starts == 1, "one cold start applied the pending slot"
    assert sim.vms[1105].started_with["hostpci0"] == "mapping=moody-good-gpu0,pcie=1", "the running QEMU has the GPU"
    assert result.plan.previous == {"hostpci0": None, "balloon": "16384"}
    undone = make_engine(server).undo(result.plan.previous, result.plan.written)
    assert sim.vms[1105].raw == MOODY_GOOD, "undo restores the config file byte for byte"
    assert undone.restarted and sim.vms[1105].starts == 2 and not kube.node("moody-good").get("unschedulable")


def test_the_restart_is_one_drained_proxmox_reboot_with_the_node_uncordoned_after(pve, kube) -> None:
    sim, server = pve
    make_engine(server).apply()
    verbs = [args[0] for args in kube.verbs() if args[0] != "get"]
    assert verbs == ["cordon", "drain", "uncordon"], kube.verbs()
    assert [p for m, p in sim.requests if m == "POST"] == ["/nodes/pve5/qemu/1105/status/reboot"], "exactly one reboot, through Proxmox"
    drain = next(args for args in kube.verbs() if args[0] == "drain")
    assert "--ignore-daemonsets" in drain and "--delete-emptydir-data" in drain and "--timeout=60s" in drain, drain
    assert [p["name"] for p in kube.load()["pods"]] == ["kube-proxy-x"], "the workload was evicted before the reboot"
    assert not kube.node("moody-good").get("unschedulable") and kube.node("moody-good")["ready"]


def test_a_second_apply_writes_nothing_and_restarts_nothing(pve, kube) -> None:
    sim, server = pve
    make_engine(server).apply()
    before, writes = sim.vms[1105].raw, len(sim.writes)
    again = make_engine(server).apply({"hostpci0": None, "balloon": "16384"})
    assert again.plan.is_noop and not again.wrote and not again.restarted
    assert sim.vms[1105].raw == before and len(sim.writes) == writes and sim.vms[1105].starts == 1
    assert again.plan.previous == {"hostpci0": None, "balloon": "16384"}, "the value before the first run is kept for undo"


def test_a_concurrent_edit_between_read_and_write_is_refused_and_nothing_is_written(pve, kube) -> None:
    sim, server = pve
    engine = make_engine(server)
    real_write = engine.api.write

    def racing_write(node: str, vmid: int, params: dict[str, str]) -> None:
        sim.edit(1105, cores="48")  # someone's `qm set 1105 --cores 48` between the read and the write
        real_write(node, vmid, params)

    engine.api.write = racing_write
    with pytest.raises(RefusedError, match="changed between this program's read and its write.*checksum mismatch"):
        engine.apply()
    current = sim.current(1105)
    assert current["cores"] == "48" and "hostpci0" not in current and current["balloon"] == "16384", sim.vms[1105].raw
    assert sim.writes == [] and kube.verbs() == [], "nothing written, nothing drained"


@pytest.mark.parametrize(("edit", "vmid", "key", "words"), [
    ({"hostpci0": "0000:af:00.0,pcie=1"}, 1105, "gpus[0].slot = 'hostpci0'", "holds another device"),
    ({"hostpci2": "mapping=moody-good-gpu0,pcie=1"}, 1105, "gpus[0].slot = 'hostpci0'", "set gpus[0].slot: hostpci2"),
    ({"hostpci0": "mapping=moody-good-gpu0"}, 1200, "gpus[0].mappingName = 'moody-good-gpu0'", "already configured on VM 1200"),
    ({"hostpci1": "0000:3b:00,pcie=1"}, 1200, "gpus[0].address = '0000:3b:00.0'", "qm set 1200 --delete hostpci1"),
    ({"machine": "pc-i440fx-9.0"}, 1105, "gpus[0].pcie = True", "qm set 1105 --machine q35"),
], ids=["slot-taken", "gpu-in-another-slot", "mapping-on-other-vm", "raw-device-on-other-vm", "not-q35"])
def test_each_refusal_names_its_key_and_writes_nothing(pve, kube, edit, vmid, key, words) -> None:
    sim, server = pve
    sim.edit(vmid, **edit)
    before = sim.vms[1105].raw
    plan = make_engine(server).plan()
    assert plan.refused and any(r.startswith(key) and words in r for r in plan.refusals), plan.refusals
    with pytest.raises(RefusedError):
        make_engine(server).apply()
    assert sim.vms[1105].raw == before and sim.writes == [] and kube.verbs() == []


def test_a_missing_vm_is_refused_with_vm_source_create(pve) -> None:
    _, server = pve
    raw = homelab_raw()
    raw["vm"]["vmId"] = 1300
    plan = make_engine(server, raw).plan()
    assert plan.refusals == (plan.refusals[0],) and plan.refusals[0].startswith("vm.vmId = 1300") and "vm.source: create" in plan.refusals[0]


def test_a_mapping_the_cluster_does_not_have_is_refused_by_name(pve) -> None:
    sim, server = pve
    sim.mappings.clear()
    plan = make_engine(server).plan()
    assert any(r.startswith("gpus[0].mappingName = 'moody-good-gpu0'") for r in plan.refusals), plan.refusals
    assert not make_engine(server, check_mappings=False).plan().refused, "under Pulumi the mapping is created before the slot"


def test_a_stopped_vm_takes_the_change_at_once_and_is_not_started(pve, kube) -> None:
    sim, server = pve
    sim.vms[1105].running = False
    result = make_engine(server).apply()
    assert sim.current(1105)["hostpci0"] == "mapping=moody-good-gpu0,pcie=1" and "[PENDING]" not in sim.vms[1105].raw
    assert not result.restarted and result.pending == [] and not sim.vms[1105].running and kube.verbs() == []


def test_restart_never_leaves_the_change_pending_and_a_later_cold_start_applies_it(pve, kube) -> None:
    sim, server = pve
    result = make_engine(server, restart="never").apply()
    assert result.pending == ["balloon", "hostpci0"] and not result.restarted and kube.verbs() == []
    assert "pending until its next cold start" in result.warnings[0] and "not a reboot inside the guest" in result.warnings[0]
    assert "[PENDING]\nballoon: 0\nhostpci0: mapping=moody-good-gpu0,pcie=1\n" in sim.vms[1105].raw, sim.vms[1105].raw
    sim.cold_restart(1105)  # e.g. the host rebooted: the pending change rode on that start
    again = make_engine(server).apply(result.plan.previous)
    assert again.plan.is_noop and not again.restarted and again.pending == [] and kube.verbs() == [], "no second restart"


def test_a_drain_that_cannot_finish_restarts_nothing_and_uncordons(pve, kube) -> None:
    sim, server = pve
    state = kube.load()
    state["pods"][0]["pdb_blocks"] = True
    kube.save(state)
    engine = make_engine(server)
    engine.options.drain_timeout = 1
    with pytest.raises(RestartError, match="draining node moody-good failed.*Nothing was restarted.*uncordoned again"):
        engine.apply()
    assert sim.vms[1105].starts == 0 and sim.vms[1105].running and "[PENDING]" in sim.vms[1105].raw
    assert not kube.node("moody-good").get("unschedulable")


def test_a_vm_that_does_not_come_back_is_a_bounded_wait_that_names_the_cordoned_node(pve, kube) -> None:
    sim, server = pve
    sim.steps_to_start = 10_000  # the start after the reboot never happens
    clock = FakeClock()
    with pytest.raises(RestartError, match="gave up waiting for VM 1105 to run again.*kubectl uncordon moody-good"):
        make_engine(server, clock=clock).apply()
    assert 600 <= clock.t <= 610 and kube.node("moody-good")["unschedulable"], "bounded by vm.restartTimeoutSeconds, on the injected clock"


def test_undo_leaves_a_key_someone_changed_since_and_says_so(pve, kube) -> None:
    sim, server = pve
    result = make_engine(server).apply()
    sim.edit(1105, balloon="8192")
    undone = make_engine(server).undo(result.plan.previous, result.plan.written)
    assert sim.current(1105)["balloon"] == "8192" and "hostpci0" not in sim.current(1105)
    assert any("balloon was changed by someone else" in note for note in undone.plan.notes), undone.plan.notes


def test_password_login_uses_a_ticket_and_its_csrf_token(pve, kube) -> None:
    sim, server = pve
    api = connect(ApiTarget(server.endpoint, insecure=True, username="root@pam", password="hunter2"))
    api.write("pve5", 1105, {"tags": "gpu;kubernetes;worker-node;pulumi", "digest": api.facts("pve5", 1105).digest})
    assert sim.current(1105)["tags"].endswith(";pulumi")


@pytest.mark.parametrize("target", [
    ApiTarget("https://127.0.0.1:1/", insecure=True, api_token="root@pam!pulumi=wrong"),
    ApiTarget("https://127.0.0.1:1/", insecure=True, username="root@pam", password="wrong"),
    ApiTarget("https://127.0.0.1:1/", insecure=False, api_token="root@pam!pulumi=5ecret-t0ken"),
], ids=["bad-token", "bad-password", "untrusted-certificate"])
def test_refused_credentials_and_untrusted_tls_are_unreachable(pve, target) -> None:
    _, server = pve
    target = ApiTarget(server.endpoint, target.insecure, target.api_token, target.username, target.password)
    with pytest.raises(ProxmoxUnreachable) as error:
        connect(target).facts("pve5", 1105)
    assert "wrong" not in str(error.value) and "5ecret" not in str(error.value), "no secret in the message"
