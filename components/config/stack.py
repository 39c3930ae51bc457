"""The whole stack config: its sections, one per top-level key of the
project's namespace, and the values derived from several of them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.config.consumers import JellyfinConfig, ReadinessConfig
from components.config.gpu_stack import GpuStackConfig
from components.config.host import GpuConfig, HostPrepConfig, ProxmoxConfig
from components.config.talos import TalosConfig
from components.config.values import Section
from components.config.vm import VmConfig


class StackConfig(Section):
    proxmox: ProxmoxConfig
    host: HostPrepConfig = HostPrepConfig(enabled=False)
    gpus: Annotated[list[GpuConfig], Field(min_length=1, max_length=16)]
    vm: VmConfig
    talos: TalosConfig
    gpu_stack: GpuStackConfig = GpuStackConfig()
    jellyfin: JellyfinConfig = JellyfinConfig()
    readiness: ReadinessConfig = ReadinessConfig()

    # Derived values, computed once here so every component agrees.
    @property
    def node_name(self) -> str:
        return self.vm.name

    @property
    def config_key(self) -> str:
        return self.gpu_stack.config_key or self.vm.name

    def slot(self, index: int) -> str:
        return self.gpus[index].slot or f"hostpci{index}"

    def mapping_name(self, index: int) -> str:
        return self.gpus[index].mapping_name or f"{self.vm.name}-gpu{index}"

    @property
    def advertised_gpus(self) -> int:
        sharing = self.gpu_stack.time_slicing
        return len(self.gpus) * (sharing.replicas if sharing.enabled else 1)


# The keys a stack sets under the namespace (``proxmox``, ``gpuStack``, ...).
TOP_LEVEL_KEYS = frozenset(field.alias or name for name, field in StackConfig.model_fields.items())
