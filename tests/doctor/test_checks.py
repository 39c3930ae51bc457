"""Pure checks: a healthy reference node passes every check; each broken layer
fails with that layer's remedy, worded after the README's "What the guide gets wrong" rows where the guide
is wrong."""

from __future__ import annotations

import dataclasses
import json

import pytest

from components.facts.kubernetes import parse_pods
from tests.doctor import samples
from tests.doctor.fakecli import data
from tools.doctor.host_checks import check_host, check_proxmox
from tools.doctor.kubernetes_checks import check_kubernetes
from tools.doctor.model import CheckResult, KubernetesObservation, Output, PciFunctionState, ProxmoxObservation, TalosObservation
from tools.doctor.talos_checks import check_talos, expected_extensions
from tools.doctor.workload_checks import check_workload, nvenc_probe_encoders

CFG = samples.homelab_cfg()


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def failed(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results if result.status == "fail"}


@pytest.mark.parametrize(("check", "observation"), [
    (check_host, samples.host_ok()),
    (check_proxmox, samples.proxmox_ok()),
    (check_talos, samples.talos_ok()),
    (check_kubernetes, samples.kubernetes_ok()),
    (check_workload, samples.workload_ok()),
])
def test_healthy_reference_node_passes_every_check(check, observation) -> None:
    results = check(observation, CFG)
    assert results and all(result.status == "pass" for result in results), [r for r in results if r.status != "pass"]
    assert all(not result.remedy for result in results)


# -- host -------------------------------------------------------------------


def test_host_iommu_off_names_firmware_and_the_systemd_boot_path() -> None:
    results = failed(check_host(dataclasses.replace(samples.host_ok(), iommu_active=False), CFG))
    remedy = results["iommu"].remedy
    assert "VT-d" in remedy and "proxmox-boot-tool refresh" in remedy and "/etc/kernel/cmdline" in remedy
    assert "never on AMD" in remedy


def test_host_function_on_nouveau_fails_with_the_vfio_remedy_and_what_to_blacklist() -> None:
    obs = dataclasses.replace(samples.host_ok(), functions={
        "0000:3b:00.0": PciFunctionState("nouveau", "10de:1eb8", ("nvidiafb", "nouveau")),
    })
    result = failed(check_host(obs, CFG))["vfio-pci gpus[0]"]
    assert "0000:3b:00.0: nouveau" in result.detail and "nvidiafb" in result.detail
    assert "options vfio-pci ids=10de:1eb8" in result.remedy
    assert "lspci -nnk -s 0000:3b:00.0" in result.remedy
    assert "not vfio_virqfd" in result.remedy  # README table row 5


def test_host_checks_every_function_of_the_card() -> None:
    obs = dataclasses.replace(samples.host_ok(), functions={
        "0000:3b:00.0": PciFunctionState("vfio-pci", "10de:1eb8"),
        "0000:3b:00.1": PciFunctionState("snd_hda_intel", "10de:10f8", ("snd_hda_intel",)),
    })
    result = failed(check_host(obs, CFG))["vfio-pci gpus[0]"]
    assert "0000:3b:00.1: snd_hda_intel" in result.detail
    assert "ids=10de:10f8,10de:1eb8" in result.remedy


def test_host_wrong_address_lists_the_nvidia_devices_found() -> None:
    obs = dataclasses.replace(samples.host_ok(), functions={}, nvidia_devices={"0000:af:00.0": "10de:1eb8"})
    result = failed(check_host(obs, CFG))["vfio-pci gpus[0]"]
    assert "0000:af:00.0 (10de:1eb8)" in result.detail
    assert "proxmox-talos-gpu:gpus[0].address" in result.remedy


# -- proxmox ----------------------------------------------------------------


def qm(text: str) -> ProxmoxObservation:
    return ProxmoxObservation("pve5.lan", Output(text))


