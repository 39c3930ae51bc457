"""Remedies, from the guide's Troubleshooting section, corrected where the
README's "What the guide gets wrong" table says the guide is wrong: IOMMU and
bootloader (rows 6, 7), vfio_virqfd (5), mapping vs raw id (3), q35 (2),
ballooning (4), machine.kernel.modules (8), `talosctl upgrade` for extensions
(9), the time-slicing schema (10), operator vs device plugin by Talos version
(13), ServiceMonitor CRDs by chart version (14, 25), RuntimeClass ownership
(15), the GFD pods' labels per mode (25), nvidia.com/gpu.shared (19), NVENC
by chip (22)."""

from __future__ import annotations

from urllib.parse import urlparse

from components import cluster
from components.config import PROJECT, StackConfig, parse_version
from components.consumers.workload import gpu_workload_spec


def _key(path: str) -> str:
    return f"{PROJECT}:{path}"


def host_name(cfg: StackConfig) -> str:
    """The Proxmox host's SSH address: host.address, else the API endpoint's host."""
    return cfg.host.address or urlparse(cfg.proxmox.endpoint).hostname or cfg.proxmox.node


# -- host -------------------------------------------------------------------


def iommu_off(cfg: StackConfig) -> str:
    return (
        f"IOMMU not enabled: `dmesg | grep -i -e DMAR -e IOMMU` on {host_name(cfg)} should show it enabled. "
        "Turn on VT-d (Intel) or AMD-Vi/SVM (AMD) in the firmware. On Intel with a kernel older than 6.8 add "
        "`intel_iommu=on` to the kernel command line (never on AMD): on systemd-boot hosts (ZFS root, UEFI) "
        "edit /etc/kernel/cmdline and run `proxmox-boot-tool refresh`, on GRUB hosts edit /etc/default/grub and "
        f"run `update-grub`; then reboot. `pulumi up` with {_key('host.enabled')}: true does this (HostVfioPrep)."
    )


def not_vfio(cfg: StackConfig, address: str, ids: list[str], modules: list[str]) -> str:
    blacklist = sorted({"nouveau", "nvidia*", "nvidiafb", *modules})
    return (
        f"GPU not bound to VFIO: `lspci -nnk -s {address}` on {host_name(cfg)} should show "
        "`Kernel driver in use: vfio-pci` for every function of the card. Put every function's id in "
        f"/etc/modprobe.d (`options vfio-pci ids={','.join(ids)}`), blacklist {', '.join(blacklist)}, load vfio, "
        "vfio_iommu_type1 and vfio_pci (not vfio_virqfd on kernels >= 6.2), run `update-initramfs -u -k all` "
        f"and the bootloader refresh, then reboot. `pulumi up` with {_key('host.enabled')}: true does this (HostVfioPrep)."
    )


def wrong_address(cfg: StackConfig, index: int) -> str:
    return (
        f"Incorrect PCI address: {_key(f'gpus[{index}].address')} ({cfg.gpus[index].address}) is not a device on "
        f"{host_name(cfg)}; compare it with `lspci -nn | grep -i nvidia` there and fix the config."
    )


# -- proxmox ----------------------------------------------------------------


def vm_missing(cfg: StackConfig, error: str) -> str:
    return (
        f"`qm config {cfg.vm.vm_id}` failed on {cfg.proxmox.node} ({error}). Check {_key('vm.vmId')} and "
        f"{_key('proxmox.node')}, or run `pulumi up` to create the VM (GpuVm)."
    )


def hostpci_missing(cfg: StackConfig, index: int) -> str:
    gpu, slot, vmid = cfg.gpus[index], cfg.slot(index), cfg.vm.vm_id
    flags = ",pcie=1" if gpu.pcie else ""
    if gpu.passthrough == "mapping":
        wanted = f"mapping={cfg.mapping_name(index)}{flags}"
        how = "(a PCI resource mapping works with API tokens that have Mapping.Use)"
    else:
        wanted = f"{gpu.address}{flags}"
        how = "(a raw id may only be set by root@pam with a password, never with a token)"
    return (
        f"GPU not attached to VM {vmid}: `qm config {vmid} | grep hostpci` should show `{slot}: {wanted}` {how}. "
        f"`pulumi up` sets it (GpuVm); by hand `qm set {vmid} --{slot} {wanted}`, then stop and start the VM. "
        "Each GPU can only be passed to one running VM at a time."
    )


def machine_not_q35(cfg: StackConfig) -> str:
    return (
        f"PCIe passthrough needs machine type q35 (Proxmox: \"q35 machine model is not enabled\"): set "
        f"{_key('vm.machine')}: q35 and run `pulumi up`, or `qm set {cfg.vm.vm_id} --machine q35`."
    )


