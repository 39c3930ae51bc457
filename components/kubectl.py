"""The one place that runs ``kubectl``.

``run_kubectl`` takes kubeconfig *content* (a secret), writes it to a private
temp file (mode 0600) for the duration of one call and removes it afterwards;
with ``kubeconfig=None`` kubectl's own ``KUBECONFIG`` / ``~/.kube/config``
applies. Errors are classified (``KubectlError.kind``) so callers can tell
"cannot reach the cluster" from "the object is not there" from "kubectl is
not installed". Nothing here logs the kubeconfig or its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Literal

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
            stderr = completed.stderr.strip()
            kind = classify_failure(stderr)
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            reason = " | ".join(lines[-3:]) if lines else f"exit code {completed.returncode}"
            raise KubectlError(f"`{shown}` failed: {reason}", kind=kind, returncode=completed.returncode, stdout=completed.stdout, stderr=completed.stderr)
        return completed.stdout
    finally:
        if temp_path is not None:
            try:
                os.unlink(temp_path)
            except FileNotFoundError:
                pass


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
