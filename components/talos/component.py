"""TalosGpuNode: Image Factory schematic with the NVIDIA extensions, the
node's machine config (adopted, or generated for a new node), and the
upgrade to the new installer image. Sits between GpuVm and GpuStack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic
import pulumiverse_talos as talos

from components.config import ConfigError, ConfigIssue, StackConfig
from components.gpu_migration import GpuModeMigration
from components.gpu_migration_plan import migration_needed
from components.options import child_options
from components.talos.config_documents import AdoptError, load_documents
from components.talos.config_provider import TalosMachineConfigProvider
from components.talos.machine_config import gpu_patch_yaml, node_spec
from components.talos.schematic import extensions_for, installer_image, planned_installer
from components.talos.secrets import client_configuration_args, machine_secrets_args, talosconfig_text
from components.talos.upgrade_drain import needed_tools
from components.talos.upgrade_provider import TalosUpgrade, TalosUpgradePreflight
from components.talos.versions import OPERATOR_FROM


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


def read_config_patches(paths: list[str], base: Path | None = None) -> list[str]:
    """The text of each ``talos.configPatches`` file (YAML, one or more
    documents), read before anything is registered."""
    texts, issues = [], []
    for index, name in enumerate(paths):
        path = Path(name) if Path(name).is_absolute() else (base or Path.cwd()) / name
        key = f"talos.configPatches[{index}]"
        try:
            text = path.read_text(encoding="utf-8")
            load_documents(text)
        except OSError as error:
            issues.append(ConfigIssue(key, name, f"cannot read the patch file ({error.strerror}); give a path relative to the project directory"))
            continue
        except (AdoptError, UnicodeDecodeError) as error:
            issues.append(ConfigIssue(key, name, f"not a machine-config patch in YAML: {error}"))
            continue
        texts.append(text)
    if issues:
        raise ConfigError(issues)
    return texts


def cluster_kubernetes_version(kubeconfig: str | None) -> str:
    """The running cluster's Kubernetes version, for a generated config whose
    kubelet must match it (``talos.kubernetesVersion`` unset)."""
    from components.kubectl import KubectlError, server_version

    try:
        return server_version(kubeconfig)
    except (KubectlError, ValueError) as error:
        raise ConfigError([ConfigIssue(
            "talos.kubernetesVersion", None,
            f"not set, and the cluster's version could not be read ({error}); set it to the version your cluster runs "
            "(`kubectl version`), e.g. v1.34.3, so the provider's default kubelet is never used")]) from None


class TalosMachineConfig(pulumi.dynamic.Resource, module="talos", name="TalosMachineConfig"):
    """The node's own machine config with the owned paths merged in."""

    originals: pulumi.Output[dict[str, Any]]
    mode: pulumi.Output[str]
    rebootPaths: pulumi.Output[list[str]]  # noqa: N815 - the provider's output name
    lastChanges: pulumi.Output[list[str]]  # noqa: N815

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(TalosMachineConfigProvider(), name, {
            **props,
            # Computed by the provider; declared so they are readable.
            "pendingChanges": None, "mode": None, "rebootPaths": None, "lastChanges": None, "talosSays": None,
            "appliedVersion": None,
        }, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["talosconfig", "originals"])))


