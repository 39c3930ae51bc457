"""The ``talos`` section: the Talos node, its machine config source, the
NVIDIA extensions and the upgrade path (the rules that span these keys are
in components/config/rules.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from components.config.values import DnsLabel, ExtensionName, HttpsUrl, IpAddress, LabelKey, LabelValue, Section, TalosVersion


class ExtensionsConfig(Section):
    driver: Literal["proprietary", "open"] = "proprietary"
    branch: Literal["production", "lts"] = "production"
    extra: list[ExtensionName] = ["siderolabs/qemu-guest-agent"]


class TalosConfig(Section):
    version: TalosVersion = "v1.13.9"
    platform: Literal["metal", "nocloud"] = "metal"
    node_address: IpAddress
    endpoint: IpAddress | None = None
    cluster_name: DnsLabel
    cluster_endpoint: HttpsUrl
    # running: adopt the node's own machine config and change only the paths
    # this program owns. generated: a new worker config from the machine
    # secrets (a brand-new node in maintenance mode).
    config_source: Literal["running", "generated"] = "running"
    # generated only: the user's own patches (files), applied before the GPU
    # patch, as `talosctl gen config --config-patch @file` does.
    config_patches: list[Annotated[str, Field(min_length=1)]] = []
    kubernetes_version: Annotated[str, Field(pattern=r"^v1\.\d+\.\d+$")] | None = None
    install_disk: Annotated[str, Field(pattern=r"^/dev/[A-Za-z0-9/_-]+$")] = "/dev/sda"
    extensions: ExtensionsConfig = ExtensionsConfig()
    node_labels: dict[LabelKey, LabelValue] = {}
    # None: what the NVIDIA guide of the Talos version sets (both up to 1.12,
    # neither from 1.13); true/false: an explicit override for every version.
    bpf_jit_harden: bool | None = None
    nvidia_default_runtime: bool | None = None
    # The intermediate releases to walk through instead of the latest patch
    # of each minor from the code's table (one entry per minor).
    upgrade_path: list[TalosVersion] = []
    # Bound for each version step: talosctl upgrade, then the wait for the
    # node to answer with the new version, list its extensions and be Ready.
    upgrade_timeout_seconds: Annotated[int, Field(ge=300, le=7200)] = 1800
    # talos.version newer than the releases components/talos/versions.py
    # lists: accepted only when set (the user checked that it exists).
    allow_unlisted_version: bool = False

    @property
    def talosctl_endpoint(self) -> str:
        return self.endpoint or self.node_address
