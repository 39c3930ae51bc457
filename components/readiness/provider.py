"""Dynamic provider behind GpuReadiness. Pickled by reference (dill): no
import-time side effects, no clients or secrets on the instance; kubectl runs
inside each method with the kubeconfig passed in as a (secret) input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.cluster import GPU_RESOURCE
from components.dynamic import changed_keys, updating
from components.facts.kubernetes import NodeInfo, parse_node
from components.flux.status import release_check
from components.kubectl import get_node
from components.readiness.gate import GateSpec, Readiness, wait_for_gpu

# Inputs that change what "ready" means; a change re-runs the wait.
_GATING_INPUTS = ("nodeName", "gpus", "expectedGpus", "configKey", "resource", "helmRelease")
_PUBLIC_OUTPUTS = ("nodeName", "gpus", "expectedGpus", "configKey", "namespace", "resource", "helmRelease")
# A gate created before `resource` existed counted nvidia.com/gpu.
_DEFAULTS = {"resource": GPU_RESOURCE}


def fetch_node(node_name: str, kubeconfig: str | None, timeout: float = 30) -> NodeInfo | None:
    """``kubectl get node <name> -o json``; None when the node does not exist."""
    data = get_node(node_name, kubeconfig=kubeconfig, timeout=timeout)
    return None if data is None else parse_node(data)


class GpuReadinessProvider(ResourceProvider):
    """create/update wait for the node's GPUs; delete removes nothing."""

    def __init__(self, *, clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 progress: Callable[[str], None] | None = None):
        super().__init__()
        # None in production (the engine pickles this instance); tests inject.
        self.clock = clock
        self.sleep = sleep
        self.progress = progress

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not isinstance(news.get("nodeName"), str) or not news.get("nodeName"):
            failures.append(CheckFailure("nodeName", "must be the Kubernetes node name"))
        for key, minimum in (("gpus", 1), ("expectedGpus", 1), ("timeoutSeconds", 1), ("pollSeconds", 0.001), ("maxPollSeconds", 0.001)):
            value = news.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                failures.append(CheckFailure(key, f"must be a number >= {minimum}, got {value!r}"))
        release = news.get("helmRelease")
        if release is not None and not (isinstance(release, dict) and all(isinstance(release.get(key), str) and release.get(key)
                                                                          for key in ("namespace", "name"))):
            failures.append(CheckFailure("helmRelease", f"must be {{namespace, name}} of the Flux HelmRelease, got {release!r}"))
        resource = news.get("resource", GPU_RESOURCE)
        if not isinstance(resource, str) or not resource.startswith(GPU_RESOURCE):
            failures.append(CheckFailure("resource", f"must be {GPU_RESOURCE} or {GPU_RESOURCE}.shared, got {resource!r}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return updating(bool(changed_keys(olds, news, _GATING_INPUTS, _DEFAULTS)))

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['nodeName']}-gpu-ready", self._wait(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._wait(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """A gate changes nothing in the cluster, so there is nothing to undo."""

    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        spec = GateSpec.from_dict(props)
        want = spec.expectation
        kubeconfig = props.get("kubeconfig") or None
        release = spec.helm_release
        state: Readiness = wait_for_gpu(
            lambda: fetch_node(want.node_name, kubeconfig),
            want,
            spec.timeout_seconds,
            poll=spec.poll_seconds,
            max_poll=spec.max_poll_seconds,
            **{key: value for key, value in (("clock", self.clock), ("sleep", self.sleep)) if value is not None},
            progress=self.progress,
            release=release_check(release["namespace"], release["name"], kubeconfig) if release else None,
        )
        outs = {key: props[key] for key in _PUBLIC_OUTPUTS if key in props}
        outs.update(allocatable=state.allocatable, product=state.product, driverVersion=state.driver_version)
        return outs