def ballooning_on(cfg: StackConfig) -> str:
    return (
        "Passthrough pins all guest memory, so ballooning must be off: `pulumi up` sets it (GpuVm), or "
        f"`qm set {cfg.vm.vm_id} --balloon 0`."
    )


# -- talos ------------------------------------------------------------------


def _talosctl(cfg: StackConfig) -> str:
    return f"talosctl -n {cfg.talos.node_address} -e {cfg.talos.talosctl_endpoint}"


def modules_not_loaded(cfg: StackConfig) -> str:
    return (
        "NVIDIA modules not loaded: the extension does not load them; list nvidia, nvidia_uvm, nvidia_drm and "
        "nvidia_modeset in machine.kernel.modules (`pulumi up` applies that patch, TalosGpuNode) and check "
        f"`{_talosctl(cfg)} dmesg | grep -i -e nvidia -e error`. If the NVIDIA extensions are missing too, fix "
        "the extensions first (see that check)."
    )


def extensions_missing(cfg: StackConfig, missing: list[str]) -> str:
    talos = cfg.talos
    return (
        f"Wrong Image Factory schematic: the installed image lacks {', '.join(missing)}. `pulumi up` builds a "
        "schematic with the configured extensions and upgrades the node (TalosGpuNode). By hand: "
        f"`{_talosctl(cfg)} upgrade --image factory.talos.dev/{talos.platform}-installer/<schematic-id>:{talos.version}`; "
        "`talosctl apply-config` with a new install image does not change extensions. Pair lts with lts and "
        f"production with production ({_key('talos.extensions.branch')})."
    )


def extension_versions_differ(cfg: StackConfig, kmod: str, toolkit: str) -> str:
    return (
        f"Extension version mismatch: kernel modules {kmod} vs container toolkit {toolkit}. Both must come from the "
        f"same branch ({_key('talos.extensions.branch')}) of the same Talos release; upgrade to one installer "
        f"image (`{_talosctl(cfg)} upgrade --image ...`)."
    )


# -- kubernetes -------------------------------------------------------------


def node_missing(cfg: StackConfig) -> str:
    return (
        f"Node {cfg.node_name} is not registered: the VM or Talos layer is missing. Run "
        "`python -m components.doctor --layer proxmox --layer talos`, check "
        f"`{_talosctl(cfg)} health`, and `pulumi up` (GpuVm, TalosGpuNode)."
    )


# Pod labels per mode. Operator: gpu-operator assets/state-device-plugin and
# assets/gpu-feature-discovery 0500_daemonset.yaml (`app: ...`). Device-plugin
# chart: every pod, the plugin's and GFD's alike, carries
# app.kubernetes.io/name=nvidia-device-plugin (k8s-device-plugin v0.18.2
# deployments/helm/nvidia-device-plugin/templates/_helpers.tpl
# "nvidia-device-plugin.templateLabels"); GFD's container is
# gpu-feature-discovery-ctr (templates/daemonset-gfd.yml).
CHART_POD_SELECTOR = "app.kubernetes.io/name=nvidia-device-plugin"


def _plugin_selector(cfg: StackConfig) -> str:
    return "app=nvidia-device-plugin-daemonset" if cfg.gpu_stack.mode == "operator" else CHART_POD_SELECTOR


def _gfd_logs(cfg: StackConfig) -> str:
    ns = cfg.gpu_stack.namespace
    if cfg.gpu_stack.mode == "operator":
        return f"kubectl logs -n {ns} -l app=gpu-feature-discovery"
    return f"kubectl logs -n {ns} -l {CHART_POD_SELECTOR} -c gpu-feature-discovery-ctr"


# From v26.7.0 the operator skips the DCGM ServiceMonitor with a log line when
# the Prometheus Operator's CRD is missing ("ServiceMonitor CRD not found,
# skipping DCGM Exporter ServiceMonitor creation"); up to v26.3.3 (v25.10.1
# included) the dcgm-exporter state stays NotReady ("couldn't find
# ServiceMonitor CRD"). NVIDIA/gpu-operator controllers/object_controls.go
# ServiceMonitor(), v25.10.1 and v26.7.0.
SERVICE_MONITOR_SKIPPED_FROM = (26, 7, 0)


def service_monitor_blocks(cfg: StackConfig) -> bool:
    """Whether a missing ServiceMonitor CRD keeps this chart's ClusterPolicy
    NotReady (operator mode, chart older than v26.7.0)."""
    stack = cfg.gpu_stack
    return stack.mode == "operator" and parse_version(stack.operator_chart_version) < SERVICE_MONITOR_SKIPPED_FROM


