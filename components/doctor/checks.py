"""Pure checks: (observation, config) -> results. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from components import cluster
from components.config import StackConfig, pci_device
from components.doctor import remedies
from components.doctor.model import (
    CheckResult,
    HostObservation,
    KubernetesObservation,
    Layer,
    Output,
    ProxmoxObservation,
    TalosObservation,
    WorkloadObservation,
)
from components.doctor.monitoring import check_monitoring
from components.facts.ffmpeg import parse_ffmpeg_encoders
from components.facts.gpu_ready import gpu_advertisement
from components.facts.kubernetes import PRODUCT_LABEL, NodeInfo, PodInfo, parse_node, parse_pods
from components.facts.linux import parse_proc_modules
from components.facts.nvidia import parse_nvidia_smi, parse_nvidia_version
from components.facts.proxmox import parse_qm_config
from components.facts.talos import parse_extensions
from components.talos.machine_config import NVIDIA_MODULES  # what the patch makes Talos load

NVENC_ENCODERS = ("h264_nvenc", "hevc_nvenc")
# ffmpeg's encoder for each codec the capability table names.
_NVENC_ENCODER = {"h264": "h264_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}
CONFIG_LABEL = cluster.DEVICE_PLUGIN_CONFIG_LABEL

T = TypeVar("T")


def _pass(layer: Layer, name: str, detail: str) -> CheckResult:
    return CheckResult(layer, name, "pass", detail)


def _fail(layer: Layer, name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(layer, name, "fail", detail, remedy)


def _skip(layer: Layer, name: str, detail: str) -> CheckResult:
    return CheckResult(layer, name, "skip", detail)


def _parsed(output: Output, parse: Callable[[str], T], fail: Callable[[str, str], CheckResult], *,
            unreadable: str, unparseable: str = "") -> T | CheckResult:
    """A command's parsed output, or the failed check that says why there is
    none: ``fail(detail, reason)`` with detail ``<unreadable>: <reason>`` when
    the command failed, ``<unparseable>: <reason>`` (or the parser's own
    message) when its output made no sense."""
    if not output.ok:
        return fail(f"{unreadable}: {output.error}", output.error)
    try:
        return parse(output.text or "")
    except ValueError as error:  # ParseError, and the Talos readers' ValueError naming the command
        return fail(f"{unparseable}: {error}" if unparseable else str(error), str(error))


# -- host -------------------------------------------------------------------


def check_host(obs: HostObservation, cfg: StackConfig) -> list[CheckResult]:
    """IOMMU active; every function of every configured GPU on vfio-pci."""
    results = []
    if obs.iommu_active:
        results.append(_pass("host", "iommu", f"IOMMU active on {obs.host}"))
    else:
        results.append(_fail("host", "iommu", f"IOMMU not active on {obs.host} (no IOMMU groups)", remedies.iommu_off(cfg)))
    for index, gpu in enumerate(cfg.gpus):
        name = f"vfio-pci gpus[{index}]"
        if gpu.address not in obs.functions:
            found = ", ".join(f"{address} ({ident})" for address, ident in sorted(obs.nvidia_devices.items())) or "none"
            results.append(_fail("host", name, f"no PCI device at {gpu.address}; NVIDIA functions on the host: {found}", remedies.wrong_address(cfg, index)))
            continue
        functions = {address: state for address, state in sorted(obs.functions.items()) if pci_device(address) == pci_device(gpu.address)}
        wrong = {address: state for address, state in functions.items() if state.driver != "vfio-pci"}
        if not wrong:
            results.append(_pass("host", name, f"{', '.join(functions)} on vfio-pci"))
            continue
        shown = "; ".join(
            f"{address}: {state.driver or 'no driver'}" + (f" (modules: {', '.join(state.kernel_modules)})" if state.kernel_modules else "")
            for address, state in wrong.items()
        )
        ids = sorted({state.vendor_device or gpu.id for state in functions.values()} | {gpu.id})
        modules = sorted({module for state in wrong.values() for module in state.kernel_modules if module not in ("vfio-pci", "vfio_pci")})
        results.append(_fail("host", name, f"not on vfio-pci: {shown}", remedies.not_vfio(cfg, gpu.address, ids, modules)))
    return results


# -- proxmox ----------------------------------------------------------------


def check_proxmox(obs: ProxmoxObservation, cfg: StackConfig) -> list[CheckResult]:
    """The VM carries one hostpci entry per GPU (mapping or raw id as
    configured, pcie=1), machine q35 and ballooning off."""
    vmid = cfg.vm.vm_id
    qm = _parsed(obs.qm_config, parse_qm_config,
                 lambda detail, reason: _fail("proxmox", f"vm {vmid}", detail, remedies.vm_missing(cfg, reason)),
                 unreadable=f"qm config {vmid} failed", unparseable=f"unparseable `qm config {vmid}` output")
    if isinstance(qm, CheckResult):
        return [qm]
    results = []
    for index, gpu in enumerate(cfg.gpus):
        slot, name = cfg.slot(index), f"hostpci gpus[{index}]"
        entry = qm.hostpci.get(slot)
        problems = []
        if entry is None:
            others = ", ".join(f"{key}: {qm.options[key]}" for key in sorted(qm.hostpci)) or "no hostpci entries"
            problems.append(f"{slot} missing ({others})")
        else:
            if gpu.passthrough == "mapping" and entry.mapping != cfg.mapping_name(index):
                problems.append(f"{slot} is {qm.options[slot]!r}, expected mapping={cfg.mapping_name(index)}")
            if gpu.passthrough == "raw" and not entry.covers(gpu.address):
                problems.append(f"{slot} is {qm.options[slot]!r}, expected {gpu.address}")
            if gpu.pcie and entry.options.get("pcie") != "1":
                problems.append(f"{slot} lacks pcie=1")
        if problems:
            results.append(_fail("proxmox", name, "; ".join(problems), remedies.hostpci_missing(cfg, index)))
        else:
            results.append(_pass("proxmox", name, f"{slot}: {qm.options[slot]}"))
    if any(gpu.pcie for gpu in cfg.gpus):
        machine = qm.options.get("machine", "")
        if "q35" in machine:
            results.append(_pass("proxmox", "machine q35", f"machine: {machine}"))
        else:
            results.append(_fail("proxmox", "machine q35", f"machine: {machine or '(default i440fx)'}", remedies.machine_not_q35(cfg)))
    balloon = qm.options.get("balloon")
    if balloon == "0":
        results.append(_pass("proxmox", "ballooning off", "balloon: 0"))
    else:
        results.append(_fail("proxmox", "ballooning off", f"balloon: {balloon or '(unset: balloon device on)'}", remedies.ballooning_on(cfg)))
    return results


# -- talos ------------------------------------------------------------------


def expected_extensions(cfg: StackConfig) -> list[str]:
    """The schematic's extensions as `talosctl get extensions` names them
    (``siderolabs/nvidia-container-toolkit-lts`` -> ``nvidia-container-toolkit-lts``)."""
    from components.talos.schematic import extensions_for

    return sorted(name.split("/", 1)[-1] for name in extensions_for(cfg.talos))


def check_talos(obs: TalosObservation, cfg: StackConfig) -> list[CheckResult]:
    """Driver loaded (/proc/driver/nvidia/version), the four modules in
    /proc/modules, the configured extensions installed with matching versions."""
    results = []
    module = _parsed(obs.nvidia_version, parse_nvidia_version,
                     lambda detail, _reason: _fail("talos", "nvidia driver", detail, remedies.modules_not_loaded(cfg)),
                     unreadable="/proc/driver/nvidia/version unreadable", unparseable="unparseable /proc/driver/nvidia/version")
    if isinstance(module, CheckResult):
        results.append(module)
    else:
        flavour = "open" if module.open else "proprietary"
        if flavour != cfg.talos.extensions.driver:
            wanted = expected_extensions(cfg)[:1]
            results.append(_fail("talos", "nvidia driver", f"{flavour} kernel module {module.version} loaded, config wants {cfg.talos.extensions.driver}", remedies.extensions_missing(cfg, wanted)))
        else:
            results.append(_pass("talos", "nvidia driver", f"{flavour} kernel module {module.version}"))

    loaded = _parsed(obs.modules, parse_proc_modules,
                     lambda detail, _reason: _fail("talos", "kernel modules", detail, remedies.modules_not_loaded(cfg)),
                     unreadable="/proc/modules unreadable", unparseable="unparseable /proc/modules")
    if isinstance(loaded, CheckResult):
        results.append(loaded)
    else:
        missing = [name for name in NVIDIA_MODULES if name not in loaded]
        if missing:
            results.append(_fail("talos", "kernel modules", f"not loaded: {', '.join(missing)}", remedies.modules_not_loaded(cfg)))
        else:
            results.append(_pass("talos", "kernel modules", f"{', '.join(NVIDIA_MODULES)} loaded"))

    wanted = expected_extensions(cfg)
    extensions = _parsed(obs.extensions, parse_extensions,
                         lambda detail, _reason: _fail("talos", "extensions", detail, remedies.extensions_missing(cfg, wanted)),
                         unreadable="`talosctl get extensions` failed", unparseable="unparseable `talosctl get extensions` output")
    if isinstance(extensions, CheckResult):
        return [*results, extensions]
    installed = {ext.name: ext for ext in extensions}
    missing = [name for name in wanted if name not in installed]
    if missing:
        results.append(_fail("talos", "extensions", f"missing: {', '.join(missing)}", remedies.extensions_missing(cfg, missing)))
        return results
    results.append(_pass("talos", "extensions", ", ".join(f"{name} {installed[name].version}" for name in wanted)))
    kmod = next(name for name in wanted if name.startswith(("nonfree-kmod-nvidia", "nvidia-open-gpu-kernel-modules")))
    toolkit = next(name for name in wanted if name.startswith("nvidia-container-toolkit"))
    kmod_driver, toolkit_driver = installed[kmod].version.split("-")[0], installed[toolkit].version.split("-")[0]
    if kmod_driver != toolkit_driver:
        results.append(_fail("talos", "extension versions", f"{kmod} {installed[kmod].version} vs {toolkit} {installed[toolkit].version}",
                             remedies.extension_versions_differ(cfg, installed[kmod].version, installed[toolkit].version)))
    else:
        results.append(_pass("talos", "extension versions", f"driver {kmod_driver} in both"))
    return results


# -- kubernetes -------------------------------------------------------------


# The device-plugin chart names its GFD and NFD pods after the release too
# (nvidia-device-plugin-gpu-feature-discovery-..., ...-node-feature-discovery-worker-...).
_NOT_THE_PLUGIN = ("gpu-feature-discovery", "node-feature-discovery", "mps-control")


def _is_device_plugin(pod: PodInfo) -> bool:
    return "nvidia-device-plugin" in pod.name and not any(part in pod.name for part in _NOT_THE_PLUGIN)


def check_kubernetes(obs: KubernetesObservation, cfg: StackConfig) -> list[CheckResult]:
    """Node registered, allocatable nvidia.com/gpu (nvidia.com/gpu.shared with
    renameByDefault) = advertised GPUs, its time-slicing label, the GPU
    stack's pods healthy, GFD labels present."""
    node_name = cfg.node_name
    resource = cluster.advertised_resource(cfg)
    allocatable_name = f"allocatable {resource}"
    node: NodeInfo | CheckResult | None = _parsed(
        obs.node, parse_node, lambda detail, _reason: _fail("kubernetes", "node", detail, remedies.node_missing(cfg)),
        unreadable=f"node {node_name}", unparseable="unparseable `kubectl get node` output")
    if isinstance(node, CheckResult):
        results, node = [node], None
    else:
        results = [_pass("kubernetes", "node", f"{node.name} registered, {'Ready' if node.ready else 'NotReady'}")]

    if node is None:
        reason = f"node {node_name} not available"
        results += [_skip("kubernetes", name, reason) for name in (allocatable_name, "device-plugin config label", "gfd labels")]
    else:
        gpus = gpu_advertisement(node, resource, cfg.advertised_gpus)
        expected, got = gpus.expected, gpus.count
        if not gpus.count_problem:
            results.append(_pass("kubernetes", allocatable_name, f"{got} (= {expected} expected)"))
        elif gpus.count_problem == "renamed":
            # The plugin runs but advertises the other name: the rename is not applied.
            results.append(_fail("kubernetes", allocatable_name, f"0, expected {expected} (the node advertises {gpus.others_text()} instead)",
                                 remedies.wrong_gpu_count(cfg, 0)))
        elif gpus.count_problem == "none":
            results.append(_fail("kubernetes", allocatable_name, f"0, expected {expected}", remedies.no_gpu_advertised(cfg)))
        else:
            replicas = node.label("nvidia.com/gpu.replicas")
            extra = f" (GFD: nvidia.com/gpu.replicas={replicas})" if replicas else ""
            results.append(_fail("kubernetes", allocatable_name, f"{got}, expected {expected}{extra}", remedies.wrong_gpu_count(cfg, got)))
        # GpuStack labels the node whether or not sharing is on (cluster.node_labels).
        label = node.label(CONFIG_LABEL)
        if label == cfg.config_key:
            results.append(_pass("kubernetes", "device-plugin config label", f"{CONFIG_LABEL}={label}"))
        else:
            results.append(_fail("kubernetes", "device-plugin config label", f"{CONFIG_LABEL}={label or '(unset)'}, expected {cfg.config_key}",
                                 remedies.config_label_wrong(cfg)))
        # Ready needs the product label (gpus.labelled); the doctor also wants
        # the driver version labels GFD sets with it.
        if gpus.labelled and gpus.driver:
            results.append(_pass("kubernetes", "gfd labels", f"{PRODUCT_LABEL}={gpus.product}, driver {gpus.driver}"))
        else:
            missing = [what for what, value in ((PRODUCT_LABEL, gpus.product), ("nvidia.com/cuda.driver*", gpus.driver)) if not value]
            results.append(_fail("kubernetes", "gfd labels", f"missing {', '.join(missing)}", remedies.gfd_missing(cfg)))

    ns = cfg.gpu_stack.namespace
    pods = _parsed(obs.pods, parse_pods, lambda detail, _reason: _fail("kubernetes", "gpu stack pods", detail, remedies.pods_unhealthy(cfg)),
                   unreadable=f"pods in {ns}", unparseable="unparseable `kubectl get pods` output")
    if isinstance(pods, CheckResult):
        return [*results, pods]
    plugins = [pod for pod in pods if _is_device_plugin(pod) and pod.node == node_name]
    if not plugins:
        results.append(_fail("kubernetes", "device plugin pod", f"no nvidia-device-plugin pod on {node_name} in {ns}", remedies.no_gpu_advertised(cfg)))
    elif not any(pod.healthy for pod in plugins):
        shown = ", ".join(f"{pod.name} {pod.state}" for pod in plugins)
        results.append(_fail("kubernetes", "device plugin pod", shown, remedies.pods_unhealthy(cfg)))
    else:
        results.append(_pass("kubernetes", "device plugin pod", next(pod.name for pod in plugins if pod.healthy) + " Running"))
    unhealthy = [pod for pod in pods if not pod.healthy]
    if unhealthy:
        shown = ", ".join(f"{pod.name} {pod.state}" for pod in unhealthy)
        results.append(_fail("kubernetes", "gpu stack pods", f"{len(unhealthy)} of {len(pods)} not running: {shown}", remedies.pods_unhealthy(cfg)))
    else:
        results.append(_pass("kubernetes", "gpu stack pods", f"{len(pods)} pod(s) in {ns} running or completed"))
    return results


