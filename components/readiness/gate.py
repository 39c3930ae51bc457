"""Pure evaluation of a node against what the stack promises, and the bounded
wait around it (clock, sleep and progress injected)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.cluster import DEVICE_PLUGIN_CONFIG_LABEL as CONFIG_LABEL
from components.cluster import GPU_RESOURCE
from components.facts.gpu_ready import gpu_advertisement
from components.facts.kubernetes import PRODUCT_LABEL, NodeInfo
from components.facts.parsing import ParseError
from components.kubectl import KubectlError
from components.log import logger
from components.wait import wait_until

_say = logger("gpu-readiness")


@dataclass(frozen=True)
class Expectation:
    node_name: str
    gpus: int  # physical GPUs on the node
    advertised: int  # cfg.advertised_gpus: gpus x replicas, or gpus without sharing
    config_key: str  # the node's nvidia.com/device-plugin.config value
    namespace: str = "gpu-operator"
    resource: str = GPU_RESOURCE  # cluster.advertised_resource: nvidia.com/gpu or nvidia.com/gpu.shared


@dataclass(frozen=True)
class GateSpec:
    """The readiness gate's inputs, in the form its dynamic provider carries
    (JSON, camelCase keys as stored in the state). The kubeconfig is not in
    here: it travels next to the spec as a Pulumi secret."""

    node_name: str
    gpus: int
    expected_gpus: int
    resource: str
    config_key: str
    namespace: str
    helm_release: Mapping[str, str] | None  # flux delivery: {namespace, name} of the HelmRelease
    timeout_seconds: float
    poll_seconds: float
    max_poll_seconds: float

    @property
    def expectation(self) -> Expectation:
        return Expectation(node_name=self.node_name, gpus=self.gpus, advertised=self.expected_gpus,
                           config_key=self.config_key, namespace=self.namespace, resource=self.resource)

    def to_dict(self) -> dict[str, Any]:
        return {"nodeName": self.node_name, "gpus": self.gpus, "expectedGpus": self.expected_gpus,
                "resource": self.resource, "configKey": self.config_key, "namespace": self.namespace,
                "helmRelease": dict(self.helm_release) if self.helm_release else None,
                "timeoutSeconds": self.timeout_seconds, "pollSeconds": self.poll_seconds,
                "maxPollSeconds": self.max_poll_seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateSpec:
        """Also reads a gate stored before ``resource`` (then nvidia.com/gpu)
        or ``helmRelease`` existed."""
        release = data.get("helmRelease") or None
        return cls(node_name=str(data["nodeName"]), gpus=int(data["gpus"]), expected_gpus=int(data["expectedGpus"]),
                   resource=str(data.get("resource") or GPU_RESOURCE), config_key=str(data.get("configKey", "")),
                   namespace=str(data.get("namespace", "gpu-operator")),
                   helm_release={"namespace": str(release["namespace"]), "name": str(release["name"])} if release else None,
                   timeout_seconds=float(data["timeoutSeconds"]), poll_seconds=float(data["pollSeconds"]),
                   max_poll_seconds=float(data["maxPollSeconds"]))


@dataclass(frozen=True)
class Readiness:
    ready: bool
    layer: str  # the missing layer when not ready; "" when ready
    message: str
    allocatable: int = 0
    product: str = ""
    driver_version: str = ""


def evaluate(node: NodeInfo | None, want: Expectation) -> Readiness:
    """Ready when the node's GPUs are (components/facts/gpu_ready.py: allocatable
    ``want.resource`` == advertised, GFD labelled the product); otherwise name
    the first layer that is missing."""
    if node is None:
        return Readiness(False, "Talos/VM", f"node {want.node_name} is not registered in Kubernetes: the VM is not running or Talos has not joined the cluster")
    resource = want.resource
    gpus = gpu_advertisement(node, resource, want.advertised)
    allocatable, product, driver = gpus.count, gpus.product, gpus.driver
    facts = {"allocatable": allocatable, "product": product, "driver_version": driver}
    label = node.label(CONFIG_LABEL)
    config = (f"node label {CONFIG_LABEL}={label or '(unset)'}, expected {want.config_key}; "
              f"ConfigMap key {want.config_key} in namespace {want.namespace}")
    if gpus.count_problem == "renamed":
        return Readiness(False, "time-slicing config",
                         f"node {want.node_name} advertises {gpus.others_text()} but no {resource}: the time-slicing config "
                         f"(renameByDefault) is not applied ({config})", **facts)
    if gpus.count_problem == "none":
        return Readiness(False, "device plugin/driver",
                         f"node {want.node_name} advertises no {resource}: the GPU Operator or device plugin is not running on it, "
                         "or the NVIDIA driver is not loaded (check /proc/driver/nvidia/version on the node; "
                         "`python -m components.doctor --layer talos --layer kubernetes`)", **facts)
    if gpus.count_problem == "count":
        return Readiness(False, "time-slicing config",
                         f"node {want.node_name} advertises {resource}={allocatable}, expected {want.advertised}: the time-slicing "
                         f"config is not applied ({config})", **facts)
    if not gpus.labelled:
        return Readiness(False, "GPU Feature Discovery",
                         f"node {want.node_name} has no {PRODUCT_LABEL} label: GPU Feature Discovery has not labelled it "
                         f"(check the gpu-feature-discovery pods in {want.namespace}; it needs Node Feature Discovery)", **facts)
    return Readiness(True, "", f"node {want.node_name} advertises {resource}={allocatable} ({product}, driver {driver or 'unknown'})", **facts)


class GateError(RuntimeError):
    """The gate gave up; the message names the missing layer."""


Fetch = Callable[[], NodeInfo | None]
# An extra layer between the node and its GPUs (flux delivery: the
# HelmRelease, components.flux.status): None when it is ready, else why not.
Layer = Callable[[], Readiness | None]


def wait_for_gpu(fetch: Fetch, want: Expectation, timeout: float, *, poll: float = 5.0, max_poll: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 progress: Callable[[str], None] | None = None, release: Layer | None = None) -> Readiness:
    """Poll ``fetch`` until :func:`evaluate` says ready, backing off from
    ``poll`` to at most ``max_poll`` seconds; raise GateError after ``timeout``.
    With ``release``, a registered node also waits for that layer first.
    A missing kubectl fails at once; an unreachable API server is waited out.
    ``progress`` gets each line (default: the ``[gpu-readiness]`` logger)."""
    progress = progress or _say

    def probe() -> Readiness:
        try:
            node = fetch()
            return (release() if release is not None and node is not None else None) or evaluate(node, want)
        except KubectlError as error:
            if error.kind == "missing":
                raise GateError(f"GPU readiness gate: {error}") from None
            return Readiness(False, "Kubernetes API", f"cannot read node {want.node_name}: {error}")
        except ParseError as error:
            return Readiness(False, "Kubernetes API", f"unreadable node object for {want.node_name}: {error}")

    def describe(state: Readiness, _waited: float, remaining: float) -> None:
        if remaining > 0:
            progress(f"waiting ({state.layer}): {state.message}; {remaining:.0f} s left")

    outcome = wait_until(probe, lambda state: state.ready, timeout=timeout, interval=max(poll, 0.0), max_interval=max_poll,
                         clock=clock, sleep=sleep, describe=describe)
    state = outcome.value
    if not outcome.done:
        raise GateError(
            f"GPU readiness gate: node {want.node_name} not ready after {timeout:g} s (attempt {outcome.attempts}). "
            f"Missing layer: {state.layer}. {state.message}"
        )
    progress(state.message)
    return state