def no_gpu_advertised(cfg: StackConfig) -> str:
    ns = cfg.gpu_stack.namespace
    text = (
        f"Device plugin not detecting GPU: check its logs `kubectl logs -n {ns} -l {_plugin_selector(cfg)}`; "
        f"verify NFD labelled the node (`kubectl get node {cfg.node_name} -o json | jq "
        "'.metadata.labels[\"feature.node.kubernetes.io/pci-10de.present\"]'` should be \"true\"); "
        "if /proc/driver/nvidia/version is missing on the node, fix the Talos layer first. "
    )
    if cfg.gpu_stack.mode == "operator":
        text += (
            "Operator values on Talos: driver.enabled=false, toolkit.enabled=false, "
            "hostPaths.driverInstallDir=/usr/local; the operator needs Talos >= v1.13 and chart >= v26.3.1, "
            f"on older Talos use {_key('gpuStack.mode')}: devicePlugin."
        )
    else:
        text += "Device-plugin mode needs RuntimeClass nvidia and the plugin pods running with it."
    return text


def wrong_gpu_count(cfg: StackConfig, got: int) -> str:
    stack = cfg.gpu_stack
    sharing = stack.time_slicing
    if not sharing.enabled:
        return (
            f"The node advertises {got} {cluster.advertised_resource(cfg)}, expected {cfg.advertised_gpus} (one per GPU, time-slicing off): "
            f"ConfigMap {stack.namespace}/{stack.config_map_name} key {cfg.config_key} must have no `sharing` section and "
            f"the node must carry nvidia.com/device-plugin.config={cfg.config_key}; `pulumi up` (GpuStack) writes both, "
            "then restart the device plugin pod. A missing GPU: see the host and proxmox layers."
        )
    rename = ""
    if sharing.rename_by_default:
        rename = (f" and `renameByDefault: true` (the plugin then advertises {cluster.advertised_resource(cfg)} and no "
                  f"{cluster.GPU_RESOURCE})")
    return (
        f"Time-slicing not applied: expected {cluster.advertised_resource(cfg)}={cfg.advertised_gpus} ({len(cfg.gpus)} GPU(s) x "
        f"{sharing.replicas} replicas), got {got}. ConfigMap {stack.namespace}/{stack.config_map_name} key {cfg.config_key} must read `version: v1` and "
        f"`sharing.timeSlicing.resources: [{{name: nvidia.com/gpu, replicas: {sharing.replicas}}}]` (not "
        f"`sharing.timeSlicing.replicas`){rename}, and the node must carry the label "
        f"nvidia.com/device-plugin.config={cfg.config_key}; `pulumi up` (GpuStack) writes both, then the device "
        "plugin picks them up (or restart its pod)."
    )


def config_label_wrong(cfg: StackConfig) -> str:
    return (
        f"Label the node for its time-slicing config: `kubectl label node {cfg.node_name} "
        f"nvidia.com/device-plugin.config={cfg.config_key} --overwrite` (`pulumi up` does it, GpuStack); the key must "
        f"exist in ConfigMap {cfg.gpu_stack.namespace}/{cfg.gpu_stack.config_map_name}."
    )


def pods_unhealthy(cfg: StackConfig) -> str:
    ns = cfg.gpu_stack.namespace
    text = f"Inspect them: `kubectl get pods -n {ns} -o wide`, `kubectl describe pod -n {ns} <pod>` and `kubectl logs -n {ns} <pod>`. "
    if cfg.gpu_stack.mode == "operator":
        text += "On Talos older than v1.13 the operator's validator loops on driver validation: use device-plugin mode. "
        chart = cfg.gpu_stack.operator_chart_version
        if service_monitor_blocks(cfg):
            text += (
                f"With chart {chart}, dcgmExporter.serviceMonitor without the Prometheus Operator CRDs keeps the ClusterPolicy "
                f"NotReady (operator log: \"couldn't find ServiceMonitor CRD\"): set {_key('gpuStack.prometheusOperator')} "
                "true only where `kubectl get crd servicemonitors.monitoring.coreos.com` finds it."
            )
        else:
            text += (
                f"Chart {chart} skips the DCGM ServiceMonitor when the Prometheus Operator CRDs are missing (operator log: "
                "\"ServiceMonitor CRD not found, skipping DCGM Exporter ServiceMonitor creation\"), so "
                f"{_key('gpuStack.prometheusOperator')} is not the cause."
            )
    else:
        text += "The plugin pods must run with RuntimeClass nvidia, which device-plugin mode creates."
    return text