def test_proxmox_guides_raw_id_vm_fails_mapping_q35_and_ballooning() -> None:
    results = failed(check_proxmox(qm(data("qm-config.guide-raw.txt")), CFG))
    assert set(results) == {"hostpci gpus[0]", "machine q35", "ballooning off"}
    assert "expected mapping=moody-good-gpu0" in results["hostpci gpus[0]"].detail
    assert "qm set 1105 --hostpci0 mapping=moody-good-gpu0,pcie=1" in results["hostpci gpus[0]"].remedy
    assert "qm set 1105 --machine q35" in results["machine q35"].remedy
    assert "qm set 1105 --balloon 0" in results["ballooning off"].remedy


def test_proxmox_raw_passthrough_accepts_the_guides_raw_id() -> None:
    cfg = samples.homelab_cfg(proxmox={"authMethod": "password", "username": "root@pam"},
                              gpus=[{"address": "0000:3b:00.0", "id": "10de:1eb8", "passthrough": "raw"}])
    results = by_name(check_proxmox(qm(data("qm-config.guide-raw.txt")), cfg))
    assert results["hostpci gpus[0]"].status == "pass"


def test_proxmox_missing_slot_and_missing_pcie_flag() -> None:
    text = data("qm-config.mapping.txt").replace("hostpci0: mapping=moody-good-gpu0,pcie=1,rombar=1", "hostpci1: mapping=moody-good-gpu0,rombar=1")
    result = failed(check_proxmox(qm(text), CFG))["hostpci gpus[0]"]
    assert "hostpci0 missing (hostpci1: mapping=moody-good-gpu0,rombar=1)" in result.detail
    text = data("qm-config.mapping.txt").replace(",pcie=1", "")
    assert "lacks pcie=1" in failed(check_proxmox(qm(text), CFG))["hostpci gpus[0]"].detail


def test_proxmox_vm_absent_or_garbled() -> None:
    missing = check_proxmox(ProxmoxObservation("pve5.lan", Output(error="Configuration file 'nodes/pve5/qemu-server/1105.conf' does not exist")), CFG)
    assert [r.status for r in missing] == ["fail"] and "pulumi up" in missing[0].remedy
    garbled = check_proxmox(qm("%%% not qm output"), CFG)
    assert garbled[0].status == "fail" and "unparseable" in garbled[0].detail


# -- talos ------------------------------------------------------------------


def test_expected_extensions_follow_the_schematic() -> None:
    assert expected_extensions(CFG) == ["nonfree-kmod-nvidia-production", "nvidia-container-toolkit-production", "qemu-guest-agent"]
    open_lts = samples.homelab_cfg(talos={"extensions": {"driver": "open", "branch": "lts", "extra": []}})
    assert expected_extensions(open_lts) == ["nvidia-container-toolkit-lts", "nvidia-open-gpu-kernel-modules-lts"]


def test_talos_driver_missing_says_modules_go_in_machine_kernel_modules() -> None:
    obs = dataclasses.replace(samples.talos_ok(), nvidia_version=Output(error="open /proc/driver/nvidia/version: no such file or directory"),
                              modules=Output(data("proc-modules.no-nvidia.txt")))
    results = failed(check_talos(obs, CFG))
    assert set(results) == {"nvidia driver", "kernel modules"}
    assert "machine.kernel.modules" in results["kernel modules"].remedy  # README table row 8, not "loaded automatically"
    assert "nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset" in results["kernel modules"].detail.replace("not loaded: ", "")


def test_talos_missing_toolkit_extension_needs_talosctl_upgrade() -> None:
    text = data("talos-extensions.yaml").replace("name: nvidia-container-toolkit-production", "name: iscsi-tools")
    result = failed(check_talos(dataclasses.replace(samples.talos_ok(), extensions=Output(text)), CFG))["extensions"]
    assert result.detail == "missing: nvidia-container-toolkit-production"
    assert "upgrade --image factory.talos.dev/metal-installer/<schematic-id>:v1.13.9" in result.remedy  # README table row 9
    assert "apply-config" in result.remedy and "does not change extensions" in result.remedy


