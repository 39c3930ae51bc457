"""Does the cluster serve the Flux APIs that `gpuStack.delivery: flux` uses?

A fact (the Flux CRDs, read with one read-only kubectl call), a pure decision,
and the dynamic resource that runs it where the engine asks:

- ``check`` runs on every `pulumi preview` and `pulumi up` before anything is
  created: it refuses flux delivery when the cluster lacks the CRDs (or serves
  only older API versions), and says so, without refusing, when it cannot
  reach the cluster to look.
- ``create``/``update`` look again right before the Flux objects are made,
  and then an unreachable cluster is an error.

Flux serves HelmRelease ``helm.toolkit.fluxcd.io/v2`` from helm-controller
v1.0.0 and HelmRepository ``source.toolkit.fluxcd.io/v1`` from
source-controller v1.3.0, both part of Flux v2.3.0 (their CHANGELOGs).

Pickled by reference with dill: no import-time side effects, nothing held on
the instance; the kubeconfig arrives as a secret input per call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.config import ConfigIssue
from components.dynamic import changed_keys, updating
from components.kubectl import KubectlError, get_objects
from components.log import logger
from components.unknowns import known

CRD_RESOURCE = "customresourcedefinitions.apiextensions.k8s.io"


@dataclass(frozen=True)
class FluxApi:
    kind: str
    crd: str  # <plural>.<group>
    version: str

    @property
    def group_version(self) -> str:
        return f"{self.crd.split('.', 1)[1]}/{self.version}"


REQUIRED_APIS = (
    FluxApi("HelmRepository", "helmrepositories.source.toolkit.fluxcd.io", "v1"),
    FluxApi("HelmRelease", "helmreleases.helm.toolkit.fluxcd.io", "v2"),
)


def served_versions(crds: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """CRD name -> the versions it serves (``spec.versions[].served``)."""
    served: dict[str, tuple[str, ...]] = {}
    for crd in crds:
        name = (crd.get("metadata") or {}).get("name")
        versions = (crd.get("spec") or {}).get("versions") or []
        if isinstance(name, str):
            served[name] = tuple(str(v.get("name")) for v in versions if isinstance(v, dict) and v.get("served"))
    return served


def missing_apis(served: dict[str, tuple[str, ...]]) -> list[str]:
    """What flux delivery needs and the cluster does not serve, each with
    what it serves instead; empty when everything is there."""
    missing = []
    for api in REQUIRED_APIS:
        if api.crd not in served:
            missing.append(f"{api.kind} {api.group_version} (no CRD {api.crd}: Flux is not installed)")
        elif api.version not in served[api.crd]:
            others = ", ".join(served[api.crd]) or "no version"
            missing.append(f"{api.kind} {api.group_version} (CRD {api.crd} serves {others}: Flux older than v2.3)")
    return missing


def refusal(missing: list[str]) -> str:
    return str(ConfigIssue(
        "gpuStack.delivery", "flux",
        "the cluster does not serve " + "; ".join(missing) + ". Install or upgrade Flux to v2.3 or newer "
        "(`flux install`, or `flux bootstrap` for a GitOps repository), or set gpuStack.delivery: helm"))


def read_served(kubeconfig: str | None, timeout: float = 20) -> dict[str, tuple[str, ...]]:
    """The fact: one read-only `kubectl get customresourcedefinitions ...`."""
    return served_versions(get_objects(CRD_RESOURCE, [api.crd for api in REQUIRED_APIS], kubeconfig=kubeconfig, timeout=timeout))


_PUBLIC = ("apis",)

_say = logger("flux-preflight")
_warn = logger("flux-preflight", "warn")


class FluxPreflightProvider(ResourceProvider):
    """check refuses a cluster without the Flux APIs; create/update look
    again and also fail when the cluster cannot be read; delete does nothing."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        kubeconfig = news.get("kubeconfig")
        if not known(kubeconfig):
            _say("Flux APIs: the kubeconfig is not known yet; they are checked before the Flux objects are created")
            return CheckResult(news, [])
        try:
            missing = missing_apis(read_served(kubeconfig or None))
        except KubectlError as error:
            if error.kind == "missing":
                return CheckResult(news, [CheckFailure("delivery", f"gpuStack.delivery is flux: {error}")])
            _warn(f"Flux APIs not checked: the cluster could not be read ({error}). `pulumi up` checks again "
                  "before it creates the Flux objects and stops there if Flux is not installed.")
            return CheckResult(news, [])
        return CheckResult(news, [CheckFailure("delivery", refusal(missing))] if missing else [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return updating(bool(changed_keys(olds, news, ("apis",))))

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("flux-apis", self._verify(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._verify(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """A check changes nothing in the cluster, so there is nothing to undo."""

    def _verify(self, props: dict[str, Any]) -> dict[str, Any]:
        try:
            served = read_served(props.get("kubeconfig") or None)
        except KubectlError as error:
            raise RuntimeError(f"cannot check the cluster for the Flux APIs before creating Flux objects: {error}") from None
        missing = missing_apis(served)
        if missing:
            raise RuntimeError(refusal(missing))
        outs = {key: props[key] for key in _PUBLIC if key in props}
        outs["served"] = {api.crd: list(served[api.crd]) for api in REQUIRED_APIS}
        return outs


class FluxPreflight(pulumi.dynamic.Resource, module="flux", name="FluxPreflight"):
    """The read-only check that the cluster serves the Flux APIs."""

    served: pulumi.Output[dict]

    def __init__(self, name: str, kubeconfig: pulumi.Input[str] | None, opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            FluxPreflightProvider(), name,
            {
                "apis": [f"{api.kind} {api.group_version}" for api in REQUIRED_APIS],
                # Secret end to end; the provider reads it per call, never keeps it.
                "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
                "served": None,
            },
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])),
        )
