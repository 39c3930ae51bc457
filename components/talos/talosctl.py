"""The one place that runs ``talosctl`` (thin transport), and the commands
whose output components/facts/talos.py reads (facts: a command plus a parser)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

import yaml

from components.masking import mask

# Never wipe a disk from here: the node may hold Ceph OSDs. `reset` wipes
# STATE/EPHEMERAL; `--wipe*` and `--preserve=false` ask for it explicitly.
_REFUSED_SUBCOMMANDS = {"reset", "wipe"}
_REFUSED_FLAG = re.compile(r"^--(wipe|insecure-wipe)|^--preserve=(false|0)$", re.IGNORECASE)


class TalosctlError(RuntimeError):
    """talosctl is missing, refused the command, failed or timed out."""


class TalosctlTimeout(TalosctlError):
    """talosctl did not finish in time: the node did not answer (or answered too slowly)."""


def run_talosctl(args: Sequence[str], *, talosconfig: str | None = None, timeout: float = 600) -> str:
    """Run ``talosctl <args>`` and return its stdout.

    ``talosconfig`` (YAML text, a secret) goes to a 0600 temp file passed
    with ``--talosconfig`` and removed afterwards. Output that echoes any of
    its values is masked before it appears in an error."""
    return _run(args, talosconfig=talosconfig, timeout=timeout)[0]


def _run(args: Sequence[str], *, talosconfig: str | None = None, timeout: float = 600) -> tuple[str, str]:
    """``run_talosctl`` returning (stdout, stderr)."""
    args = [str(arg) for arg in args]
    if args and args[0] in _REFUSED_SUBCOMMANDS or any(_REFUSED_FLAG.match(arg) for arg in args):
        raise TalosctlError(f"refusing `talosctl {' '.join(args)}`: this program never wipes a node's disks")
    binary = shutil.which("talosctl")
    if binary is None:
        raise TalosctlError(
            "talosctl is not installed (not found on PATH); install the talosctl release matching the node's "
            "Talos version (https://www.talos.dev/latest/talos-guides/install/talosctl/) and run again"
        )
    path = None
    command = [binary, *args]
    try:
        if talosconfig is not None:
            path = _private_file("talosconfig-", talosconfig)
            command = [binary, "--talosconfig", path, *args]
        env = {key: value for key, value in os.environ.items() if key != "TALOSCONFIG"}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise TalosctlTimeout(f"`talosctl {' '.join(args)}` did not finish within {timeout:g} s") from None
        except OSError as error:
            raise TalosctlError(f"could not run {binary}: {error.strerror}") from None
    finally:
        if path is not None:
            os.unlink(path)
    if done.returncode != 0:
        detail = _mask((done.stderr or done.stdout).strip(), talosconfig)
        raise TalosctlError(f"`talosctl {' '.join(args)}` failed (exit {done.returncode}): {detail[-2000:]}")
    return done.stdout, done.stderr


def _private_file(prefix: str, content: str) -> str:
    """A 0600 temp file holding ``content`` (a secret); the caller removes it."""
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=".yaml")
    os.fchmod(handle, 0o600)  # mkstemp already does; say it, since it matters
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(content)
    return path


APPLY_MODES = ("auto", "no-reboot", "reboot", "staged")


def apply_config(config: str, node: str, endpoint: str, *, mode: str, talosconfig: str, dry_run: bool = False,
                 timeout: float = 300) -> str:
    """``talosctl apply-config --file <0600 temp file> --mode <mode>``; the
    machine config (it holds the node's secrets) lives only in that file,
    removed afterwards. Returns what talosctl reports (its stderr: "Staged
    configuration to be applied after the next reboot", the dry-run
    summary, ...)."""
    if mode not in APPLY_MODES:
        raise ValueError(f"apply mode {mode!r} is not one of {', '.join(APPLY_MODES)}")
    path = _private_file("machineconfig-", config)
    try:
        args = ["apply-config", "--nodes", node, "--endpoints", endpoint, "--file", path, "--mode", mode]
        if dry_run:
            args.append("--dry-run")
        return _run(args, talosconfig=talosconfig, timeout=timeout)[1]
    finally:
        os.unlink(path)


def _mask(text: str, talosconfig: str | None) -> str:
    try:
        data = yaml.safe_load(talosconfig) if talosconfig else None
    except yaml.YAMLError:
        data = None
    contexts = (data or {}).get("contexts", {}) if isinstance(data, dict) else {}
    secrets = [context.get(field) for context in (contexts.values() if isinstance(contexts, dict) else ()) if isinstance(context, dict)
               for field in ("ca", "crt", "key")]
    return mask(text, [value for value in secrets if isinstance(value, str) and len(value) >= 8])


# --------------------------------------------------------------------------
# Facts: which command (its parser is in components/facts/talos.py)
# --------------------------------------------------------------------------


def version_args(node: str, endpoint: str) -> list[str]:
    return ["version", "--nodes", node, "--endpoints", endpoint]


def extensions_args(node: str, endpoint: str) -> list[str]:
    return ["get", "extensions", "--nodes", node, "--endpoints", endpoint, "--output", "yaml"]


# The machine config file on the STATE partition. Only Talos before 1.10
# serves it: from 1.10 STATE is mounted only while Talos itself reads or
# writes it, from 1.12 never (siderolabs/talos commits d4aacb0d8, 9db6dc06c),
# and `talosctl read` answers NotFound.
STATE_CONFIG = "/system/state/config.yaml"
# The MachineConfig resources (pkg/machinery/resources/config/machine_config.go):
# "v1alpha1" is what runs; from Talos 1.10 "persistent" is what STATE holds
# after an apply since the last boot (ahead of "v1alpha1" after --mode=staged).
RUNNING_ID, PERSISTENT_ID = "v1alpha1", "persistent"
PERSISTENT_FROM = (1, 10, 0)


def read_config_args(node: str, endpoint: str) -> list[str]:
    """``talosctl read /system/state/config.yaml`` (Talos before 1.10 only)."""
    return ["read", STATE_CONFIG, "--nodes", node, "--endpoints", endpoint]


def machine_config_args(node: str, endpoint: str, resource_id: str = RUNNING_ID) -> list[str]:
    """``talosctl get machineconfig <id> -o yaml``."""
    return ["get", "machineconfig", resource_id, "--nodes", node, "--endpoints", endpoint, "--output", "yaml"]


def running_config_args(node: str, endpoint: str) -> list[str]:
    """The config the node runs now (the MachineConfig resource ``v1alpha1``)."""
    return machine_config_args(node, endpoint, RUNNING_ID)


def is_not_found(error: BaseException) -> bool:
    """Whether talosctl's error is the node's gRPC NotFound (``rpc error:
    code = NotFound desc = ...``, cmd/talosctl/cmd/talos/get.go, read.go)."""
    return "code = NotFound" in str(error)
