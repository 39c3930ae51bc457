"""GpuReadiness: the gate at the end of the graph."""

from __future__ import annotations

import pulumi
from pulumi.dynamic import Resource

from components.cluster import advertised_resource
from components.config import StackConfig
from components.flux.objects import release_ref
from components.options import child_options
from components.readiness.gate import GateSpec
from components.readiness.provider import GpuReadinessProvider

POLL_SECONDS = 5.0
MAX_POLL_SECONDS = 30.0


class GpuReadinessGate(Resource, module="readiness", name="GpuReadinessGate"):
    """The dynamic resource that waits (GpuReadinessProvider)."""

    allocatable: pulumi.Output[int]
    product: pulumi.Output[str]
    driverVersion: pulumi.Output[str]  # noqa: N815 - the provider's output name


class GpuReadiness(pulumi.ComponentResource):
    """Waits (bounded by readiness.timeoutSeconds) until the node advertises
    ``advertised_resource(cfg)`` (``nvidia.com/gpu``, or
    ``nvidia.com/gpu.shared`` with renameByDefault) = ``cfg.advertised_gpus``
    and GPU Feature Discovery has
    labelled the product; otherwise `pulumi up` fails naming the missing layer.
    With ``gpuStack.delivery: flux`` it also waits for the HelmRelease's Ready
    condition and names Flux's reason while it is not. In preview nothing runs (the engine only checks and diffs).

    With ``readiness.enabled: false`` no child is registered and the outputs
    are None."""

    allocatable: pulumi.Output[int]
    product: pulumi.Output[str]
    driver_version: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, kubeconfig: pulumi.Input[str] | None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("proxmox-talos-gpu:readiness:GpuReadiness", name, None, opts)
        self.gate: GpuReadinessGate | None = None
        if cfg.readiness.enabled:
            self.gate = GpuReadinessGate(
                GpuReadinessProvider(),
                f"{name}-gate",
                {
                    **GateSpec(
                        node_name=cfg.node_name, gpus=len(cfg.gpus), expected_gpus=cfg.advertised_gpus,
                        resource=advertised_resource(cfg), config_key=cfg.config_key, namespace=cfg.gpu_stack.namespace,
                        # flux delivery: the node's GPUs come from this HelmRelease.
                        helm_release=release_ref(cfg) if cfg.gpu_stack.delivery == "flux" else None,
                        timeout_seconds=cfg.readiness.timeout_seconds, poll_seconds=POLL_SECONDS,
                        max_poll_seconds=MAX_POLL_SECONDS,
                    ).to_dict(),
                    # Secret end to end; the provider reads it per call, never keeps it.
                    "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
                    "allocatable": None,
                    "product": None,
                    "driverVersion": None,
                },
                # Waits for what the component waits for (the GPU stack).
                child_options(self, opts, additional_secret_outputs=["kubeconfig"]),
            )
            self.allocatable = self.gate.allocatable
            self.product = self.gate.product
            self.driver_version = self.gate.driverVersion
        else:
            self.allocatable = pulumi.Output.from_input(None)  # type: ignore[assignment]
            self.product = pulumi.Output.from_input(None)  # type: ignore[assignment]
            self.driver_version = pulumi.Output.from_input(None)  # type: ignore[assignment]
        self.register_outputs({
            "allocatable": self.allocatable,
            "product": self.product,
            "driverVersion": self.driver_version,
        })
