"""State written by the provider before its inputs and outputs took
camelCase keys, against the simulated host over sshd: the old input names
alone make no change; the old output names make an update (Pulumi would keep
them, leaving the new names empty) that changes nothing on the host and
stores the new names only; delete works from the old state."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from components.config import parse_stack_config
from components.hostprep import provider as provider_module
from components.hostprep.provider import HostPrepProvider
from components.hostprep.spec import OLD_KEYS, HostPrepSpec, canonical, host_prep_spec
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


# The output names the provider stored before they took camelCase keys.
OLD_OUTPUT_NAMES = {"iommuGroups": "iommu_groups", "subsystemIds": "subsystem_ids"}
OLD_RESTARTS = {"hostReboots": "host_reboots", "guestsStopped": "guests_stopped", "ownVmsStopped": "own_vms_stopped",
                "haGuests": "ha_guests", "drainedFirst": "drained_first"}
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def _old_outputs(outs: dict[str, Any]) -> dict[str, Any]:
    """``outs`` as the snake_case provider stored them: the same values under the old output names."""
    old = {OLD_OUTPUT_NAMES.get(key, key): value for key, value in outs.items()}
    old["restarts"] = {OLD_RESTARTS.get(key, key): value for key, value in outs["restarts"].items()}
    return old


def _files(sim) -> dict[str, tuple[bytes, int, int]]:
    """Every file of the host's /etc and /var with its content, mode and mtime: a rewrite shows."""
    return {str(path.relative_to(sim.host.root)): (path.read_bytes(), path.stat().st_mode, path.stat().st_mtime_ns)
            for top in ("etc", "var") for path in sorted((sim.host.root / top).rglob("*"))
            if path.is_file() and not path.is_symlink()}


def test_old_state_shows_an_update_for_its_output_names_alone_that_changes_nothing_on_the_host(make_sim, homelab, monkeypatch):
    said: list[str] = []  # what the provider logs (pulumi.log goes to a mock engine once a test in this process set one)
    monkeypatch.setattr(provider_module, "_say", said.append)
    sim = make_sim(SimSpec(devices=t4()))
    provider = HostPrepProvider()
    old, new = _on_sim(sim, homelab)
    assert "hostKey" in new and "host_key" not in new
    before = sim.host.snapshot()
    created = provider.create(old)  # the host as the old provider left it
    stored = _old_outputs(created.outs)  # and its state: the snake_case inputs and output names
    assert {"host_key", "iommu_groups", "subsystem_ids"} <= set(stored) and "iommuGroups" not in stored
    assert stored["drivers"] == {"0000:3b:00.0": "vfio-pci"} and stored["iommu_groups"] == {"0000:3b:00.0": 30}
    said.clear()

    assert provider.check(stored, new).failures == []
    diff = provider.diff(created.id, stored, new)
    # The next preview: an update, for the old output names alone (the engine would keep them, leaving iommuGroups empty).
    assert (diff.changes, diff.replaces) == (True, [])
    assert "outputs under earlier names (iommu_groups, subsystem_ids): an update rewrites them as iommuGroups, subsystemIds" \
        in "\n".join(said)
    between = {**{k: v for k, v in stored.items() if k not in OLD_KEYS.values()}, **new, **{k: stored[k] for k in OLD_OUTPUT_NAMES.values()}}
    assert provider.diff(created.id, between, new).changes is True, "camelCase inputs with the old output names: an update too"
    assert "host_key" in created.outs and "iommuGroups" in created.outs
    assert provider.diff(created.id, created.outs, new).changes is False, "old input names alone: no change"

    changed = provider.diff(created.id, stored, {**new, "rebootOnDestroy": True})
    assert changed.changes is True and not changed.replaces  # a real change still shows
    moved = provider.diff(created.id, stored, {**new, "owner": "proxmox-talos-gpu/other"})
    assert moved.replaces == ["owner"]

    files, boot, calls = _files(sim), sim.host.boot_id(), len(sim.host.calls())
    updated = provider.update(created.id, stored, new)
    assert "host ready: 0 file(s) written, 0 command(s), rebooted: False" in said[-1]
    assert _files(sim) == files and sim.host.boot_id() == boot, "the update wrote nothing on the host and did not reboot it"
    assert [c["tool"] for c in sim.host.calls()[calls:]] == ["proxmox-boot-tool", "efibootmgr"]  # the facts' read-only probes
    outs = updated.outs
    assert (outs["iommuGroups"], outs["subsystemIds"], outs["drivers"]) == \
        ({"0000:3b:00.0": 30}, {"0000:3b:00.0": "10de:12a2"}, {"0000:3b:00.0": "vfio-pci"})
    # Only camelCase keys, the nested ones of our own structures too (not the GPU addresses the maps are keyed by).
    named = [*outs, *outs["restarts"], *(key for gpu in outs["gpus"] for key in gpu)]
    assert [key for key in named if not CAMEL.match(key)] == [], outs
    assert outs["restarts"]["hostReboots"] == 0 and outs["rebooted"] is False
    assert provider.diff(created.id, outs, new).changes is False  # rewritten: the next preview shows no change

    refreshed = provider.read(created.id, stored).outs  # a `pulumi refresh` of the old state: the new names only
    assert refreshed["iommuGroups"] == outs["iommuGroups"] and refreshed["restarts"] == created.outs["restarts"]
    assert not {"iommu_groups", "subsystem_ids"} & set(refreshed), refreshed

    provider.delete(created.id, stored)  # a destroy straight from the old state
    assert sim.host.snapshot() == before
