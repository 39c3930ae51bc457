"""The GPU node's machine-config patch (pure): NVIDIA kernel modules, the
toolkit's sysctl, containerd's default runtime, node labels and the install
section. DESIGN.md facts 8 and 9."""

from __future__ import annotations

import re
from typing import Any

import yaml

from components.config import StackConfig, parse_version

# DESIGN fact 8: the extension does not load these; the machine config must
# list them (siderolabs/extensions nvidia-gpu README; Talos NVIDIA guide).
NVIDIA_MODULES = ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")
# The container toolkit extension asks for this sysctl (same sources).
BPF_JIT_HARDEN = "net.core.bpf_jit_harden"
CRI_CUSTOMIZATION_PATH = "/etc/cri/conf.d/20-customization.part"


def cri_plugin_key(talos_version: str) -> str:
    """containerd's CRI runtime plugin key: containerd 2 (Talos 1.8 and newer,
    Talos 1.8 "What's new": containerd 2.0) moved it to
    ``io.containerd.cri.v1.runtime``; containerd 1.x used
    ``io.containerd.grpc.v1.cri``."""
    return "io.containerd.cri.v1.runtime" if parse_version(talos_version) >= (1, 8, 0) else "io.containerd.grpc.v1.cri"


def nvidia_default_runtime_toml(talos_version: str) -> str:
    """The CRI customization that makes ``nvidia`` containerd's default
    runtime, so pods get the GPU without ``runtimeClassName``."""
    key = cri_plugin_key(talos_version)
    return (
        "[plugins]\n"
        f'  [plugins."{key}"]\n'
        f'    [plugins."{key}".containerd]\n'
        '      default_runtime_name = "nvidia"\n'
    )


def gpu_patch(cfg: StackConfig, installer_image: str) -> dict[str, Any]:
    """The strategic-merge patch for the worker's machine config."""
    talos = cfg.talos
    machine: dict[str, Any] = {
        # install.* is read only at install and upgrade (fact 9): the upgrade
        # resource installs this image; wipe: false keeps the node's disks
        # (it may hold Ceph OSDs).
        "install": {"disk": talos.install_disk, "image": installer_image, "wipe": False},
        "kernel": {"modules": [{"name": name} for name in NVIDIA_MODULES]},
    }
    if talos.bpf_jit_harden:
        # Talos sysctl values are strings (the schema refuses a bare 1).
        machine["sysctls"] = {BPF_JIT_HARDEN: "1"}
    if talos.node_labels:
        machine["nodeLabels"] = dict(talos.node_labels)
    if talos.nvidia_default_runtime:
        machine["files"] = [{
            "op": "create",
            "path": CRI_CUSTOMIZATION_PATH,
            "permissions": 0o644,
            "content": nvidia_default_runtime_toml(talos.version),
        }]
    return {"machine": machine}


class _PatchDumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks (readable in diffs)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PatchDumper.add_representer(str, _represent_str)


def gpu_patch_yaml(cfg: StackConfig, installer_image: str) -> str:
    """:func:`gpu_patch` as YAML, keys in a stable, readable order."""
    return yaml.dump(gpu_patch(cfg, installer_image), Dumper=_PatchDumper, sort_keys=False, default_flow_style=False)


_FACTORY_INSTALLER = re.compile(r"^factory\.talos\.dev/(?:(?P<platform>[a-z0-9-]+)-)?installer/(?P<id>[0-9a-f]{64}):(?P<version>v\d+\.\d+\.\d+)$")


def patch_problems(patch: dict[str, Any], cfg: StackConfig) -> list[str]:
    """What the Talos schema cannot see but would leave the node without a
    working GPU or at risk; empty when the patch is sound. Each line says why."""
    problems: list[str] = []
    machine = patch.get("machine") or {}
    install = machine.get("install") or {}
    image = str(install.get("image", ""))
    match = _FACTORY_INSTALLER.match(image)
    if not match:
        problems.append(f"install.image {image!r} is not an Image Factory installer: the NVIDIA extensions would not be installed")
    else:
        if match["version"] != cfg.talos.version:
            problems.append(f"install.image is for Talos {match['version']} but talos.version is {cfg.talos.version} (fact 16: versions must agree)")
        if parse_version(cfg.talos.version) >= (1, 10, 0) and match["platform"] != cfg.talos.platform:
            problems.append(
                f"install.image {image!r} is not the {cfg.talos.platform}-installer form; from Talos v1.10 the generic "
                "installer/ form loses the platform's kernel arguments")
    if install.get("wipe") is not False:
        problems.append("install.wipe must be false: this node's disks may hold Ceph OSDs")
    modules = {item.get("name") for item in (machine.get("kernel") or {}).get("modules") or [] if isinstance(item, dict)}
    missing = [name for name in NVIDIA_MODULES if name not in modules]
    if missing:
        problems.append(f"kernel.modules lacks {', '.join(missing)}: the extension does not load them (fact 8)")
    return problems
