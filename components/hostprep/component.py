"""HostVfioPrep: the head of the graph. Makes the Proxmox host ready to pass
its GPU(s) through, over SSH, before GpuVm is created."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic

from components.config import PROJECT, ConfigError, ConfigIssue, StackConfig
from components.hostprep.provider import OUTPUT_KEYS, HostPrepProvider
from components.hostprep.spec import host_prep_spec


class HostPrepResource(pulumi.dynamic.Resource):
    """The dynamic resource that carries out host preparation. Its attributes
    are the provider's state keys as they are (the SDK names them after the
    props: pulumi/runtime/rpc.py transfer_properties)."""

    drivers: pulumi.Output[dict[str, str]]
    iommuGroups: pulumi.Output[dict[str, int]]  # noqa: N815 - the provider's output name
    subsystemIds: pulumi.Output[dict[str, str]]  # noqa: N815 - the provider's output name
    rebooted: pulumi.Output[bool]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(HostPrepProvider(), name, {**props, **dict.fromkeys(OUTPUT_KEYS)}, opts)


def provider_props(cfg: StackConfig, ssh_private_key: pulumi.Input[str], owner: str,
                   kubeconfig: pulumi.Input[str] | None = None) -> dict[str, Any]:
    """The dynamic resource's inputs from the stack config (the SSH key and
    the kubeconfig as secrets)."""
    return {
        **host_prep_spec(cfg, owner).to_dict(),
        "privateKey": pulumi.Output.secret(ssh_private_key),
        "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
    }


class HostVfioPrep(pulumi.ComponentResource):
    """IOMMU, vfio modules, driver blacklist and vfio-pci ids on the Proxmox
    host; initramfs and bootloader refresh and a reboot only when needed
    (with consent for the guests it stops, this stack's Kubernetes node
    drained first and uncordoned after); then every GPU function verified on
    vfio-pci.

    With ``host.enabled: false`` nothing is touched and the outputs come
    from config (``gpus[].iommuGroup`` / ``subsystemId``), for hosts
    prepared by hand."""

    iommu_groups: pulumi.Output[dict[str, int]]  # GPU address -> IOMMU group
    subsystem_ids: pulumi.Output[dict[str, str]]  # GPU address -> subsystem vendor:device
    drivers: pulumi.Output[dict[str, str]]  # function address -> driver in use
    rebooted: pulumi.Output[bool]

    def __init__(self, name: str, cfg: StackConfig, ssh_private_key: pulumi.Input[str] | None,
                 opts: pulumi.ResourceOptions | None = None, *, kubeconfig: pulumi.Input[str] | None = None):
        super().__init__(f"{PROJECT}:host:HostVfioPrep", name, None, opts)
        self.prep: HostPrepResource | None = None
        if cfg.host.enabled:
            if ssh_private_key is None:
                raise ConfigError([ConfigIssue("sshPrivateKey", None,
                                               "required when host.enabled is true: `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`")])
            owner = f"{pulumi.get_project()}/{pulumi.get_stack()}"
            self.prep = HostPrepResource(
                f"{name}-vfio", provider_props(cfg, ssh_private_key, owner, kubeconfig),
                pulumi.ResourceOptions(parent=self, additional_secret_outputs=["privateKey", "kubeconfig"]),
            )
            self.iommu_groups = self.prep.iommuGroups
            self.subsystem_ids = self.prep.subsystemIds
            self.drivers = self.prep.drivers
            self.rebooted = self.prep.rebooted
        else:
            self.iommu_groups = pulumi.Output.from_input({g.address: g.iommu_group for g in cfg.gpus if g.iommu_group is not None})
            self.subsystem_ids = pulumi.Output.from_input({g.address: g.subsystem_id for g in cfg.gpus if g.subsystem_id})
            self.drivers = pulumi.Output.from_input({})
            self.rebooted = pulumi.Output.from_input(False)
        self.register_outputs({
            "iommuGroups": self.iommu_groups,
            "subsystemIds": self.subsystem_ids,
            "drivers": self.drivers,
            "rebooted": self.rebooted,
        })
