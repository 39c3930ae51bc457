"""The GPU mode migration at the crossing into Talos 1.13.

Talos 1.13 switched the NVIDIA toolkit to CDI and supports NVIDIA GPUs
through the GPU Operator; its upgrade notes tell NVIDIA users to uninstall
the nvidia-device-plugin Helm chart and delete RuntimeClass ``nvidia``
*before* upgrading to 1.13, and to install the GPU Operator after it
(siderolabs/docs, talos/v1.13 lifecycle-management/upgrading-talos.mdx,
"NVIDIA GPU users"). ``GpuModeMigration`` sits in the graph between the walk
that ends on the last 1.12 release and the step to 1.13; ``GpuStack``
installs the operator after the node runs 1.13. From the removal until the
readiness gate passes, pods get no GPU.

What it removes:

- a Helm release of the ``nvidia-device-plugin`` chart: every object of its
  manifest (the same objects ``helm uninstall`` deletes). For this stack's
  own release (``gpuStack.namespace``/``nvidia-device-plugin``) Helm's release
  records stay: the program's old Release resource is deleted at the end of
  the same update, and its ``helm uninstall`` finds the objects gone and
  removes the records. A release this program did not install (the guide's)
  goes with its records, only with ``gpuStack.adoptGuideObjects: true``;
- RuntimeClass ``nvidia``: this program's (labelled), or a hand-made one with
  ``gpuStack.adoptGuideObjects: true``. One with an owner reference (the GPU
  Operator's) is never touched.

Anything else in the way is refused by name before anything is deleted.
Pure planning here; kubectl (components.kubectl) carries it out in the
dynamic provider below (pickled by reference with dill: no import-time side
effects; kubectl runs inside the methods; ``check`` and ``diff`` only read).
"""

from __future__ import annotations

import base64
import gzip
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic
import yaml
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.cluster import DEVICE_PLUGIN_CHART, RUNTIME_CLASS
from components.config import PROJECT, StackConfig

# The label this program puts on the RuntimeClass it creates (GpuStack),
# and pulumi-kubernetes' own managed-by label.
OWNER_LABEL = ("app.kubernetes.io/part-of", PROJECT)
_PULUMI_LABEL = ("app.kubernetes.io/managed-by", "pulumi")
# Helm 3 keeps each release revision in a Secret of this type.
HELM_RELEASE_TYPE = "helm.sh/release.v1"
_WORKLOADS = ("DaemonSet", "Deployment", "StatefulSet", "Job")
_CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "RuntimeClass", "CustomResourceDefinition", "Namespace",
                   "PriorityClass", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
GPU_UNAVAILABLE = "pods get no GPU from this removal until the readiness gate passes (the GPU Operator comes after the upgrade to Talos 1.13)"


