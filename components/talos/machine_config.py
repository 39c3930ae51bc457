"""The GPU node's machine-config values (pure): NVIDIA kernel modules, the
toolkit's sysctl, containerd's default runtime, node labels and the install
section, for the Talos version the node will run; and the patch of a
generated config built from them.

What the Talos NVIDIA guide of each version sets (siderolabs/docs,
talos/v1.11 and v1.12 nvidia-gpu-proprietary.mdx: the four modules, sysctl
``net.core.bpf_jit_harden: 1`` and, optionally, ``nvidia`` as containerd's
default runtime in ``/etc/cri/conf.d/20-customization.part``; v1.13, with the
CDI toolkit (siderolabs/extensions c5480f9, "switch to CDI"): the four
modules only). ``talos.bpfJitHarden`` and ``talos.nvidiaDefaultRuntime``
override the guide for every version when set."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from components.config import StackConfig, TalosConfig, parse_version
from components.talos.schematic import installer_image

# The extension does not load these (README row 8); the machine config must
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


# The first Talos release whose NVIDIA guide sets neither the sysctl nor the
# default runtime (the CDI toolkit; see the module docstring).
CDI_TOOLKIT_FROM = (1, 13, 0)


def guide_sets_toolkit_tweaks(version: str) -> bool:
    """Whether the Talos NVIDIA guide of ``version`` sets
    ``net.core.bpf_jit_harden: 1`` and ``nvidia`` as the default runtime."""
    return parse_version(version) < CDI_TOOLKIT_FROM


def bpf_jit_harden_on(talos: TalosConfig | _Overrides, version: str) -> bool:
    return guide_sets_toolkit_tweaks(version) if talos.bpf_jit_harden is None else talos.bpf_jit_harden


def default_runtime_on(talos: TalosConfig | _Overrides, version: str) -> bool:
    return guide_sets_toolkit_tweaks(version) if talos.nvidia_default_runtime is None else talos.nvidia_default_runtime


@dataclass(frozen=True)
class OwnedValues:
    """What this program sets in a node's machine config at one Talos
    version; everything else belongs to the node."""

    version: str
    image: str
    node_labels: Mapping[str, str]
    bpf_jit_harden: bool
    default_runtime: bool
    modules: tuple[str, ...] = NVIDIA_MODULES

    @property
    def sysctls(self) -> dict[str, str]:
        # Talos sysctl values are strings (the schema refuses a bare 1).
        return {BPF_JIT_HARDEN: "1"} if self.bpf_jit_harden else {}

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "image": self.image, "nodeLabels": dict(self.node_labels),
                "bpfJitHarden": self.bpf_jit_harden, "defaultRuntime": self.default_runtime}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OwnedValues:
        return cls(version=str(data["version"]), image=str(data["image"]),
                   node_labels={str(k): str(v) for k, v in dict(data.get("nodeLabels") or {}).items()},
                   bpf_jit_harden=bool(data["bpfJitHarden"]), default_runtime=bool(data["defaultRuntime"]))


def owned_values(talos: TalosConfig, version: str, image: str) -> OwnedValues:
    """The owned values for a node that will run Talos ``version`` from
    ``image`` (the target, or a step on the way to it)."""
    return OwnedValues(version=version, image=image, node_labels=dict(talos.node_labels),
                       bpf_jit_harden=bpf_jit_harden_on(talos, version), default_runtime=default_runtime_on(talos, version))


@dataclass(frozen=True)
class NodeSpec:
    """What the node should end up running, in a form a dynamic provider
    can carry (JSON): enough to compute the owned values at any Talos version
    on the way (``owned``)."""

    target_version: str
    schematic_id: str
    platform: str
    node_labels: Mapping[str, str]
    bpf_jit_harden: bool | None
    nvidia_default_runtime: bool | None

    def owned(self, version: str) -> OwnedValues:
        talos = _Overrides(self.bpf_jit_harden, self.nvidia_default_runtime)
        return OwnedValues(version=version, image=installer_image(self.schematic_id, version, self.platform),
                           node_labels=dict(self.node_labels), bpf_jit_harden=bpf_jit_harden_on(talos, version),
                           default_runtime=default_runtime_on(talos, version))

    @property
    def target(self) -> OwnedValues:
        return self.owned(self.target_version)

    def to_dict(self) -> dict[str, Any]:
        return {"targetVersion": self.target_version, "schematicId": self.schematic_id, "platform": self.platform,
                "nodeLabels": dict(self.node_labels), "bpfJitHarden": self.bpf_jit_harden,
                "nvidiaDefaultRuntime": self.nvidia_default_runtime}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeSpec:
        return cls(target_version=str(data["targetVersion"]), schematic_id=str(data["schematicId"]), platform=str(data["platform"]),
                   node_labels={str(k): str(v) for k, v in dict(data.get("nodeLabels") or {}).items()},
                   bpf_jit_harden=data.get("bpfJitHarden"), nvidia_default_runtime=data.get("nvidiaDefaultRuntime"))


@dataclass(frozen=True)
class _Overrides:
    bpf_jit_harden: bool | None
    nvidia_default_runtime: bool | None


def node_spec(talos: TalosConfig, schematic_id: str) -> NodeSpec:
    return NodeSpec(target_version=talos.version, schematic_id=schematic_id, platform=talos.platform,
                    node_labels=dict(talos.node_labels), bpf_jit_harden=talos.bpf_jit_harden,
                    nvidia_default_runtime=talos.nvidia_default_runtime)


def gpu_patch(cfg: StackConfig, installer_image: str) -> dict[str, Any]:
    """The strategic-merge patch for a generated worker config."""
    talos = cfg.talos
    owned = owned_values(talos, talos.version, installer_image)
    machine: dict[str, Any] = {
        # install.* is read only at install and upgrade (README row 9): the upgrade
        # resource installs this image; wipe: false keeps the node's disks
        # (it may hold Ceph OSDs).
        "install": {"disk": talos.install_disk, "image": owned.image, "wipe": False},
        "kernel": {"modules": [{"name": name} for name in owned.modules]},
    }
    if owned.sysctls:
        machine["sysctls"] = owned.sysctls
    if owned.node_labels:
        machine["nodeLabels"] = dict(owned.node_labels)
    if owned.default_runtime:
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
            problems.append(f"install.image is for Talos {match['version']} but talos.version is {cfg.talos.version} (README, 'What the guide gets wrong', row 16: versions must agree)")
        if parse_version(cfg.talos.version) >= (1, 10, 0) and match["platform"] != cfg.talos.platform:
            problems.append(
                f"install.image {image!r} is not the {cfg.talos.platform}-installer form; from Talos v1.10 the generic "
                "installer/ form loses the platform's kernel arguments")
    if install.get("wipe") is not False:
        problems.append("install.wipe must be false: this node's disks may hold Ceph OSDs")
    modules = {item.get("name") for item in (machine.get("kernel") or {}).get("modules") or [] if isinstance(item, dict)}
    missing = [name for name in NVIDIA_MODULES if name not in modules]
    if missing:
        problems.append(f"kernel.modules lacks {', '.join(missing)}: the extension does not load them (README, 'What the guide gets wrong', row 8)")
    return problems
