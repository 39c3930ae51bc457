"""The host-prep provider's inputs as one value (components/hostprep/spec.py):
what the component registers, what the provider reads back, and state
written by earlier versions of the provider."""

from __future__ import annotations

from components.config import parse_stack_config
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.hostprep.provider import _UPDATE_KEYS, _engine
from components.hostprep.spec import SECRET_KEYS, SPEC_KEYS, HostPrepSpec, host_prep_spec

OWNER = "proxmox-talos-gpu/homelab"


def test_the_spec_from_config_round_trips_through_its_dict(homelab):
    homelab["host"].update(runningGuests="stop", handEdits="overwrite", rebootTimeoutSeconds=900)
    spec = host_prep_spec(parse_stack_config(homelab), OWNER)
    data = spec.to_dict()
    assert HostPrepSpec.from_dict(data) == spec
    assert list(data) == [key for key in SPEC_KEYS if key != "root"]  # root is test-only: sent only when set
    assert not set(data) & set(SECRET_KEYS)
    assert (data["runningGuests"], data["handEdits"], data["rebootTimeoutSeconds"], data["ownVmids"]) == ("stop", "overwrite", 900, [1105])
    assert data["gpus"] == [{"address": "0000:3b:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "iommuGroup": None, "index": 0}]


def test_diff_compares_every_key_of_the_spec_but_the_replacing_ones():
    assert set(_UPDATE_KEYS) | {"host", "port", "owner"} == set(SPEC_KEYS)


# The inputs an early provider stored: before running_guests, own_vmids,
# node_name, hand_edits and the command/drain/guest timeouts existed, with its
# outputs and the pickled provider next to them.
OLD_STATE = {
    "host": "pve5.lan", "port": 22.0, "user": "root", "host_key": "SHA256:" + "A" * 43, "owner": OWNER,
    "private_key": "(secret)", "gpus": [{"address": "0000:3b:00.0", "id": "10de:1eb8", "subsystem_id": "10de:12a2", "index": 0}],
    "intel_iommu": "auto", "iommu_passthrough": True, "allow_reboot": True, "reboot_on_destroy": False,
    "reboot_timeout_seconds": 600, "drivers": {"0000:3b:00.0": "vfio-pci"}, "iommu_groups": {"0000:3b:00.0": 30},
    "subsystem_ids": {"0000:3b:00.0": "10de:12a2"}, "rebooted": True, "__provider": "(pickled)",
}


def test_state_written_before_the_newer_keys_still_loads_with_the_defaults_the_provider_used():
    spec = HostPrepSpec.from_dict(OLD_STATE)
    assert spec == HostPrepSpec(
        host="pve5.lan", port=22, user="root", host_key="SHA256:" + "A" * 43, owner=OWNER,
        inputs=HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb8", "10de:12a2", None, 0),)),
        reboot_timeout_seconds=600.0, command_timeout_seconds=900.0, drain_timeout_seconds=300.0, guest_timeout_seconds=600.0)
    assert (spec.inputs.running_guests, spec.inputs.hand_edits, spec.inputs.own_vmids, spec.inputs.node_name) == ("refuse", "refuse", (), None)


def test_the_provider_builds_its_engine_from_old_state():
    engine = _engine(dict(OLD_STATE))
    assert (engine.owner, engine.inputs) == (OWNER, HostPrepSpec.from_dict(OLD_STATE).inputs)
    assert (engine.options.command_timeout, engine.options.drain_timeout, engine.options.root) == (900.0, 300.0, "/")


def test_values_are_read_as_the_state_holds_them():
    where = {"host": "pve5.lan", "port": 22, "user": "root", "hostKey": "SHA256:" + "B" * 43, "owner": OWNER}
    spec = HostPrepSpec.from_dict({**where, "gpus": [{"address": "0000:3b:00.0", "iommuGroup": "30", "index": "2"}]})
    assert spec.inputs == HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", None, None, 30, 2),)), "every other key: its default"
    spec = HostPrepSpec.from_dict({**where, "gpus": [], "runningGuests": None, "ownVmids": None, "nodeName": "", "handEdits": None,
                                   "allowReboot": 0, "iommuPassthrough": 1})
    assert spec.inputs == HostPrepInputs(gpus=(), allow_reboot=False)