# -- workload ---------------------------------------------------------------


def select_jellyfin_pod(pods: list[PodInfo]) -> PodInfo | None:
    """The pod to run the exec checks in: a Running one, newest name last."""
    running = sorted((pod for pod in pods if pod.phase == "Running"), key=lambda pod: pod.name)
    return running[-1] if running else None


def gpu_container(pod: PodInfo) -> str:
    """The container that holds a GPU limit (nvidia.com/gpu or
    nvidia.com/gpu.shared; else the first), for `exec -c`."""
    for container in pod.containers:
        if any(name.startswith(cluster.GPU_RESOURCE) and count for name, count in container.nvidia_limits.items()):
            return container.name
    return pod.containers[0].name if pod.containers else ""


def nvenc_probe_encoders(cfg: StackConfig) -> list[str]:
    """The NVENC encoders to try with a real encode in the Jellyfin pod: those
    of every codec the configured GPUs' NVENC encodes (capability table);
    none for a GPU without NVENC; h264_nvenc and hevc_nvenc when the GPUs'
    capabilities are not known. NVML's encoder capacity is never asked: an
    H200 reports 100 there and has no NVENC."""
    from components.gpu_capabilities import combined_capabilities, generation_issues

    rows, unknown = generation_issues(cfg)
    if unknown or not rows:
        return list(NVENC_ENCODERS)
    caps = combined_capabilities(rows)
    return [_NVENC_ENCODER[codec] for codec in ("h264", "hevc", "av1") if codec in caps.encode]