def test_talos_extension_driver_versions_must_match() -> None:
    text = data("talos-extensions.yaml").replace("version: 595.91.07-v1.18.1", "version: 580.95.05-v1.17.8")
    result = failed(check_talos(dataclasses.replace(samples.talos_ok(), extensions=Output(text)), CFG))["extension versions"]
    assert "595.91.07-v1.13.9" in result.detail and "580.95.05-v1.17.8" in result.detail


def test_talos_open_module_loaded_when_config_wants_proprietary() -> None:
    obs = dataclasses.replace(samples.talos_ok(), nvidia_version=Output(data("nvidia-version.open.txt")))
    result = failed(check_talos(obs, CFG))["nvidia driver"]
    assert "open kernel module 580.95.05 loaded, config wants proprietary" in result.detail


def test_talos_unparseable_outputs_fail_without_crashing() -> None:
    obs = TalosObservation(Output("garbage"), Output("nvidia"), Output("{\"spec\": "))
    results = failed(check_talos(obs, CFG))
    assert set(results) == {"nvidia driver", "kernel modules", "extensions"}
    assert all("unparseable" in result.detail for result in results.values())


# -- kubernetes -------------------------------------------------------------


def kube(node: str | Output, pods: str | None = None):

    return KubernetesObservation(node if isinstance(node, Output) else Output(node), Output(pods or data("pods-gpu-operator.json")))


def test_kubernetes_node_absent_points_at_talos_and_vm_and_skips_the_rest() -> None:
    results = by_name(check_kubernetes(kube(Output(error='Error from server (NotFound): nodes "moody-good" not found')), CFG))
    assert results["node"].status == "fail" and "VM or Talos layer" in results["node"].remedy
    assert results["allocatable nvidia.com/gpu"].status == "skip" and results["gfd labels"].status == "skip"


def test_kubernetes_no_gpu_advertised_in_operator_mode() -> None:
    result = failed(check_kubernetes(kube(samples.node_json(allocatable={"nvidia.com/gpu": None})), CFG))["allocatable nvidia.com/gpu"]
    assert result.detail == "0, expected 4"
    assert "kubectl logs -n gpu-operator -l app=nvidia-device-plugin-daemonset" in result.remedy
    assert "feature.node.kubernetes.io/pci-10de.present" in result.remedy
    assert "driver.enabled=false" in result.remedy and "devicePlugin" in result.remedy  # README table row 13


def test_kubernetes_no_gpu_advertised_in_device_plugin_mode_names_the_runtime_class() -> None:
    cfg = samples.homelab_cfg(talos={"version": "v1.11.6"}, gpuStack={"mode": "devicePlugin"})
    result = failed(check_kubernetes(kube(samples.node_json(allocatable={"nvidia.com/gpu": "0"})), cfg))["allocatable nvidia.com/gpu"]
    assert "app.kubernetes.io/name=nvidia-device-plugin" in result.remedy and "RuntimeClass nvidia" in result.remedy
    assert "driver.enabled" not in result.remedy


def test_kubernetes_one_gpu_instead_of_four_is_the_time_slicing_config() -> None:
    node = samples.node_json(allocatable={"nvidia.com/gpu": "1"}, labels={"nvidia.com/gpu.replicas": "1", "nvidia.com/device-plugin.config": None})
    results = failed(check_kubernetes(kube(node), CFG))
    count = results["allocatable nvidia.com/gpu"]
    assert count.detail == "1, expected 4 (GFD: nvidia.com/gpu.replicas=1)"
    assert "sharing.timeSlicing.resources: [{name: nvidia.com/gpu, replicas: 4}]" in count.remedy  # README table row 10
    assert "nvidia.com/device-plugin.config=moody-good" in count.remedy
    assert "kubectl label node moody-good nvidia.com/device-plugin.config=moody-good" in results["device-plugin config label"].remedy


