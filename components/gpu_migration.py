"""The GPU mode migration at the crossing into Talos 1.13, carried out: read
the cluster with kubectl, remove what components/gpu_migration_plan.py planned
(the device plugin and RuntimeClass nvidia, and why each goes or is refused),
wait, bounded, for helm-controller's uninstall, in the dynamic provider
``GpuModeMigrationProvider`` (pickled by reference with dill: no import-time
side effects; kubectl runs inside the methods; ``check`` and ``diff`` only
read)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi.dynamic
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.cluster import RUNTIME_CLASS
from components.config import StackConfig
from components.dynamic import changed_keys, says, updating
from components.flux.in_cluster import (
    FLUX_CLI_FIELD_MANAGER,
    HELM_CHART_RESOURCE,
    HELM_RELEASE_RESOURCE,
    HELM_REPOSITORY_RESOURCE,
    KUSTOMIZATION_RESOURCE,
    kustomization_of,
)
from components.flux.status import parse_release
from components.gpu_migration_facts import _WORKLOADS, ClusterFacts, ObjectRef, cluster_facts
from components.gpu_migration_plan import (
    GPU_UNAVAILABLE,
    MigrationPlan,
    MigrationRefused,
    MigrationSpec,
    Removal,
    migration_spec,
)
from components.kubectl import KubectlError, delete_object, get_object, get_objects, patch_object
from components.log import logger
from components.wait import wait_until

# --------------------------------------------------------------------------
# Reading and carrying out (kubectl)
# --------------------------------------------------------------------------


def read_cluster(kubeconfig: str | None) -> ClusterFacts:
    """Read-only kubectl calls: Helm's release records, RuntimeClass nvidia
    and, where the cluster serves the Flux APIs, its HelmReleases (then also
    Kustomizations, HelmRepositories and HelmCharts) in every namespace."""
    def every(resource: str) -> list[dict]:
        return get_objects(resource, all_namespaces=True, kubeconfig=kubeconfig, unserved_ok=True)

    documents = get_objects("secrets", all_namespaces=True, selector="owner=helm", kubeconfig=kubeconfig)
    runtime_class = get_object("runtimeclass", RUNTIME_CLASS, kubeconfig=kubeconfig)
    flux_releases = every(HELM_RELEASE_RESOURCE)
    from_git = runtime_class is not None and kustomization_of((runtime_class.get("metadata") or {}).get("labels") or {}) is not None
    documents += [runtime_class] if runtime_class else []
    documents += flux_releases
    documents += every(KUSTOMIZATION_RESOURCE) if flux_releases or from_git else []
    documents += [*every(HELM_REPOSITORY_RESOURCE), *every(HELM_CHART_RESOURCE)] if flux_releases else []
    return cluster_facts(documents)


_say = logger("gpu-mode-migration")


class UninstallTimedOut(RuntimeError):
    """helm-controller did not uninstall a deleted HelmRelease in time."""

def _not_uninstalled(ref: ObjectRef, left: list[ObjectRef], timeout: float, kubeconfig: str | None) -> str:
    said = ""
    try:
        document = get_object(ref.resource, ref.name, namespace=ref.namespace, kubeconfig=kubeconfig)
    except KubectlError:
        document = None
    ready = parse_release(document).conditions.get("Ready") if document else None
    if ready is not None and ready.status != "True":
        said = f"; its Ready condition: {ready.reason}{': ' + ready.message if ready.message else ''}"
    return (f"helm-controller did not uninstall {ref.line()} within {timeout:g} s: {', '.join(item.line() for item in left)} "
            f"still there{said}. Is helm-controller running (`kubectl get deployments -n flux-system`)? `flux logs --kind=HelmRelease "
            f"--name={ref.name} -n {ref.namespace}` says why (helm-controller docs/spec/v2/helmreleases.md, \"Handling failed "
            "uninstall\"). The step to Talos 1.13 has not started; `pulumi up` continues from here.")


def _wait_uninstalled(removal: Removal, kubeconfig: str | None, *, timeout: float, poll: float,
                      clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Until the deleted HelmRelease and its release's workloads are gone,
    with a progress line per poll; at most ``timeout`` seconds."""
    refs = (removal.ref, *removal.wait_for)

    def left() -> list[ObjectRef]:
        return [ref for ref in refs if get_object(ref.resource, ref.name, namespace=ref.namespace, kubeconfig=kubeconfig) is not None]

    def describe(still: list[ObjectRef], waited: float, _remaining: float) -> None:
        # Every poll says what it saw, the last one too: even a slow first
        # poll that already exceeds the bound says it.
        _say(f"waiting for helm-controller to uninstall {removal.ref.line()}: {', '.join(ref.line() for ref in still)} still there "
             f"({waited:.0f} s of at most {timeout:g} s)")

    outcome = wait_until(left, lambda still: not still, timeout=timeout, interval=poll, clock=clock, sleep=sleep, describe=describe)
    if not outcome.done:
        raise UninstallTimedOut(_not_uninstalled(removal.ref, outcome.value, timeout, kubeconfig))
    _say(f"{removal.ref.line()} is gone, its chart uninstalled ({outcome.waited:.0f} s)")


