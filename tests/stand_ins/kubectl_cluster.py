"""The kubectl stand-in's cluster (tests/stand_ins/kubectl.py): objects in
$FAKE_KUBE_STATE/objects.json served by ``get <type> [name ...] -o json``
(``-n``, ``-A``, ``-l key=value``; no name: a List, one name: the object,
several: a List of those found; with ``--ignore-not-found`` nothing when none
is found), ``delete <type> <name> [--ignore-not-found] [--wait=false]``,
``patch <type> <name> --type=merge -p JSON [--field-manager=M]``, ``cordon``/
``uncordon``/``drain`` of a Node object. Types resolve as kubectl resolves
them (plural, singular, short name or Kind, case-insensitive; a group given
must be the type's). $FAKE_KUBE_STATE/unreachable makes every call fail as
kubectl does when the API server does not answer. An object with finalizers
is only marked (``deletionTimestamp``) by a delete; it goes when they are
gone, and a waiting ``kubectl delete`` gives up as kubectl does when they
stay.

Flux, with $FAKE_KUBE_STATE/flux: its types are served (otherwise kubectl's
"the server doesn't have a resource type"), its CustomResourceDefinitions
(the vendored ones, tests/data/upstream/flux) are listed with the cluster's,
and before every call its controllers act as they would have since the last
one (a stopped one, with $FAKE_KUBE_STATE/<controller>.stopped, does nothing):

- kustomize-controller: every Kustomization that is not suspended applies
  its path in Git ($FAKE_KUBE_STATE/git.json, "<namespace>/<name>" ->
  objects): what is missing is created, the fields it applies are set again,
  and what it applied before and Git no longer has is pruned;
- helm-controller: a HelmRelease gets its finalizer; one not suspended is
  installed when Helm has no record of its release, and with drift detection
  ``enabled`` the objects of its release that were deleted are created again;
  a deleted one uninstalls its release (its objects and records, and its
  HelmChart) unless it is suspended, then lets its finalizer go
  (fluxcd/helm-controller internal/controller/helmrelease_controller.go
  ``reconcileDelete``, ``reconcileReleaseDeletion`` (no uninstall without
  ``status.storageNamespace``), internal/reconcile/helmchart_template.go; v1.0.0 ..
  v1.6.3)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import uuid
from pathlib import Path

import yaml

from tests.stand_ins.kubectl_objects import DEVICE_PLUGIN_CHART, FLUX_FINALIZER, helm_controller_install, helm_release_key

STATE = Path(os.environ.get("FAKE_KUBE_STATE", "."))

# plural -> (Kind, namespaced, other names, group)
TYPES = {
    "secrets": ("Secret", True, ("secret",), ""),
    "runtimeclasses": ("RuntimeClass", False, ("runtimeclass",), "node.k8s.io"),
    "daemonsets": ("DaemonSet", True, ("daemonset", "ds"), "apps"),
    "deployments": ("Deployment", True, ("deployment", "deploy"), "apps"),
    "configmaps": ("ConfigMap", True, ("configmap", "cm"), ""),
    "serviceaccounts": ("ServiceAccount", True, ("serviceaccount", "sa"), ""),
    "services": ("Service", True, ("service", "svc"), ""),
    "roles": ("Role", True, ("role",), "rbac.authorization.k8s.io"),
    "rolebindings": ("RoleBinding", True, ("rolebinding",), "rbac.authorization.k8s.io"),
    "clusterroles": ("ClusterRole", False, ("clusterrole",), "rbac.authorization.k8s.io"),
    "clusterrolebindings": ("ClusterRoleBinding", False, ("clusterrolebinding",), "rbac.authorization.k8s.io"),
    "nodes": ("Node", False, ("node", "no"), ""),
    "customresourcedefinitions": ("CustomResourceDefinition", False, ("customresourcedefinition", "crd", "crds"), "apiextensions.k8s.io"),
}
FLUX_TYPES = {
    "helmreleases": ("HelmRelease", True, ("helmrelease", "hr"), "helm.toolkit.fluxcd.io"),
    "helmrepositories": ("HelmRepository", True, ("helmrepository", "helmrepo"), "source.toolkit.fluxcd.io"),
    "helmcharts": ("HelmChart", True, ("helmchart", "hc"), "source.toolkit.fluxcd.io"),
    "kustomizations": ("Kustomization", True, ("kustomization", "ks"), "kustomize.toolkit.fluxcd.io"),
}
CLUSTER_SCOPED = {kind for kind, namespaced, _, _ in TYPES.values() if not namespaced}
NOW = "2026-01-01T00:00:00Z"


class Exit(Exception):
    """kubectl exits 1: the message on stderr (after ``stdout``, what it printed first)."""

    def __init__(self, message: str, stdout: str = ""):
        super().__init__(message)
        self.stdout = stdout


def flux() -> bool:
    return (STATE / "flux").exists()


def flux_crds() -> list[dict]:
    """The CRDs an installed Flux brings (those vendored for the tests)."""
    folder = Path(__file__).resolve().parents[1] / "data" / "upstream" / "flux"
    return [yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))] if flux() else []


def resolve(name: str) -> tuple[str, str, bool, str]:
    lowered, _, group = name.lower().partition(".")
    for plural, (kind, namespaced, others, type_group) in {**TYPES, **(FLUX_TYPES if flux() else {})}.items():
        if lowered in (plural, kind.lower(), *others) and group in ("", type_group):
            return plural, kind, namespaced, type_group
    # pkg/cmd/util/helpers.go checkErr (NoMatchError): the group is named when one was given.
    suffix = f' in group "{group}"' if group else ""
    raise Exit(f'error: the server doesn\'t have a resource type "{lowered}"{suffix}')


def matches(obj: dict, selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def identity(obj: dict) -> tuple[str, str | None, str]:
    metadata = obj.get("metadata") or {}
    return obj.get("kind", ""), None if obj.get("kind") in CLUSTER_SCOPED else metadata.get("namespace"), metadata.get("name", "")


def merge(target: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7386)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))
    return target


def fields(patch: dict) -> dict:
    return {f"f:{key}": fields(value) if isinstance(value, dict) else {} for key, value in patch.items()}


# -- Flux's controllers ------------------------------------------------------


class Cluster:
    def __init__(self, objects: list[dict]):
        self.objects = objects
        self.events: list[str] = []
        for obj in objects:
            self.give_uid(obj)

    @staticmethod
    def give_uid(obj: dict) -> None:
        """Every object has its own uid: one created again is another object."""
        obj.setdefault("metadata", {}).setdefault("uid", str(uuid.uuid4()))

    def exists(self, obj: dict) -> bool:
        return any(other["metadata"].get("uid") == obj["metadata"].get("uid") for other in self.objects)

    def find(self, kind: str, namespace: str | None, name: str) -> dict | None:
        return next((obj for obj in self.objects if identity(obj) == (kind, namespace, name)), None)

    def put(self, obj: dict) -> None:
        self.give_uid(obj)
        self.objects = [other for other in self.objects if identity(other) != identity(obj)] + [obj]

    def delete(self, obj: dict) -> None:
        """Mark an object with finalizers; drop one without."""
        if (obj.get("metadata") or {}).get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", NOW)
        else:
            self.objects = [other for other in self.objects if identity(other) != identity(obj)]

    def drop_finalized(self) -> None:
        self.objects = [obj for obj in self.objects
                        if not ((obj.get("metadata") or {}).get("deletionTimestamp") and not obj["metadata"].get("finalizers"))]

    def records(self, storage: str, release: str) -> list[dict]:
        return sorted((obj for obj in self.objects if obj.get("kind") == "Secret" and obj.get("type") == "helm.sh/release.v1"
                       and obj["metadata"].get("namespace") == storage and obj["metadata"].get("labels", {}).get("name") == release),
                      key=lambda obj: int(obj["metadata"]["labels"].get("version", 0)))


def manifest_of(record: dict) -> list[dict]:
    raw = base64.b64decode(base64.b64decode(record["data"]["release"]))
    body = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return [doc for doc in yaml.safe_load_all(body.get("manifest") or "") if isinstance(doc, dict)]


def kustomize_controller(cluster: Cluster, git: dict[str, list[dict]]) -> None:
    for ks in [obj for obj in cluster.objects if obj.get("kind") == "Kustomization"]:
        metadata, spec = ks["metadata"], ks.get("spec") or {}
        if spec.get("suspend") or metadata.get("deletionTimestamp"):
            continue
        key = f"{metadata['namespace']}/{metadata['name']}"
        wanted = git.get(key, [])
        labels = {"kustomize.toolkit.fluxcd.io/name": metadata["name"], "kustomize.toolkit.fluxcd.io/namespace": metadata["namespace"]}
        for document in wanted:
            document = json.loads(json.dumps(document))
            live = cluster.find(*identity(document))
            if live is None:
                document.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
                document["metadata"]["managedFields"] = [{"manager": "kustomize-controller", "operation": "Apply",
                                                          "fieldsV1": {"f:spec": fields(document.get("spec") or {})}}]
                cluster.put(document)
                cluster.events.append(f"kustomize-controller: {key} applied {document['kind']} {document['metadata']['name']}")
            elif not live["metadata"].get("deletionTimestamp"):
                # Server-side apply: the fields Git has are set again; others' fields stay.
                before = json.dumps(live, sort_keys=True)
                merge(live.setdefault("spec", {}), document.get("spec") or {})
                live["metadata"].setdefault("labels", {}).update(labels)
                if json.dumps(live, sort_keys=True) != before:
                    cluster.events.append(f"kustomize-controller: {key} corrected {live['kind']} {live['metadata']['name']}")
        keep = {identity(document) for document in wanted}
        for obj in list(cluster.objects):
            own = (obj.get("metadata") or {}).get("labels") or {}
            if all(own.get(k) == v for k, v in labels.items()) and identity(obj) not in keep and not obj["metadata"].get("deletionTimestamp"):
                cluster.delete(obj)
                cluster.events.append(f"kustomize-controller: {key} pruned {obj['kind']} {obj['metadata']['name']}")


def helm_controller(cluster: Cluster) -> None:
    for release in [obj for obj in cluster.objects if obj.get("kind") == "HelmRelease"]:
        metadata, spec = release["metadata"], release.get("spec") or {}
        label = f"{metadata['namespace']}/{metadata['name']}"
        status = release.get("status") or {}
        history = status.get("history") or []
        storage, name, _ = helm_release_key(release)
        storage, name = status.get("storageNamespace") or storage, (history[0].get("name") if history else None) or name
        if metadata.get("deletionTimestamp"):
            if FLUX_FINALIZER in metadata.get("finalizers", []):
                if not spec.get("suspend"):
                    # reconcileReleaseDeletion: no status.storageNamespace, no uninstall.
                    records = cluster.records(storage, name) if status.get("storageNamespace") else []
                    for document in manifest_of(records[-1]) if records else []:
                        live = cluster.find(*identity(document))
                        if live is not None:
                            cluster.delete(live)
                    for record in records:
                        cluster.delete(record)
                    chart = cluster.find("HelmChart", ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef", {}).get("namespace")
                                         or metadata["namespace"], f"{metadata['namespace']}-{metadata['name']}")
                    if chart is not None:
                        cluster.delete(chart)
                    cluster.events.append(f"helm-controller: {'uninstalled' if records else 'deleted without an uninstall'} {label}")
                metadata["finalizers"].remove(FLUX_FINALIZER)
            continue
        if FLUX_FINALIZER not in metadata.get("finalizers", []):
            metadata.setdefault("finalizers", []).append(FLUX_FINALIZER)
            cluster.events.append(f"helm-controller: finalizer on {label}")
        if spec.get("suspend") or ((spec.get("chart") or {}).get("spec") or {}).get("chart") != DEVICE_PLUGIN_CHART:
            continue
        records = cluster.records(storage, name)
        if not records:
            revision = max([entry.get("version", 0) for entry in history] + [0]) + 1
            for obj in helm_controller_install(release, revision):
                cluster.put(obj)
            cluster.events.append(f"helm-controller: installed {label} (revision {revision})")
        elif (spec.get("driftDetection") or {}).get("mode") == "enabled":
            for document in manifest_of(records[-1]):
                if cluster.find(*identity(document)) is None:
                    cluster.put(document)
                    cluster.events.append(f"helm-controller: drift corrected {label}: created {document['kind']} {document['metadata']['name']}")


def reconcile(cluster: Cluster) -> None:
    if not flux():
        return
    git_path = STATE / "git.json"
    if not (STATE / "kustomize-controller.stopped").exists():
        kustomize_controller(cluster, json.loads(git_path.read_text()) if git_path.exists() else {})
    if not (STATE / "helm-controller.stopped").exists():
        helm_controller(cluster)
    cluster.drop_finalized()


# -- kubectl -----------------------------------------------------------------




# -- kubectl's verbs on the cluster -------------------------------------------

SERVER_VERSION = "v1.34.3"
CLIENT_VERSION = "v1.34.1"


def _pod_view(pod: dict) -> dict:
    """A Pod object as the drain sees it (kubectl_drain's pod form)."""
    metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    owners = [ref.get("kind") for ref in metadata.get("ownerReferences") or [] if ref.get("controller")]
    return {"namespace": metadata.get("namespace"), "name": metadata.get("name"), "owner": owners[0] if owners else None,
            "emptydir": any("emptyDir" in volume for volume in spec.get("volumes") or []),
            "pdb_blocks": (metadata.get("annotations") or {}).get("stand-in/pdb-blocks") == "true", "object": pod}


def serve(verb: str, words: list[str], flags: dict[str, object]) -> tuple[str, str, bool, list[str]]:
    """(stdout, stderr, mutated, what the controllers did) of one call;
    Exit with kubectl's message when it fails."""
    from tests.stand_ins import kubectl_drain

    objects_path = STATE / "objects.json"
    cluster = Cluster(json.loads(objects_path.read_text()) if objects_path.exists() else [])
    if (STATE / "unreachable").exists():
        raise Exit("The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?")
    reconcile(cluster)
    before = json.dumps(cluster.objects, sort_keys=True)
    out, err = "", ""
    try:
        if verb == "version":
            out = json.dumps({"clientVersion": {"gitVersion": CLIENT_VERSION}, "kustomizeVersion": "v5.7.1",
                              "serverVersion": {"gitVersion": SERVER_VERSION}}, indent=2) + "\n"
        elif verb in ("cordon", "uncordon", "drain"):
            name = words[0]
            node = cluster.find("Node", None, name)
            view = None if node is None else {"unschedulable": bool((node.get("spec") or {}).get("unschedulable"))}

            def unschedulable(on: bool) -> None:
                node.setdefault("spec", {})["unschedulable"] = on  # type: ignore[union-attr]
                if not on:
                    node["spec"].pop("unschedulable")  # type: ignore[index]

            if verb != "drain":
                out = kubectl_drain.cordon(name, view, verb == "cordon", unschedulable)
            else:
                pods = [_pod_view(obj) for obj in cluster.objects
                        if obj.get("kind") == "Pod" and (obj.get("spec") or {}).get("nodeName") == name]
                try:
                    out, err = kubectl_drain.drain(name, view, flags, pods, unschedulable,
                                                   lambda gone: [cluster.delete(pod["object"]) for pod in gone])
                except kubectl_drain.Failed as failed:
                    objects_path.write_text(json.dumps(cluster.objects))
                    raise Exit(str(failed), failed.stdout) from None
        else:
            out = _objects(verb, words, flags, cluster)
    finally:
        objects_path.write_text(json.dumps(cluster.objects))
    return out, err, json.dumps(cluster.objects, sort_keys=True) != before, cluster.events


def _objects(verb: str, words: list[str], flags: dict[str, object], cluster: Cluster) -> str:
    if verb not in ("get", "delete", "patch"):
        raise Exit(f"kubectl stand-in: `kubectl {verb}` is not modelled on the cluster")
    plural, kind, namespaced, group = resolve(words[0])
    namespace = str(flags.get("namespace") or "default") if namespaced else None
    names = words[1:]
    name = names[0] if names else None
    if verb == "get" and flags.get("output") != "json":
        raise Exit("kubectl stand-in: only -o json is modelled for get on the cluster")
    if verb != "get" and (len(names) > 1 or kind == "CustomResourceDefinition"):
        raise Exit(f"kubectl stand-in: {verb} of one object other than a CustomResourceDefinition is modelled")

    def here(obj: dict) -> bool:
        metadata = obj.get("metadata") or {}
        return (obj.get("kind") == kind and (not namespaced or bool(flags.get("all-namespaces")) or metadata.get("namespace") == namespace)
                and (not names or metadata.get("name") in names))

    served = cluster.objects + (flux_crds() if kind == "CustomResourceDefinition" else [])
    found = [obj for obj in served if here(obj) and matches(obj, flags.get("selector"))]  # type: ignore[arg-type]
    qualified = f"{plural}{'.' + group if group else ''}"
    missing = [wanted for wanted in names if not any(obj["metadata"].get("name") == wanted for obj in found)]
    if missing and not flags.get("ignore-not-found"):
        raise Exit(f'Error from server (NotFound): {qualified} "{missing[0]}" not found')
    if verb == "get":
        # With --ignore-not-found kubectl prints nothing when nothing is found.
        if len(names) == 1 or (names and not found):
            return json.dumps(found[0], indent=4) + "\n" if found else ""
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": found, "metadata": {"resourceVersion": ""}}, indent=4) + "\n"
    if name is None:
        raise Exit("error: resource(s) were provided, but no name was specified")
    if verb == "patch":
        patch_type = str(flags.get("type") or "strategic")
        if patch_type not in ("merge", "json", "strategic"):
            raise Exit(f'error: --type must be one of [json merge strategic], not "{patch_type}"')
        if patch_type != "merge":
            if group.endswith("fluxcd.io"):
                raise Exit("Error from server (UnsupportedMediaType): the body of the request was in an unknown format - accepted media "
                           "types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            raise Exit("kubectl stand-in: only --type=merge is modelled")
        try:
            patch = json.loads(str(flags.get("patch") or ""))
        except ValueError:
            raise Exit(f'error: unable to parse "{flags.get("patch") or ""}": yaml: did not find expected node content') from None
        merge(found[0], patch)
        managers = found[0]["metadata"].setdefault("managedFields", [])
        managers.append({"manager": flags.get("field-manager") or "kubectl-patch", "operation": "Update", "fieldsType": "FieldsV1",
                         "fieldsV1": fields(patch)})
        return f"{kind.lower()}.{group or 'v1'}/{name} patched\n" if group else f"{kind.lower()}/{name} patched\n"
    for obj in found:
        cluster.delete(obj)
    if found and flags.get("wait", True):
        # kubectl waits until the object is gone: the controllers get their turn.
        reconcile(cluster)
        if any(cluster.exists(obj) for obj in found):
            raise Exit(f"error: timed out waiting for the condition on {qualified}/{name}")
    return "".join(f'{kind.lower()}{"." + group if group else ""} "{name}" deleted\n' for _ in found)
