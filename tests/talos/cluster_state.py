"""A cluster as the guide's node leaves it, for the stand-in kubectl: the
nvidia-device-plugin chart (v0.18.2: its DaemonSets, ServiceAccount,
ClusterRole and binding, named as the chart's templates name them) installed
by Helm, with Helm 3's release record Secret (helm pkg/storage/driver:
base64 of gzipped JSON, in a Secret of type helm.sh/release.v1), RuntimeClass
``nvidia``, and the worker's Node object."""

from __future__ import annotations

import base64
import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def device_plugin_objects(release: str, namespace: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": release,
              "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "nvidia-device-plugin-0.18.2"}
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


def install_kubectl(tmp_path: Path, bin_dir: Path | None = None) -> FakeKubectl:
    state = tmp_path / "kube-state"
    state.mkdir()
    bin_dir = bin_dir or tmp_path / "kube-bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "kubectl"
    script.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(HERE / 'fake_kubectl.py')!r}, run_name='__main__')\n")
    script.chmod(0o755)
    fake = FakeKubectl(state, bin_dir)
    fake.objects([])
    return fake
