"""A cluster as the guide's node leaves it, for the stand-in kubectl: the
nvidia-device-plugin chart (v0.18.2: its DaemonSets, ServiceAccount,
ClusterRole and binding, named as the chart's templates name them) installed
by Helm, with Helm 3's release record Secret (helm pkg/storage/driver:
base64 of gzipped JSON, in a Secret of type helm.sh/release.v1), RuntimeClass
``nvidia``, and the worker's Node object.

Flux too: what helm-controller leaves after installing a HelmRelease of that
chart (helm-controller v1.6.3: the finalizer ``finalizers.fluxcd.io``,
``status.storageNamespace`` and ``status.history``, the labels
``helm.toolkit.fluxcd.io/name|namespace`` on every object of the release and
in Helm's record of its manifest, the HelmChart ``<namespace>-<name>`` in the
source's namespace), and who made a Flux object (pulumi-kubernetes' field
manager, a Kustomization's labels and field manager, or kubectl by hand).
The stand-in kubectl's helm-controller installs with the same function."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def device_plugin_objects(release: str, namespace: str, extra_labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": release,
              "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "nvidia-device-plugin-0.18.2", **(extra_labels or {})}
    full = release if "nvidia-device-plugin" in release else f"{release}-nvidia-device-plugin"

    def obj(api: str, kind: str, name: str, namespaced: bool = True) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "labels": dict(labels)}
        if namespaced:
            metadata["namespace"] = namespace
        return {"apiVersion": api, "kind": kind, "metadata": metadata}

    return [obj("v1", "ServiceAccount", f"{full}-service-account"),
            obj("rbac.authorization.k8s.io/v1", "ClusterRole", f"{full}-role", namespaced=False),
            obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", f"{full}-role-binding", namespaced=False),
            obj("apps/v1", "DaemonSet", full),
            obj("apps/v1", "DaemonSet", f"{full}-gpu-feature-discovery")]


def release_secret(release: str, namespace: str, revision: int, manifest_objects: list[dict[str, Any]],
                   chart: str = "nvidia-device-plugin", status: str = "deployed") -> dict[str, Any]:
    body = {"name": release, "namespace": namespace, "version": revision, "info": {"status": status},
            "chart": {"metadata": {"name": chart, "version": "0.18.2"}},
            "manifest": "".join(f"---\n# Source: {chart}/templates/x.yml\n{yaml.safe_dump(o)}" for o in manifest_objects)}
    helm_text = base64.b64encode(gzip.compress(json.dumps(body).encode()))
    return {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": f"sh.helm.release.v1.{release}.v{revision}", "namespace": namespace,
                         "labels": {"name": release, "owner": "helm", "status": status, "version": str(revision)}},
            "data": {"release": base64.b64encode(helm_text).decode()}}


def installed_device_plugin(release: str = "nvidia-device-plugin", namespace: str = "gpu-operator") -> list[dict[str, Any]]:
    objects = device_plugin_objects(release, namespace)
    return [*objects, release_secret(release, namespace, 1, objects, status="superseded"), release_secret(release, namespace, 2, objects)]


# -- Flux ------------------------------------------------------------------

FLUX_FINALIZER = "finalizers.fluxcd.io"
DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
PULUMI_MANAGER = "pulumi-kubernetes-8f3c2a1b"  # pulumi-kubernetes' SSA field manager: the prefix and a random suffix


def _fields(document: dict[str, Any]) -> dict[str, Any]:
    return {"f:spec": {f"f:{key}": {} for key in document.get("spec") or {}}}


def made_by(document: dict[str, Any], by: str | tuple[str, str]) -> dict[str, Any]:
    """``document`` as its maker leaves it: "pulumi" (pulumi-kubernetes'
    server-side apply), "hand" (`kubectl apply`), or a Kustomization
    ``(namespace, name)`` (kustomize-controller: its labels and field
    manager)."""
    document = json.loads(json.dumps(document))
    metadata = document.setdefault("metadata", {})
    if by == "pulumi":
        manager = {"manager": PULUMI_MANAGER, "operation": "Apply"}
    elif by == "hand":
        manager = {"manager": "kubectl-client-side-apply", "operation": "Update"}
    else:
        namespace, name = by
        metadata.setdefault("labels", {}).update({"kustomize.toolkit.fluxcd.io/name": name, "kustomize.toolkit.fluxcd.io/namespace": namespace})
        manager = {"manager": "kustomize-controller", "operation": "Apply"}
    metadata["managedFields"] = [{**manager, "apiVersion": document.get("apiVersion"), "fieldsType": "FieldsV1", "fieldsV1": _fields(document)}]
    return document


def helm_release_key(release: dict[str, Any]) -> tuple[str, str, str]:
    """(storage namespace, Helm release name, target namespace) of a
    HelmRelease (helm-controller's GetStorageNamespace, GetReleaseName,
    GetReleaseNamespace)."""
    metadata, spec = release["metadata"], release.get("spec") or {}
    target = spec.get("targetNamespace") or metadata["namespace"]
    name = spec.get("releaseName") or (f"{spec['targetNamespace']}-{metadata['name']}" if spec.get("targetNamespace") else metadata["name"])
    return spec.get("storageNamespace") or metadata["namespace"], name, target


def helm_controller_install(release: dict[str, Any], revision: int = 1) -> list[dict[str, Any]]:
    """What helm-controller makes when it installs ``release`` (a HelmRelease
    of the device-plugin chart), which it updates in place (finalizer,
    status): the chart's objects and Helm's record, both with its origin
    labels, and the HelmChart it reads the chart through."""
    metadata, spec = release["metadata"], release.get("spec") or {}
    storage, name, target = helm_release_key(release)
    origin = {"helm.toolkit.fluxcd.io/name": metadata["name"], "helm.toolkit.fluxcd.io/namespace": metadata["namespace"]}
    objects = device_plugin_objects(name, target, origin)
    template = spec["chart"]["spec"]
    source = template["sourceRef"]
    chart = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
             "metadata": {"name": f"{metadata['namespace']}-{metadata['name']}", "namespace": source.get("namespace") or metadata["namespace"],
                          "labels": dict(origin)},
             "spec": {"chart": template["chart"], "version": template.get("version"),
                      "sourceRef": {"kind": source["kind"], "name": source["name"]}}}
    if FLUX_FINALIZER not in metadata.setdefault("finalizers", []):
        metadata["finalizers"].append(FLUX_FINALIZER)
    release["status"] = {
        "storageNamespace": storage, "observedGeneration": 1,
        "history": [{"name": name, "namespace": target, "chartName": template["chart"], "chartVersion": template.get("version"),
                     "version": revision, "status": "deployed"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "InstallSucceeded", "message": "Helm install succeeded", "observedGeneration": 1}]}
    record = release_secret(name, target, revision, objects)
    record["metadata"]["namespace"] = storage
    return [*objects, record, chart]


def flux_device_plugin(release: dict[str, Any], repository: dict[str, Any], by: str | tuple[str, str]) -> list[dict[str, Any]]:
    """The device plugin installed by Flux: ``repository`` and ``release``
    (HelmRepository, HelmRelease documents) as ``by`` made them, and what
    helm-controller made of them."""
    release = made_by(release, by)
    return [made_by(repository, by), release, *helm_controller_install(release)]


def kustomization(name: str, namespace: str = "flux-system", *, suspend: bool = False, suspend_in_git: bool = False,
                  path: str = "./kubernetes/homelab/apps/base/nvidia-gpu-operator/app") -> dict[str, Any]:
    """A Flux Kustomization applying ``path`` of the guide's GitRepository;
    ``suspend_in_git``: its own manifest in Git sets spec.suspend (a parent
    Kustomization applies it: kustomize-controller owns the field)."""
    spec: dict[str, Any] = {"interval": "30m", "path": path, "prune": True, "sourceRef": {"kind": "GitRepository", "name": "profmoo-home"}}
    if suspend_in_git:
        spec["suspend"] = suspend
    document = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    # The guide's layout: the flux-system Kustomization applies the others (ks.yaml files).
    document = made_by(document, ("flux-system", "flux-system"))
    if suspend and not suspend_in_git:  # `flux suspend kustomization`
        document["spec"]["suspend"] = True
        document["metadata"]["managedFields"].append({"manager": "flux-client-side-apply", "operation": "Update", "fieldsType": "FieldsV1",
                                                      "fieldsV1": {"f:spec": {"f:suspend": {}}}})
    return document


def runtime_class(labels: dict[str, str] | None = None, owner: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "nvidia", "labels": dict(labels or {})}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "name": "cluster-policy", "uid": "1"}]
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": metadata, "handler": "nvidia"}


def node(name: str = "moody-good", ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}], "allocatable": {}, "capacity": {}}}


@dataclass
class FakeKubectl:
    state: Path
    bin_dir: Path

    def objects(self, objects: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        path = self.state / "objects.json"
        if objects is not None:
            path.write_text(json.dumps(objects))
        return json.loads(path.read_text()) if path.exists() else []

    def unreachable(self, on: bool = True) -> None:
        path = self.state / "unreachable"
        path.write_text("") if on else path.unlink(missing_ok=True)

    def calls(self) -> list[dict[str, Any]]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def has(self, kind: str, name: str) -> bool:
        return any(obj["kind"] == kind and obj["metadata"]["name"] == name for obj in self.objects())

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((obj for obj in self.objects() if obj["kind"] == kind and obj["metadata"]["name"] == name), None)

    def install_flux(self, git: dict[tuple[str, str], list[dict[str, Any]]] | None = None) -> None:
        """Serve the Flux APIs, with helm-controller and kustomize-controller
        running; ``git``: what each Kustomization's path in Git holds."""
        (self.state / "flux").write_text("")
        if git is not None:
            self.git(git)

    def git(self, contents: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        """The Git repository's content, per Kustomization (namespace, name)."""
        (self.state / "git.json").write_text(json.dumps({f"{ns}/{name}": docs for (ns, name), docs in contents.items()}))

    def stop(self, controller: str) -> None:
        (self.state / f"{controller}.stopped").write_text("")

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        """Run the stand-in as a user would (logged like every other call;
        Flux's controllers act first, as between any two calls)."""
        env = {**os.environ, "FAKE_KUBE_STATE": str(self.state), "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}"}
        return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    def settle(self, rounds: int = 3) -> None:
        """Let time pass: Flux's controllers reconcile ``rounds`` times."""
        for _ in range(rounds):
            self.kubectl("get", "nodes", "-o", "json")


def install_kubectl(tmp_path: Path, bin_dir: Path | None = None) -> FakeKubectl:
    state = tmp_path / "kube-state"
    state.mkdir()
    bin_dir = bin_dir or tmp_path / "kube-bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "kubectl"
    script.write_text(f"#!{sys.executable}\nimport os, runpy\nos.environ.pop('FAKE_CLI_DIR', None)\n"
                      f"runpy.run_path({str(HERE / 'kubectl.py')!r}, run_name='__main__')\n")
    script.chmod(0o755)
    fake = FakeKubectl(state, bin_dir)
    fake.objects([])
    return fake
