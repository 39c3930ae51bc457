"""The GPU workload spec: what a pod needs to get a share of this node's GPU.

One typed value, built once from the stack config, rendered two ways:

- for a Pulumi-managed app (pulumi_kubernetes): ``pod_options()`` and
  ``container_options()`` give keyword arguments for ``PodSpecArgs`` and
  ``ContainerArgs``; ``pod_spec_fragment()`` gives the same as a plain
  Kubernetes dict (for manifests, transforms, ``kubectl patch``);
- for a Flux-managed app: ``app_template_values()`` gives Helm values for
  bjw-s app-template v3/v4, the chart the guide's Jellyfin HelmRelease uses.

Pure: no Pulumi resources, no I/O; pulumi_kubernetes is imported only by
the two methods that build its argument types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from components.cluster import GPU_RESOURCE, RUNTIME_CLASS, advertised_resource
from components.config import StackConfig
from components.talos.machine_config import default_runtime_on

if TYPE_CHECKING:
    import pulumi_kubernetes as k8s

# The taint GPU nodes commonly carry (and the guide's Jellyfin tolerates).
GPU_TOLERATION: dict[str, str] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# video: NVENC/NVDEC; compute: CUDA filters (tone-mapping, scaling);
# utility: nvidia-smi. The guide's "all" also grants graphics and display,
# which a transcoder does not use. NVIDIA Container Toolkit docs, "Driver
# Capabilities" (docker-specialized.html).
DEFAULT_DRIVER_CAPABILITIES = "compute,video,utility"

HOSTNAME_LABEL = "kubernetes.io/hostname"


def gpu_node_selector(cfg: StackConfig) -> dict[str, str]:
    """The node labels that pick this stack's GPU node: every configured
    Talos node label whose name mentions ``gpu`` (the guide's
    ``drmoo.io/gpu: nvidia-t4``); without one, the node's hostname label."""
    chosen = {key: value for key, value in cfg.talos.node_labels.items() if "gpu" in key.rpartition("/")[2].lower()}
    return dict(sorted(chosen.items())) or {HOSTNAME_LABEL: cfg.node_name}


@dataclass(frozen=True)
class GpuWorkloadSpec:
    """Everything a pod needs to land on the GPU node and get ``count`` GPU
    shares. Requests equal limits: extended resources cannot be overcommitted
    and Kubernetes refuses a GPU request without the same limit."""

    resource_name: str
    count: int
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, str], ...]
    env: dict[str, str]
    runtime_class_name: str | None
    notes: tuple[str, ...] = field(default=())

    # -- plain Kubernetes dicts (API field names) ---------------------------

    def resources(self) -> dict[str, dict[str, int]]:
        return {"requests": {self.resource_name: self.count}, "limits": {self.resource_name: self.count}}

    def env_list(self) -> list[dict[str, str]]:
        return [{"name": name, "value": value} for name, value in self.env.items()]

    def pod_spec_fragment(self, container: str = "app") -> dict[str, Any]:
        """A strategic-merge fragment of a PodSpec: scheduling at pod level,
        GPU resources and environment on the named container."""
        fragment: dict[str, Any] = {
            "nodeSelector": dict(self.node_selector),
            "tolerations": [dict(item) for item in self.tolerations],
            "containers": [{"name": container, "resources": self.resources(), "env": self.env_list()}],
        }
        if self.runtime_class_name:
            fragment["runtimeClassName"] = self.runtime_class_name
        return fragment

    # -- pulumi_kubernetes arguments ------------------------------------------

    def pod_options(self) -> dict[str, Any]:
        """Keyword arguments for ``k8s.core.v1.PodSpecArgs``:
        ``PodSpecArgs(containers=[...], **spec.pod_options())``."""
        # Lazy: the Flux and render paths use this module without the SDK.
        import pulumi_kubernetes as k8s

        options: dict[str, Any] = {
            "node_selector": dict(self.node_selector),
            "tolerations": [k8s.core.v1.TolerationArgs(**item) for item in self.tolerations],
        }
        if self.runtime_class_name:
            options["runtime_class_name"] = self.runtime_class_name
        return options

    def container_options(self, env: list[k8s.core.v1.EnvVarArgs] | None = None) -> dict[str, Any]:
        """Keyword arguments for ``k8s.core.v1.ContainerArgs``; the app's own
        ``env`` goes first, and a name it sets itself is not overridden."""
        # Lazy: the Flux and render paths use this module without the SDK.
        import pulumi_kubernetes as k8s

        own = list(env or [])
        taken = {item.name for item in own}
        merged = own + [k8s.core.v1.EnvVarArgs(name=name, value=value) for name, value in self.env.items() if name not in taken]
        requirements = self.resources()
        return {
            "resources": k8s.core.v1.ResourceRequirementsArgs(
                requests={name: str(count) for name, count in requirements["requests"].items()},
                limits={name: str(count) for name, count in requirements["limits"].items()},
            ),
            "env": merged,
        }

    # -- Helm values for bjw-s app-template -----------------------------------

    def app_template_values(self, controller: str = "jellyfin", container: str = "app") -> dict[str, Any]:
        """Values for bjw-s app-template (v3/v4 layout): resources and env on
        ``controllers.<controller>.containers.<container>``, scheduling in
        ``defaultPodOptions``, as in the guide's Jellyfin HelmRelease. Keys:
        bjw-s-labs/helm-charts charts/library/common/values.schema.json,
        schemas/controllers.json, schemas/containers.json, schemas/pod.json."""
        pod: dict[str, Any] = {
            "nodeSelector": dict(self.node_selector),
            "tolerations": [dict(item) for item in self.tolerations],
        }
        if self.runtime_class_name:
            pod["runtimeClassName"] = self.runtime_class_name
        return {
            "controllers": {controller: {"containers": {container: {"env": dict(self.env), "resources": self.resources()}}}},
            "defaultPodOptions": pod,
        }


