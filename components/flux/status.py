"""Is the HelmRelease ready? A pure reading of its status, for the readiness
gate (components.readiness).

helm-controller v1.6.3 (docs/spec/v2/helmreleases.md, "Conditions") reports
``Ready`` True once the release is installed or upgraded and up to date
(reasons InstallSucceeded, UpgradeSucceeded, TestSucceeded); ``Ready`` False
with the failure as reason (InstallFailed, UpgradeFailed, TestFailed,
ArtifactFailed, RollbackSucceeded, UninstallSucceeded, ...) and its message;
``Ready`` Unknown while it works (``Reconciling`` True, reason Progressing).
When remediation retries are used up it adds ``Stalled`` True, reason
RetriesExceeded, and does nothing more until the spec changes or someone
resets it, so the gate stops waiting there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.flux.in_cluster import HELM_RELEASE_RESOURCE
from components.kubectl import KubectlError, get_objects
from components.readiness.gate import GateError, Readiness

LAYER = "Flux HelmRelease"


@dataclass(frozen=True)
class Condition:
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str
    observed_generation: int | None


@dataclass(frozen=True)
class ReleaseStatus:
    namespace: str
    name: str
    generation: int | None
    suspended: bool
    conditions: dict[str, Condition]  # by type

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_release(document: dict[str, Any]) -> ReleaseStatus:
    metadata = document.get("metadata") or {}
    conditions: dict[str, Condition] = {}
    for item in (document.get("status") or {}).get("conditions") or []:
        if isinstance(item, dict) and isinstance(item.get("type"), str):
            generation = item.get("observedGeneration")
            conditions[item["type"]] = Condition(str(item.get("status", "Unknown")), str(item.get("reason", "")),
                                                 " ".join(str(item.get("message", "")).split()),
                                                 generation if isinstance(generation, int) else None)
    generation = metadata.get("generation")
    return ReleaseStatus(str(metadata.get("namespace", "")), str(metadata.get("name", "")),
                         generation if isinstance(generation, int) else None,
                         bool((document.get("spec") or {}).get("suspend")), conditions)


def _hint(ref: str) -> str:
    namespace, _, name = ref.partition("/")
    return f"(`flux get helmreleases -n {namespace} {name}`, `flux logs --kind=HelmRelease --name={name} -n {namespace}`)"


def evaluate_release(release: ReleaseStatus | None, ref: str) -> Readiness | None:
    """None when the HelmRelease is Ready for its current spec; otherwise why
    not, naming Flux's reason. Raises GateError when Flux has stopped trying."""
    if release is None:
        return Readiness(False, LAYER, f"HelmRelease {ref} does not exist (it is created by the GPU stack, or by Flux from Git)")
    if release.suspended:
        return Readiness(False, LAYER, f"HelmRelease {ref} is suspended (`flux resume helmrelease -n {release.namespace} {release.name}`)")
    ready = release.conditions.get("Ready")
    if ready is None:
        return Readiness(False, LAYER, f"HelmRelease {ref} has no Ready condition yet: helm-controller has not reconciled it (is Flux's helm-controller running?)")
    stalled = release.conditions.get("Stalled")
    if ready.status == "True":
        if release.generation is not None and ready.observed_generation is not None and ready.observed_generation < release.generation:
            return Readiness(False, LAYER, f"HelmRelease {ref} is Ready for generation {ready.observed_generation}, "
                                           f"not yet for the current generation {release.generation}")
        return None
    said = f"{ready.reason}: {ready.message}" if ready.message else ready.reason or "no reason given"
    # A Stalled of an older generation is over: a spec change resets the retries.
    if stalled is not None and stalled.status == "True" and not (
            release.generation is not None and stalled.observed_generation is not None and stalled.observed_generation < release.generation):
        raise GateError(f"GPU readiness gate: HelmRelease {ref} is not ready and Flux has stopped retrying "
                        f"(Stalled: {stalled.reason}{': ' + stalled.message if stalled.message else ''}). Ready is False, {said} {_hint(ref)}")
    state = "is not ready" if ready.status == "False" else "is being reconciled"
    return Readiness(False, LAYER, f"HelmRelease {ref} {state}: {said} {_hint(ref)}")


def release_check(namespace: str, name: str, kubeconfig: str | None, timeout: float = 30) -> Callable[[], Readiness | None]:
    """The gate's extra step in flux delivery: read the HelmRelease (one
    read-only kubectl call) and evaluate it. An unreadable HelmRelease (e.g.
    no Flux CRDs) is reported in this layer; kubectl missing or the API
    server unreachable go to the gate as they are."""
    ref = f"{namespace}/{name}"

    def check() -> Readiness | None:
        try:
            found = get_objects(HELM_RELEASE_RESOURCE, [name], namespace=namespace, kubeconfig=kubeconfig, timeout=timeout)
        except KubectlError as error:
            if error.kind != "failed":
                raise
            return Readiness(False, LAYER, f"cannot read HelmRelease {ref}: {error}")
        return evaluate_release(parse_release(found[0]) if found else None, ref)

    return check
