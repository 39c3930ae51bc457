"""The Kubernetes layer: the node registered, its GPUs advertised (the one
rule, components/facts/gpu_ready.py, that the readiness gate uses too), its
device-plugin config label, the GPU stack's pods healthy. Pure."""

from __future__ import annotations

from components import cluster
from components.config import StackConfig
from components.facts.gpu_ready import gpu_advertisement
from components.facts.kubernetes import PRODUCT_LABEL, NodeInfo, PodInfo, parse_node, parse_pods
from tools.doctor import remedies
from tools.doctor.model import CheckResult, KubernetesObservation
from tools.doctor.verdicts import failed, parsed, passed, skipped

CONFIG_LABEL = cluster.DEVICE_PLUGIN_CONFIG_LABEL

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
    node: NodeInfo | CheckResult | None = parsed(
        obs.node, parse_node, lambda detail, _reason: failed("kubernetes", "node", detail, remedies.node_missing(cfg)),
        unreadable=f"node {node_name}", unparseable="unparseable `kubectl get node` output")
    if isinstance(node, CheckResult):
        results, node = [node], None
    else:
        results = [passed("kubernetes", "node", f"{node.name} registered, {'Ready' if node.ready else 'NotReady'}")]

    if node is None:
        reason = f"node {node_name} not available"
        results += [skipped("kubernetes", name, reason) for name in (allocatable_name, "device-plugin config label", "gfd labels")]
    else:
        gpus = gpu_advertisement(node, resource, cfg.advertised_gpus)
        expected, got = gpus.expected, gpus.count
        if not gpus.count_problem:
            results.append(passed("kubernetes", allocatable_name, f"{got} (= {expected} expected)"))
        elif gpus.count_problem == "renamed":
            # The plugin runs but advertises the other name: the rename is not applied.
            results.append(failed("kubernetes", allocatable_name, f"0, expected {expected} (the node advertises {gpus.others_text()} instead)",
                                 remedies.wrong_gpu_count(cfg, 0)))
        elif gpus.count_problem == "none":
            results.append(failed("kubernetes", allocatable_name, f"0, expected {expected}", remedies.no_gpu_advertised(cfg)))
        else:
            replicas = node.label("nvidia.com/gpu.replicas")
            extra = f" (GFD: nvidia.com/gpu.replicas={replicas})" if replicas else ""
            results.append(failed("kubernetes", allocatable_name, f"{got}, expected {expected}{extra}", remedies.wrong_gpu_count(cfg, got)))
        # GpuStack labels the node whether or not sharing is on (cluster.node_labels).
        label = node.label(CONFIG_LABEL)
        if label == cfg.config_key:
            results.append(passed("kubernetes", "device-plugin config label", f"{CONFIG_LABEL}={label}"))
        else:
            results.append(failed("kubernetes", "device-plugin config label", f"{CONFIG_LABEL}={label or '(unset)'}, expected {cfg.config_key}",
                                 remedies.config_label_wrong(cfg)))
        # Ready needs the product label (gpus.labelled); the doctor also wants
        # the driver version labels GFD sets with it.
        if gpus.labelled and gpus.driver:
            results.append(passed("kubernetes", "gfd labels", f"{PRODUCT_LABEL}={gpus.product}, driver {gpus.driver}"))
        else:
            missing = [what for what, value in ((PRODUCT_LABEL, gpus.product), ("nvidia.com/cuda.driver*", gpus.driver)) if not value]
            results.append(failed("kubernetes", "gfd labels", f"missing {', '.join(missing)}", remedies.gfd_missing(cfg)))

    ns = cfg.gpu_stack.namespace
    pods = parsed(obs.pods, parse_pods, lambda detail, _reason: failed("kubernetes", "gpu stack pods", detail, remedies.pods_unhealthy(cfg)),
                   unreadable=f"pods in {ns}", unparseable="unparseable `kubectl get pods` output")
    if isinstance(pods, CheckResult):
        return [*results, pods]
    plugins = [pod for pod in pods if _is_device_plugin(pod) and pod.node == node_name]
    if not plugins:
        results.append(failed("kubernetes", "device plugin pod", f"no nvidia-device-plugin pod on {node_name} in {ns}", remedies.no_gpu_advertised(cfg)))
    elif not any(pod.healthy for pod in plugins):
        shown = ", ".join(f"{pod.name} {pod.state}" for pod in plugins)
        results.append(failed("kubernetes", "device plugin pod", shown, remedies.pods_unhealthy(cfg)))
    else:
        results.append(passed("kubernetes", "device plugin pod", next(pod.name for pod in plugins if pod.healthy) + " Running"))
    unhealthy = [pod for pod in pods if not pod.healthy]
    if unhealthy:
        shown = ", ".join(f"{pod.name} {pod.state}" for pod in unhealthy)
        results.append(failed("kubernetes", "gpu stack pods", f"{len(unhealthy)} of {len(pods)} not running: {shown}", remedies.pods_unhealthy(cfg)))
    else:
        results.append(passed("kubernetes", "gpu stack pods", f"{len(pods)} pod(s) in {ns} running or completed"))
    return results