def gpu_workload_spec(cfg: StackConfig, gpus: int = 1) -> GpuWorkloadSpec:
    """The spec for a workload asking for ``gpus`` GPU shares on this stack's
    node. Raises ValueError for a request the node can never satisfy."""
    sharing = cfg.gpu_stack.time_slicing
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise ValueError(f"gpus = {gpus!r}: ask for 1 or more GPU shares")
    if gpus > cfg.advertised_gpus:
        raise ValueError(
            f"gpus = {gpus}: the node advertises only {cfg.advertised_gpus} "
            f"({len(cfg.gpus)} GPU(s) x {sharing.replicas if sharing.enabled else 1}); the pod would never be scheduled"
        )
    if sharing.enabled and sharing.fail_requests_greater_than_one and gpus > 1:
        raise ValueError(
            f"gpus = {gpus}: gpuStack.timeSlicing.failRequestsGreaterThanOne is true, so the device plugin refuses requests above 1"
        )
    notes: list[str] = []
    if sharing.enabled and gpus > 1:
        notes.append("time-sliced replicas share one GPU's compute; asking for more than 1 does not give more GPU")
    env = {"NVIDIA_DRIVER_CAPABILITIES": DEFAULT_DRIVER_CAPABILITIES}
    if len(cfg.gpus) == 1:
        # The device plugin already exposes exactly the allocated device; "all"
        # (the guide's value) overrides that and is only equivalent on a node
        # with a single GPU.
        env = {"NVIDIA_VISIBLE_DEVICES": "all", **env}
    else:
        notes.append("NVIDIA_VISIBLE_DEVICES left to the device plugin: 'all' would expose every GPU of the node, not only the allocated one")
    return GpuWorkloadSpec(
        resource_name=advertised_resource(cfg),
        count=gpus,
        node_selector=gpu_node_selector(cfg),
        tolerations=(dict(GPU_TOLERATION),),
        env=env,
        # Talos' nvidia-container-toolkit extension can make nvidia the
        # default runtime (the NVIDIA guide does up to Talos 1.12); where it
        # is not, pods must ask for the RuntimeClass.
        runtime_class_name=None if default_runtime_on(cfg.talos, cfg.talos.version) else RUNTIME_CLASS,
        notes=tuple(notes),
    )
