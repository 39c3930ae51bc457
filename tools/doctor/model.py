"""What the doctor observes and what it reports. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["pass", "fail", "skip"]
Layer = Literal["host", "proxmox", "talos", "kubernetes", "workload", "monitoring"]
LAYERS: tuple[Layer, ...] = ("host", "proxmox", "talos", "kubernetes", "workload", "monitoring")


@dataclass(frozen=True)
class CheckResult:
    layer: Layer
    name: str
    status: Status
    detail: str
    remedy: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Output:
    """One command's result as a check sees it: its stdout, or why there is none
    (the command ran and failed, e.g. a file that does not exist)."""

    text: str | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass(frozen=True)
class Unreachable:
    """A layer the doctor could not reach; every check of it is skipped."""

    reason: str


@dataclass(frozen=True)
class PciFunctionState:
    driver: str | None  # driver in use; None when unbound
    vendor_device: str = ""  # 10de:1eb8
    kernel_modules: tuple[str, ...] = ()  # lspci -k "Kernel modules": what could claim it


@dataclass(frozen=True)
class HostObservation:
    host: str
    iommu_active: bool
    functions: dict[str, PciFunctionState]  # every function of the configured GPUs' slots
    nvidia_devices: dict[str, str] = field(default_factory=dict)  # all NVIDIA functions on the host: address -> id


@dataclass(frozen=True)
class ProxmoxObservation:
    host: str
    qm_config: Output


@dataclass(frozen=True)
class TalosObservation:
    nvidia_version: Output
    modules: Output
    extensions: Output


@dataclass(frozen=True)
class KubernetesObservation:
    node: Output
    pods: Output


@dataclass(frozen=True)
class WorkloadObservation:
    pods: Output
    # Run in the pod workload_checks.select_jellyfin_pod picks; None when there was none.
    nvidia_smi: Output | None = None
    encoders: Output | None = None
    # One real encode per NVENC encoder (workload_checks.nvenc_probe_encoders): encoder -> result.
    nvenc_probes: dict[str, Output] | None = None


@dataclass(frozen=True)
class MonitoringObservation:
    pods: Output  # the exporter's pods on the node
    scrape: Output | None = None  # one scrape of the chosen pod; None when there was none
    rule: Output | None = None  # the PrometheusRule; None when gpuStack.prometheusOperator is false


Observation = (HostObservation | ProxmoxObservation | TalosObservation | KubernetesObservation | WorkloadObservation
               | MonitoringObservation)
