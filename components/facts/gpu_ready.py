"""The one rule of "the node's GPUs are ready": the node advertises
``expected`` (replicas x GPUs, or the GPUs without sharing) of the resource
the stack counts (nvidia.com/gpu, or nvidia.com/gpu.shared with
renameByDefault: k8s-device-plugin v0.18.2 internal/rm/device_map.go), and
GPU Feature Discovery has labelled its product. The readiness gate that
``pulumi up`` waits on (components/readiness/gate.py) and the doctor's
Kubernetes checks (tools/doctor/kubernetes_checks.py) both judge a node with
it, each in its own words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.facts.kubernetes import GPU_RESOURCE, PRODUCT_LABEL, NodeInfo, gpu_driver_version

# What is wrong with the count: "" (right), "renamed" (none under the
# resource, but the node advertises another nvidia.com/gpu* name: the
# time-slicing rename is applied, or not, against the stack), "none" (no GPU
# advertised at all) or "count" (advertised, but not the expected number).
CountProblem = Literal["", "renamed", "none", "count"]


@dataclass(frozen=True)
class GpuAdvertisement:
    resource: str
    expected: int
    count: int  # allocatable[resource]; 0 when the node does not advertise it
    others: dict[str, int]  # the other nvidia.com/gpu* resources the node advertises, with a count
    product: str  # GFD's nvidia.com/gpu.product; "" when not labelled
    driver: str  # GFD's driver version labels; "" when absent

    @property
    def count_problem(self) -> CountProblem:
        if self.count == self.expected:
            return ""
        if not self.count:
            return "renamed" if self.others else "none"
        return "count"

    @property
    def labelled(self) -> bool:
        """GPU Feature Discovery has labelled the node (its product label)."""
        return bool(self.product)

    @property
    def ready(self) -> bool:
        return not self.count_problem and self.labelled

    def others_text(self) -> str:
        return ", ".join(f"{name}={count}" for name, count in sorted(self.others.items()))


def gpu_advertisement(node: NodeInfo, resource: str, expected: int) -> GpuAdvertisement:
    """How ``node`` advertises its GPUs, judged against ``expected`` of ``resource``."""
    others = {name: count for name, count in node.allocatable_nvidia.items()
              if name != resource and name.startswith(GPU_RESOURCE) and count}
    return GpuAdvertisement(resource=resource, expected=expected, count=node.allocatable(resource) or 0, others=others,
                            product=node.label(PRODUCT_LABEL) or "", driver=gpu_driver_version(node.labels))
