"""The GPU stack as Flux objects, built from the same plan as the Helm
delivery (components.cluster): pure functions, no Pulumi, no I/O.

GpuStack registers these objects in `gpuStack.delivery: flux`, and
`python -m components.render --flux DIR` writes them as files for a GitOps
repository, so both carry the same chart, version and values as the Helm
delivery by construction.

Upstream references (their CRDs are vendored in tests/data/upstream/flux/ and
every object here is validated against them):

- HelmRelease ``helm.toolkit.fluxcd.io/v2``: fluxcd/helm-controller v1.6.3,
  docs/spec/v2/helmreleases.md ("Install configuration", "Upgrade
  configuration", "Drift detection", "Timeout").
- HelmRepository ``source.toolkit.fluxcd.io/v1``: fluxcd/source-controller
  v1.9.1, docs/spec/v1/helmrepositories.md (`type: default` is an HTTP/S
  repository; without `interval` the index is fetched every minute).
- Kustomization ``kustomize.toolkit.fluxcd.io/v1``: fluxcd/kustomize-controller
  v1.9.4, docs/spec/v1/kustomizations.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components import cluster
from components.config import ConfigError, ConfigIssue, StackConfig
from components.consumers.workload import gpu_workload_spec
from components.monitoring.artifacts import flux_resources as monitoring_resources

HELM_RELEASE_API = "helm.toolkit.fluxcd.io/v2"
HELM_REPOSITORY_API = "source.toolkit.fluxcd.io/v1"
KUSTOMIZATION_API = "kustomize.toolkit.fluxcd.io/v1"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"

# The HelmRelease's Helm actions may take as long as the Helm delivery waits
# (GpuStack: 900 s): the operator's install pulls its images and starts NFD.
RELEASE_TIMEOUT = "15m"
RELEASE_INTERVAL = "30m"
# Failed installs are uninstalled and retried, failed upgrades rolled back
# and retried, up to this many times; then the release stalls (Stalled:
# RetriesExceeded) until the spec changes.
REMEDIATION_RETRIES = 3
# The chart version is pinned; the index (NGC's is large) is re-read hourly
# instead of the controller's default of every minute.
REPOSITORY_INTERVAL = "1h"
# ks.yaml waits for everything it applies, the HelmRelease included.
KUSTOMIZATION_INTERVAL = "30m"
KUSTOMIZATION_TIMEOUT = "20m"
# One name in both GPU stack modes: the switch from the device plugin to the
# GPU Operator then changes what this Kustomization applies, and Flux prunes
# only what Git no longer lists. A name per mode would make the parent
# Kustomization prune the old one, whose garbage collection deletes its whole
# inventory (the namespace included) while the new one applies it.
KUSTOMIZATION_NAME = "nvidia-gpu"

# The names NVIDIA's install guides give these repositories
# (`helm repo add nvidia https://helm.ngc.nvidia.com/nvidia`,
# `helm repo add nvdp https://nvidia.github.io/k8s-device-plugin`).
REPOSITORY_NAMES = {cluster.OPERATOR_REPO: "nvidia", cluster.DEVICE_PLUGIN_REPO: "nvdp"}

# The Jellyfin HelmRelease the values patch targets (the guide's name).
JELLYFIN_RELEASE = "jellyfin"


def helm_repository(cfg: StackConfig) -> dict[str, Any]:
    """The chart's source: an HTTP Helm repository (README row 12: NGC, not
    ``oci://ghcr.io``), in the GPU stack's namespace."""
    chart = cluster.helm_chart(cfg)
    return {
        "apiVersion": HELM_REPOSITORY_API,
        "kind": "HelmRepository",
        "metadata": {"name": REPOSITORY_NAMES[chart.repo], "namespace": cfg.gpu_stack.namespace},
        "spec": {"type": "default", "url": chart.repo, "interval": REPOSITORY_INTERVAL},
    }


def helm_release(cfg: StackConfig) -> dict[str, Any]:
    """The HelmRelease: the Helm delivery's chart, version and values
    (cluster.helm_chart), with Flux's remediation and drift correction."""
    chart = cluster.helm_chart(cfg)
    repository = helm_repository(cfg)
    return {
        "apiVersion": HELM_RELEASE_API,
        "kind": "HelmRelease",
        "metadata": {"name": chart.release_name, "namespace": cfg.gpu_stack.namespace},
        "spec": {
            "interval": RELEASE_INTERVAL,
            "releaseName": chart.release_name,
            "chart": {"spec": {
                "chart": chart.chart,
                "version": chart.version,
                "sourceRef": {"kind": repository["kind"], "name": repository["metadata"]["name"]},
            }},
            "timeout": RELEASE_TIMEOUT,
            # CreateReplace: the operator's CRDs (ClusterPolicy, NVIDIADriver)
            # follow the chart on upgrades too; Helm alone never updates them.
            "install": {"crds": "CreateReplace", "remediation": {"retries": REMEDIATION_RETRIES}},
            "upgrade": {"crds": "CreateReplace",
                        "remediation": {"retries": REMEDIATION_RETRIES, "strategy": "rollback", "remediateLastFailure": True}},
            # Undo kubectl edits of what the chart installed.
            "driftDetection": {"mode": "enabled"},
            "values": chart.values,
        },
    }


def release_ref(cfg: StackConfig) -> dict[str, str]:
    """Namespace and name of the HelmRelease the readiness gate waits for."""
    metadata = helm_release(cfg)["metadata"]
    return {"namespace": metadata["namespace"], "name": metadata["name"]}