def check_workload(obs: WorkloadObservation, cfg: StackConfig) -> list[CheckResult]:
    """The Jellyfin pod: GPU in its limits, nvidia-smi runs, ffmpeg has NVENC,
    and a real encode with each NVENC encoder the GPU has succeeds."""
    jf = cfg.jellyfin
    where = f"{jf.namespace} -l {jf.pod_selector}"
    names = ("gpu limit", "nvidia-smi", "nvenc encoders", "nvenc encode")
    pods = _parsed(obs.pods, parse_pods, lambda detail, _reason: _fail("workload", "jellyfin pod", detail, remedies.jellyfin_pod_missing(cfg)),
                   unreadable=f"listing pods in {where}", unparseable="unparseable `kubectl get pods` output")
    if isinstance(pods, CheckResult):
        return [pods]
    pod = select_jellyfin_pod(pods)
    if pod is None:
        states = ", ".join(f"{p.name} {p.state}" for p in pods) or "none"
        if not pods and not jf.enabled:
            reason = f"no pod in {where} and jellyfin.enabled is false"
            return [_skip("workload", "jellyfin pod", reason)] + [_skip("workload", name, reason) for name in names]
        results = [_fail("workload", "jellyfin pod", f"no running pod in {where} (pods: {states})", remedies.jellyfin_pod_missing(cfg))]
        return results + [_skip("workload", name, "no running Jellyfin pod") for name in names]

    results = [_pass("workload", "jellyfin pod", f"{pod.name} Running on {pod.node or '?'}")]
    resource = cluster.advertised_resource(cfg)
    if pod.limit(resource) >= 1:
        results.append(_pass("workload", "gpu limit", f"limits {resource}: {pod.limit(resource)}"))
    else:
        results.append(_fail("workload", "gpu limit", f"{pod.name} has no {resource} in its limits", remedies.gpu_not_allocated(cfg)))

    results.append(_check_nvidia_smi(obs.nvidia_smi, cfg))
    results.append(_check_encoders(obs.encoders, cfg))
    results.append(_check_nvenc_probe(obs.nvenc_probes, cfg))
    return results


