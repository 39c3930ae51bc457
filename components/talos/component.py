"""TalosGpuNode: Image Factory schematic with the NVIDIA extensions, the
machine-config patch, apply, and the upgrade to the new installer image.
Sits between GpuVm and GpuStack (DESIGN.md)."""

from __future__ import annotations

import pulumi
import pulumiverse_talos as talos

from components.config import StackConfig
from components.options import child_options
from components.talos.machine_config import gpu_patch_yaml
from components.talos.schematic import installer_image, planned_installer
from components.talos.secrets import client_configuration_args, machine_secrets_args, talosconfig_text
from components.talos.upgrade_provider import TalosUpgrade, TalosUpgradePreflight


def checked_factory_id(factory_id: str, offline_id: str) -> str:
    """The factory's ID must be the one computed offline, or the installer
    image would not carry the extensions this program asked for."""
    if factory_id != offline_id:
        raise pulumi.RunError(
            f"the Image Factory returned schematic ID {factory_id}, but this schematic's ID computed offline is "
            f"{offline_id}; refusing to install an image whose extensions cannot be verified "
            "(check `python -m components.talos schematic` against the factory)"
        )
    return factory_id


class TalosGpuNode(pulumi.ComponentResource):
    schematic_id: pulumi.Output[str]
    installer_image: pulumi.Output[str]
    config_patch: pulumi.Output[str]
    talos_version: str
    node_address: str

    def __init__(self, name: str, cfg: StackConfig, machine_secrets: pulumi.Input[str],
                 client_configuration: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("proxmox-talos-gpu:talos:TalosGpuNode", name, None, opts)
        t = cfg.talos
        self.talos_version = t.version
        self.node_address = t.node_address

        # Raises ConfigError before any child is registered.
        schematic_yaml, offline_id, _ = planned_installer(t)
        self.schematic = talos.imagefactory.Schematic(f"{name}-schematic", schematic=schematic_yaml,
                                                        opts=child_options(self, opts))
        self.schematic_id = self.schematic.id.apply(lambda factory_id: checked_factory_id(factory_id, offline_id))
        self.installer_image = self.schematic_id.apply(lambda sid: installer_image(sid, t.version, t.platform))
        self.config_patch = self.installer_image.apply(lambda image: gpu_patch_yaml(cfg, image))

        talosconfig = pulumi.Output.secret(client_configuration).apply(talosconfig_text)
        client = pulumi.Output.secret(talosconfig.apply(client_configuration_args))
        bundle = pulumi.Output.secret(pulumi.Output.secret(machine_secrets).apply(machine_secrets_args))
        base = talos.machine.get_configuration_output(
            cluster_name=t.cluster_name,
            cluster_endpoint=t.cluster_endpoint,
            machine_type="worker",
            machine_secrets=bundle,
            talos_version=t.version,
            kubernetes_version=t.kubernetes_version,
            docs=False,
            examples=False,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        # What the node should run; the preflight and the upgrade both read
        # the node against it.
        wanted = {"node": t.node_address, "endpoint": t.talosctl_endpoint, "image": self.installer_image,
                  "version": t.version, "schematic_id": self.schematic_id, "talosconfig": talosconfig}
        # Refuse a minor-skipping upgrade before any config reaches the node.
        self.preflight = TalosUpgradePreflight(f"{name}-preflight", **wanted, opts=child_options(self, opts))
        self.configuration_apply = talos.machine.ConfigurationApply(
            f"{name}-apply",
            node=t.node_address,
            endpoint=t.talosctl_endpoint,
            client_configuration=client,
            machine_configuration_input=base.machine_configuration,
            config_patches=[self.config_patch],
            # Destroying the stack must never reset (wipe) the node.
            on_destroy=talos.machine.ConfigurationApplyOnDestroyArgs(reset=False, graceful=True, reboot=False),
            # Children wait for what the component waits for (the VM).
            opts=child_options(self, opts, depends_on=[self.preflight]),
        )
        # install.image is read only at install/upgrade (fact 9): upgrade after
        # the new config is in place.
        self.upgrade = TalosUpgrade(f"{name}-upgrade", **wanted,
                                    opts=child_options(self, opts, depends_on=[self.configuration_apply]))
        self.register_outputs({
            "schematicId": self.schematic_id,
            "installerImage": self.installer_image,
            "configPatch": self.config_patch,
            "talosVersion": self.talos_version,
            "nodeAddress": self.node_address,
        })
