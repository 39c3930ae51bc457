"""Which changes of a machine config make Talos reboot. ``REBOOT_FREE``
lists what Talos applies without a reboot (Talos source ``CanApplyImmediate``,
internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go, the same list
in the docs' editing-machine-configuration page of each version)."""

from __future__ import annotations

from typing import Any

from components.config import parse_version
from components.talos.config_documents import v1alpha1_index

# What Talos applies without a reboot (v1alpha1 document), per first minor
# of a list; every other v1alpha1 change reboots the node in `--mode=auto`.
# Documents other than v1alpha1 never need a reboot.
_REBOOT_FREE_MACHINE = ("ca", "acceptedCAs", "time", "certCANs", "install", "network", "sysfs", "sysctls", "logging",
                        "controlplane", "kubelet", "kernel", "registries", "pods", "seccompProfiles", "nodeAnnotations",
                        "nodeLabels", "nodeTaints")
REBOOT_FREE: dict[tuple[int, int], dict[str, tuple[str, ...]]] = {
    (1, 8): {"top": ("debug", "cluster"), "machine": _REBOOT_FREE_MACHINE,
             "features": ("kubernetesTalosAPIAccess", "kubePrism", "localDNS")},
    (1, 9): {"top": ("debug", "cluster"), "machine": _REBOOT_FREE_MACHINE,
             "features": ("kubernetesTalosAPIAccess", "kubePrism", "hostDNS", "imageCache", "nodeAddressSortAlgorithm")},
}


def _reboot_free(version: str) -> dict[str, tuple[str, ...]]:
    major, minor, _ = parse_version(version)
    keys = [key for key in REBOOT_FREE if key <= (major, minor)]
    return REBOOT_FREE[max(keys)] if keys else REBOOT_FREE[min(REBOOT_FREE)]


def reboot_paths(before: list[dict[str, Any]], after: list[dict[str, Any]], running_version: str) -> list[str]:
    """The changed v1alpha1 paths that Talos ``running_version`` cannot apply
    without a reboot."""
    free = _reboot_free(running_version)
    old, new = before[v1alpha1_index(before)], after[v1alpha1_index(after)]
    paths: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key in free["top"] or key == "machine" or old.get(key) == new.get(key):
            continue
        paths.append(f".{key}")
    old_machine, new_machine = old.get("machine") or {}, new.get("machine") or {}
    for key in sorted(set(old_machine) | set(new_machine)):
        if old_machine.get(key) == new_machine.get(key) or key in free["machine"]:
            continue
        if key == "features":
            of, nf = old_machine.get(key) or {}, new_machine.get(key) or {}
            paths += [f".machine.features.{name}" for name in sorted(set(of) | set(nf))
                      if of.get(name) != nf.get(name) and name not in free["features"]]
        else:
            paths.append(f".machine.{key}")
    return paths
