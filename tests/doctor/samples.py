"""Healthy observations of the reference stack (Tesla T4 on pve5, moody-good),
and helpers to break one thing at a time."""

from __future__ import annotations

import copy
import json
from typing import Any

from components.config import StackConfig, parse_stack_config
from tests.conftest import stack_file_config
from tests.doctor.fakecli import data
from tools.doctor.model import (
    HostObservation,
    KubernetesObservation,
    Output,
    PciFunctionState,
    ProxmoxObservation,
    TalosObservation,
    WorkloadObservation,
)


def homelab_cfg(**sections: Any) -> StackConfig:
    """The reference stack, with whole top-level sections merged in."""
    raw = copy.deepcopy(stack_file_config("homelab"))
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_stack_config(raw)


def gpus_with_group(group: int = 27) -> list[dict[str, Any]]:
    """The reference stack's GPUs with the IOMMU group a stack without the
    `host` section must set itself."""
    return [{**gpu, "iommuGroup": group} for gpu in stack_file_config("homelab")["gpus"]]


def host_ok() -> HostObservation:
    return HostObservation(
        host="pve5.lan",
        iommu_active=True,
        functions={"0000:3b:00.0": PciFunctionState("vfio-pci", "10de:1eb8", ("nvidiafb", "nouveau"))},
        nvidia_devices={"0000:3b:00.0": "10de:1eb8"},
    )


def proxmox_ok() -> ProxmoxObservation:
    return ProxmoxObservation("pve5.lan", Output(data("qm-config.mapping.txt")))


def talos_ok() -> TalosObservation:
    return TalosObservation(
        nvidia_version=Output(data("nvidia-version.proprietary.txt")),
        modules=Output(data("proc-modules.txt")),
        extensions=Output(data("talos-extensions.yaml")),
    )


def node_json(**changes: Any) -> str:
    """The node, with ``labels`` / ``allocatable`` entries replaced (None deletes)."""
    document = json.loads(data("node-moody-good.json"))
    for section, target in (("labels", document["metadata"]["labels"]), ("allocatable", document["status"]["allocatable"])):
        for key, value in changes.get(section, {}).items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return json.dumps(document)


def pods_json(name: str, **container_status: Any) -> str:
    """The gpu-operator pods, with one pod's first container status changed."""
    document = json.loads(data("pods-gpu-operator.json"))
    for item in document["items"]:
        if item["metadata"]["name"] == name:
            item["status"]["containerStatuses"][0].update(container_status)
    return json.dumps(document)


def kubernetes_ok() -> KubernetesObservation:
    return KubernetesObservation(node=Output(data("node-moody-good.json")), pods=Output(data("pods-gpu-operator.json")))


def jellyfin_pods(limits: dict[str, str] | None = None, phase: str = "Running") -> str:
    document = json.loads(data("pods-jellyfin.json"))
    pod = document["items"][0]
    if limits is not None:
        pod["spec"]["containers"][0]["resources"] = {"limits": limits}
    pod["status"]["phase"] = phase
    return json.dumps(document)


# ffmpeg -loglevel error prints nothing when the encode works.
T4_PROBES = {"h264_nvenc": Output(""), "hevc_nvenc": Output("")}


def workload_ok() -> WorkloadObservation:
    return WorkloadObservation(pods=Output(data("pods-jellyfin.json")), nvidia_smi=Output(data("nvidia-smi.t4.txt")),
                               encoders=Output(data("ffmpeg-encoders.txt")), nvenc_probes=dict(T4_PROBES))