class TalosGpuNode(pulumi.ComponentResource):
    schematic_id: pulumi.Output[str]
    installer_image: pulumi.Output[str]
    config_patch: pulumi.Output[str]
    talos_version: str
    node_address: str

    def __init__(self, name: str, cfg: StackConfig, machine_secrets: pulumi.Input[str] | None,
                 client_configuration: pulumi.Input[str], kubeconfig: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        t = cfg.talos
        # Raise ConfigError before any child is registered.
        schematic_yaml, offline_id, _ = planned_installer(t)
        patches = read_config_patches(list(t.config_patches)) if t.config_source == "generated" else []
        super().__init__("proxmox-talos-gpu:talos:TalosGpuNode", name, None, opts)
        self.talos_version = t.version
        self.node_address = t.node_address

        self.schematic = talos.imagefactory.Schematic(f"{name}-schematic", schematic=schematic_yaml,
                                                        opts=child_options(self, opts))
        self.schematic_id = self.schematic.id.apply(lambda factory_id: checked_factory_id(factory_id, offline_id))
        self.installer_image = self.schematic_id.apply(lambda sid: installer_image(sid, t.version, t.platform))
        self.config_patch = self.installer_image.apply(lambda image: gpu_patch_yaml(cfg, image))

        talosconfig = pulumi.Output.secret(client_configuration).apply(talosconfig_text)
        # What the node should run; the preflight and the upgrade both read
        # the node against it.
        wanted = {"node": t.node_address, "endpoint": t.talosctl_endpoint, "image": self.installer_image,
                  "version": t.version, "schematic_id": self.schematic_id, "talosconfig": talosconfig}
        extensions = extensions_for(t)
        # Refuse a downgrade, a major jump or an unknown step before any
        # config reaches the node.
        self.preflight = TalosUpgradePreflight(f"{name}-preflight", **wanted, upgrade_path=list(t.upgrade_path),
                                               extensions=extensions, opts=child_options(self, opts),
                                               tools=needed_tools({"kubeconfig": kubeconfig is not None, "nodeName": cfg.node_name}))
        if t.config_source == "running":
            self.machine_config: pulumi.Resource = TalosMachineConfig(
                f"{name}-config",
                {
                    "node": t.node_address,
                    "endpoint": t.talosctl_endpoint,
                    "talosconfig": pulumi.Output.secret(talosconfig),
                    # The offline schematic ID, known in preview, so preview
                    # shows the diff against the node; the factory's ID is
                    # checked against it (and waited for) via factorySchematicId.
                    "spec": node_spec(t, offline_id).to_dict(),
                    "factorySchematicId": self.schematic_id,
                    # Filled in by the provider: the values the node had before
                    # this program changed them (secret: they may hold the
                    # node's own secrets).
                    "originals": pulumi.Output.secret({}),
                    "upgradePath": list(t.upgrade_path),
                },
                opts=child_options(self, opts, depends_on=[self.preflight]),
            )
        else:
            self.machine_config = self._generated_config(name, cfg, machine_secrets, talosconfig, patches, kubeconfig, opts)
        # install.image is read only at install/upgrade (README row 9): upgrade after
        # the new config is in place (staged: each step's reboot applies it),
        # one minor at a time.
        walk: dict[str, Any] = {
            **wanted, "platform": t.platform, "upgrade_path": list(t.upgrade_path), "extensions": extensions,
            "node_name": cfg.node_name, "kubeconfig": kubeconfig, "timeout_seconds": t.upgrade_timeout_seconds,
        }
        if isinstance(self.machine_config, TalosMachineConfig):
            walk.update(spec=node_spec(t, offline_id).to_dict(), originals=self.machine_config.originals)
        before_upgrade: pulumi.Resource = self.machine_config
        self.migration: GpuModeMigration | None = None
        if migration_needed(cfg):
            # Talos 1.13 wants the device plugin and RuntimeClass nvidia gone
            # before the node runs it: walk to the last 1.12 release, remove
            # them, then take the step to 1.13 (GpuStack installs the GPU
            # Operator after it).
            self.upgrade_before_operator = TalosUpgrade(
                f"{name}-upgrade-before-{OPERATOR_FROM[0]}.{OPERATOR_FROM[1]}", **walk,
                stop_before=f"v{OPERATOR_FROM[0]}.{OPERATOR_FROM[1]}.0",
                opts=child_options(self, opts, depends_on=[self.machine_config]))
            self.migration = GpuModeMigration(f"{name}-mode-migration", cfg, kubeconfig,
                                              opts=child_options(self, opts, depends_on=[self.upgrade_before_operator]))
            before_upgrade = self.migration
        self.upgrade = TalosUpgrade(f"{name}-upgrade", **walk, opts=child_options(self, opts, depends_on=[before_upgrade]))
        self.register_outputs({
            "schematicId": self.schematic_id,
            "installerImage": self.installer_image,
            "configPatch": self.config_patch,
            "talosVersion": self.talos_version,
            "nodeAddress": self.node_address,
        })

    def _generated_config(self, name: str, cfg: StackConfig, machine_secrets: pulumi.Input[str] | None,
                          talosconfig: pulumi.Output[str], patches: list[str], kubeconfig: pulumi.Input[str] | None,
                          opts: pulumi.ResourceOptions | None) -> pulumi.Resource:
        """A new worker config from the machine secrets plus the user's
        patches, then the GPU patch (``talos.configSource: generated``)."""
        t = cfg.talos
        if machine_secrets is None:
            raise ConfigError([ConfigIssue("talosMachineSecrets", None, "required with talos.configSource: generated (the YAML of `talosctl gen secrets`)")])
        client = pulumi.Output.secret(talosconfig.apply(client_configuration_args))
        bundle = pulumi.Output.secret(pulumi.Output.secret(machine_secrets).apply(machine_secrets_args))
        # Pinned, or the running cluster's: never the provider's default.
        kubernetes_version: pulumi.Input[str] = t.kubernetes_version or pulumi.Output.from_input(kubeconfig).apply(cluster_kubernetes_version)
        base = talos.machine.get_configuration_output(
            cluster_name=t.cluster_name,
            cluster_endpoint=t.cluster_endpoint,
            machine_type="worker",
            machine_secrets=bundle,
            talos_version=t.version,
            kubernetes_version=kubernetes_version,
            docs=False,
            examples=False,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        return talos.machine.ConfigurationApply(
            f"{name}-apply",
            node=t.node_address,
            endpoint=t.talosctl_endpoint,
            client_configuration=client,
            machine_configuration_input=base.machine_configuration,
            # The user's patches first, as with `talosctl gen config --config-patch`.
            config_patches=[*patches, self.config_patch],
            # Destroying the stack must never reset (wipe) the node.
            on_destroy=talos.machine.ConfigurationApplyOnDestroyArgs(reset=False, graceful=True, reboot=False),
            # Children wait for what the component waits for (the VM).
            opts=child_options(self, opts, depends_on=[self.preflight]),
        )
