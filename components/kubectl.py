"""The one place that runs ``kubectl``.

``run_kubectl`` takes kubeconfig *content* (a secret), writes it to a private
temp file (mode 0600) for the duration of one call and removes it afterwards;
with ``kubeconfig=None`` kubectl's own ``KUBECONFIG`` / ``~/.kube/config``
applies. Errors are classified (``KubectlError.kind``) so callers can tell
"cannot reach the cluster" from "the object is not there" from "kubectl is
not installed". Nothing here logs the kubeconfig or its path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Literal

import yaml

from components.masking import mask

ErrorKind = Literal["missing", "timeout", "unreachable", "not_found", "failed"]

# kubectl's own wording for "the cluster could not be reached / we are not
# allowed in": the caller skips rather than fails on these.
_UNREACHABLE_MARKERS = (
    "unable to connect to the server",
    "the connection to the server",
    "connection refused",
    "no such host",
    "i/o timeout",
    "context deadline exceeded",
    "tls handshake timeout",
    "couldn't get current server api group list",
    "the server has asked for the client to provide credentials",
    "unauthorized",
    "you must be logged in",
    "certificate signed by unknown authority",
    "no configuration has been provided",
    "network is unreachable",
    "no route to host",
)


class KubectlError(RuntimeError):
    """kubectl is missing, timed out, or exited non-zero.

    ``kind``: ``missing`` (no binary), ``timeout``, ``unreachable`` (API
    server not reachable or credentials refused), ``not_found`` (the object
    does not exist) or ``failed`` (anything else, e.g. a command in
    ``kubectl exec`` exiting non-zero).
    """

    def __init__(self, message: str, *, kind: ErrorKind, returncode: int | None = None, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def classify_failure(stderr: str) -> ErrorKind:
    """Pure: which kind of failure kubectl's stderr describes."""
    text = stderr.lower()
    if "(notfound)" in text or ("not found" in text and "error from server" in text):
        return "not_found"
    if any(marker in text for marker in _UNREACHABLE_MARKERS):
        return "unreachable"
    return "failed"


# klog's header (`E1130 04:36:23.434898    8834 memcache.go:265] `): kubectl's
# internal log lines, repeated once per retry, before its own one-line verdict.
_KLOG = re.compile(r"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+ [^\]]*\] ")
_UNHANDLED = re.compile(r'^"Unhandled Error" err="(.*)"$')


