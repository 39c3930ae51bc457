"""What the engine would do beyond the inputs: which provider (so which
credentials) each resource goes to, and what `pulumi destroy` may delete.
Read from the mock engine's record of provider references and resource
options, for every stack shape the program supports."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from components.talos.config_documents import load_documents
from tests.conftest import FAKE_SECRETS, created_config, run_main
from tests.talos.conftest import install_talosctl
from tests.talos.engine import engine, registration
from tests.talos.running_configs import as_text, worker_documents
from tools.mockengine import ProgramRun, reveal

VM = "proxmoxve:index/vmLegacy:VmLegacy"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
ADOPT = "pulumi-python:dynamic/talos:TalosMachineConfig"
PROVIDERS = {"kubernetes:": "pulumi:providers:kubernetes", "proxmoxve:": "pulumi:providers:proxmoxve"}


def _variant(name: str) -> tuple[dict, dict[str, str]]:
    raw, secrets = copy.deepcopy(created_config()), dict(FAKE_SECRETS)
    if name == "non-owner":
        raw["gpuStack"]["ownsClusterObjects"] = False
        raw["gpuStack"].pop("prometheusOperator")  # owner-only: refused in a non-owner stack
    elif name == "device-plugin":
        raw["talos"]["version"] = "v1.11.6"
        raw["gpuStack"]["mode"] = "devicePlugin"
    elif name == "raw-id":
        raw["proxmox"].update(authMethod="password", username="root@pam")
        raw["gpus"][0]["passthrough"] = "raw"
        secrets["proxmoxPassword"] = "hunter2"
    elif name == "two-gpus":
        raw["gpus"].append({"address": "af:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "slot": "hostpci1"})
    elif name == "flux":
        raw["gpuStack"]["delivery"] = "flux"
    elif name == "generated":
        raw["talos"].update(configSource="generated", kubernetesVersion="v1.34.3")
    return raw, secrets


VARIANTS = ("homelab", "non-owner", "device-plugin", "raw-id", "two-gpus", "flux", "generated")


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
    raw = copy.deepcopy(created_config())
    raw["vm"]["retainOnDestroy"] = retain
    vm = run_main(raw).one(VM)
    if retain:
        assert vm.retain_on_delete is True, f"{vm.urn}: vm.retainOnDestroy true must leave the VM in place on destroy"
    else:
        assert not vm.retain_on_delete, f"{vm.urn}: vm.retainOnDestroy false lets destroy delete the VM"
    assert vm.protect is False, f"{vm.urn}: protect would make destroy fail instead of following vm.retainOnDestroy"


@pytest.mark.parametrize("retain", [True, False])
def test_vm_never_deletes_disks_it_does_not_reference(retain):
    raw = copy.deepcopy(created_config())
    raw["vm"]["retainOnDestroy"] = retain
    vm = run_main(raw).one(VM)
    inputs = reveal(vm.inputs)
    # VmLegacy defaults this to true: destroy would take every unreferenced
    # disk of the VMID with it (a disk detached by hand, a Ceph OSD's volume).
    assert inputs["deleteUnreferencedDisksOnDestroy"] is False, vm.urn
    # Nothing that replaces the VM (and so deletes its disks) on an update.
    assert vm.delete_before_replace is False and vm.replace_on_changes == [], vm.urn
    assert "clone" not in inputs and inputs.get("template") in (None, False), f"{vm.urn}: the VM is not made from a template"


def test_talos_apply_never_resets_the_node_with_a_generated_config():
    """talos.configSource: generated: pulumiverse's ConfigurationApply, whose
    destroy resets the node unless told not to."""
    raw, _ = _variant("generated")
    apply = run_main(raw).one(APPLY)
    inputs = reveal(apply.inputs)
    on_destroy = inputs["onDestroy"]
    assert on_destroy["reset"] is False, f"{apply.urn}: a reset wipes STATE and EPHEMERAL"
    assert on_destroy["reboot"] is False, apply.urn
    gpu_patch = yaml.safe_load(inputs["configPatches"][-1])
    assert gpu_patch["machine"]["install"]["wipe"] is False, f"{apply.urn}: the install must never wipe the node's disks"


def test_talos_apply_never_resets_the_node_with_the_adopted_config(tmp_path: Path):
    """talos.configSource: running (the default): the adopt resource, run the
    way the engine runs it (dill, a fresh process) against the stand-in
    talosctl's node: the config it applies keeps install.wipe false, and
    neither `up` nor destroy resets the node or reboots it to apply."""
    run = run_main(created_config())
    assert run.by_type(APPLY) == [], "an adopted node's config is never replaced by a ConfigurationApply"
    provider, props = registration(run, ADOPT)
    fake = install_talosctl(tmp_path)
    schematic = props["spec"]["schematicId"]
    fake.node("v1.13.9", schematic, config=as_text(worker_documents("v1.13.9")))
    checked = engine(provider, "check", props, fake.env())["ok"]
    assert checked["failures"] == [], checked
    created = engine(provider, "create", checked["inputs"], fake.env())
    assert "ok" in created, created
    (stored, *_) = load_documents(fake.stored_config())
    assert stored["machine"]["install"]["wipe"] is False, "the adopted config must never let an install wipe the node's disks"
    deleted = engine(provider, "delete", created["ok"]["outs"], fake.env())
    assert deleted.get("ok") == {"deleted": None}, deleted
    applies = [call["argv"] for call, command in zip(fake.calls(), fake.commands(), strict=True) if command == "apply-config"]
    assert applies, "the adopt resource applied nothing: this proves nothing"
    assert "reset" not in fake.commands(), fake.commands()
    assert not [argv for argv in applies if "--mode=reboot" in argv or ("--mode" in argv and argv[argv.index("--mode") + 1] == "reboot")], applies
    assert fake.reboots == 0, "neither the apply nor destroy reboots the node"
