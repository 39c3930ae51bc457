"""The whole program under Pulumi's mock engine: types, key inputs, parents
and dependency edges, for the homelab stack and variants. Assertions are the
rows of the README's "What the guide gets wrong" table, with the URN in every message."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import FAKE_SECRETS, created_config, run_main
from tools.mockengine import ProgramRun, Registration, is_secret, reveal

VM = "proxmoxve:index/vmLegacy:VmLegacy"
PCI_MAPPING = "proxmoxve:hardware/mapping/pci:Pci"
GPU_VM = "proxmox-talos-gpu:proxmox:GpuVm"
GPU_STACK = "proxmox-talos-gpu:kubernetes:GpuStack"
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
CONFIG_MAP_PATCH = "kubernetes:core/v1:ConfigMapPatch"
NODE_PATCH = "kubernetes:core/v1:NodePatch"
NAMESPACE = "kubernetes:core/v1:Namespace"
RUNTIME_CLASS = "kubernetes:node.k8s.io/v1:RuntimeClass"


def two_gpu_config() -> dict:
    raw = copy.deepcopy(created_config())
    raw["gpus"].append({"address": "af:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "slot": "hostpci1", "generation": "turing"})
    return raw


@pytest.fixture(scope="module")
def homelab_run() -> ProgramRun:
    return run_main(created_config())


@pytest.fixture(scope="module")
def two_gpu_run() -> ProgramRun:
    return run_main(two_gpu_config())


def _parent_type(run: ProgramRun, reg: Registration) -> str:
    return run.by_urn(reg.parent).type


def test_vm_is_q35_without_ballooning(homelab_run):
    vm = homelab_run.one(VM)
    assert vm.inputs["machine"] == "q35", vm.urn
    assert vm.inputs["memory"]["dedicated"] == 243712, vm.urn
    assert vm.inputs["memory"]["floating"] == 0, f"{vm.urn}: ballooning must be off for passthrough"
    assert vm.inputs["cpu"]["cores"] == 50 and vm.inputs["cpu"]["type"] == "host", vm.urn
    assert vm.inputs["vmId"] == 1105 and vm.inputs["name"] == "moody-good" and vm.inputs["nodeName"] == "pve5", vm.urn
    assert vm.inputs["networkDevices"] == [{"bridge": "vmbr0", "vlanId": 2, "macAddress": "94:96:cc:43:7d:80", "model": "virtio"}], vm.urn
    assert vm.inputs["disks"][0]["datastoreId"] == "disk3" and vm.inputs["disks"][0]["size"] == 450, vm.urn
    assert vm.inputs["tags"] == ["gpu", "kubernetes", "worker-node"], vm.urn
    assert vm.inputs["timeoutStartVm"] >= 300, f"{vm.urn}: 238 GiB of pinned memory needs a long start timeout"


def test_hostpci_uses_slot_name_and_mapping_not_pci_address(homelab_run):
    vm = homelab_run.one(VM)
    (hostpci,) = vm.inputs["hostpcis"]
    assert hostpci["device"] == "hostpci0", f"{vm.urn}: device is the slot name (README table row 1)"
    assert hostpci["mapping"] == "moody-good-gpu0", vm.urn
    assert "id" not in hostpci, f"{vm.urn}: raw ids need root@pam (README table row 3)"
    assert hostpci["pcie"] is True and hostpci["rombar"] is True and hostpci["xvga"] is False, vm.urn


def test_pci_mapping_carries_id_path_group_and_subsystem(homelab_run):
    mapping = homelab_run.one(PCI_MAPPING)
    (entry,) = mapping.inputs["maps"]
    # The homelab stack configures no IOMMU group and the mock host reports
    # none, so the mapping carries none (the host's group reaches it in
    # test_vm_waits_for_host_preparation_and_takes_its_iommu_group).
    assert entry == {"id": "10de:1eb8", "node": "pve5", "path": "0000:3b:00.0", "subsystemId": "10de:12a2"}, mapping.urn
    assert mapping.inputs["name"] == "moody-good-gpu0", mapping.urn


def test_vm_waits_for_its_pci_mappings_and_lives_in_gpu_vm(homelab_run):
    vm, mapping = homelab_run.one(VM), homelab_run.one(PCI_MAPPING)
    assert homelab_run.depends_on(vm, mapping), vm.urn
    assert _parent_type(homelab_run, vm) == GPU_VM and _parent_type(homelab_run, mapping) == GPU_VM, vm.urn


def test_every_cluster_object_waits_for_the_vm(homelab_run):
    vm = homelab_run.one(VM)
    for reg in homelab_run.registrations:
        if reg.type.startswith("kubernetes:"):
            assert homelab_run.depends_on(reg, vm), f"{reg.urn} must not be created before the GPU node's VM"
            assert _parent_type(homelab_run, reg) == GPU_STACK, reg.urn


def test_operator_release_uses_ngc_repo_and_talos_values(homelab_run):
    release = homelab_run.one(RELEASE)
    inputs = release.inputs
    assert inputs["chart"] == "gpu-operator" and inputs["version"] == "v26.7.0", release.urn
    assert inputs["repositoryOpts"]["repo"] == "https://helm.ngc.nvidia.com/nvidia", f"{release.urn}: README table row 12"
    values = inputs["values"]
    assert values["driver"]["enabled"] is False and values["toolkit"]["enabled"] is False, release.urn
    assert values["hostPaths"]["driverInstallDir"] == "/usr/local", f"{release.urn}: README table row 13"
    assert values["devicePlugin"]["config"] == {"name": "time-slicing-config", "default": "moody-good"}, release.urn
    assert values["dcgmExporter"]["serviceMonitor"]["enabled"] is False, f"{release.urn}: no Prometheus Operator configured (README table row 14)"
    assert values["migManager"]["enabled"] is False, f"{release.urn}: T4 has no MIG"
    assert "validator" not in values and "operator" not in values, f"{release.urn}: dead keys (README table row 11)"


def test_release_waits_for_time_slicing_config_map(homelab_run):
    release, config_map = homelab_run.one(RELEASE), homelab_run.one(CONFIG_MAP)
    assert homelab_run.depends_on(release, config_map), release.urn


def test_namespace_is_privileged(homelab_run):
    namespace = homelab_run.one(NAMESPACE)
    labels = namespace.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged", namespace.urn


def test_operator_mode_creates_no_runtime_class(homelab_run):
    assert homelab_run.by_type(RUNTIME_CLASS) == [], "the GPU Operator owns RuntimeClass nvidia (README table row 15)"


def test_node_is_labelled_with_its_config_key_after_the_key_exists(homelab_run):
    label, config_map = homelab_run.one(NODE_PATCH), homelab_run.one(CONFIG_MAP)
    metadata = label.inputs["metadata"]
    assert metadata["name"] == "moody-good" and metadata["labels"] == {"nvidia.com/device-plugin.config": "moody-good"}, label.urn
    assert metadata["annotations"]["pulumi.com/patchFieldManager"] == "proxmox-talos-gpu-moody-good", label.urn
    assert homelab_run.depends_on(label, config_map), label.urn


def test_provider_credentials_stay_secret(homelab_run):
    proxmox = homelab_run.one("pulumi:providers:proxmoxve")
    kubernetes = homelab_run.one("pulumi:providers:kubernetes")
    assert is_secret(proxmox.inputs["apiToken"]), proxmox.urn
    assert is_secret(kubernetes.inputs["kubeconfig"]), kubernetes.urn
    assert kubernetes.inputs["enableServerSideApply"] in (True, "true"), kubernetes.urn


def test_stack_outputs(homelab_run):
    assert homelab_run.outputs["vmId"] == 1105
    assert homelab_run.outputs["advertisedGpus"] == 4


def test_two_gpus_get_two_slots_and_two_mappings(two_gpu_run):
    vm = two_gpu_run.one(VM)
    assert [hostpci["device"] for hostpci in vm.inputs["hostpcis"]] == ["hostpci0", "hostpci1"], vm.urn
    mappings = two_gpu_run.by_type(PCI_MAPPING)
    assert sorted(reveal(m.inputs["maps"])[0]["path"] for m in mappings) == ["0000:3b:00.0", "0000:af:00.0"]
    assert all(two_gpu_run.depends_on(vm, mapping) for mapping in mappings), vm.urn
    assert two_gpu_run.outputs["advertisedGpus"] == 8


def test_raw_id_passthrough_as_root_pam(homelab):
    homelab["vm"]["source"] = "create"
    homelab["proxmox"].update(authMethod="password", username="root@pam")
    homelab["gpus"][0]["passthrough"] = "raw"
    from tests.conftest import FAKE_SECRETS
    secrets = {**FAKE_SECRETS, "proxmoxPassword": "hunter2"}
    run = run_main(homelab, secrets)
    vm = run.one(VM)
    assert vm.inputs["hostpcis"][0]["id"] == "0000:3b:00.0" and "mapping" not in vm.inputs["hostpcis"][0], vm.urn
    assert run.by_type(PCI_MAPPING) == []
    provider = run.one("pulumi:providers:proxmoxve")
    assert is_secret(provider.inputs["password"]) and provider.inputs["username"] == "root@pam", provider.urn


def test_non_owner_stack_only_adds_its_key_and_label(homelab):
    homelab["vm"].update(vmId=1106, name="moody-bad")
    homelab["gpus"][0]["address"] = "0000:af:00.0"
    homelab["gpuStack"]["ownsClusterObjects"] = False
    del homelab["gpuStack"]["prometheusOperator"]  # owner-only: refused in a non-owner stack
    run = run_main(homelab)
    for type_ in (NAMESPACE, CONFIG_MAP, RELEASE, RUNTIME_CLASS):
        assert run.by_type(type_) == [], f"a non-owner stack must not create {type_}"
    patch = run.one(CONFIG_MAP_PATCH)
    assert patch.inputs["metadata"]["name"] == "time-slicing-config" and patch.inputs["metadata"]["namespace"] == "gpu-operator", patch.urn
    assert list(patch.inputs["data"]) == ["moody-bad"], patch.urn
    assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchFieldManager"] == "proxmox-talos-gpu-moody-bad", patch.urn
    label = run.one(NODE_PATCH)
    assert label.inputs["metadata"]["labels"] == {"nvidia.com/device-plugin.config": "moody-bad"}, label.urn
    assert run.depends_on(label, patch), label.urn


def test_device_plugin_mode_on_talos_1_11(homelab):
    homelab["talos"]["version"] = "v1.11.6"
    homelab["gpuStack"]["mode"] = "devicePlugin"
    run = run_main(homelab)
    release = run.one(RELEASE)
    assert release.inputs["chart"] == "nvidia-device-plugin" and release.inputs["version"] == "0.18.2", release.urn
    assert release.inputs["repositoryOpts"]["repo"] == "https://nvidia.github.io/k8s-device-plugin", release.urn
    assert release.inputs["values"]["runtimeClassName"] == "nvidia" and release.inputs["values"]["gfd"]["enabled"] is True, release.urn
    runtime_class = run.one(RUNTIME_CLASS)
    assert runtime_class.inputs["handler"] == "nvidia", runtime_class.urn
    assert run.depends_on(release, runtime_class), release.urn


TALOS_NODE = "proxmox-talos-gpu:talos:TalosGpuNode"
READINESS = "proxmox-talos-gpu:readiness:GpuReadiness"
JELLYFIN = "proxmox-talos-gpu:consumers:JellyfinTranscoding"


def _children(run: ProgramRun, component_type: str) -> list[Registration]:
    component = run.one(component_type)
    return [reg for reg in run.registrations if component.urn in run.ancestors(reg) and reg.custom]


def _named(run: ProgramRun, suffix: str) -> Registration:
    (found,) = [reg for reg in run.registrations if reg.name.endswith(suffix)]
    return found


@pytest.fixture(scope="module")
def jellyfin_run() -> ProgramRun:
    raw = created_config()
    raw["jellyfin"]["enabled"] = True
    return run_main(raw)


def test_every_resource_sits_in_a_component(homelab_run):
    for reg in homelab_run.registrations:
        if reg.custom and not reg.type.startswith("pulumi:providers:"):
            assert _parent_type(homelab_run, reg).startswith("proxmox-talos-gpu:"), f"{reg.urn} has no component parent"


def test_talos_node_waits_for_the_vm(homelab_run):
    vm = homelab_run.one(VM)
    for reg in _children(homelab_run, TALOS_NODE):
        assert homelab_run.depends_on(reg, vm), f"{reg.urn} must wait for the VM"


def test_cluster_objects_wait_for_the_talos_upgrade(homelab_run):
    upgrade = _named(homelab_run, "-talos-upgrade")
    for reg in _children(homelab_run, GPU_STACK):
        assert homelab_run.depends_on(reg, upgrade), f"{reg.urn} must wait until the node runs the NVIDIA image"


def test_readiness_gate_waits_for_the_release_and_the_node_label(homelab_run):
    (gate,) = _children(homelab_run, READINESS)
    assert homelab_run.depends_on(gate, homelab_run.one(RELEASE)), gate.urn
    assert homelab_run.depends_on(gate, homelab_run.one(NODE_PATCH)), gate.urn
    assert gate.inputs["expectedGpus"] == 4 and gate.inputs["nodeName"] == "moody-good", gate.urn
    assert is_secret(gate.inputs["kubeconfig"]), gate.urn


def test_talos_credentials_stay_secret(homelab_run):
    config = homelab_run.one("pulumi-python:dynamic/talos:TalosMachineConfig")
    assert is_secret(config.inputs["talosconfig"]) and is_secret(config.inputs["originals"]), config.urn
    assert {"talosconfig", "originals"} <= set(config.additional_secret_outputs), config.urn
    upgrade = _named(homelab_run, "-talos-upgrade")
    assert is_secret(upgrade.inputs["talosconfig"]), upgrade.urn


def test_generated_config_keeps_client_config_and_machine_config_secret():
    raw = copy.deepcopy(created_config())
    raw["talos"].update(configSource="generated", kubernetesVersion="v1.34.3")
    run = run_main(raw)
    apply = run.one("talos:machine/configurationApply:ConfigurationApply")
    assert is_secret(apply.inputs["clientConfiguration"]) or all(
        is_secret(value) for value in apply.inputs["clientConfiguration"].values()), apply.urn
    assert is_secret(apply.inputs["machineConfigurationInput"]), apply.urn
    assert run.by_type("pulumi-python:dynamic/talos:TalosMachineConfig") == []


def test_jellyfin_waits_for_readiness_and_keeps_its_key_secret(jellyfin_run):
    (gate,) = _children(jellyfin_run, READINESS)
    for reg in _children(jellyfin_run, JELLYFIN):
        assert jellyfin_run.depends_on(reg, gate), f"{reg.urn} must wait until the node advertises its GPUs"
        assert is_secret(reg.inputs["apiKey"]), reg.urn


def test_no_secret_value_appears_in_plain_text(jellyfin_run):
    from tests.conftest import FAKE_SECRETS

    for reg in jellyfin_run.registrations:
        plain = repr({key: value for key, value in reg.inputs.items() if not is_secret(value)})
        for name, value in FAKE_SECRETS.items():
            for line in value.splitlines():
                if len(line.strip()) > 12 and "BEGIN" not in line and "END" not in line:
                    assert line.strip() not in plain, f"{reg.urn} carries part of {name} in plain text"


HOST_PREP = "proxmox-talos-gpu:host:HostVfioPrep"


def _host_facts_mocks():
    from tools.mockengine import ProgramMocks

    def host_outputs(args):
        if "privateKey" not in args.inputs:
            return {}
        return {"iommuGroups": {"0000:3b:00.0": 27}, "subsystemIds": {"0000:3b:00.0": "10de:12a2"},
                "drivers": {"0000:3b:00.0": "vfio-pci"}, "rebooted": True}

    return ProgramMocks(outputs={"pulumi-python:dynamic:Resource": host_outputs})


def test_vm_waits_for_host_preparation_and_takes_its_iommu_group():
    run = run_main(created_config(), mocks=_host_facts_mocks())
    (prep,) = _children(run, HOST_PREP)
    vm, mapping = run.one(VM), run.one(PCI_MAPPING)
    assert run.depends_on(vm, prep) and run.depends_on(mapping, prep), vm.urn
    (entry,) = mapping.inputs["maps"]
    assert entry["iommuGroup"] == 27 and entry["subsystemId"] == "10de:12a2", f"{mapping.urn}: the host's facts feed the mapping"
    assert run.outputs["hostRebooted"] is True and run.outputs["gpuDrivers"] == {"0000:3b:00.0": "vfio-pci"}


def test_host_preparation_keeps_the_ssh_key_secret(homelab_run):
    (prep,) = _children(homelab_run, HOST_PREP)
    assert is_secret(prep.inputs["privateKey"]), prep.urn


def test_host_preparation_off_uses_configured_group(homelab):
    homelab["host"] = {"enabled": False}
    homelab["gpus"][0]["iommuGroup"] = 31
    run = run_main(homelab)
    assert _children(run, HOST_PREP) == []
    (entry,) = run.one(PCI_MAPPING).inputs["maps"]
    assert entry["iommuGroup"] == 31


def test_all_functions_maps_the_whole_device_and_keeps_the_hosts_facts(homelab):
    # A path without the function maps every function (PVE/Mapping/PCI.pm; the GUI's
    # "All Functions"); the host's facts are still read for the GPU's function 0.
    homelab["gpus"][0]["allFunctions"] = True
    run = run_main(homelab, mocks=_host_facts_mocks())
    mapping = run.one(PCI_MAPPING)
    (entry,) = mapping.inputs["maps"]
    assert entry["path"] == "0000:3b:00" and entry["iommuGroup"] == 27 and entry["subsystemId"] == "10de:12a2", mapping.urn


def test_all_functions_with_a_raw_id_passes_the_device_without_its_function(homelab):
    homelab["vm"]["source"] = "create"
    homelab["gpus"][0].update(allFunctions=True, passthrough="raw")
    homelab["proxmox"].update(authMethod="password", username="root@pam")
    run = run_main(homelab, secrets={**FAKE_SECRETS, "proxmoxPassword": "pw"})
    (hostpci,) = run.one(VM).inputs["hostpcis"]
    assert hostpci["id"] == "0000:3b:00" and "mapping" not in hostpci, run.one(VM).urn


def test_runs_of_the_program_leave_pickles_dict_writer_as_they_found_it(homelab):
    """The SDK wraps pickle's dict writer again for every dynamic resource it
    serializes; a process that runs the program many times (this suite,
    render) must not pile those wrappers up into a RecursionError."""
    import pickle

    before = pickle._Pickler._batch_setitems
    for _ in range(2):
        run = run_main(homelab)
        assert any(reg.inputs.get("__provider") for reg in run.registrations), "the program registers dynamic resources"
        assert pickle._Pickler._batch_setitems is before, "run_program left the SDK's sorting wrapper on pickle._Pickler"
