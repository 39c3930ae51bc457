"""The Flux objects of `gpuStack.delivery: flux` as pulumi-kubernetes
resources (children of GpuStack, on the stack's Kubernetes provider)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config import StackConfig
from components.flux.objects import helm_release, helm_repository
from components.options import child_options

# pulumi-kubernetes waits for a deleted object to be gone; a HelmRelease goes
# only after helm-controller has uninstalled the chart, which may take the
# release's own timeout (objects.RELEASE_TIMEOUT, 15 m). Creates and updates
# return at once unless PULUMI_K8S_AWAIT_ALL is set (pulumi-kubernetes 4.18
# CHANGELOG); the readiness gate does the waiting.
RELEASE_TIMEOUTS = pulumi.CustomTimeouts(create="20m", update="20m", delete="20m")


def _custom_resource(name: str, document: dict[str, Any], namespace: pulumi.Input[str],
                     opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        name,
        api_version=document["apiVersion"],
        kind=document["kind"],
        # The namespace as an output of the Namespace resource: created after it, deleted before it.
        metadata={**document["metadata"], "namespace": namespace},
        spec=document["spec"],
        opts=opts,
    )


def flux_helm_release(parent: pulumi.Resource, name: str, cfg: StackConfig, namespace: pulumi.Input[str],
                      opts: pulumi.ResourceOptions | None, *, checked: list[pulumi.Resource],
                      waits_for: list[pulumi.Resource]) -> k8s.apiextensions.CustomResource:
    """HelmRepository + HelmRelease (components.flux.objects), both after
    ``checked`` (the Flux API check); the release also after ``waits_for``
    (what the Helm release waits for) and the repository. Returns the
    HelmRelease."""
    release = helm_release(cfg)
    repository = _custom_resource(f"{name}-helm-repository", helm_repository(cfg), namespace,
                                  child_options(parent, opts, depends_on=checked))
    return _custom_resource(f"{name}-{release['metadata']['name']}", release, namespace,
                            child_options(parent, opts, depends_on=[*waits_for, *checked, repository], custom_timeouts=RELEASE_TIMEOUTS))
