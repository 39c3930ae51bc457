"""State written by the provider before its inputs took camelCase keys:
the next `pulumi preview` shows no change when nothing else changed, and
update and delete work from it, against the simulated host over sshd."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from components.config import parse_stack_config
from components.hostprep.provider import HostPrepProvider
from components.hostprep.spec import HostPrepSpec, canonical, host_prep_spec
from tests.stand_ins.proxmox_host_spec import SimSpec, t4

pytestmark = pytest.mark.sshd

OWNER = "proxmox-talos-gpu/homelab"

# The inputs as the snake_case provider registered them for the homelab stack
# (HostPrepSpec.to_dict() of that version, then the component's private_key
# and kubeconfig), pinned; the sim's address, port, user and keys go in below.
OLD_INPUTS: dict[str, Any] = {
    "host": "pve5.lan", "port": 22, "user": "root", "host_key": "SHA256:" + "A" * 43, "owner": OWNER,
    "gpus": [{"address": "0000:3b:00.0", "id": "10de:1eb8", "subsystem_id": "10de:12a2", "iommu_group": None, "index": 0}],
    "intel_iommu": "auto", "iommu_passthrough": True, "allow_reboot": True, "reboot_on_destroy": False,
    "reboot_timeout_seconds": 600, "running_guests": "refuse", "own_vmids": [1105], "node_name": "moody-good",
    "hand_edits": "refuse", "command_timeout_seconds": 900, "drain_timeout_seconds": 300, "guest_timeout_seconds": 600,
    "private_key": "(the SSH key)", "kubeconfig": None,
}


def _on_sim(sim, homelab: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The old inputs and today's (from the stack config) for the same host."""
    target = sim.target
    old = {**OLD_INPUTS, "host": target.host, "port": target.port, "user": target.user, "host_key": target.host_key,
           "private_key": target.private_key, "root": sim.root, "reboot_timeout_seconds": 30}
    homelab["host"].update(address=target.host, port=target.port, user=target.user, hostKey=target.host_key, rebootTimeoutSeconds=30)
    spec = host_prep_spec(parse_stack_config(homelab), OWNER)
    new = {**replace(spec, root=sim.root).to_dict(), "privateKey": target.private_key, "kubeconfig": None}
    return old, new


def test_the_old_keys_and_the_new_ones_read_as_the_same_spec():
    new = {**HostPrepSpec.from_dict(OLD_INPUTS).to_dict(), "privateKey": "(the SSH key)"}
    assert "hostKey" in new and "host_key" not in new and new["gpus"][0]["subsystemId"] == "10de:12a2"
    assert HostPrepSpec.from_dict(new) == HostPrepSpec.from_dict(OLD_INPUTS)
    assert canonical(new) == canonical(OLD_INPUTS)
    spec = HostPrepSpec.from_dict(OLD_INPUTS)
    assert (spec.host_key, spec.inputs.own_vmids, spec.inputs.node_name, spec.command_timeout_seconds) == \
        ("SHA256:" + "A" * 43, (1105,), "moody-good", 900.0)
    assert spec.inputs.gpus[0].subsystem_id == "10de:12a2"


def test_old_state_shows_no_change_then_updates_and_deletes(make_sim, homelab):
    sim = make_sim(SimSpec(devices=t4()))
    provider = HostPrepProvider()
    old, new = _on_sim(sim, homelab)
    assert "hostKey" in new and "host_key" not in new
    before = sim.host.snapshot()
    created = provider.create(old)  # what the old provider did: its outputs carry the snake_case inputs
    stored = created.outs
    assert "host_key" in stored and stored["drivers"] == {"0000:3b:00.0": "vfio-pci"}

    assert provider.check(stored, new).failures == []
    diff = provider.diff(created.id, stored, new)
    assert (diff.changes, diff.replaces) == (False, [])  # the next preview: no change

    changed = provider.diff(created.id, stored, {**new, "rebootOnDestroy": True})
    assert changed.changes is True and not changed.replaces  # a real change still shows
    moved = provider.diff(created.id, stored, {**new, "owner": "proxmox-talos-gpu/other"})
    assert moved.replaces == ["owner"]

    updated = provider.update(created.id, stored, new)
    assert "hostKey" in updated.outs and "host_key" not in updated.outs
    assert updated.outs["drivers"] == {"0000:3b:00.0": "vfio-pci"}
    assert provider.diff(created.id, updated.outs, new).changes is False

    provider.delete(created.id, stored)  # a destroy straight from the old state
    assert sim.host.snapshot() == before