def flux_kustomization(cfg: StackConfig) -> dict[str, Any]:
    """ks.yaml: the Flux Kustomization that applies app/ from the user's
    GitRepository. Raises ConfigError without ``gpuStack.flux.path``."""
    flux = cfg.gpu_stack.flux
    if flux.path is None:
        raise ConfigError([ConfigIssue(
            "gpuStack.flux.path", None,
            "required for render --flux: the app/ folder's path in the Git repository that gpuStack.flux.gitRepository "
            "reads, e.g. ./kubernetes/homelab/apps/base/nvidia-gpu-operator/app")])
    return {
        "apiVersion": KUSTOMIZATION_API,
        "kind": "Kustomization",
        "metadata": {"name": KUSTOMIZATION_NAME, "namespace": flux.namespace},
        "spec": {
            "interval": KUSTOMIZATION_INTERVAL,
            "path": flux.path,
            "prune": True,
            "wait": True,
            "timeout": KUSTOMIZATION_TIMEOUT,
            "sourceRef": {"kind": "GitRepository", "name": flux.git_repository},
        },
    }


def _app_resources(cfg: StackConfig, stack: str) -> dict[str, dict[str, Any]]:
    """app/'s objects by file name, in the order app/kustomization.yaml lists them."""
    resources = {
        "namespace.yaml": cluster.namespace_manifest(cfg),
        "helm-repository.yaml": helm_repository(cfg),
        "time-slicing-config.yaml": cluster.time_slicing_config_map(cfg),
    }
    if cfg.gpu_stack.mode == "devicePlugin":
        resources["runtime-class.yaml"] = cluster.runtime_class_manifest()
    resources["helm-release.yaml"] = helm_release(cfg)
    resources.update(monitoring_resources(cfg, stack))  # dashboard, alert rules
    return resources


ENTRY_PATCH_PREFIX, ENTRY_PATCH_SUFFIX = "time-slicing-config.", ".yaml"


def config_entry_patch_name(cfg: StackConfig) -> str:
    """The file a non-owner stack's ConfigMap entry goes in (app/)."""
    return f"{ENTRY_PATCH_PREFIX}{cfg.config_key}{ENTRY_PATCH_SUFFIX}"


def is_entry_patch(file_name: str) -> bool:
    """A non-owner stack's entry file (not the owner's time-slicing-config.yaml)."""
    return (file_name.startswith(ENTRY_PATCH_PREFIX) and file_name.endswith(ENTRY_PATCH_SUFFIX)
            and len(file_name) > len(ENTRY_PATCH_PREFIX) + len(ENTRY_PATCH_SUFFIX))


def jellyfin_values_patch(cfg: StackConfig) -> dict[str, Any]:
    """Jellyfin's HelmRelease with only the app-template GPU values, as a
    kustomize patch (components.consumers.workload)."""
    return {
        "apiVersion": HELM_RELEASE_API,
        "kind": "HelmRelease",
        "metadata": {"name": JELLYFIN_RELEASE, "namespace": cfg.jellyfin.namespace},
        "spec": {"values": gpu_workload_spec(cfg).app_template_values()},
    }


FluxTree = dict[str, tuple[str, dict[str, Any]]]


def flux_tree(cfg: StackConfig, stack: str, entry_patches: Sequence[str] = ()) -> FluxTree:
    """The files of `render --flux`: relative path -> (comment header,
    document). The owner stack gets the guide's layout (ks.yaml, app/...),
    its app/kustomization.yaml patching in ``entry_patches`` (the other node
    stacks' entry files found in app/), and the Jellyfin values patch for its
    node; a non-owner stack only its ConfigMap entry, as such a patch (so
    node stacks can render into the same folder)."""
    made = f"# Made by `python -m components.render --stack {stack} --flux` from Pulumi.{stack}.yaml; change the stack and render again.\n"
    tree: FluxTree = {}
    if cfg.gpu_stack.owns_cluster_objects:
        tree["ks.yaml"] = (made + "# List this file in the kustomization.yaml of the folder above (the guide's apps/base/kustomization.yaml).\n",
                           flux_kustomization(cfg))
        resources = _app_resources(cfg, stack)
        kustomization: dict[str, Any] = {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": list(resources)}
        others = sorted(name for name in entry_patches if is_entry_patch(name) and name != config_entry_patch_name(cfg))
        if others:
            # Other nodes' entries, merged into the ConfigMap (strategic merge).
            kustomization["patches"] = [{"path": name} for name in others]
        tree["app/kustomization.yaml"] = (made, kustomization)
        for name, document in resources.items():
            tree[f"app/{name}"] = (made, document)
    else:
        patch = config_entry_patch_name(cfg)
        tree[f"app/{patch}"] = (
            made + "# This node's entry in the owner stack's time-slicing ConfigMap, for the owner's app/ folder. Rendering\n"
                   "# the owner stack into the same folder lists it in app/kustomization.yaml; by hand, add it there:\n"
                   f"#   patches:\n#     - path: {patch}\n",
            cluster.time_slicing_config_map(cfg))
        return tree
    tree["jellyfin-gpu-values.yaml"] = (
        made + "# Not part of the GPU stack: the GPU values for Jellyfin's app-template HelmRelease, as a kustomize patch.\n"
               "# Put it in Jellyfin's own Flux folder (the guide's apps/base/jellyfin/app/) and add it to that folder's\n"
               "# kustomization.yaml:\n#   patches:\n#     - path: jellyfin-gpu-values.yaml\n"
               "# It merges into spec.values of the HelmRelease named below (rename it if yours differs); a list such as\n"
               "# tolerations replaces the release's own list.\n",
        jellyfin_values_patch(cfg))
    return tree