def test_kubernetes_expected_count_is_gpus_times_replicas() -> None:
    cfg = samples.homelab_cfg(gpuStack={"timeSlicing": {"enabled": True, "replicas": 8}})
    assert failed(check_kubernetes(kube(samples.node_json()), cfg))["allocatable nvidia.com/gpu"].detail.startswith("4, expected 8")
    whole = samples.homelab_cfg(gpuStack={"timeSlicing": {"enabled": False}})
    node = samples.node_json(allocatable={"nvidia.com/gpu": "1"})
    assert by_name(check_kubernetes(kube(node), whole))["allocatable nvidia.com/gpu"].status == "pass"


RENAMED = samples.homelab_cfg(gpuStack={"timeSlicing": {"enabled": True, "replicas": 4, "renameByDefault": True}})


def test_kubernetes_rename_by_default_counts_nvidia_com_gpu_shared() -> None:
    # With renameByDefault the plugin advertises nvidia.com/gpu.shared and no
    # nvidia.com/gpu (k8s-device-plugin v0.18.2 internal/rm/device_map.go).
    node = samples.node_json(allocatable={"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "4"})
    results = by_name(check_kubernetes(kube(node), RENAMED))
    assert results["allocatable nvidia.com/gpu.shared"].status == "pass", results
    assert "allocatable nvidia.com/gpu" not in results
    # The same node fails for a stack that expects the plain name, and names what it saw.
    plain = failed(check_kubernetes(kube(node), CFG))["allocatable nvidia.com/gpu"]
    assert plain.detail == "0, expected 4 (the node advertises nvidia.com/gpu.shared=4 instead)"
    assert "Time-slicing not applied" in plain.remedy


def test_kubernetes_rename_by_default_not_applied_yet() -> None:
    result = failed(check_kubernetes(kube(samples.node_json()), RENAMED))["allocatable nvidia.com/gpu.shared"]
    assert result.detail == "0, expected 4 (the node advertises nvidia.com/gpu=4 instead)"
    assert "renameByDefault: true" in result.remedy and "nvidia.com/gpu.shared=4" in result.remedy


def test_workload_gpu_limit_on_the_shared_resource_with_rename_by_default() -> None:
    shared = workload(pods=Output(samples.jellyfin_pods(limits={"nvidia.com/gpu.shared": "1"})))
    assert by_name(check_workload(shared, RENAMED))["gpu limit"].detail == "limits nvidia.com/gpu.shared: 1"
    plain = failed(check_workload(samples.workload_ok(), RENAMED))["gpu limit"]
    assert "has no nvidia.com/gpu.shared in its limits" in plain.detail and "nvidia.com/gpu.shared: 1" in plain.remedy


def test_kubernetes_missing_gfd_labels() -> None:
    node = samples.node_json(labels={"nvidia.com/gpu.product": None})
    result = failed(check_kubernetes(kube(node), CFG))["gfd labels"]
    assert result.detail == "missing nvidia.com/gpu.product"
    assert "gpu-feature-discovery" in result.remedy and "proxmox-talos-gpu:gpuStack.nfd" in result.remedy


def test_kubernetes_crashlooping_device_plugin() -> None:
    pods = samples.pods_json("nvidia-device-plugin-daemonset-7kx2n", ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}})
    results = failed(check_kubernetes(kube(samples.node_json(), pods), CFG))
    assert "nvidia-device-plugin-daemonset-7kx2n Running (CrashLoopBackOff)" in results["device plugin pod"].detail
    assert "1 of 9 not running" in results["gpu stack pods"].detail
    assert "v1.13" in results["gpu stack pods"].remedy  # README table row 13


# -- workload ---------------------------------------------------------------


def workload(**changes):
    return dataclasses.replace(samples.workload_ok(), **changes)


def test_workload_pod_without_gpu_limit() -> None:
    result = failed(check_workload(workload(pods=Output(samples.jellyfin_pods(limits={"cpu": "16"}))), CFG))["gpu limit"]
    assert "nvidia.com/gpu: 1" in result.remedy


