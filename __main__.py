"""One GPU node, in graph order: Proxmox host VFIO preparation -> passthrough
VM -> Talos node with the NVIDIA extensions -> GPU stack in Kubernetes ->
readiness gate -> the GPU's consumers. See README.md."""

import pulumi

from components.config.engine import load_secrets, load_stack_config
from components.consumers.component import JellyfinTranscoding
from components.gpu_stack import GpuStack
from components.hostprep.component import HostVfioPrep
from components.program import require_engine
from components.providers import make_providers
from components.readiness.component import GpuReadiness
from components.talos.component import TalosGpuNode
from components.vm import GpuVm

require_engine()  # `python __main__.py` by hand: one line saying what to run instead
cfg = load_stack_config()
secrets = load_secrets(cfg)
providers = make_providers(cfg, secrets)

host = HostVfioPrep(cfg.proxmox.node, cfg, secrets.ssh_private_key, kubeconfig=secrets.kubeconfig)
vm = GpuVm(
    cfg.vm.name, cfg, iommu_groups=host.iommu_groups, subsystem_ids=host.subsystem_ids,
    api_token=secrets.proxmox_api_token, password=secrets.proxmox_password, kubeconfig=secrets.kubeconfig,
    opts=pulumi.ResourceOptions(providers=[providers.proxmox], depends_on=[host]),
)
node = TalosGpuNode(
    f"{cfg.node_name}-talos", cfg, secrets.talos_machine_secrets, secrets.talos_client_configuration,
    kubeconfig=secrets.kubeconfig, opts=pulumi.ResourceOptions(depends_on=[vm]),
)
gpu_stack = GpuStack(
    f"{cfg.node_name}-gpu-stack", cfg, kubeconfig=secrets.kubeconfig,
    opts=pulumi.ResourceOptions(providers=[providers.kubernetes], depends_on=[node]),
)
ready = GpuReadiness(f"{cfg.node_name}-readiness", cfg, secrets.kubeconfig, opts=pulumi.ResourceOptions(depends_on=[gpu_stack]))
if cfg.jellyfin.enabled:
    jellyfin = JellyfinTranscoding(
        f"{cfg.node_name}-jellyfin", cfg, secrets.jellyfin_api_key,
        opts=pulumi.ResourceOptions(depends_on=[ready]),
    )
    pulumi.export("jellyfinChangedSettings", jellyfin.changed_settings)
    pulumi.export("jellyfinDecodeCodecs", jellyfin.decode_codecs)

pulumi.export("hostRebooted", host.rebooted)
pulumi.export("gpuDrivers", host.drivers)
pulumi.export("vmId", vm.vm_id)
pulumi.export("hostpciSlots", vm.slots)
pulumi.export("schematicId", node.schematic_id)
pulumi.export("installerImage", node.installer_image)
pulumi.export("advertisedGpus", cfg.advertised_gpus)
pulumi.export("gpuStackMode", cfg.gpu_stack.mode)
pulumi.export("allocatableGpus", ready.allocatable)
pulumi.export("gpuProduct", ready.product)
pulumi.export("driverVersion", ready.driver_version)