class MigrationRefused(RuntimeError):
    """Something this program did not create stands in the way."""


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str | None = None

    def line(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class HelmRelease:
    name: str
    namespace: str
    chart: str
    revision: int
    status: str
    objects: tuple[ObjectRef, ...]
    records: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeClassFact:
    name: str
    labels: Mapping[str, str]
    owned_by_controller: bool


@dataclass(frozen=True)
class ClusterFacts:
    releases: tuple[HelmRelease, ...]
    runtime_class: RuntimeClassFact | None


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


def manifest_objects(manifest: str, namespace: str) -> tuple[ObjectRef, ...]:
    refs = []
    for document in yaml.safe_load_all(manifest or ""):
        if not isinstance(document, dict) or not document.get("kind"):
            continue
        metadata = document.get("metadata") or {}
        kind = str(document["kind"])
        refs.append(ObjectRef(kind, str(metadata.get("name")), None if kind in _CLUSTER_SCOPED else str(metadata.get("namespace") or namespace)))
    return tuple(refs)


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
        key = (str(release.get("namespace") or metadata.get("namespace")), str(release.get("name")))
        records.setdefault(key, []).append(str(metadata.get("name")))
        parsed = HelmRelease(name=key[1], namespace=key[0], chart=chart, revision=int(release.get("version") or 0),
                             status=str((release.get("info") or {}).get("status") or ""),
                             objects=manifest_objects(str(release.get("manifest") or ""), key[0]))
        if key not in latest or parsed.revision > latest[key].revision:
            latest[key] = parsed
    return tuple(HelmRelease(**{**release.__dict__, "records": tuple(sorted(records[key]))}) for key, release in sorted(latest.items()))


def parse_runtime_class(obj: Mapping[str, Any] | None) -> RuntimeClassFact | None:
    if not obj:
        return None
    metadata = obj.get("metadata") or {}
    return RuntimeClassFact(name=str(metadata.get("name")), labels=dict(metadata.get("labels") or {}),
                            owned_by_controller=bool(metadata.get("ownerReferences")))


@dataclass(frozen=True)
class Removal:
    ref: ObjectRef
    why: str


@dataclass
class MigrationPlan:
    removals: list[Removal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.refused:
            return [f"refused: {line}" for line in self.refused]
        if not self.removals:
            return [f"nothing to remove: {'; '.join(self.notes) or 'no nvidia-device-plugin release and no RuntimeClass nvidia'}"]
        return [f"remove {removal.ref.line()} ({removal.why})" for removal in self.removals] + self.notes + [f"note: {GPU_UNAVAILABLE}"]


def plan_removal(facts: ClusterFacts, *, namespace: str, release_name: str, adopt_guide_objects: bool) -> MigrationPlan:
    """What to delete before the node's step to Talos 1.13 (pure)."""
    plan = MigrationPlan()
    hint = f"set {PROJECT}:gpuStack.adoptGuideObjects: true to let this program remove it, or remove it yourself"
    for release in facts.releases:
        ours = (release.namespace, release.name) == (namespace, release_name)
        label = f"Helm release {release.namespace}/{release.name} (chart {release.chart})"
        if not ours and not adopt_guide_objects:
            plan.refused.append(f"{label} was not installed by this program; {hint} (`helm uninstall -n {release.namespace} {release.name}`)")
            continue
        workloads = [ref for ref in release.objects if ref.kind in _WORKLOADS]
        for ref in workloads + [ref for ref in release.objects if ref.kind not in _WORKLOADS]:
            plan.removals.append(Removal(ref, f"object of {label}"))
        if ours:
            plan.notes.append(f"{label}: Helm's records stay for this stack's old Release resource, whose deletion at the end of this update removes them")
        else:
            plan.removals += [Removal(ObjectRef("Secret", record, release.namespace), f"Helm's record of {label}") for record in release.records]
    runtime_class = facts.runtime_class
    if runtime_class is not None:
        ours = OWNER_LABEL in runtime_class.labels.items() or _PULUMI_LABEL in runtime_class.labels.items()
        if runtime_class.owned_by_controller:
            plan.notes.append(f"RuntimeClass {runtime_class.name} belongs to a controller (the GPU Operator's): kept")
        elif ours or adopt_guide_objects:
            plan.removals.append(Removal(ObjectRef("RuntimeClass", runtime_class.name), "this program's" if ours else "hand-made, adopted"))
        else:
            plan.refused.append(f"RuntimeClass {runtime_class.name} was made by hand (the guide's); the GPU Operator creates its own, and "
                                f"Talos 1.13 wants it gone before the upgrade; {hint} (`kubectl delete runtimeclass {runtime_class.name}`)")
    return plan


# --------------------------------------------------------------------------
# Reading and carrying out (kubectl)
# --------------------------------------------------------------------------


def read_cluster(kubeconfig: str | None) -> ClusterFacts:
    """Two read-only kubectl calls: Helm's release records and RuntimeClass nvidia."""
    from components.kubectl import get_object, get_objects

    secrets = get_objects("secrets", all_namespaces=True, selector="owner=helm", kubeconfig=kubeconfig)
    return ClusterFacts(releases=parse_release_secrets(secrets),
                        runtime_class=parse_runtime_class(get_object("runtimeclass", RUNTIME_CLASS, kubeconfig=kubeconfig)))


def _say(message: str) -> None:
    print(f"[gpu-mode-migration] {message}", file=sys.stderr, flush=True)


class GpuModeMigrationProvider(ResourceProvider):
    """check/diff read the cluster; create/update remove; delete removes nothing."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        from components.kubectl import KubectlError

        inputs = dict(news)
        try:
            plan = plan_removal(read_cluster(news.get("kubeconfig") or None), namespace=str(news["namespace"]),
                                release_name=str(news["releaseName"]), adopt_guide_objects=bool(news.get("adoptGuideObjects")))
            inputs["pendingChanges"] = plan.lines()
        except KubectlError as error:
            # Preview must not fail only because the cluster does not answer.
            inputs["pendingChanges"] = [f"not known: cannot read the cluster ({error})"]
        return CheckResult(inputs, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = any(olds.get(key) != news.get(key) for key in ("namespace", "releaseName", "adoptGuideObjects"))
        pending = news.get("pendingChanges") or []
        return DiffResult(changes=changed or any(str(line).startswith(("remove ", "refused:")) for line in pending),
                          replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"gpu-mode-migration-{props['namespace']}", outs=self._remove(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._remove(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to put back: the device plugin does not run on Talos 1.13."""

    def _remove(self, props: dict[str, Any]) -> dict[str, Any]:
        from components.kubectl import delete_object, get_object

        kubeconfig = props.get("kubeconfig") or None
        plan = plan_removal(read_cluster(kubeconfig), namespace=str(props["namespace"]), release_name=str(props["releaseName"]),
                            adopt_guide_objects=bool(props.get("adoptGuideObjects")))
        if plan.refused:
            raise MigrationRefused("not upgrading to Talos 1.13 yet: " + " | ".join(plan.refused))
        if plan.removals:
            _say(f"WARNING: {GPU_UNAVAILABLE}")
        for removal in plan.removals:
            _say(f"remove {removal.ref.line()} ({removal.why})")
            delete_object(removal.ref.kind, removal.ref.name, namespace=removal.ref.namespace, kubeconfig=kubeconfig)
        still = [removal.ref.line() for removal in plan.removals
                 if removal.ref.kind in (*_WORKLOADS, "RuntimeClass")
                 and get_object(removal.ref.kind, removal.ref.name, namespace=removal.ref.namespace, kubeconfig=kubeconfig) is not None]
        if still:
            raise RuntimeError(f"still in the cluster after the removal: {', '.join(still)}; check `kubectl get {' '.join(still[:1])}`")
        outs = {key: props[key] for key in ("namespace", "releaseName", "adoptGuideObjects") if key in props}
        outs.update(removed=[removal.ref.line() for removal in plan.removals], notes=plan.notes,
                    message=f"WARNING: {GPU_UNAVAILABLE}" if plan.removals else plan.lines()[0])
        return outs


class GpuModeMigration(pulumi.dynamic.Resource, module="migration", name="GpuModeMigration"):
    """Removes the device plugin and RuntimeClass nvidia before the node's
    upgrade to Talos 1.13."""

    removed: pulumi.Output[list[str]]
    message: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, kubeconfig: pulumi.Input[str] | None, opts: pulumi.ResourceOptions | None = None):
        super().__init__(GpuModeMigrationProvider(), name, {
            "namespace": cfg.gpu_stack.namespace,
            "releaseName": DEVICE_PLUGIN_CHART,
            "adoptGuideObjects": cfg.gpu_stack.adopt_guide_objects,
            # Secret end to end; read per call, never kept.
            "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
            "pendingChanges": None, "removed": None, "notes": None, "message": None,
        }, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])))


def migration_needed(cfg: StackConfig) -> bool:
    """The graph holds a migration when the target is Talos 1.13 or newer
    (operator mode): a node still on 1.12 or older crosses on the way."""
    from components.config import parse_version
    from components.talos.versions import OPERATOR_FROM

    return parse_version(cfg.talos.version) >= OPERATOR_FROM and cfg.gpu_stack.mode == "operator"
