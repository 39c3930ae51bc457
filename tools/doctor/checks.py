"""The doctor's checks, one module per layer of the node, each pure:
(observation, config) -> results. No I/O here."""

from __future__ import annotations

from collections.abc import Callable

from tools.doctor.host_checks import check_host, check_proxmox
from tools.doctor.kubernetes_checks import check_kubernetes
from tools.doctor.model import CheckResult, Layer
from tools.doctor.monitoring import check_monitoring
from tools.doctor.talos_checks import check_talos
from tools.doctor.workload_checks import check_workload

CHECKS: dict[Layer, Callable[..., list[CheckResult]]] = {
    "host": check_host,
    "proxmox": check_proxmox,
    "talos": check_talos,
    "kubernetes": check_kubernetes,
    "workload": check_workload,
    "monitoring": check_monitoring,
}