# Inputs that decide the plan; a change to one is a change of the resource.
_SETTINGS = ("namespace", "releaseName", "adoptGuideObjects", "fluxObjects", "gitDevicePlugin")


def _plan(props: Mapping[str, Any], spec: MigrationSpec | None = None) -> MigrationPlan:
    return (spec or MigrationSpec.from_dict(props)).plan(read_cluster(props.get("kubeconfig") or None))


class GpuModeMigrationProvider(ResourceProvider):
    """check/diff read the cluster; create/update remove; delete removes nothing."""
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = dict(news)
        try:
            inputs["pendingChanges"] = _plan(news).lines()
        except KubectlError as error:
            # Preview must not fail only because the cluster does not answer.
            inputs["pendingChanges"] = [f"not known: cannot read the cluster ({error})"]
        return CheckResult(inputs, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return updating(bool(changed_keys(olds, news, _SETTINGS)) or says(news.get("pendingChanges"), ("remove ", "suspend ", "refused:")))

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"gpu-mode-migration-{props['namespace']}", outs=self._remove(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._remove(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to put back: the device plugin does not run on Talos 1.13
        (and a Kustomization suspended here stays suspended: resuming it
        would install the device plugin again)."""
    def _remove(self, props: dict[str, Any]) -> dict[str, Any]:
        kubeconfig = props.get("kubeconfig") or None
        spec = MigrationSpec.from_dict(props)
        plan = _plan(props, spec)
        if plan.refused:
            raise MigrationRefused("not upgrading to Talos 1.13 yet: " + " | ".join(plan.refused))
        if plan.removals:
            _say(f"WARNING: {GPU_UNAVAILABLE}")
        timeout, poll = spec.uninstall_timeout_seconds, spec.poll
        for removal in plan.removals:
            ref = removal.ref
            _say(removal.line())
            if removal.action == "suspend":
                patch_object(ref.resource, ref.name, {"spec": {"suspend": True}}, field_manager=FLUX_CLI_FIELD_MANAGER,
                             namespace=ref.namespace, kubeconfig=kubeconfig)
                continue
            delete_object(ref.resource, ref.name, namespace=ref.namespace, kubeconfig=kubeconfig, wait=removal.action == "delete")
            if removal.action == "uninstall":
                _wait_uninstalled(removal, kubeconfig, timeout=timeout, poll=poll)
        # Still gone once everything is done: nothing (Flux, a controller) put them back.
        still = [removal.ref.line() for removal in plan.removals
                 if removal.action != "suspend" and removal.ref.kind in (*_WORKLOADS, "RuntimeClass", "HelmRelease")
                 and get_object(removal.ref.resource, removal.ref.name, namespace=removal.ref.namespace, kubeconfig=kubeconfig) is not None]
        if still:
            raise RuntimeError(f"still in the cluster after the removal: {', '.join(still)}; something puts them back "
                               f"(`kubectl get {still[0].split()[0].lower()} -A -o yaml`: its labels and managedFields say what)")
        for note in plan.notes:
            _say(f"note: {note}")
        outs = {key: props[key] for key in _SETTINGS if key in props}
        outs.update(removed=[removal.ref.line() for removal in plan.removals if removal.action != "suspend"],
                    suspended=[removal.ref.line() for removal in plan.removals if removal.action == "suspend"], notes=plan.notes,
                    message=f"WARNING: {GPU_UNAVAILABLE}" if plan.removals else plan.lines()[0])
        return outs


class GpuModeMigration(pulumi.dynamic.Resource, module="migration", name="GpuModeMigration"):
    """Removes the device plugin and RuntimeClass nvidia before the node's
    upgrade to Talos 1.13."""
    removed: pulumi.Output[list[str]]
    message: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, kubeconfig: pulumi.Input[str] | None, opts: pulumi.ResourceOptions | None = None):
        super().__init__(GpuModeMigrationProvider(), name, {
            **migration_spec(cfg, pulumi.get_stack()).to_dict(),
            # Secret end to end; read per call, never kept.
            "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
            "pendingChanges": None, "removed": None, "suspended": None, "notes": None, "message": None,
        }, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])))
