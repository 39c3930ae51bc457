"""State written by the adopt provider before its inputs took camelCase keys:
the next `pulumi preview` shows no change when nothing else changed, and
update and delete work from it, against the stand-in Proxmox API."""

from __future__ import annotations

from typing import Any

from components.vm.adopt import AdoptSpec
from components.vm.inputs import canonical
from components.vm.provider import VmAdoptProvider
from tests.conftest import FAKE_SECRETS, run_main
from tests.vm.conftest import MOODY_GOOD, TOKEN, homelab_raw
from tools.mockengine import reveal

KUBECONFIG = "apiVersion: v1\nkind: Config\n"

# The inputs as the snake_case provider registered them for the homelab stack
# (components/vm/component.py adopt_props and AdoptSpec.to_dict() of that
# version), pinned; the stand-in's endpoint goes in below.
OLD_INPUTS: dict[str, Any] = {
    "endpoint": "https://pve5.lan:8006/", "insecure": False, "api_token": TOKEN,
    "spec": {"node": "pve5", "vm_id": 1105, "name": "moody-good", "check_mappings": False,
             "slots": [{"index": 0, "slot": "hostpci0", "mapping": "moody-good-gpu0", "path": "0000:3b:00.0",
                        "pcie": True, "rombar": True, "xvga": False}]},
    "restart": "drained", "restart_timeout_seconds": 900, "drain_timeout_seconds": 300, "node_name": "moody-good",
    "kubeconfig": KUBECONFIG,
}


def _new_inputs(endpoint: str) -> dict[str, Any]:
    """What the component registers today for the same stack (None is not sent)."""
    raw = homelab_raw()
    raw["proxmox"].update(endpoint=endpoint, insecure=True)
    run = run_main(raw, {**FAKE_SECRETS, "proxmoxApiToken": TOKEN, "kubeconfig": KUBECONFIG})
    (reg,) = [r for r in run.registrations if r.name.endswith("-gpu-slots")]
    inputs = reveal(reg.inputs)
    inputs.pop("__provider")
    return {k: v for k, v in inputs.items() if v is not None and k not in ("previous", "written", "restarted", "pending")}


def test_the_old_keys_and_the_new_ones_read_as_the_same_spec():
    spec = AdoptSpec.from_dict(OLD_INPUTS["spec"])
    assert (spec.vm_id, spec.check_mappings, spec.slots[0].slot) == (1105, False, "hostpci0")
    assert "vmId" in spec.to_dict() and "vm_id" not in spec.to_dict()
    assert AdoptSpec.from_dict(spec.to_dict()) == spec
    new = canonical(OLD_INPUTS)
    assert (new["apiToken"], new["restartTimeoutSeconds"], new["nodeName"], new["spec"]["vmId"]) == (TOKEN, 900, "moody-good", 1105)


def test_old_state_shows_no_change_then_updates_and_deletes(pve, kube) -> None:
    sim, server = pve
    sim.steps_to_stop = sim.steps_to_start = 1
    provider = VmAdoptProvider()
    old = {**OLD_INPUTS, "endpoint": server.endpoint, "insecure": True}
    new = _new_inputs(server.endpoint)
    assert canonical(new) == canonical(old), "the pinned inputs are today's config in the old spelling"
    assert "apiToken" in new and "api_token" not in new

    created = provider.create(old)  # what the old provider did: its outputs carry the snake_case inputs
    stored = created.outs
    assert created.id == "pve5/1105" and "api_token" in stored and stored["written"]["balloon"] == "0"

    assert provider.check(stored, new).failures == []
    diff = provider.diff(created.id, stored, new)
    assert (diff.changes, diff.replaces) == (False, [])  # the next preview: no change

    assert provider.diff(created.id, stored, {**new, "restartTimeoutSeconds": 1200}).changes is True  # a real change still shows
    other = provider.diff(created.id, stored, {**new, "spec": {**new["spec"], "vmId": 1200}})
    assert other.replaces == ["spec"]

    updated = provider.update(created.id, stored, new)
    assert "apiToken" in updated.outs and "api_token" not in updated.outs
    assert updated.outs["previous"] == stored["previous"] and updated.outs["written"] == stored["written"]
    assert provider.diff(created.id, updated.outs, new).changes is False

    provider.delete(created.id, stored)  # a destroy straight from the old state
    assert sim.vms[1105].raw == MOODY_GOOD
