"""Flux objects as a running cluster has them, read as facts (pure parsers):
who made a HelmRelease, which Helm release it installs, which Kustomization
applies it from Git. The mode migration (components.gpu_migration) plans on
these.

Upstream, for each rule here:

- helm-controller v1.6.3 (api/v2/helmrelease_types.go, docs/spec/v2/
  helmreleases.md): the Helm release's name is ``spec.releaseName``, else
  ``[<targetNamespace>-]<name>``, past 53 characters its first 40 and the
  first 12 hex digits of its SHA-256 (internal/release/name.go); its records live in ``spec.storageNamespace`` (default: the
  HelmRelease's namespace), which ``status.storageNamespace`` reports;
  ``status.history`` lists the releases it made, newest first, with
  ``chartName``; the finalizer ``finalizers.fluxcd.io`` makes a deleted
  HelmRelease uninstall its release, unless it is suspended
  (internal/controller/helmrelease_controller.go, ``reconcileDelete``);
  every object it installs carries the labels ``helm.toolkit.fluxcd.io/name``
  and ``helm.toolkit.fluxcd.io/namespace`` (internal/postrender,
  ``OriginLabels``), and so does the manifest in Helm's record.
- kustomize-controller v1.9 (docs/spec/v1/kustomizations.md): every object a
  Kustomization applies carries ``kustomize.toolkit.fluxcd.io/name`` and
  ``kustomize.toolkit.fluxcd.io/namespace``; it applies them again while it
  is not suspended ("Suspend"), with the field manager
  ``kustomize-controller``. `flux suspend` sets ``spec.suspend`` with the
  field manager ``flux-client-side-apply``, which kustomize-controller leaves
  alone ("Suspending and resuming").
- pulumi-kubernetes creates objects with server-side apply under the field
  manager ``pulumi-kubernetes-<suffix>`` (client-side apply: the label
  ``app.kubernetes.io/managed-by: pulumi``; provider/pkg/provider/provider.go,
  ``fieldManagerName`` and ``Check``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HELM_RELEASE_RESOURCE = "helmreleases.helm.toolkit.fluxcd.io"
HELM_REPOSITORY_RESOURCE = "helmrepositories.source.toolkit.fluxcd.io"
HELM_CHART_RESOURCE = "helmcharts.source.toolkit.fluxcd.io"
KUSTOMIZATION_RESOURCE = "kustomizations.kustomize.toolkit.fluxcd.io"
# Kind -> the fully qualified resource kubectl is given (no other group's kind answers).
RESOURCES = {"HelmRelease": HELM_RELEASE_RESOURCE, "HelmRepository": HELM_REPOSITORY_RESOURCE,
             "HelmChart": HELM_CHART_RESOURCE, "Kustomization": KUSTOMIZATION_RESOURCE}

HELM_RELEASE_FINALIZER = "finalizers.fluxcd.io"
KUSTOMIZE_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
KUSTOMIZE_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
HELM_NAME_LABEL = "helm.toolkit.fluxcd.io/name"
HELM_NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"
KUSTOMIZE_CONTROLLER = "kustomize-controller"
# The field manager of `flux suspend` / `flux resume`, as the Flux docs'
# kubectl equivalent uses it.
FLUX_CLI_FIELD_MANAGER = "flux-client-side-apply"
_PULUMI_MANAGER_PREFIX = "pulumi-kubernetes"
_PULUMI_LABEL = ("app.kubernetes.io/managed-by", "pulumi")
_MAX_RELEASE_NAME = 53

NamespacedName = tuple[str, str]  # (namespace, name)


def helm_release_name(name: str, target_namespace: str | None, release_name: str | None) -> str:
    """The Helm release a HelmRelease makes (helm-controller's
    ``GetReleaseName`` and its shortening past 53 characters)."""
    full = release_name or (f"{target_namespace}-{name}" if target_namespace else name)
    if len(full) <= _MAX_RELEASE_NAME:
        return full
    return f"{full[:40]}-{hashlib.sha256(full.encode()).hexdigest()[:12]}"


def made_by_pulumi(metadata: Mapping[str, Any]) -> bool:
    """pulumi-kubernetes created or owns fields of the object."""
    labels = metadata.get("labels") or {}
    if labels.get(_PULUMI_LABEL[0]) == _PULUMI_LABEL[1]:
        return True
    return any(str((entry or {}).get("manager", "")).startswith(_PULUMI_MANAGER_PREFIX) for entry in metadata.get("managedFields") or [])


def kustomization_of(labels: Mapping[str, str]) -> NamespacedName | None:
    """The Kustomization that applied an object, from its labels."""
    name, namespace = labels.get(KUSTOMIZE_NAME_LABEL), labels.get(KUSTOMIZE_NAMESPACE_LABEL)
    return (str(namespace), str(name)) if name and namespace else None


def helm_origin(labels: Mapping[str, str]) -> NamespacedName | None:
    """The HelmRelease that installed an object, from its labels."""
    name, namespace = labels.get(HELM_NAME_LABEL), labels.get(HELM_NAMESPACE_LABEL)
    return (str(namespace), str(name)) if name and namespace else None


def _source(ref: Mapping[str, Any] | None, default_namespace: str) -> tuple[str, str, str] | None:
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    return (str(ref.get("kind") or ""), str(ref.get("namespace") or default_namespace), str(ref["name"]))


@dataclass(frozen=True)
class FluxHelmRelease:
    namespace: str
    name: str
    chart: str | None                 # spec.chart.spec.chart, else the newest status.history chartName
    storage_namespace: str
    release_name: str                 # the Helm release it installs
    suspended: bool
    kustomization: NamespacedName | None
    source: tuple[str, str, str] | None  # (kind, namespace, name) of the chart's source
    made_by_pulumi: bool
    # status.storageNamespace is set: helm-controller has installed the
    # release and uninstalls it when the HelmRelease is deleted; without it
    # the deletion only drops the finalizer (helmrelease_controller.go
    # reconcileReleaseDeletion, fluxcd/helm-controller v1.0.0 .. v1.6.3).
    uninstalls_on_delete: bool = True

    @property
    def ref(self) -> NamespacedName:
        return (self.namespace, self.name)


def parse_helm_release(document: Mapping[str, Any]) -> FluxHelmRelease:
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    status = document.get("status") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    history = [entry for entry in status.get("history") or [] if isinstance(entry, Mapping)]
    template = ((spec.get("chart") or {}).get("spec") or {})
    chart = template.get("chart") or (history[0].get("chartName") if history else None)
    source = _source(template.get("sourceRef"), namespace) or _source(spec.get("chartRef"), namespace)
    release = str(history[0]["name"]) if history and history[0].get("name") else \
        helm_release_name(name, spec.get("targetNamespace"), spec.get("releaseName"))
    return FluxHelmRelease(
        namespace=namespace, name=name, chart=str(chart) if chart else None,
        storage_namespace=str(status.get("storageNamespace") or spec.get("storageNamespace") or namespace),
        release_name=release, suspended=bool(spec.get("suspend")),
        kustomization=kustomization_of(metadata.get("labels") or {}), source=source, made_by_pulumi=made_by_pulumi(metadata),
        uninstalls_on_delete=bool(status.get("storageNamespace")))


@dataclass(frozen=True)
class FluxKustomization:
    namespace: str
    name: str
    suspended: bool
    # spec.suspend is a field kustomize-controller applies (set in Git by a
    # parent Kustomization): a suspension would be undone.
    suspend_from_git: bool
    path: str | None
    source: str | None  # "GitRepository flux-system/profmoo-home"

    @property
    def ref(self) -> NamespacedName:
        return (self.namespace, self.name)

    def line(self) -> str:
        return f"Flux Kustomization {self.namespace}/{self.name}"


def _owns_spec_suspend(entry: Mapping[str, Any]) -> bool:
    fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
    return isinstance(fields, Mapping) and "f:suspend" in fields


def parse_kustomization(document: Mapping[str, Any]) -> FluxKustomization:
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    namespace = str(metadata.get("namespace") or "")
    source = _source(spec.get("sourceRef"), namespace)
    return FluxKustomization(
        namespace=namespace, name=str(metadata.get("name") or ""), suspended=bool(spec.get("suspend")),
        suspend_from_git=any(str((entry or {}).get("manager")) == KUSTOMIZE_CONTROLLER and _owns_spec_suspend(entry)
                             for entry in metadata.get("managedFields") or []),
        path=str(spec["path"]) if spec.get("path") else None,
        source=f"{source[0]} {source[1]}/{source[2]}" if source else None)


@dataclass(frozen=True)
class FluxSourceObject:
    """A HelmRepository, or a HelmChart (with the source it reads)."""

    kind: str
    namespace: str
    name: str
    made_by_pulumi: bool
    kustomization: NamespacedName | None
    source: tuple[str, str, str] | None = None   # a HelmChart's spec.sourceRef
    origin: NamespacedName | None = None          # the HelmRelease that made a HelmChart

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


def parse_source_object(document: Mapping[str, Any]) -> FluxSourceObject:
    metadata = document.get("metadata") or {}
    labels = metadata.get("labels") or {}
    namespace = str(metadata.get("namespace") or "")
    return FluxSourceObject(kind=str(document.get("kind") or ""), namespace=namespace, name=str(metadata.get("name") or ""),
                            made_by_pulumi=made_by_pulumi(metadata), kustomization=kustomization_of(labels),
                            source=_source((document.get("spec") or {}).get("sourceRef"), namespace), origin=helm_origin(labels))