def test_workload_nvidia_smi_missing_in_the_pod() -> None:
    error = 'OCI runtime exec failed: exec: "nvidia-smi": executable file not found in $PATH'
    result = failed(check_workload(workload(nvidia_smi=Output(error=error)), CFG))["nvidia-smi"]
    assert "NVIDIA_VISIBLE_DEVICES=all" in result.remedy and "NVIDIA_DRIVER_CAPABILITIES" in result.remedy


def test_workload_nvidia_smi_cannot_talk_to_the_driver() -> None:
    text = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    result = failed(check_workload(workload(nvidia_smi=Output(text)), CFG))["nvidia-smi"]
    assert "couldn't communicate" in result.detail


def test_workload_ffmpeg_without_nvenc() -> None:
    text = "\n".join(line for line in data("ffmpeg-encoders.txt").splitlines() if "hevc_nvenc" not in line)
    result = failed(check_workload(workload(encoders=Output(text)), CFG))["nvenc encoders"]
    assert result.detail == "missing: hevc_nvenc"
    assert "Nvidia NVENC" in result.remedy


def test_workload_no_pod_is_skipped_when_jellyfin_is_not_enabled_and_fails_when_it_is() -> None:
    empty = workload(pods=Output('{"kind": "List", "items": []}'), nvidia_smi=None, encoders=None)
    assert {r.status for r in check_workload(empty, CFG)} == {"skip"}
    enabled = samples.homelab_cfg(jellyfin={"enabled": True})
    results = by_name(check_workload(empty, enabled))
    assert results["jellyfin pod"].status == "fail" and "app.kubernetes.io/name=jellyfin" in results["jellyfin pod"].remedy
    assert results["nvidia-smi"].status == "skip"


def test_workload_pending_pod_fails_even_when_jellyfin_is_off() -> None:
    pending = workload(pods=Output(samples.jellyfin_pods(phase="Pending")), nvidia_smi=None, encoders=None)
    result = by_name(check_workload(pending, CFG))["jellyfin pod"]
    assert result.status == "fail" and "Pending" in result.detail and "Insufficient nvidia.com/gpu" in result.remedy


def test_device_plugin_mode_does_not_mistake_gfd_or_nfd_pods_for_the_plugin() -> None:


    cfg = samples.homelab_cfg(talos={"version": "v1.11.6"}, gpuStack={"mode": "devicePlugin"})
    document = json.loads(data("pods-gpu-operator.json"))
    template = document["items"][6]
    names = ["nvidia-device-plugin-gpu-feature-discovery-x7k2p", "nvidia-device-plugin-node-feature-discovery-worker-q9w8e"]
    document["items"] = [{**template, "metadata": {**template["metadata"], "name": name}} for name in names]
    assert len(parse_pods(json.dumps(document))) == 2
    result = failed(check_kubernetes(kube(samples.node_json(), json.dumps(document)), cfg))["device plugin pod"]
    assert result.detail == "no nvidia-device-plugin pod on moody-good in gpu-operator"
    document["items"].append({**template, "metadata": {**template["metadata"], "name": "nvidia-device-plugin-5mzq4"}})
    assert by_name(check_kubernetes(kube(samples.node_json(), json.dumps(document)), cfg))["device plugin pod"].status == "pass"


@pytest.mark.parametrize(("gpu", "encoders"), [
    ({}, ["h264_nvenc", "hevc_nvenc"]),  # the T4 (turing)
    ({"generation": "ada"}, ["h264_nvenc", "hevc_nvenc", "av1_nvenc"]),
    ({"generation": None, "model": "ga10x"}, ["h264_nvenc", "hevc_nvenc"]),
    ({"generation": None, "model": "ga100"}, []),
    ({"generation": "hopper", "model": "gh100"}, []),
    ({"generation": None}, ["h264_nvenc", "hevc_nvenc"]),  # unknown: try the common two
])
def test_encode_probe_tries_what_the_capability_table_says_the_gpu_encodes(gpu, encoders) -> None:

    raw_gpus = [{**samples.gpus_with_group()[0], **gpu}]
    assert nvenc_probe_encoders(samples.homelab_cfg(gpus=[{k: v for k, v in g.items() if v is not None} for g in raw_gpus])) == encoders