def gfd_missing(cfg: StackConfig) -> str:
    return (
        f"GPU Feature Discovery has not labelled the node: check `{_gfd_logs(cfg)}`. GFD needs "
        f"Node Feature Discovery ({_key('gpuStack.nfd')}: true, or an NFD already in the cluster) and a running device plugin."
    )


# -- workload (Jellyfin) ----------------------------------------------------


def jellyfin_pod_missing(cfg: StackConfig) -> str:
    jf = cfg.jellyfin
    return (
        f"No running pod matches `{jf.pod_selector}` in namespace {jf.namespace}: check `kubectl get pods -n "
        f"{jf.namespace} -l {jf.pod_selector}` and `kubectl describe pod` (\"Insufficient nvidia.com/gpu\" means "
        f"every GPU slot is taken), or fix {_key('jellyfin.namespace')} / {_key('jellyfin.podSelector')}."
    )


def gpu_not_allocated(cfg: StackConfig) -> str:
    spec = gpu_workload_spec(cfg)
    selector = ", ".join(f"{key}: {value}" for key, value in spec.node_selector.items())
    return (
        f"GPU not allocated to pod: set `{spec.resource_name}: {spec.count}` in the Jellyfin container's resources.limits "
        f"(and requests), and nodeSelector {selector} for the GPU node ({cfg.node_name}); "
        "`python -m components.render` writes the whole fragment (consumers/app-template-gpu-values.yaml)."
    )


def nvidia_smi_failed(cfg: StackConfig) -> str:
    # The same environment and runtime the GPU workload spec gives pods.
    spec = gpu_workload_spec(cfg)
    env = " and ".join(f"{key}={value}" for key, value in spec.env.items())
    runtime = (f"runtimeClassName: {spec.runtime_class_name}" if spec.runtime_class_name
               else f"containerd's default runtime nvidia on {cfg.node_name}")
    return (
        f"The pod cannot use the GPU: set {env} in the container, and run it with the nvidia runtime ({runtime}). "
        "If the Talos layer fails, fix that first."
    )


def nvenc_encode_failed(cfg: StackConfig, encoder: str, error: str) -> str:
    """The encode probe failed: say why from ffmpeg's message."""
    text = error.lower()
    jf = cfg.jellyfin
    if "unsupported device" in text or "no capable devices" in text:
        return (
            f"NVENC refused the session ({encoder}: unsupported device). Either the GPU has no NVENC: GA100 (A100, A30), "
            "GH100 (H100, H200) and GP108 have none, though NVML still reports an encoder capacity; set "
            f"{_key('gpus[].model')} (ga100, gh100, gp108) and run `pulumi up`, which turns Jellyfin's hardware encoding "
            "off (it decodes in hardware and encodes in software). Or, on a node with several GPUs, the container "
            "lacks /dev/nvidia0, which drivers from 570 on need for NVENC (NVIDIA/nvidia-container-toolkit#1249)."
        )
    if "libnvidia-encode" in text or "cannot load" in text:
        spec = gpu_workload_spec(cfg)
        return (
            f"ffmpeg cannot load the NVENC library: the container needs NVIDIA_DRIVER_CAPABILITIES with `video` "
            f"(the workload spec sets {spec.env['NVIDIA_DRIVER_CAPABILITIES']}) and the nvidia runtime; restart the pod "
            f"in {jf.namespace} after fixing it."
        )
    if "incompatible client key" in text or "out of memory" in text or "session" in text:
        return (
            f"NVENC ran out of sessions ({encoder}): GeForce cards allow only a few concurrent encode sessions, and every "
            "time-sliced share counts; stop other transcodes or lower gpuStack.timeSlicing.replicas for encoding pods."
        )
    return (
        f"The test encode with {encoder} failed in the Jellyfin pod: run `kubectl exec -n {jf.namespace} <pod> -- "
        f"{' '.join(['/usr/lib/jellyfin-ffmpeg/ffmpeg', '-f', 'lavfi', '-i', 'testsrc2', '-frames:v', '10', '-c:v', encoder, '-f', 'null', '-'])}` "
        "and read ffmpeg's message; check the nvidia-smi check first."
    )


def nvenc_missing(cfg: StackConfig, missing: list[str]) -> str:
    return (
        f"FFmpeg lacks {', '.join(missing)}: use the official Jellyfin image (its jellyfin-ffmpeg has NVENC) and "
        "select \"Nvidia NVENC\" in Dashboard > Playback > Transcoding. The T4 (Turing) has no AV1 encoder."
    )
