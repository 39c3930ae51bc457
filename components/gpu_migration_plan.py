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

- a Flux HelmRelease of the ``nvidia-device-plugin`` chart (found by
  ``spec.chart.spec.chart``, its history, or the Helm release it installed,
  in any namespace): deleting its Helm objects would not last, helm-controller
  puts them back (drift detection) or reinstalls the release. So the
  HelmRelease itself is deleted, its finalizer makes helm-controller
  uninstall the chart, and the removal waits, bounded, until the release's
  objects are gone (helm-controller docs/spec/v2/helmreleases.md). This
  program's own (made by Pulumi, ``gpuStack.namespace``/
  ``nvidia-device-plugin``) goes with its HelmRepository when nothing else
  reads that; the program's Pulumi resources for both are deleted at the end
  of the same update, and pulumi-kubernetes counts an object already gone as
  deleted (provider/pkg/await/await.go, ``Deletion``: ``nilIfGVKDeleted``).
  One that Flux applies from Git (a Kustomization's labels on it, or
  ``gpuStack.flux.objects: git``) would be applied again: refused by name
  with what to change in Git, unless ``gpuStack.flux.gitDevicePlugin:
  suspend`` (then its Kustomization is suspended first, as `flux suspend`
  does). A hand-made one (the guide's) only with
  ``gpuStack.adoptGuideObjects: true``;
- a Helm release of the chart that no HelmRelease installs: every object of
  its manifest (the same objects ``helm uninstall`` deletes). For this
  stack's own release (``gpuStack.namespace``/``nvidia-device-plugin``)
  Helm's release records stay: the program's old Release resource is deleted
  at the end of the same update, and its ``helm uninstall`` finds the objects
  gone and removes the records. A release this program did not install (the
  guide's) goes with its records, only with ``gpuStack.adoptGuideObjects:
  true``;
- RuntimeClass ``nvidia``: this program's (labelled), or a hand-made one with
  ``gpuStack.adoptGuideObjects: true``; one from Git as a HelmRelease from
  Git. One with an owner reference (the GPU Operator's) is never touched.

Anything else in the way is refused by name before anything is deleted.
This module plans (pure: facts in, plan out, no Pulumi SDK, no kubectl) from
the facts components.gpu_migration_facts reads;
components/gpu_migration.py reads the cluster with kubectl and carries the plan
out in the dynamic provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from components.cluster import DEVICE_PLUGIN_CHART
from components.config import PROJECT, StackConfig, parse_version
from components.flux.in_cluster import FluxHelmRelease, FluxKustomization, NamespacedName, kustomization_of
from components.gpu_migration_facts import _PULUMI_LABEL, _WORKLOADS, OWNER_LABEL, ClusterFacts, HelmRelease, ObjectRef
from components.talos.versions import OPERATOR_FROM

GPU_UNAVAILABLE = "pods get no GPU from this removal until the readiness gate passes (the GPU Operator comes after the upgrade to Talos 1.13)"
# How long helm-controller may take to uninstall a deleted HelmRelease: as
# long as Pulumi waits for this program's own (components.flux.resources,
# RELEASE_TIMEOUTS: the release's 15 m timeout and a margin).
UNINSTALL_TIMEOUT_SECONDS = 1200
# How often the wait for that uninstall looks.
UNINSTALL_POLL_SECONDS = 5.0


class MigrationRefused(RuntimeError):
    """Something this program did not create stands in the way."""


@dataclass(frozen=True)
class Removal:
    ref: ObjectRef
    why: str
    # delete: `kubectl delete` (waits until gone); suspend: what `flux
    # suspend` does, as a merge patch; uninstall: delete a Flux HelmRelease
    # without kubectl's wait, then wait here, bounded and with progress lines,
    # until it and ``wait_for`` (its release's workloads) are gone.
    action: Literal["delete", "suspend", "uninstall"] = "delete"
    wait_for: tuple[ObjectRef, ...] = ()

    def line(self) -> str:
        return f"{'suspend' if self.action == 'suspend' else 'remove'} {self.ref.line()} ({self.why})"


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
        return [removal.line() for removal in self.removals] + self.notes + [f"note: {GPU_UNAVAILABLE}"]


def _installed_by(flux: FluxHelmRelease, releases: Iterable[HelmRelease]) -> HelmRelease | None:
    """The Helm release of the chart that a Flux HelmRelease installed: where
    helm-controller stores it, or the one whose objects carry its labels."""
    releases = tuple(releases)
    return (next((release for release in releases if release.key == (flux.storage_namespace, flux.release_name)), None)
            or next((release for release in releases if release.flux_owner == flux.ref), None))


def _helm_objects(release: HelmRelease, *, records: bool) -> list[Removal]:
    """Every object of a Helm release's manifest, workloads first, and (with
    ``records``) Helm's records of it: what `helm uninstall` deletes."""
    label = f"Helm release {release.namespace}/{release.name} (chart {release.chart})"
    objects = [ref for ref in release.objects if ref.kind in _WORKLOADS] + [ref for ref in release.objects if ref.kind not in _WORKLOADS]
    removals = [Removal(ref, f"object of {label}") for ref in objects]
    if records:
        removals += [Removal(ObjectRef("Secret", record, release.storage_namespace or release.namespace), f"Helm's record of {label}")
                     for record in release.records]
    return removals


def _flux_release_removals(flux: FluxHelmRelease, helm: HelmRelease | None, whose: str) -> list[Removal]:
    """Deleting a HelmRelease: its finalizer makes helm-controller uninstall
    the release, and the removal waits until its workloads are gone. A
    suspended one, or one whose status names no storage namespace, is
    deleted without an uninstall (helm-controller ``reconcileDelete``,
    ``reconcileReleaseDeletion``), so its release goes here, records included."""
    ref = ObjectRef("HelmRelease", flux.name, flux.namespace)
    if (flux.suspended or not flux.uninstalls_on_delete) and helm is not None:
        why = "suspended" if flux.suspended else "its status names no storage namespace"
        return [Removal(ref, f"{whose}; {why}, so helm-controller lets it go without uninstalling the chart", action="uninstall"),
                *_helm_objects(helm, records=True)]
    workloads = tuple(ref for ref in helm.objects if ref.kind in _WORKLOADS) if helm else ()
    return [Removal(ref, f"{whose}; helm-controller uninstalls the chart, waited for until its objects are gone", action="uninstall",
                    wait_for=workloads)]


def _git_refusal(names: str, owner: FluxKustomization | None, *, stack: str, policy: str) -> str:
    """Objects Flux applies from Git: what to change there, exactly."""
    plural = " and " in names
    them = "them" if plural else "it"
    if owner is None:
        where = f"from your Git repository (gpuStack.flux.objects: git), but no Flux Kustomization claims {them}"
        then = "then run `pulumi up` again"
        other = " (with no Kustomization there is nothing to suspend)" if policy == "suspend" else ""
    else:
        path = f" (path {owner.path}{' of ' + owner.source if owner.source else ''})" if owner.path else ""
        where = f"applied from Git by {owner.line()}{path}"
        then = f"then `flux reconcile kustomization -n {owner.namespace} {owner.name} --with-source` and run `pulumi up` again"
        if owner.suspend_from_git:
            other = f" ({owner.line()} cannot be suspended here: its spec.suspend is set in Git)"
        else:
            other = (f"; or set {PROJECT}:gpuStack.flux.gitDevicePlugin: suspend to have this program suspend {owner.line()} "
                     f"and remove {them} (docs/talos.md)")
    return (f"{names} {'are' if plural else 'is'} {where}: deleted here, Flux would apply {them} again. Remove {them} from the Git "
            f"repository (delete the files; or commit the tree `python -m components.render --stack {stack} --flux DIR` writes for "
            f"gpuStack.mode: operator, though Flux then installs the GPU Operator before the node runs Talos 1.13), {then}{other}")


def plan_removal(facts: ClusterFacts, *, namespace: str, release_name: str, adopt_guide_objects: bool,
                 flux_objects: str = "pulumi", git_device_plugin: str = "refuse", stack: str = "<stack>") -> MigrationPlan:
    """What to delete (and suspend) before the node's step to Talos 1.13, in
    order (pure): Kustomizations to suspend, Flux HelmReleases (their
    uninstall waited for), Helm releases no HelmRelease installs, this
    program's HelmRepository, RuntimeClass nvidia last."""
    plan = MigrationPlan()
    hint = f"set {PROJECT}:gpuStack.adoptGuideObjects: true to let this program remove it, or remove it yourself"
    kustomizations = {kustomization.ref: kustomization for kustomization in facts.kustomizations}
    flux_removals: list[Removal] = []
    helm_removals: list[Removal] = []
    last: list[Removal] = []
    # Kustomization (None: none claims them) -> (label, removals, where they go) of what it applies from Git.
    from_git: dict[NamespacedName | None, list[tuple[str, list[Removal], list[Removal]]]] = {}
    installed: set[tuple[str, str]] = set()
    removed: set[NamespacedName] = set()
    ours: list[FluxHelmRelease] = []

    for flux in facts.flux_releases:
        helm = _installed_by(flux, facts.releases)
        if flux.chart != DEVICE_PLUGIN_CHART and not (flux.chart is None and helm is not None):
            continue
        if helm is not None:
            installed.add(helm.key)
        label, of_chart = f"HelmRelease {flux.namespace}/{flux.name}", f"Flux HelmRelease of chart {DEVICE_PLUGIN_CHART}"
        owner = kustomizations.get(flux.kustomization) if flux.kustomization else None
        named_ours = (flux.namespace, flux.name) == (namespace, release_name)
        if owner is not None or (flux_objects == "git" and named_ours and not flux.made_by_pulumi):
            whose = f"{of_chart} from Git, {owner.line()} suspended" if owner else of_chart
            from_git.setdefault(owner.ref if owner else None, []).append((label, _flux_release_removals(flux, helm, whose), flux_removals))
        elif (flux.made_by_pulumi and named_ours) or adopt_guide_objects:
            whose = f"this program's {of_chart}" if flux.made_by_pulumi and named_ours else f"hand-made {of_chart}, adopted"
            flux_removals += _flux_release_removals(flux, helm, whose)
            removed.add(flux.ref)
            if flux.made_by_pulumi and named_ours:
                ours.append(flux)
        else:
            plan.refused.append(f"{label} ({of_chart}) was not made by this program; {hint} (`kubectl delete helmrelease -n "
                                f"{flux.namespace} {flux.name}`: helm-controller then uninstalls the chart)")

    for release in facts.releases:
        if release.key in installed:
            continue  # its HelmRelease goes (or is refused) above: deleting its objects alone would not last
        ours_release = (release.namespace, release.name) == (namespace, release_name)
        label = f"Helm release {release.namespace}/{release.name} (chart {release.chart})"
        if not ours_release and not adopt_guide_objects:
            plan.refused.append(f"{label} was not installed by this program; {hint} (`helm uninstall -n {release.namespace} {release.name}`)")
            continue
        helm_removals += _helm_objects(release, records=not ours_release)
        if ours_release:
            plan.notes.append(f"{label}: Helm's records stay for this stack's old Release resource, whose deletion at the end of this update removes them")

    for flux in ours:
        repository = next((source for source in facts.sources if flux.source and source.key == flux.source and source.kind == "HelmRepository"), None)
        if repository is None or not repository.made_by_pulumi or repository.kustomization in kustomizations:
            continue
        ref = ObjectRef("HelmRepository", repository.name, repository.namespace)
        users = [f"HelmRelease {other.namespace}/{other.name}" for other in facts.flux_releases
                 if other.ref not in removed and other.source == repository.key]
        users += [f"HelmChart {chart.namespace}/{chart.name}" for chart in facts.sources
                  if chart.kind == "HelmChart" and chart.source == repository.key and chart.origin not in removed]
        if users:
            plan.notes.append(f"{ref.line()} stays: {', '.join(users)} read{'s' if len(users) == 1 else ''} it")
        else:
            helm_removals.append(Removal(ref, "this program's, read by no other HelmRelease or HelmChart"))
    if ours:
        plan.notes.append("this program's Pulumi resources for the Flux objects removed here are deleted at the end of this update, "
                          "and pulumi-kubernetes counts an object already gone as deleted")

    runtime_class = facts.runtime_class
    if runtime_class is not None:
        ref = ObjectRef("RuntimeClass", runtime_class.name)
        ours_class = OWNER_LABEL in runtime_class.labels.items() or _PULUMI_LABEL in runtime_class.labels.items()
        owner = kustomizations.get(kustomization_of(runtime_class.labels) or ("", ""))
        if runtime_class.owned_by_controller:
            plan.notes.append(f"RuntimeClass {runtime_class.name} belongs to a controller (the GPU Operator's): kept")
        elif owner is not None:
            from_git.setdefault(owner.ref, []).append((ref.line(), [Removal(ref, f"from Git, {owner.line()} suspended")], last))
        elif ours_class or adopt_guide_objects:
            last.append(Removal(ref, "this program's" if ours_class else "hand-made, adopted"))
        else:
            plan.refused.append(f"RuntimeClass {runtime_class.name} was made by hand (the guide's); the GPU Operator creates its own, and "
                                f"Talos 1.13 wants it gone before the upgrade; {hint} (`kubectl delete runtimeclass {runtime_class.name}`)")

    suspends: list[Removal] = []
    for key, entries in from_git.items():
        owner = kustomizations.get(key) if key else None
        names = " and ".join(label for label, _, _ in entries)
        if git_device_plugin != "suspend" or owner is None or owner.suspend_from_git:
            plan.refused.append(_git_refusal(names, owner, stack=stack, policy=git_device_plugin))
            continue
        if owner.suspended:
            plan.notes.append(f"{owner.line()} is suspended already")
        else:
            suspends.append(Removal(ObjectRef("Kustomization", owner.name, owner.namespace),
                                    f"applies {names} from Git; {PROJECT}:gpuStack.flux.gitDevicePlugin: suspend", action="suspend"))
        for _, removals, bucket in entries:
            bucket.extend(removals)
        plan.notes.append(f"{owner.line()} stays suspended: resume it (`flux resume kustomization -n {owner.namespace} {owner.name}`) only "
                          f"once the Git repository no longer has {names} (commit the tree `python -m components.render --stack {stack} "
                          "--flux DIR` writes for gpuStack.mode: operator), or Flux installs the device plugin again on Talos 1.13")
    plan.removals = suspends + flux_removals + helm_removals + last
    return plan


def migration_needed(cfg: StackConfig) -> bool:
    """The graph holds a migration when the target is Talos 1.13 or newer
    (operator mode): a node still on 1.12 or older crosses on the way."""
    return parse_version(cfg.talos.version) >= OPERATOR_FROM and cfg.gpu_stack.mode == "operator"


@dataclass(frozen=True)
class MigrationSpec:
    """The migration's inputs, in the form its dynamic provider carries
    (JSON, camelCase keys as stored in the state). The kubeconfig is not in
    here: it travels next to the spec as a Pulumi secret."""

    namespace: str
    release_name: str
    adopt_guide_objects: bool = False
    flux_objects: str = "pulumi"
    git_device_plugin: str = "refuse"
    stack: str = "<stack>"  # for the `render --flux` command a refusal names
    uninstall_timeout_seconds: float = UNINSTALL_TIMEOUT_SECONDS
    poll_seconds: float | None = None  # an override (tests); UNINSTALL_POLL_SECONDS without it

    @property
    def poll(self) -> float:
        return self.poll_seconds or UNINSTALL_POLL_SECONDS

    def plan(self, facts: ClusterFacts) -> MigrationPlan:
        return plan_removal(facts, namespace=self.namespace, release_name=self.release_name,
                            adopt_guide_objects=self.adopt_guide_objects, flux_objects=self.flux_objects,
                            git_device_plugin=self.git_device_plugin, stack=self.stack)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"namespace": self.namespace, "releaseName": self.release_name,
                                "adoptGuideObjects": self.adopt_guide_objects, "fluxObjects": self.flux_objects,
                                "gitDevicePlugin": self.git_device_plugin, "stack": self.stack,
                                "uninstallTimeoutSeconds": self.uninstall_timeout_seconds}
        if self.poll_seconds is not None:
            data["pollSeconds"] = self.poll_seconds
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrationSpec:
        """Also reads a migration stored before the Flux keys, ``stack`` or
        the uninstall timeout existed (their defaults)."""
        poll = data.get("pollSeconds")
        return cls(namespace=str(data["namespace"]), release_name=str(data["releaseName"]),
                   adopt_guide_objects=bool(data.get("adoptGuideObjects")), flux_objects=str(data.get("fluxObjects") or "pulumi"),
                   git_device_plugin=str(data.get("gitDevicePlugin") or "refuse"), stack=str(data.get("stack") or "<stack>"),
                   uninstall_timeout_seconds=float(data.get("uninstallTimeoutSeconds") or UNINSTALL_TIMEOUT_SECONDS),
                   poll_seconds=float(poll) if poll else None)


def migration_spec(cfg: StackConfig, stack: str) -> MigrationSpec:
    """The migration of this stack's device plugin (``stack``: the Pulumi
    stack's name)."""
    return MigrationSpec(namespace=cfg.gpu_stack.namespace, release_name=DEVICE_PLUGIN_CHART,
                         adopt_guide_objects=cfg.gpu_stack.adopt_guide_objects, flux_objects=cfg.gpu_stack.flux.objects,
                         git_device_plugin=cfg.gpu_stack.flux.git_device_plugin, stack=stack)
