"""The one place that runs ``talosctl`` (thin transport), and the pure parsers
for what it prints (facts: a command plus a parser)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

import yaml

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
    if not talosconfig:
        return text
    try:
        data = yaml.safe_load(talosconfig)
    except yaml.YAMLError:
        return text
    for context in (data or {}).get("contexts", {}).values() if isinstance(data, dict) else ():
        for field in ("ca", "crt", "key"):
            value = context.get(field) if isinstance(context, dict) else None
            if isinstance(value, str) and len(value) >= 8:
                text = text.replace(value, "***")
    return text


# --------------------------------------------------------------------------
# Facts: which command, and a pure parser for its output
# --------------------------------------------------------------------------


def version_args(node: str, endpoint: str) -> list[str]:
    return ["version", "--nodes", node, "--endpoints", endpoint]


def extensions_args(node: str, endpoint: str) -> list[str]:
    return ["get", "extensions", "--nodes", node, "--endpoints", endpoint, "--output", "yaml"]


# The machine config on the node's STATE partition: what the node boots with
# next (a config applied with --mode=staged is here before it runs).
STATE_CONFIG = "/system/state/config.yaml"


def read_config_args(node: str, endpoint: str) -> list[str]:
    return ["read", STATE_CONFIG, "--nodes", node, "--endpoints", endpoint]


def running_config_args(node: str, endpoint: str) -> list[str]:
    """The config the node runs now (the MachineConfig resource ``v1alpha1``,
    Talos docs editing-machine-configuration)."""
    return ["get", "machineconfig", "v1alpha1", "--nodes", node, "--endpoints", endpoint, "--output", "yaml"]


def parse_running_config(output: str) -> str:
    """The machine config text in ``talosctl get machineconfig -o yaml``
    (the resource's spec is the config as a YAML string)."""
    for document in yaml.safe_load_all(output):
        if isinstance(document, dict) and (document.get("metadata") or {}).get("id") == "v1alpha1":
            spec = document.get("spec")
            if isinstance(spec, str):
                return spec
    raise ValueError("`talosctl get machineconfig` printed no v1alpha1 MachineConfig resource")


def parse_extension_names(output: str) -> list[str]:
    """The names of the system extensions in ``talosctl get extensions -o
    yaml`` (the factory's ``schematic`` and ``modules.dep`` entries are not
    extensions and are left out)."""
    names = []
    for document in yaml.safe_load_all(output):
        if isinstance(document, dict):
            name = ((document.get("spec") or {}).get("metadata") or {}).get("name")
            if name and name not in ("schematic", "modules.dep"):
                names.append(str(name))
    return names


def parse_server_version(output: str) -> str:
    """The node's Talos version (``Tag:`` under ``Server:``) from
    ``talosctl version``."""
    _, server, rest = output.partition("Server:")
    if not server:
        raise ValueError("`talosctl version` printed no Server section (is the node reachable?)")
    match = re.search(r"^\s*Tag:\s*(v\d+\.\d+\.\d+\S*)\s*$", rest, re.MULTILINE)
    if not match:
        raise ValueError("`talosctl version` printed no server Tag line")
    return match.group(1)


def parse_schematic(output: str) -> str | None:
    """The schematic ID the node booted from: the Image Factory adds an
    extension named ``schematic`` whose version is the ID (Talos
    ExtensionStatus; ImageFactorySchematicController). None when the node
    was not installed from a factory image."""
    for document in yaml.safe_load_all(output):
        if not isinstance(document, dict):
            continue
        metadata = ((document.get("spec") or {}).get("metadata") or {})
        if metadata.get("name") == "schematic":
            version = metadata.get("version")
            return str(version) if version else None
    return None
