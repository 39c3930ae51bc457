"""GpuStack: the cluster side of one GPU node.

The owner stack (gpuStack.ownsClusterObjects) creates the cluster-wide
objects: the namespace, the shared time-slicing ConfigMap (with its own key),
the Helm release and, in device-plugin mode, the RuntimeClass. Every stack,
owner or not, labels its node with the config key it wants; non-owner stacks
add their key to the shared ConfigMap by server-side apply with their own
field manager, so no stack overwrites another's entry. With
gpuStack.prometheusOperator the owner also creates the GPU dashboard's
ConfigMap and the alert rules (components.monitoring).

With ``gpuStack.delivery: flux`` the release is a Flux HelmRepository +
HelmRelease (components.flux) instead, created only after a read-only check
that the cluster serves the Flux APIs; with ``gpuStack.flux.objects: git``
those objects, the namespace and the ConfigMap come from the user's Git
repository (`render --flux`) and this component only labels the node.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import cluster
from components.config import StackConfig
from components.flux.preflight import FluxPreflight
from components.flux.resources import flux_helm_release
from components.gpu_migration_facts import OWNER_LABEL
from components.monitoring.resources import monitoring_resources
from components.options import child_options


class GpuStack(pulumi.ComponentResource):
    config_map_name: str
    config_key: str
    release_name: pulumi.Output[str] | None
    chart_version: str

    def __init__(self, name: str, cfg: StackConfig, kubeconfig: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("proxmox-talos-gpu:kubernetes:GpuStack", name, None, opts)
        stack = cfg.gpu_stack
        chart = cluster.helm_chart(cfg)
        manager = cluster.field_manager(cfg)
        self.config_map_name = stack.config_map_name
        self.config_key = cfg.config_key
        self.chart_version = chart.version
        config_data = {cfg.config_key: cluster.device_plugin_config_yaml(cfg)}

        # Flux delivery: nothing is created before the cluster proved to serve the Flux APIs.
        flux_checked: list[pulumi.Resource] = []
        if stack.delivery == "flux":
            flux_checked.append(FluxPreflight(f"{name}-flux-preflight", kubeconfig, opts=child_options(self, opts)))

        release: pulumi.CustomResource | None = None
        label_waits_for: list[pulumi.Resource]
        if stack.delivery == "flux" and stack.flux.objects == "git":
            # Namespace, ConfigMap entries and Flux objects are in the user's
            # Git repository (`render --flux`); Flux applies them.
            label_waits_for = flux_checked
        elif stack.owns_cluster_objects:
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=stack.namespace, labels=cluster.PRIVILEGED_NAMESPACE_LABELS),
                opts=child_options(self, opts, depends_on=flux_checked),
            )
            config_map = k8s.core.v1.ConfigMap(
                f"{name}-time-slicing",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=stack.config_map_name, namespace=namespace.metadata.name),
                data=config_data,
                # With server-side apply (the provider's default) this stack's
                # field manager owns only this key; the keys other node stacks
                # add under their own managers survive its updates.
                opts=child_options(self, opts),
            )
            waits_for: list[pulumi.Resource] = [config_map]
            if stack.mode == "devicePlugin":
                # Only this path creates the RuntimeClass: the operator creates
                # and owns its own (README row 15). Labelled, so the mode migration
                # knows it as this program's; retained, because after a switch
                # to the operator a late delete by name would remove the
                # operator's RuntimeClass of the same name (the migration
                # removes this one before the upgrade to Talos 1.13).
                waits_for.append(k8s.node.v1.RuntimeClass(
                    f"{name}-runtime-class",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=cluster.RUNTIME_CLASS, labels=dict([OWNER_LABEL])),
                    handler=cluster.RUNTIME_CLASS,
                    opts=child_options(self, opts, depends_on=flux_checked, retain_on_delete=True),
                ))
            if stack.delivery == "flux":
                release = flux_helm_release(self, name, cfg, namespace.metadata.name, opts, checked=flux_checked, waits_for=waits_for)
            else:
                release = k8s.helm.v3.Release(
                    f"{name}-{chart.release_name}",
                    name=chart.release_name,
                    chart=chart.chart,
                    version=chart.version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                    namespace=namespace.metadata.name,
                    values=chart.values,
                    timeout=900,
                    opts=child_options(self, opts, depends_on=waits_for),
                )
            # The GPU dashboard and alert rules (prometheusOperator: true only).
            monitoring_resources(self, name, cfg, pulumi.get_stack(), namespace.metadata.name, opts, flux_checked)
            label_waits_for = [config_map]
        else:
            patch = k8s.core.v1.ConfigMapPatch(
                f"{name}-time-slicing-entry",
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name=stack.config_map_name,
                    namespace=stack.namespace,
                    annotations={"pulumi.com/patchFieldManager": manager},
                ),
                data=config_data,
                opts=child_options(self, opts, depends_on=flux_checked),
            )
            label_waits_for = [patch]

        # Label the node only once its config key exists: the device plugin
        # fails on a label naming a missing key.
        node_label = k8s.core.v1.NodePatch(
            f"{name}-node-config-label",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=cfg.node_name,
                labels=cluster.node_labels(cfg),
                annotations={"pulumi.com/patchFieldManager": manager},
            ),
            opts=child_options(self, opts, depends_on=label_waits_for),
        )

        self.release_name = pulumi.Output.from_input(chart.release_name) if release else None
        self.node_label = node_label
        self.register_outputs({
            "mode": stack.mode,
            "delivery": stack.delivery,
            "ownsClusterObjects": stack.owns_cluster_objects,
            "configMap": f"{stack.namespace}/{stack.config_map_name}",
            "configKey": cfg.config_key,
            "chartVersion": chart.version if release else None,
            "advertisedGpus": cfg.advertised_gpus,
        })
