"""What the cluster holds that the GPU mode migration at Talos 1.13 removes
or refuses, read from objects as kubectl prints them (pure: no kubectl, no
Pulumi SDK): Helm 3's release records (their Secrets, decoded as helm
pkg/storage/driver/util.go encodes them) with each release's manifest
objects, RuntimeClass ``nvidia``, and Flux's HelmReleases, Kustomizations,
HelmRepositories and HelmCharts (components.flux.in_cluster).
components.gpu_migration_plan plans the removal from these facts."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from components.cluster import DEVICE_PLUGIN_CHART, RUNTIME_CLASS
from components.config import PROJECT
from components.flux.in_cluster import (
    RESOURCES,
    FluxHelmRelease,
    FluxKustomization,
    FluxSourceObject,
    NamespacedName,
    helm_origin,
    parse_helm_release,
    parse_kustomization,
    parse_source_object,
)

# The label this program puts on the RuntimeClass it creates (GpuStack),
# and pulumi-kubernetes' own managed-by label.
OWNER_LABEL = ("app.kubernetes.io/part-of", PROJECT)
_PULUMI_LABEL = ("app.kubernetes.io/managed-by", "pulumi")
# Helm 3 keeps each release revision in a Secret of this type.
HELM_RELEASE_TYPE = "helm.sh/release.v1"
_WORKLOADS = ("DaemonSet", "Deployment", "StatefulSet", "Job")
_CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "RuntimeClass", "CustomResourceDefinition", "Namespace",
                   "PriorityClass", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str | None = None

    def line(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    @property
    def resource(self) -> str:
        """What kubectl is given: Flux kinds fully qualified, others by kind."""
        return RESOURCES.get(self.kind, self.kind)


@dataclass(frozen=True)
class HelmRelease:
    """A Helm release, from Helm's own records."""

    name: str
    namespace: str
    chart: str
    revision: int
    status: str
    objects: tuple[ObjectRef, ...]
    records: tuple[str, ...] = ()
    # Where the records are (a Flux HelmRelease may store them apart from
    # the release's namespace: spec.storageNamespace).
    storage_namespace: str = ""
    # The Flux HelmRelease that installed it, from the labels helm-controller
    # puts on every object of the manifest.
    flux_owner: NamespacedName | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.storage_namespace or self.namespace, self.name)


@dataclass(frozen=True)
class RuntimeClassFact:
    name: str
    labels: Mapping[str, str]
    owned_by_controller: bool


@dataclass(frozen=True)
class ClusterFacts:
    releases: tuple[HelmRelease, ...]
    runtime_class: RuntimeClassFact | None
    # Flux's objects (empty where the cluster does not serve the Flux APIs).
    flux_releases: tuple[FluxHelmRelease, ...] = ()
    kustomizations: tuple[FluxKustomization, ...] = ()
    # HelmRepositories and HelmCharts.
    sources: tuple[FluxSourceObject, ...] = ()


def decode_helm_release(data: str) -> dict[str, Any]:
    """A Helm 3 release from its Secret's ``data.release`` (base64 of
    Helm's base64 of gzipped JSON; helm pkg/storage/driver/util.go)."""
    helm_text = base64.b64decode(data)
    raw = base64.b64decode(helm_text)
    if raw[:3] == b"\x1f\x8b\x08":
        raw = gzip.decompress(raw)
    release = json.loads(raw)
    if not isinstance(release, dict):
        raise ValueError("the Helm release record is not a JSON object")
    return release


def manifest_objects(manifest: str, namespace: str) -> tuple[tuple[ObjectRef, ...], NamespacedName | None]:
    """The objects of a release's manifest, and the Flux HelmRelease named by
    their labels (None for a release Helm made on its own)."""
    refs, origin = [], None
    for document in yaml.safe_load_all(manifest or ""):
        if not isinstance(document, dict) or not document.get("kind"):
            continue
        metadata = document.get("metadata") or {}
        kind = str(document["kind"])
        refs.append(ObjectRef(kind, str(metadata.get("name")), None if kind in _CLUSTER_SCOPED else str(metadata.get("namespace") or namespace)))
        origin = origin or helm_origin(metadata.get("labels") or {})
    return tuple(refs), origin


def parse_release_secrets(secrets: Iterable[Mapping[str, Any]], chart: str = DEVICE_PLUGIN_CHART) -> tuple[HelmRelease, ...]:
    """The latest revision of each Helm release of ``chart``, with the names
    of all its record Secrets."""
    latest: dict[tuple[str, str], HelmRelease] = {}
    records: dict[tuple[str, str], list[str]] = {}
    for secret in secrets:
        if secret.get("type") != HELM_RELEASE_TYPE:
            continue
        metadata = secret.get("metadata") or {}
        try:
            release = decode_helm_release(str((secret.get("data") or {}).get("release", "")))
        except (ValueError, OSError, EOFError):
            continue
        if ((release.get("chart") or {}).get("metadata") or {}).get("name") != chart:
            continue
        storage = str(metadata.get("namespace") or "")
        key = (storage, str(release.get("name")))
        records.setdefault(key, []).append(str(metadata.get("name")))
        namespace = str(release.get("namespace") or storage)
        objects, origin = manifest_objects(str(release.get("manifest") or ""), namespace)
        parsed = HelmRelease(name=key[1], namespace=namespace, chart=chart, revision=int(release.get("version") or 0),
                             status=str((release.get("info") or {}).get("status") or ""), objects=objects,
                             storage_namespace=storage, flux_owner=origin)
        if key not in latest or parsed.revision > latest[key].revision:
            latest[key] = parsed
    return tuple(HelmRelease(**{**release.__dict__, "records": tuple(sorted(records[key]))}) for key, release in sorted(latest.items()))


def parse_runtime_class(obj: Mapping[str, Any] | None) -> RuntimeClassFact | None:
    if not obj:
        return None
    metadata = obj.get("metadata") or {}
    return RuntimeClassFact(name=str(metadata.get("name")), labels=dict(metadata.get("labels") or {}),
                            owned_by_controller=bool(metadata.get("ownerReferences")))


def cluster_facts(documents: Iterable[Mapping[str, Any]]) -> ClusterFacts:
    """The facts in objects as kubectl prints them (pure): Helm's release
    records, RuntimeClass nvidia, Flux's HelmReleases, Kustomizations,
    HelmRepositories and HelmCharts; anything else is ignored."""
    documents = list(documents)

    def of(*kinds: str) -> list[Mapping[str, Any]]:
        return [document for document in documents if document.get("kind") in kinds]

    runtime_class = next((document for document in of("RuntimeClass") if (document.get("metadata") or {}).get("name") == RUNTIME_CLASS), None)
    return ClusterFacts(releases=parse_release_secrets(of("Secret")), runtime_class=parse_runtime_class(runtime_class),
                        flux_releases=tuple(parse_helm_release(document) for document in of("HelmRelease")),
                        kustomizations=tuple(parse_kustomization(document) for document in of("Kustomization")),
                        sources=tuple(parse_source_object(document) for document in of("HelmRepository", "HelmChart")))