def test_encode_probe_failure_is_a_failed_check_never_an_nvml_reading() -> None:
    error = "`kubectl exec ...` failed: [h264_nvenc @ 0x1] OpenEncodeSessionEx failed: unsupported device (2): (no details)"
    obs = workload(nvenc_probes={"h264_nvenc": Output(error=error), "hevc_nvenc": Output("")})
    result = failed(check_workload(obs, CFG))["nvenc encode"]
    assert result.detail == f"encoding failed: h264_nvenc: {error}"
    assert "GA100 (A100, A30), GH100 (H100, H200)" in result.remedy and "nvidia-container-toolkit#1249" in result.remedy
    missing_library = workload(nvenc_probes={"h264_nvenc": Output(error="Cannot load libnvidia-encode.so.1"), "hevc_nvenc": Output("")})
    assert "NVIDIA_DRIVER_CAPABILITIES" in failed(check_workload(missing_library, CFG))["nvenc encode"].remedy


def test_gfd_remedy_uses_each_modes_pod_labels() -> None:
    node = samples.node_json(labels={"nvidia.com/gpu.product": None})
    operator = failed(check_kubernetes(kube(node), CFG))["gfd labels"].remedy
    assert "kubectl logs -n gpu-operator -l app=gpu-feature-discovery`" in operator
    # The device-plugin chart labels its GFD pods like the plugin's
    # (k8s-device-plugin v0.18.2 templates/_helpers.tpl); the container tells them apart.
    plugin_cfg = samples.homelab_cfg(talos={"version": "v1.11.6"}, gpuStack={"mode": "devicePlugin"})
    plugin = failed(check_kubernetes(kube(node), plugin_cfg))["gfd labels"].remedy
    assert "kubectl logs -n gpu-operator -l app.kubernetes.io/name=nvidia-device-plugin -c gpu-feature-discovery-ctr`" in plugin
    assert "app.kubernetes.io/name=gpu-feature-discovery" not in plugin


@pytest.mark.parametrize(("chart", "blocks"), [("v26.3.1", True), ("v26.3.3", True), ("v26.7.0", False), ("v27.1.0", False)])
def test_service_monitor_remedy_holds_only_for_charts_before_v26_7_0(chart: str, blocks: bool) -> None:
    # gpu-operator controllers/object_controls.go ServiceMonitor(): up to v26.3.x the
    # dcgm-exporter state stays NotReady without the CRD; v26.7.0 skips it with a log line.
    cfg = samples.homelab_cfg(gpuStack={"operatorChartVersion": chart})
    pods = samples.pods_json("nvidia-dcgm-exporter-m8v4d", ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}})
    remedy = failed(check_kubernetes(kube(samples.node_json(), pods), cfg))["gpu stack pods"].remedy
    assert ("keeps the ClusterPolicy NotReady" in remedy) is blocks, remedy
    assert ("skipping DCGM Exporter ServiceMonitor creation" in remedy) is (not blocks), remedy
    assert "v1.13" in remedy


def test_service_monitor_remedy_is_not_given_in_device_plugin_mode() -> None:
    cfg = samples.homelab_cfg(talos={"version": "v1.11.6"}, gpuStack={"mode": "devicePlugin"})
    pods = samples.pods_json("nvidia-device-plugin-daemonset-7kx2n", ready=False)
    remedy = failed(check_kubernetes(kube(samples.node_json(), pods), cfg))["gpu stack pods"].remedy
    assert "ServiceMonitor" not in remedy and "RuntimeClass nvidia" in remedy