def _check_nvenc_probe(probes: dict[str, Output] | None, cfg: StackConfig) -> CheckResult:
    """Pass when every probed encoder encoded; skip when the GPU has no NVENC."""
    wanted = nvenc_probe_encoders(cfg)
    if not wanted:
        return _skip("workload", "nvenc encode", "the configured GPU has no NVENC (capability table): Jellyfin decodes in hardware and encodes in software")
    if probes is None:
        return _skip("workload", "nvenc encode", "not run")
    failures = {encoder: probes[encoder] for encoder in wanted if encoder in probes and not probes[encoder].ok}
    missing = [encoder for encoder in wanted if encoder not in probes]
    if missing:
        return _skip("workload", "nvenc encode", f"not run for {', '.join(missing)}")
    if failures:
        encoder, output = next(iter(failures.items()))
        shown = "; ".join(f"{name}: {out.error}" for name, out in failures.items())
        return _fail("workload", "nvenc encode", f"encoding failed: {shown}", remedies.nvenc_encode_failed(cfg, encoder, output.error))
    return _pass("workload", "nvenc encode", f"{', '.join(wanted)} encoded test frames on the GPU")


def _check_nvidia_smi(output: Output | None, cfg: StackConfig) -> CheckResult:
    if output is None:
        return _skip("workload", "nvidia-smi", "not run")
    smi = _parsed(output, parse_nvidia_smi, lambda detail, _reason: _fail("workload", "nvidia-smi", detail, remedies.nvidia_smi_failed(cfg)),
                  unreadable="failed in the pod")
    if isinstance(smi, CheckResult):
        return smi
    gpus = ", ".join(gpu.name for gpu in smi.gpus)
    return _pass("workload", "nvidia-smi", f"{gpus}, driver {smi.driver_version or '?'}, CUDA {smi.cuda_version or '?'}")


def _check_encoders(output: Output | None, cfg: StackConfig) -> CheckResult:
    if output is None:
        return _skip("workload", "nvenc encoders", "not run")
    encoders = _parsed(output, parse_ffmpeg_encoders,
                       lambda detail, _reason: _fail("workload", "nvenc encoders", detail, remedies.nvenc_missing(cfg, list(NVENC_ENCODERS))),
                       unreadable="ffmpeg -encoders failed in the pod")
    if isinstance(encoders, CheckResult):
        return encoders
    missing = [name for name in NVENC_ENCODERS if name not in encoders]
    if missing:
        return _fail("workload", "nvenc encoders", f"missing: {', '.join(missing)}", remedies.nvenc_missing(cfg, missing))
    # Listed means ffmpeg was built with NVENC, not that the GPU has it: the
    # "nvenc encode" probe tests the GPU.
    return _pass("workload", "nvenc encoders", ", ".join(NVENC_ENCODERS) + " built into ffmpeg")


CHECKS: dict[Layer, Callable[..., list[CheckResult]]] = {
    "host": check_host,
    "proxmox": check_proxmox,
    "talos": check_talos,
    "kubernetes": check_kubernetes,
    "workload": check_workload,
    "monitoring": check_monitoring,
}