def summarize_stderr(stderr: str) -> str:
    """Pure: kubectl's stderr in one line, without its klog lines (repeated per
    retry): the last lines of the rest (kubectl's verdict, ``The connection to
    the server ... was refused``, or the message of a command run by ``kubectl
    exec``), else the last klog message without its header. The full text
    stays in KubectlError.stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    verdicts = [line for line in lines if not _KLOG.match(line)]
    if verdicts:
        return " | ".join(dict.fromkeys(verdicts[-3:]))
    if not lines:
        return ""
    last = _KLOG.sub("", lines[-1])
    unhandled = _UNHANDLED.match(last)
    return unhandled.group(1).replace('\\"', '"') if unhandled else last


# The fields of a kubeconfig's users that are credentials (client-go
# tools/clientcmd/api/v1/types.go AuthInfo).
_CREDENTIALS = ("token", "password", "client-key-data", "client-certificate-data")


def kubeconfig_secrets(kubeconfig: str | None) -> list[str]:
    """Pure: the credentials in kubeconfig content (none for paths or None):
    what kubectl's errors must never show (masked with the Bearer/URL
    credentials a server may echo, components.masking)."""
    if not kubeconfig or _paths(kubeconfig):
        return []
    try:
        data = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        return []
    users = data.get("users") if isinstance(data, dict) else None
    found = []
    for entry in users if isinstance(users, list) else ():
        user = entry.get("user") if isinstance(entry, dict) else None
        for field in _CREDENTIALS:
            value = user.get(field) if isinstance(user, dict) else None
            if isinstance(value, str) and len(value) >= 8:
                found.append(value)
    return found


def _paths(value: str) -> bool:
    """KUBECONFIG from the environment is a path (or a `:`-separated list of
    paths), not content (config.SECRETS): accept both, so a caller can pass
    either without guessing."""
    if "\n" in value or len(value) > 4096:
        return False
    parts = [part for part in value.split(os.pathsep) if part]
    return bool(parts) and all(os.path.isfile(part) for part in parts)


def run_kubectl(args: Sequence[str], *, kubeconfig: str | None = None, timeout: float = 60) -> str:
    """Run ``kubectl <args>`` and return its stdout.

    ``kubeconfig`` is the kubeconfig YAML, or the path (``:``-separated
    paths) of existing files; None leaves kubectl to its own defaults. Raises :class:`KubectlError`.
    """
    binary = shutil.which("kubectl")
    if binary is None:
        raise KubectlError("kubectl not found on PATH: install kubectl (https://kubernetes.io/docs/tasks/tools/) and retry", kind="missing")
    command = [binary]
    env = dict(os.environ)
    temp_path: str | None = None
    try:
        if kubeconfig is not None:
            if _paths(kubeconfig):
                env["KUBECONFIG"] = kubeconfig  # kubectl merges a list; --kubeconfig takes one file
            else:
                # mkstemp creates the file 0600 and owned by us before any byte is written.
                fd, temp_path = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml")
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(kubeconfig)
                command += ["--kubeconfig", temp_path]
                env.pop("KUBECONFIG", None)
        command += list(args)
        shown = " ".join(["kubectl", *args])
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise KubectlError(f"`{shown}` timed out after {timeout:g} s", kind="timeout") from None
        except OSError as error:
            raise KubectlError(f"`{shown}` could not be started: {error.strerror}", kind="missing") from None
        if completed.returncode != 0:
            secrets = kubeconfig_secrets(kubeconfig)
            stderr, stdout = mask(completed.stderr, secrets), mask(completed.stdout, secrets)
            kind = classify_failure(stderr.strip())
            reason = summarize_stderr(stderr.strip()) or f"exit code {completed.returncode}"
            raise KubectlError(f"`{shown}` failed: {reason}", kind=kind, returncode=completed.returncode, stdout=stdout, stderr=stderr)
        return completed.stdout
    finally:
        if temp_path is not None:
            try:
                os.unlink(temp_path)
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------
# Facts read with kubectl (a command plus a pure parser)
# --------------------------------------------------------------------------


def parse_server_version(output: str) -> str:
    """``serverVersion.gitVersion`` of ``kubectl version -o json``
    (e.g. ``v1.34.3``), the build suffix dropped."""
    try:
        version = json.loads(output)["serverVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("`kubectl version -o json` printed no serverVersion.gitVersion") from None
    match = re.match(r"^(v\d+\.\d+\.\d+)", str(version))
    if not match:
        raise ValueError(f"the cluster reports version {version!r}, not v<major>.<minor>.<patch>")
    return match.group(1)


def server_version(kubeconfig: str | None, timeout: float = 30) -> str:
    """The Kubernetes version the cluster's API server runs."""
    return parse_server_version(run_kubectl(["version", "--output", "json"], kubeconfig=kubeconfig, timeout=timeout))


def is_unserved_type(error: KubectlError) -> bool:
    """Pure: kubectl failed because the API server does not serve the
    resource type (kubectl's ``error: the server doesn't have a resource type
    "..."``: e.g. a Flux type in a cluster without Flux)."""
    return error.kind == "failed" and "the server doesn't have a resource type" in error.stderr


def get_objects(resource: str, names: Sequence[str] = (), *, namespace: str | None = None, all_namespaces: bool = False,
                selector: str | None = None, kubeconfig: str | None = None, timeout: float = 30,
                unserved_ok: bool = False) -> list[dict]:
    """The objects that exist, as dicts (read-only): ``kubectl get <resource>
    [<names> --ignore-not-found] -o json``, in one namespace, all of them, or
    cluster-wide; ``[]`` when none exists (and, with ``unserved_ok``, when the
    cluster does not serve the type at all).

    kubectl prints nothing when a named object is not found, the object itself
    for one name, and a ``List`` otherwise. ``resource`` should be fully
    qualified (``helmreleases.helm.toolkit.fluxcd.io``) so no other API
    group's kind of the same name answers. Raises :class:`KubectlError`
    (``failed`` when the output is not JSON)."""
    args = ["get", resource, *names, *(["--ignore-not-found"] if names else []),
            "-o", "json", f"--request-timeout={max(int(timeout) - 5, 1)}s"]
    if all_namespaces:
        args.append("--all-namespaces")
    elif namespace:
        args += ["--namespace", namespace]
    if selector:
        args += ["--selector", selector]
    try:
        text = run_kubectl(args, kubeconfig=kubeconfig, timeout=timeout)
    except KubectlError as error:
        if unserved_ok and is_unserved_type(error):
            return []
        raise
    if not text.strip():
        return []
    try:
        document = json.loads(text)
    except ValueError:
        shown = mask(text, kubeconfig_secrets(kubeconfig))
        raise KubectlError(f"`kubectl {' '.join(args)}` printed no JSON: {shown.strip()[:200]!r}", kind="failed", stdout=shown) from None
    if not isinstance(document, dict):
        raise KubectlError(f"`kubectl {' '.join(args)}` printed JSON that is not an object", kind="failed", stdout=text)
    if str(document.get("kind", "")).endswith("List") and isinstance(document.get("items"), list):
        return [item for item in document["items"] if isinstance(item, dict)]
    return [document]


