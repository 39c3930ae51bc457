"""GpuVm: the Talos VM on Proxmox with the GPU(s) passed through.

``vm.source: existing`` (the default) adopts the VM that is there: a dynamic
resource (components/vm/provider.py) owns only its GPU slots and balloon.
``vm.source: create`` creates it as a pulumi-proxmoxve ``VmLegacy`` that
never reboots by itself. Either way the PCI mappings are pulumi-proxmoxve
resources, created before the slots that name them.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_proxmoxve as proxmoxve

from components.config import PROJECT, StackConfig
from components.options import child_options
from components.vm.adopt import spec_from_config
from components.vm.create import pci_mappings, vm_args
from components.vm.provider import OUTPUT_KEYS, VmAdoptProvider


def _lookup(found: pulumi.Input[dict[str, Any]] | None, key: str, fallback: Any) -> pulumi.Input[Any]:
    """One GPU's value from a host-facts output (e.g. IOMMU group by address),
    falling back to the configured value when host preparation is off."""
    if found is None:
        return fallback
    return pulumi.Output.from_input(found).apply(lambda values: (values or {}).get(key, fallback))


class VmAdoptResource(pulumi.dynamic.Resource):
    """The dynamic resource that owns the GPU slots and balloon of an existing VM."""

    previous: pulumi.Output[dict[str, Any]]
    written: pulumi.Output[dict[str, str]]
    restarted: pulumi.Output[bool]
    pending: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(VmAdoptProvider(), name, {**props, **dict.fromkeys(OUTPUT_KEYS)}, opts)


def adopt_props(cfg: StackConfig, *, api_token: pulumi.Input[str] | None, password: pulumi.Input[str] | None,
                kubeconfig: pulumi.Input[str] | None) -> dict[str, Any]:
    """The dynamic resource's inputs (credentials and kubeconfig as secrets)."""
    token_auth = cfg.proxmox.auth_method == "apiToken"
    vm = cfg.vm
    return {
        "endpoint": cfg.proxmox.endpoint,
        "insecure": cfg.proxmox.insecure,
        "apiToken": pulumi.Output.secret(api_token) if token_auth and api_token is not None else None,
        "username": None if token_auth else cfg.proxmox.username,
        "password": pulumi.Output.secret(password) if not token_auth and password is not None else None,
        # The mappings are created first (depends_on), so their existence is not checked at preview.
        "spec": spec_from_config(cfg, check_mappings=False).to_dict(),
        "restart": vm.restart,
        "restartTimeoutSeconds": vm.restart_timeout_seconds,
        "drainTimeoutSeconds": vm.drain_timeout_seconds,
        "nodeName": cfg.node_name,
        "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
    }


class GpuVm(pulumi.ComponentResource):
    vm_id: int
    slots: list[str]
    mapping_names: list[str]
    vm: pulumi.CustomResource

    def __init__(self, name: str, cfg: StackConfig, *,
                 iommu_groups: pulumi.Input[dict[str, int]] | None = None,
                 subsystem_ids: pulumi.Input[dict[str, str]] | None = None,
                 api_token: pulumi.Input[str] | None = None,
                 password: pulumi.Input[str] | None = None,
                 kubeconfig: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PROJECT}:proxmox:GpuVm", name, None, opts)
        specs = pci_mappings(cfg)
        mapped = [gpu for gpu in cfg.gpus if gpu.passthrough == "mapping"]
        mappings = []
        for spec, gpu in zip(specs, mapped, strict=True):
            # A cluster-level PCI mapping lets API tokens with Mapping.Use
            # attach the device; raw ids are root@pam-only (README table, row 3).
            # The host's facts are keyed by the GPU function's address (with
            # allFunctions Proxmox checks the whole device against function 0).
            (entry,) = spec["maps"]
            entry = {**entry,
                     "iommu_group": _lookup(iommu_groups, gpu.address, entry["iommu_group"]),
                     "subsystem_id": _lookup(subsystem_ids, gpu.address, entry["subsystem_id"])}
            mappings.append(proxmoxve.hardware.mapping.Pci(
                spec["name"], name=spec["name"], comment=spec["comment"],
                maps=[proxmoxve.hardware.mapping.PciMapArgs(**entry)],
                opts=child_options(self, opts),
            ))
        by_name = {spec["name"]: mapping for spec, mapping in zip(specs, mappings, strict=True)}
        self.vm_id = cfg.vm.vm_id
        self.slots = [cfg.slot(index) for index in range(len(cfg.gpus))]
        self.mapping_names = list(by_name)
        if cfg.vm.source == "existing":
            self.vm = VmAdoptResource(
                f"{name}-gpu-slots", adopt_props(cfg, api_token=api_token, password=password, kubeconfig=kubeconfig),
                child_options(self, opts, depends_on=mappings, additional_secret_outputs=["apiToken", "password", "kubeconfig"]),
            )
        else:
            args = vm_args(cfg)
            # Reference each mapping by its output name, so the VM waits for it.
            args["hostpcis"] = [{**entry, "mapping": by_name[entry["mapping"]].name} if "mapping" in entry else entry
                                for entry in args["hostpcis"]]
            self.vm = proxmoxve.VmLegacy(
                name, **args,
                opts=child_options(self, opts, depends_on=mappings, retain_on_delete=cfg.vm.retain_on_destroy),
            )
        self.register_outputs({
            "vmId": cfg.vm.vm_id,
            "name": cfg.vm.name,
            "source": cfg.vm.source,
            "machine": cfg.vm.machine,
            "hostpciSlots": self.slots,
            "pciMappings": self.mapping_names,
        })
