"""What the engine would do beyond the inputs: which provider (so which
credentials) each resource goes to, and what `pulumi destroy` may delete.
Read from the mock engine's record of provider references and resource
options, for every stack shape the program supports."""

from __future__ import annotations

import copy

import pytest

from components.mockengine import ProgramRun, reveal
from tests.conftest import FAKE_SECRETS, run_main, stack_file_config

VM = "proxmoxve:index/vmLegacy:VmLegacy"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
PROVIDERS = {"kubernetes:": "pulumi:providers:kubernetes", "proxmoxve:": "pulumi:providers:proxmoxve"}


def _variant(name: str) -> tuple[dict, dict[str, str]]:
    raw, secrets = copy.deepcopy(stack_file_config()), dict(FAKE_SECRETS)
    if name == "non-owner":
        raw["gpuStack"]["ownsClusterObjects"] = False
    elif name == "device-plugin":
        raw["talos"]["version"] = "v1.11.6"
        raw["gpuStack"]["mode"] = "devicePlugin"
    elif name == "raw-id":
        raw["proxmox"].update(authMethod="password", username="root@pam")
        raw["gpus"][0]["passthrough"] = "raw"
        secrets["proxmoxPassword"] = "hunter2"
    elif name == "two-gpus":
        raw["gpus"].append({"address": "af:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "slot": "hostpci1"})
    return raw, secrets


VARIANTS = ("homelab", "non-owner", "device-plugin", "raw-id", "two-gpus")


@pytest.fixture(scope="module", params=VARIANTS)
def variant_run(request) -> ProgramRun:
    raw, secrets = _variant(request.param)
    return run_main(raw, secrets)


def test_every_kubernetes_and_proxmox_resource_uses_the_stacks_own_provider(variant_run):
    """Without an explicit provider the engine uses the default one, which
    reads the ambient kubeconfig / PROXMOX_VE_* environment: objects could go
    to another cluster or host than the stack describes."""
    checked = {prefix: 0 for prefix in PROVIDERS}
    for prefix, provider_type in PROVIDERS.items():
        provider = variant_run.one(provider_type)
        for reg in variant_run.registrations:
            if reg.custom and reg.type.startswith(prefix):
                assert reg.provider_urn == provider.urn, f"{reg.urn} goes to {reg.provider or 'the default provider'}, not {provider.urn}"
                assert reg.provider.endswith(f"::{provider.name}-id"), f"{reg.urn}: provider reference {reg.provider!r}"
                checked[prefix] += 1
    assert all(checked.values()), f"a stack without Kubernetes or Proxmox resources proves nothing: {checked}"


@pytest.mark.parametrize("retain", [True, False])
def test_vm_retention_follows_retain_on_destroy(retain):
    raw = copy.deepcopy(stack_file_config())
    raw["vm"]["retainOnDestroy"] = retain
    vm = run_main(raw).one(VM)
    if retain:
        assert vm.retain_on_delete is True, f"{vm.urn}: vm.retainOnDestroy true must leave the VM in place on destroy"
    else:
        assert not vm.retain_on_delete, f"{vm.urn}: vm.retainOnDestroy false lets destroy delete the VM"
    assert vm.protect is False, f"{vm.urn}: protect would make destroy fail instead of following vm.retainOnDestroy"


@pytest.mark.parametrize("retain", [True, False])
def test_vm_never_deletes_disks_it_does_not_reference(retain):
    raw = copy.deepcopy(stack_file_config())
    raw["vm"]["retainOnDestroy"] = retain
    vm = run_main(raw).one(VM)
    inputs = reveal(vm.inputs)
    # VmLegacy defaults this to true: destroy would take every unreferenced
    # disk of the VMID with it (a disk detached by hand, a Ceph OSD's volume).
    assert inputs["deleteUnreferencedDisksOnDestroy"] is False, vm.urn
    # Nothing that replaces the VM (and so deletes its disks) on an update.
    assert vm.delete_before_replace is False and vm.replace_on_changes == [], vm.urn
    assert "clone" not in inputs and inputs.get("template") in (None, False), f"{vm.urn}: the VM is not made from a template"


def test_talos_apply_never_resets_the_node():
    apply = run_main(stack_file_config()).one(APPLY)
    on_destroy = reveal(apply.inputs)["onDestroy"]
    assert on_destroy["reset"] is False, f"{apply.urn}: a reset wipes STATE and EPHEMERAL"
    assert on_destroy["reboot"] is False, apply.urn
