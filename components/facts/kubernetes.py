"""What kubectl prints about a node and its pods: ``kubectl get node -o
json`` and ``kubectl get pods -o json``, with the GPU labels GPU Feature
Discovery sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components import cluster
from components.facts.parsing import ParseError, load_json_object, whole_number

GPU_RESOURCE = cluster.GPU_RESOURCE
PRODUCT_LABEL = "nvidia.com/gpu.product"  # set by GPU Feature Discovery


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool
    allocatable_gpus: int | None  # None: the node does not advertise nvidia.com/gpu at all
    capacity_gpus: int | None
    labels: dict[str, str] = field(default_factory=dict)
    # Every nvidia.com/* extended resource in status.allocatable (nvidia.com/gpu,
    # nvidia.com/gpu.shared with renameByDefault, MIG profiles).
    allocatable_nvidia: dict[str, int] = field(default_factory=dict)

    def label(self, key: str) -> str | None:
        return self.labels.get(key)

    def allocatable(self, resource: str) -> int | None:
        """status.allocatable[resource]; None when the node does not advertise it."""
        return self.allocatable_nvidia.get(resource)


def _nvidia_quantities(section: Any, where: str) -> dict[str, int]:
    """The ``nvidia.com/*`` entries of a resource list (allocatable, limits)."""
    if not isinstance(section, dict):
        return {}
    found = {}
    for key, value in section.items():
        if str(key).startswith("nvidia.com/"):
            quantity = whole_number(value, f"{where}[{key}]")
            if quantity is not None:
                found[str(key)] = quantity
    return found


def parse_node(text: str | dict[str, Any]) -> NodeInfo:
    """``kubectl get node <name> -o json``."""
    data = load_json_object(text, "kubectl get node output")
    if data.get("kind") != "Node":
        raise ParseError(f"expected kind Node, got {data.get('kind')!r}")
    metadata = data.get("metadata") or {}
    status = data.get("status") or {}
    if not isinstance(metadata, dict) or not isinstance(status, dict) or not isinstance(metadata.get("name"), str):
        raise ParseError("Node object lacks metadata.name or status")
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise ParseError("Node metadata.labels is not a mapping")
    conditions = status.get("conditions") or []
    ready = any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return NodeInfo(
        name=metadata["name"],
        ready=ready,
        allocatable_gpus=whole_number((status.get("allocatable") or {}).get(GPU_RESOURCE), f"status.allocatable[{GPU_RESOURCE}]"),
        capacity_gpus=whole_number((status.get("capacity") or {}).get(GPU_RESOURCE), f"status.capacity[{GPU_RESOURCE}]"),
        labels={str(key): str(value) for key, value in labels.items()},
        allocatable_nvidia=_nvidia_quantities(status.get("allocatable"), "status.allocatable"),
    )


def gpu_driver_version(labels: dict[str, str]) -> str:
    """The driver version GFD labelled: ``nvidia.com/cuda.driver-version.full``,
    else ``nvidia.com/cuda.driver.major/.minor/.rev``; "" when absent."""
    full = labels.get("nvidia.com/cuda.driver-version.full")
    if full:
        return full
    parts = [labels.get(f"nvidia.com/cuda.driver.{part}") for part in ("major", "minor", "rev")]
    if parts[0] and parts[1]:
        return ".".join(part for part in parts if part)
    return ""


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    gpu_limit: int
    ready: bool
    waiting_reason: str = ""
    restarts: int = 0
    nvidia_limits: dict[str, int] = field(default_factory=dict)  # every nvidia.com/* limit

    def limit(self, resource: str) -> int:
        return self.nvidia_limits.get(resource, 0)


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    node: str
    phase: str
    labels: dict[str, str]
    containers: tuple[ContainerInfo, ...]

    @property
    def healthy(self) -> bool:
        """Running with every container ready, or finished successfully."""
        if self.phase == "Succeeded":
            return True
        return self.phase == "Running" and all(container.ready for container in self.containers)

    @property
    def state(self) -> str:
        reasons = sorted({c.waiting_reason for c in self.containers if c.waiting_reason})
        if reasons:
            return f"{self.phase} ({', '.join(reasons)})"
        if self.phase == "Running" and not self.healthy:
            return "Running (not ready)"
        return self.phase

    @property
    def gpu_limit(self) -> int:
        return sum(container.gpu_limit for container in self.containers)

    def limit(self, resource: str) -> int:
        """The pod's limit of one extended resource, summed over its containers."""
        return sum(container.limit(resource) for container in self.containers)


def _pod(item: Any, index: int) -> PodInfo:
    if not isinstance(item, dict) or item.get("kind", "Pod") != "Pod":
        raise ParseError(f"item {index} is not a Pod")
    metadata, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
    if not isinstance(metadata.get("name"), str):
        raise ParseError(f"pod {index} has no metadata.name")
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or [] if isinstance(s, dict)}
    containers = []
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            raise ParseError(f"pod {metadata['name']}: spec.containers holds a non-object")
        limits = (container.get("resources") or {}).get("limits") or {}
        state = statuses.get(container.get("name"), {})
        waiting = (state.get("state") or {}).get("waiting") or {}
        containers.append(ContainerInfo(
            name=str(container.get("name", "")),
            gpu_limit=whole_number(limits.get(GPU_RESOURCE), f"pod {metadata['name']} limits[{GPU_RESOURCE}]") or 0,
            ready=bool(state.get("ready", False)),
            waiting_reason=str(waiting.get("reason", "")),
            restarts=int(state.get("restartCount", 0) or 0),
            nvidia_limits=_nvidia_quantities(limits, f"pod {metadata['name']} limits"),
        ))
    return PodInfo(
        name=metadata["name"],
        namespace=str(metadata.get("namespace", "")),
        node=str(spec.get("nodeName", "")),
        phase=str(status.get("phase", "Unknown")),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        containers=tuple(containers),
    )


def parse_pods(text: str | dict[str, Any]) -> list[PodInfo]:
    """``kubectl get pods -o json`` (a List) or ``kubectl get pod X -o json``."""
    data = load_json_object(text, "kubectl get pods output")
    if data.get("kind") == "Pod":
        return [_pod(data, 0)]
    items = data.get("items")
    if not isinstance(items, list):
        raise ParseError(f"expected a List of Pods with .items, got kind {data.get('kind')!r}")
    return [_pod(item, index) for index, item in enumerate(items)]