def get_object(resource: str, name: str, *, namespace: str | None = None, kubeconfig: str | None = None, timeout: float = 30) -> dict | None:
    """One named object, or None when it does not exist."""
    found = get_objects(resource, [name], namespace=namespace, kubeconfig=kubeconfig, timeout=timeout)
    return found[0] if found else None


def delete_object(kind: str, name: str, *, namespace: str | None = None, kubeconfig: str | None = None, timeout: float = 300,
                  wait: bool = True) -> None:
    """``kubectl delete <kind> <name> --ignore-not-found``: waits until the
    object is gone (with ``wait=False`` only asks: an object with finalizers
    stays until its controller removes them, which the caller then waits for
    itself, bounded and with progress); one already gone is not an error."""
    args = ["delete", kind, name, "--ignore-not-found"] + ([] if wait else ["--wait=false"])
    args += ["--namespace", namespace] if namespace else []
    run_kubectl(args, kubeconfig=kubeconfig, timeout=timeout)


def patch_object(resource: str, name: str, patch: dict, *, field_manager: str, namespace: str | None = None,
                 kubeconfig: str | None = None, timeout: float = 60) -> None:
    """``kubectl patch <resource> <name> --type=merge -p <patch>
    --field-manager=<field_manager>``: a JSON merge patch (RFC 7386; custom
    resources take no strategic merge patch), its fields owned by
    ``field_manager``."""
    args = ["patch", resource, name, "--type=merge", "--patch", json.dumps(patch, separators=(",", ":")),
            f"--field-manager={field_manager}"] + (["--namespace", namespace] if namespace else [])
    run_kubectl(args, kubeconfig=kubeconfig, timeout=timeout)


# --------------------------------------------------------------------------
# Nodes: look one up, cordon, drain and uncordon it (kubectl's own verbs)
# --------------------------------------------------------------------------


def get_node(name: str, *, kubeconfig: str | None = None, timeout: float = 30) -> dict | None:
    """``kubectl get node NAME -o json`` as a dict; None when there is no such node."""
    import json

    try:
        text = run_kubectl(["get", "node", name, "-o", "json"], kubeconfig=kubeconfig, timeout=timeout)
    except KubectlError as error:
        if error.kind == "not_found":
            return None
        raise
    try:
        data = json.loads(text)
    except ValueError:
        raise KubectlError(f"`kubectl get node {name} -o json` printed something that is not JSON", kind="failed") from None
    if not isinstance(data, dict) or data.get("kind") != "Node":
        raise KubectlError(f"`kubectl get node {name} -o json` did not print a Node", kind="failed")
    return data


def cordon_node(name: str, *, kubeconfig: str | None = None, timeout: float = 60) -> str:
    """``kubectl cordon NAME``: no new pods are scheduled on the node."""
    return run_kubectl(["cordon", name], kubeconfig=kubeconfig, timeout=timeout)


def uncordon_node(name: str, *, kubeconfig: str | None = None, timeout: float = 60) -> str:
    """``kubectl uncordon NAME``: the node takes new pods again."""
    return run_kubectl(["uncordon", name], kubeconfig=kubeconfig, timeout=timeout)


def drain_node(name: str, *, timeout_seconds: int, kubeconfig: str | None = None) -> str:
    """``kubectl drain NAME --ignore-daemonsets --delete-emptydir-data --timeout=Ns``:
    evict every pod but DaemonSet-managed ones (which the DaemonSet would put
    straight back), giving up after ``timeout_seconds`` (kubectl then exits 1
    with "global timeout reached")."""
    return run_kubectl(["drain", name, "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={int(timeout_seconds)}s"],
                       kubeconfig=kubeconfig, timeout=timeout_seconds + 30)
