"""Guests managed by Proxmox HA at a host reboot: pve-guests and onboot
skip them, the datacenter's ``ha: shutdown_policy`` decides (simulated in
tests/stand_ins/proxmox_ha.py from pve-ha-manager's LRM.pm), and the report after
the reboot reports them as HA handles them."""

from __future__ import annotations

import pytest

from components.hostprep.facts import Guest
from components.hostprep.facts_guests import parse_ha_policy
from components.hostprep.ha import comes_back, fate, moves_away
from components.hostprep.inputs import GpuSpec
from tests.stand_ins.proxmox_host_spec import SimGuest, SimSpec, t4

T4 = "0000:3b:00.0"
T4_SPEC = (GpuSpec(T4, "10de:1eb8", "10de:12a2", None, 0),)
OWN = SimGuest(1105, "moody-good")
# HA-managed, no onboot (HA starts them, not pve-guests); one HA keeps stopped; one HA ignores (pve-guests handles it).
HA_GUESTS = [SimGuest(120, "pihole", onboot=False, ha="started"), SimGuest(121, "db", ha="started"),
             SimGuest(122, "spare", status="stopped", onboot=False, ha="stopped"), SimGuest(123, "lab", onboot=True, ha="ignored")]
OWN_INPUTS = {"own_vmids": (1105,), "node_name": "moody-good"}


@pytest.mark.parametrize(("text", "rc", "policy", "noted"), [
    ("", 1, "conditional", False),  # no datacenter.cfg
    ("keyboard: en-us\n", 0, "conditional", False),
    ("ha: shutdown_policy=freeze\n", 0, "freeze", False),
    ("keyboard: de\nha: shutdown_policy=migrate\n", 0, "migrate", False),
    ("ha:   shutdown_policy=failover\n", 0, "failover", False),
    ("ha: shutdown_policy=reboot-all\n", 0, "conditional", True),  # LRM.pm: unknown -> conditional, logged
])
def test_the_ha_policy_is_read_from_datacenter_cfg_with_pve_defaults(text, rc, policy, noted):
    found, note = parse_ha_policy(rc, text)
    assert found == policy and bool(note) is noted


@pytest.mark.parametrize(("hastate", "policy", "back", "moved", "says"), [
    ("started", "conditional", True, False, "HA stops and freezes it, then starts it again on this host"),
    ("started", "freeze", True, False, "HA stops and freezes it"),
    ("started", "failover", True, False, "or on another node if HA fences this one first"),
    ("started", "migrate", True, True, "HA migrates it to another node before the reboot"),
    ("stopped", "conditional", False, False, "keeps it stopped"),
])
def test_what_a_reboot_does_to_a_running_ha_guest(hastate, policy, back, moved, says):
    guest = Guest(120, "pihole", "qemu", "running", False, hastate)
    assert comes_back(guest, policy) is back and moves_away(guest, policy) is moved
    assert says in fate(guest, policy) and "onboot do not apply" in fate(guest, policy)


@pytest.mark.sshd
def test_ha_guests_are_planned_and_reported_as_ha_handles_them(make_sim, kube):
    sim = make_sim(SimSpec(devices=t4(), guests=[OWN, *HA_GUESTS]))
    kube(nodes={"moody-good": {"vm": {"sim": str(sim.host.base), "vmid": 1105}}})
    facts = sim.engine(T4_SPEC).facts()
    assert {g.vmid: g.hastate for g in facts.guests} == {120: "started", 121: "started", 122: "stopped", 123: "ignored", 1105: ""}
    assert facts.ha_policy == "conditional"
    _, plan = sim.engine(T4_SPEC, running_guests="stop", **OWN_INPUTS).plan()
    text = plan.render()
    assert ("120 pihole (qemu), HA-managed (hastate started; ha: shutdown_policy=conditional): pve-guests and onboot do not apply; "
            "HA stops and freezes it, then starts it again on this host once it is back") in text
    assert "123 lab (qemu), onboot" in text and "122 spare" not in text  # ignored: pve-guests' own; stopped: nothing to stop
    assert "120 pihole (qemu), no onboot" not in text
    result = sim.engine(T4_SPEC, running_guests="stop", options={"guest_timeout": 5.0}, **OWN_INPUTS).apply()
    assert result.rebooted and result.warnings == [], result.warnings  # nothing called "not back", no "no onboot"
    assert sim.host.guest_status() == {1105: "running", 120: "running", 121: "running", 122: "stopped", 123: "running"}
    assert result.restarts["host_reboots"] == 1 and sorted(result.restarts["guests_stopped"]) == [120, 121, 123]
    assert result.restarts["own_vms_stopped"] == [1105] and result.restarts["drained_first"] is True
    assert [(g["vmid"], g["moved"]) for g in result.restarts["ha_guests"]] == [(120, False), (121, False)]


@pytest.mark.sshd
def test_under_the_migrate_policy_ha_guests_move_away_and_do_not_withhold_the_reboot(make_sim):
    """host.runningGuests is refuse: guests HA migrates to another node are not stopped, so they do not block the reboot."""
    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(120, "pihole", onboot=False, ha="started")], ha_peer="pve6",
                           files={"/etc/pve/datacenter.cfg": "keyboard: en-us\nha: shutdown_policy=migrate\n"}))
    _, plan = sim.engine(T4_SPEC).plan()
    assert plan.impact.blocked == "" and plan.impact.stops == ()
    assert "120 pihole (qemu) is not stopped: HA-managed (hastate started; ha: shutdown_policy=migrate)" in plan.render()
    result = sim.engine(T4_SPEC).apply()
    assert result.rebooted and result.warnings == [] and result.restarts["guests_stopped"] == []
    assert result.restarts["ha_guests"] == [{"vmid": 120, "hastate": "started", "policy": "migrate", "moved": True}]
    assert sim.host.guest_status()[120] == "running"


@pytest.mark.sshd
def test_an_ha_guest_ha_does_not_start_again_is_reported_as_ha_s_not_onboot(make_sim):
    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(120, "pihole", onboot=False, ha="started", starts=False)]))
    result = sim.engine(T4_SPEC, running_guests="stop", options={"guest_timeout": 2.0}).apply()
    assert result.rebooted and len(result.warnings) == 1
    assert "120 pihole (qemu) is HA-managed (ha: shutdown_policy=conditional) and HA has not started it again" in result.warnings[0]
    assert "`ha-manager status`" in result.warnings[0] and "onboot" not in result.warnings[0]
