"""One GPU node, in graph order: Proxmox host VFIO preparation -> passthrough
VM -> Talos node -> GPU stack in Kubernetes. See README.md."""

import pulumi

from components.config import load_secrets, load_stack_config
from components.gpu_stack import GpuStack
from components.providers import make_providers
from components.vm import GpuVm

cfg = load_stack_config()
secrets = load_secrets(cfg)
providers = make_providers(cfg, secrets)

vm = GpuVm(cfg.vm.name, cfg, opts=pulumi.ResourceOptions(providers=[providers.proxmox]))
gpu_stack = GpuStack(
    f"{cfg.node_name}-gpu-stack", cfg,
    opts=pulumi.ResourceOptions(providers=[providers.kubernetes], depends_on=[vm]),
)

pulumi.export("vmId", vm.vm_id)
pulumi.export("hostpciSlots", vm.slots)
pulumi.export("advertisedGpus", cfg.advertised_gpus)
pulumi.export("gpuStackMode", cfg.gpu_stack.mode)
